"""One run as a ``BlueskyRun`` (spec 3.0): metadata ``{start, stop}``, one child per stream.

The streams are the run's descriptors grouped by ``name`` (a stream's later descriptors are
configuration updates of its first), read from the store when the run's contents are first
asked for, not when the run is listed in a search page.
"""

from __future__ import annotations

from typing import Any

from tiled.structures.core import Spec

from ..stores.base import DocumentStore
from ._nodes import Node, in_worker, store_errors
from ._stream import StreamAdapter

__all__ = ["RunAdapter", "streams_counted"]


class RunAdapter(Node):
    """A run of ``store``: its start and stop documents and its streams, by name.

    Parameters
    ----------
    store
        The store holding the run.
    start, stop
        The run's start document and its stop document (``None`` while the run is open;
        clients see ``stop: None``).
    filler
        broker_v1's data filler for external fields (``None``: they are not served).
    descriptors
        The run's descriptors when already read (only a finished run's: they no longer
        change); ``None``: read from the store when first needed.
    """

    specs = [Spec("BlueskyRun", version="3.0")]

    def __init__(self, store: DocumentStore, start: dict[str, Any],
                 stop: dict[str, Any] | None, *, filler: Any = None,
                 descriptors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(metadata={"start": start, "stop": stop})
        self.store = store
        self.filler = filler
        self.uid: str = start["uid"]
        self._streams: dict[str, list[dict[str, Any]]] | None = (
            None if descriptors is None else _grouped(descriptors))

    def __repr__(self) -> str:
        return f"<RunAdapter {self.uid}>"

    def streams(self) -> dict[str, list[dict[str, Any]]]:
        """``{stream name: its descriptors in time order}``, streams sorted by name."""
        if self._streams is None:
            with store_errors():
                self._streams = _grouped(self.store.get_descriptors(self.uid))
        return self._streams

    def _entries(self, offset: int, limit: int | None, direction: int
                 ) -> list[tuple[str, Any]]:
        names = list(self.streams())
        if direction < 0:
            names.reverse()
        names = names[offset:] if limit is None else names[offset:offset + limit]
        return [(name, self[name]) for name in names]

    def __len__(self) -> int:
        return len(self.streams())

    def warm(self) -> None:
        """Read now (in a worker thread) what :meth:`approx_len` will need: the streams,
        unless the stop document counts them."""
        if self._streams is None and self._counted_by_stop() is None:
            self.streams()

    def _counted_by_stop(self) -> int | None:
        return streams_counted(self._metadata.get("stop"))

    async def approx_len(self) -> int | None:
        """The number of streams as the stop document counts them, without reading the run.

        tiled's server asks every run of a search page for its length; a finished run's
        ``num_events`` names its streams, so a page of runs costs no descriptor reads.
        Open runs and stops without ``num_events`` give the exact count (descriptors read).
        """
        counted = self._counted_by_stop()
        if self._streams is None and counted is not None:
            return counted
        if self._streams is None:  # a store read: off the event loop (unless warmed)
            await in_worker(self.streams)
        return len(self.streams())

    def __getitem__(self, key: str) -> StreamAdapter:
        descriptors = self.streams().get(key) if isinstance(key, str) else None
        if descriptors is None:
            raise KeyError(key)
        return StreamAdapter(self.store, self.uid, key, descriptors,
                             finished=self._metadata.get("stop") is not None,
                             filler=self.filler)


def streams_counted(stop: dict[str, Any] | None) -> int | None:
    """The number of streams a stop document's ``num_events`` names (``None``: it names
    none, or there is no stop)."""
    counts = (stop or {}).get("num_events")
    return len(counts) if isinstance(counts, dict) and counts else None


def _grouped(descriptors: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for descriptor in descriptors:
        grouped.setdefault(descriptor.get("name") or "primary", []).append(descriptor)
    return dict(sorted(grouped.items()))
