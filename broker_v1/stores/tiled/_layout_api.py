"""The one interface the tiled store reads a server layout through.

A tiled server holds runs in one of two layouts (see :mod:`broker_v1.stores.tiled`): the SQL
catalog TiledWriter writes (:class:`~broker_v1.stores.tiled._layout.SqlLayout`) and databroker
2's MongoAdapter over the normalized Mongo layout
(:class:`~broker_v1.stores.tiled._mongo_layout.MongoLayout`).  The store finds runs, caches
run and stream clients and translates failures; everything that depends on how a layout keeps
documents (which queries the server answers, how it sorts, where descriptors, events,
resources and datums are) is behind :class:`Layout`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Layout", "StreamRef"]

Doc = dict[str, Any]


@dataclass
class StreamRef:
    """Where a descriptor's events live, remembered when its descriptors were read."""

    run_uid: str
    name: str
    client: Any
    descriptor: Doc
    times: list[tuple[float, str]]  # (time, uid) of every descriptor of the stream


class Layout(abc.ABC):
    """How one server layout answers the store's questions.

    Attributes
    ----------
    name
        The layout, for messages (e.g. which server could not answer an operator).
    answers
        The conditions the server answers, for the message refusing an unbounded query.
    """

    name: str
    answers: str

    @abc.abstractmethod
    def plan(self, query: Mapping[str, Any]) -> Any:
        """A :class:`~broker_v1.stores.tiled._queries.Plan` for a checked filter."""

    @abc.abstractmethod
    def sort(self, sort: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """broker_v1's ``(field, direction)`` pairs as this server's sorting."""

    @abc.abstractmethod
    def descriptors(self, metadata: Mapping[str, Any], stream_name: str,
                    run_uid: str) -> list[Doc]:
        """The descriptors of one stream, from its node's metadata."""

    @abc.abstractmethod
    def event_pages(self, stream: StreamRef,
                    fields: Iterable[str] | None) -> Iterator[Doc]:
        """The event pages of ``stream.descriptor`` (only ``fields`` if given)."""

    def get_resource(self, uid: str) -> Doc | None:
        """A resource document, or ``None`` when this layout does not know it."""
        return None

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """The datum pages of a resource (nothing when unknown)."""
        return iter(())

    def get_datum(self, datum_id: str) -> Doc | None:
        """A datum document, or ``None`` when this layout does not know it."""
        return None

    def find_datums(self, datum_ids: Iterable[str], run_uid: str) -> None:  # noqa: B027
        """Learn where ``datum_ids``, held by events of run ``run_uid``, are (optional:
        only layouts that find datums through their run override it)."""

    def forget(self) -> None:  # noqa: B027 (optional: only layouts that cache override it)
        """Drop what was cached (the store is being closed)."""
