"""One read context for every read path: the Broker's ``get_*`` calls, Header and the v2 shim.

A :class:`ReadContext` holds what reading needs beside the store — the config ``transforms``,
the ``prepare_hook``, the timezone and the handler registry — and a :class:`RunView` is one
run's start, stop and descriptors, loaded lazily and transformed exactly once.  Header, the v2
catalog, run and stream read through these two, never through the Broker, so data flows one
way: store -> documents/pages -> table/xarray.

Transforms (spec §11.4 row 4) are applied here and nowhere else: ``start``, ``stop`` and
``descriptor`` when a :class:`RunView` loads them (every read path takes them from the view),
``resource`` when a replay hands one out and when the filler reads one.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._run import RunDocs
from .stores._util import json_copy
from .utils import ALL

if TYPE_CHECKING:
    import pandas

    from .filling import DataFiller, HandlerRegistry
    from .stores.base import DocumentStore

__all__ = ["ReadContext", "RunView"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]
PrepareHook = Callable[[str, Any], Any]


class ReadContext:
    """What every read path shares: the store, transforms, prepare_hook, zone and handlers.

    Parameters
    ----------
    store
        Where the documents live.
    registry
        Handlers and ``root_map`` for external data.
    transforms
        ``{start|stop|descriptor|resource: f(doc) -> doc}``; each is given a private copy.
    prepare_hook
        ``(name, doc) -> doc`` applied to every document handed out to a v1 caller.
    timezone
        IANA zone name for displays and table times.
    owner
        The object handed back as ``Header.db`` and ``Catalog.v1`` (the Broker); opaque here.
    """

    def __init__(
        self,
        store: DocumentStore,
        registry: HandlerRegistry,
        *,
        transforms: Mapping[str, Transform] | None = None,
        prepare_hook: PrepareHook,
        timezone: str,
        owner: Any = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.transforms = dict(transforms or {})
        self.prepare_hook = prepare_hook
        self.timezone = timezone
        self.owner = owner

    # ------------------------------------------------------------------ documents
    def transform(self, name: str, doc: dict[str, Any] | None) -> Any:
        """``doc`` through the configured transform for ``name`` (a copy), else unchanged."""
        func = self.transforms.get(name)
        if func is None or doc is None:
            return doc
        return func(json_copy(doc))

    def run(self, start: dict[str, Any]) -> RunView:
        """A lazily loaded view of the run whose (untransformed) start document is ``start``."""
        return RunView(self, self.transform("start", start))

    def zone(self) -> zoneinfo.ZoneInfo:
        """The zone of :attr:`timezone`."""
        return zoneinfo.ZoneInfo(self.timezone)

    # ------------------------------------------------------------------ external data
    def data_filler(self, handler_registry: Any = None) -> DataFiller:
        """A filler reading through this context's handlers, ``root_map`` and transforms."""
        return self.registry.filler(self.store, handler_registry,
                                    transform_resource=self._resource_transform())

    def filler(self, fill: Any = True, handler_registry: Any = None) -> DataFiller | None:
        """A filler for ``fill`` (``None`` when nothing is to be filled)."""
        if not fill and not isinstance(fill, list | tuple | set | frozenset):
            return None
        return self.data_filler(handler_registry)

    def _resource_transform(self) -> Transform | None:
        if "resource" not in self.transforms:
            return None
        return lambda doc: self.transform("resource", doc)

    def load_datum(self, datum_id: str) -> Any:
        """The data one datum id points to (through the handlers and ``root_map``)."""
        return self.data_filler().load_datum_id(datum_id)

    # ------------------------------------------------------------------ read paths
    def replay(
        self, runs: Iterable[RunView], *, stream_name: Any = ALL,
        fields: list[str] | None = None, fill: Any = False, filler: Any = None,
    ) -> Iterator[tuple[str, Any]]:
        """Raw documents of the runs in event-model order, each transformed once."""
        from . import replay

        for name, doc in replay.iter_documents(
            self.store, (run.docs() for run in runs), stream_name=stream_name,
            fields=fields, fill=fill, filler=filler,
        ):
            if name == "resource":
                doc = self.transform(name, doc)
            yield name, doc

    def documents(
        self, runs: Iterable[RunView], *, stream_name: Any = ALL,
        fields: list[str] | None = None, fill: Any = False, handler_registry: Any = None,
    ) -> Iterator[tuple[str, Any]]:
        """:meth:`replay` with ``prepare_hook`` applied (``get_documents``)."""
        for name, doc in self.replay(runs, stream_name=stream_name, fields=fields, fill=fill,
                                     filler=self.filler(fill, handler_registry)):
            yield name, self.prepare_hook(name, doc)

    def events(
        self, runs: Iterable[RunView], *, stream_name: Any = "primary",
        fields: list[str] | None = None, fill: Any = False, handler_registry: Any = None,
    ) -> Iterator[Any]:
        """Event documents of one stream, time-ordered, through ``prepare_hook``."""
        from . import replay

        for _, event in replay.iter_events(
            self.store, (run.docs() for run in runs), stream_name=stream_name,
            fields=fields, fill=fill, filler=self.filler(fill, handler_registry),
        ):
            yield self.prepare_hook("event", event)

    def table(
        self, runs: Iterable[RunView], *, stream_name: Any = "primary",
        fields: list[str] | None = None, fill: Any = False, handler_registry: Any = None,
        convert_times: bool = True, timezone: str | None = None, localize_times: bool = True,
    ) -> pandas.DataFrame:
        """The events of one stream of the runs as a DataFrame (``get_table``)."""
        from . import tables

        return tables.get_table(
            self.store, (run.docs() for run in runs), stream_name=stream_name,
            fields=fields, fill=fill, filler=self.filler(fill, handler_registry),
            convert_times=convert_times, timezone=timezone or self.timezone,
            localize_times=localize_times,
        )


class RunView:
    """One run's start, stop and descriptors, each loaded at most once and transformed once.

    Parameters
    ----------
    context
        The read context the run is read through.
    start
        The run's start document, already transformed.
    """

    __slots__ = ("context", "start", "_stop", "_descriptors")

    def __init__(self, context: ReadContext, start: dict[str, Any]) -> None:
        self.context = context
        self.start = start
        self._stop: dict[str, Any] | None | bool = False  # False: not fetched yet
        self._descriptors: list[dict[str, Any]] | None = None

    @property
    def uid(self) -> str:
        """The start uid."""
        return str(self.start["uid"])

    def stop(self) -> dict[str, Any] | None:
        """The transformed stop document, or ``None`` for a run without one."""
        if self._stop is False:
            ctx = self.context
            self._stop = ctx.transform("stop", ctx.store.get_run_stop(self.uid))
        return self._stop  # type: ignore[return-value]

    def descriptors(self) -> list[dict[str, Any]]:
        """Every transformed descriptor of the run, in ascending ``time``."""
        if self._descriptors is None:
            ctx = self.context
            self._descriptors = [ctx.transform("descriptor", d)
                                 for d in ctx.store.get_descriptors(self.uid)]
        return self._descriptors

    def docs(self) -> RunDocs:
        """Start, stop and descriptors as the read paths take them (not to be mutated)."""
        return RunDocs(self.start, self.stop(), self.descriptors())
