"""The Broker: databroker's v1 API over any :class:`~broker_v1.stores.base.DocumentStore`.

The Broker knows only the abstract store: it composes queries, resolves ``db[key]`` and
writes; reading (transforms, ``prepare_hook``, filling, tables, replay) goes through its
:class:`~broker_v1._reading.ReadContext`, which Header and the v2 shim share.
"""

from __future__ import annotations

import copy
import importlib
import re
import warnings
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, SupportsIndex, overload

from ._layouts import translate
from ._reading import ReadContext, RunView
from .config import find_config_file, lookup_config, validate_config
from .errors import ConfigError
from .filling import HandlerRegistry, Images, fill_events, import_handler
from .header import Header
from .lookup import is_multi_key, lookup_many, lookup_one
from .queries import build_query, local_timezone_name
from .stores import store_from_config
from .stores.base import DocumentStore
from .utils import ALL, get_fields, wrap_in_deprecated_doct

if TYPE_CHECKING:
    import pandas

    from .v2 import Catalog

__all__ = ["Broker", "Results", "temp", "temp_config"]

PrepareHook = Callable[[str, Any], Any]


def _import_dotted(path: str, *, source: str | None, key: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"{source or 'config'}: {key} names {path!r}, which cannot be imported ({err}).",
            source=source,
            key=key,
        ) from err


class Results:
    """The lazy, re-iterable result of ``db(...)``: Headers, newest first.

    Iterating runs the query again, so a new run that matches appears on the next pass.
    There is no ``len()`` (as in databroker); use ``len(list(results))``.
    """

    def __init__(self, db: Broker, query: dict[str, Any], data_key: str | None = None,
                 stop_query: dict[str, Any] | None = None) -> None:
        self._db = db
        self.query = query
        self._data_key = data_key
        self._stop_query = stop_query or {}

    def __iter__(self) -> Iterator[Header]:
        query = self.query
        if self._stop_query:
            # Search on stop fields: one join, re-evaluated on each pass like the rest.
            uids = self._db._store.find_run_stop_uids(self._stop_query)
            query = {"$and": [query, {"uid": {"$in": uids}}]} if query else {
                "uid": {"$in": uids}}
        for start in self._db._store.find_run_starts(query):
            header = self._db._header(start)
            if self._data_key is not None and self._data_key not in header.fields():
                continue
            yield header

    def __repr__(self) -> str:
        return f"<Results of {self.query!r} in {self._db._store.describe()}>"


class Broker:
    """databroker's v1 ``Broker`` over an interchangeable store.

    Parameters
    ----------
    store
        Where the documents live (memory, files, MongoDB or a third-party backend).  With
        none, the embedded default: a files store in this user's data folder
        (:func:`broker_v1.config.default_store_path`).
    name
        The name the Broker was opened by (``Broker.named``), else ``None``.
    timezone
        IANA zone for reading ``since``/``until`` strings and localising table times
        (default: this machine's zone).
    prepare_hook
        ``(name, doc) -> doc`` applied to every document handed out; default
        :func:`~broker_v1.wrap_in_deprecated_doct`.
    external_fetchers
        ``{name: f(start, stop)}``; each header gets ``h.ext.<name>``.
    transforms
        ``{start|stop|descriptor|resource: f(doc) -> doc}`` applied on every read path.
    handlers
        ``{spec: handler class}`` for external data (on top of discovered ones).
    root_map
        ``{old_root: new_root}`` for resources whose files moved.
    auto_register
        Use handlers advertised by installed packages (``databroker.handlers``).

    Examples
    --------
    >>> import broker_v1
    >>> db = broker_v1.temp()
    >>> db(plan_name='scan')  # doctest: +ELLIPSIS
    <Results of {'plan_name': 'scan'} in memory store>
    """

    ALL = ALL

    def __init__(
        self,
        store: DocumentStore | None = None,
        *,
        name: str | None = None,
        timezone: str | None = None,
        prepare_hook: PrepareHook = wrap_in_deprecated_doct,
        external_fetchers: Mapping[str, Callable[[Any, Any], Any]] | None = None,
        transforms: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
        handlers: Mapping[str, Any] | None = None,
        root_map: Mapping[str, str] | None = None,
        auto_register: bool = True,
    ) -> None:
        if store is None:
            from .config import default_store_path

            store = store_from_config({"backend": "files", "path": str(default_store_path())})
        if not isinstance(store, DocumentStore):
            raise TypeError(
                f"Broker needs a DocumentStore (e.g. MemoryStore()), got {type(store).__name__}. "
                "To open a configured broker use Broker.named(name) or Broker.from_config(dict)."
            )
        object.__setattr__(self, "aliases", {})
        self._store = store
        self._name = name
        zone = timezone or local_timezone_name()
        zoneinfo.ZoneInfo(zone)  # fail early on a bad name
        self.filters: dict[str, Any] = {}
        self.external_fetchers: dict[str, Callable[[Any, Any], Any]] = dict(
            external_fetchers or {}
        )
        self._config: dict[str, Any] | None = None
        #: Handlers and root_map for external data (``db.reg.register_handler(...)``).
        self.reg = HandlerRegistry(handlers, root_map, auto_register=auto_register)
        self._reading = ReadContext(store, self.reg, transforms=transforms,
                                    prepare_hook=prepare_hook, timezone=zone, owner=self)

    @property
    def timezone(self) -> str:
        """IANA zone for ``since``/``until`` strings, table times and displays."""
        return self._reading.timezone

    @timezone.setter
    def timezone(self, value: str) -> None:
        zoneinfo.ZoneInfo(value)
        self._reading.timezone = value

    @property
    def prepare_hook(self) -> PrepareHook:
        """``(name, doc) -> doc`` applied to every document handed out (assignable)."""
        return self._reading.prepare_hook

    @prepare_hook.setter
    def prepare_hook(self, hook: PrepareHook) -> None:
        self._reading.prepare_hook = hook

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], auto_register: bool = True, name: str | None = None,
        *, source: str | None = None, entry: str | None = None,
    ) -> Any:
        """Open a Broker from a config mapping (see :mod:`broker_v1.config` for the shape).

        Parameters
        ----------
        config
            The configuration.
        auto_register
            Register handlers advertised by installed packages (``databroker.handlers``).
        name
            Recorded as ``db.name``.
        source
            The file the config came from, named in error messages; relative paths in the
            config (root_map, databroker-pack paths) are resolved against its folder.
        entry
            Which catalog of an intake file holding several (``sources:`` entries).

        Returns
        -------
        Broker
            (or, with ``api_version: 2``, the Broker's v2 catalog).
        """
        original = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else config
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"{source or 'config'}: a config must be a mapping, got {type(config).__name__}.",
                source=source,
            )
        checked = validate_config(translate(config, source=source, entry=entry), source=source)
        api_version = checked.get("api_version", 1)
        if api_version not in (0, 1, 2) or isinstance(api_version, bool):
            raise ConfigError(
                f"{source or 'config'}: api_version must be 0, 1 or 2, got {api_version!r}.",
                source=source,
                key="api_version",
            )
        store = store_from_config(checked["store"], source=source)
        transforms = {
            kind: _import_dotted(path, source=source, key=f"transforms.{kind}")
            for kind, path in (checked.get("transforms") or {}).items()
        }
        handlers = {
            spec: import_handler(entry["module"], entry["class"], source=source,
                                 key=f"handlers.{spec}")
            for spec, entry in (checked.get("handlers") or {}).items()
        }
        db = cls(store, name=name, timezone=checked.get("timezone"), transforms=transforms,
                 handlers=handlers, root_map=checked.get("root_map"),
                 auto_register=auto_register)
        db._config = original
        if api_version == 2:
            return db.v2
        return db

    @classmethod
    def named(cls, name: str, auto_register: bool = True) -> Broker:
        """Open the Broker configured in ``<name>.yml`` on the config search path.

        ``'temp'`` always works: a fresh temporary store on each call.

        Returns
        -------
        Broker
            (or, where the config says ``api_version: 2``, the Broker's v2 catalog).

        Raises
        ------
        FileNotFoundError
            No such config; the message lists every folder searched.
        """
        if name == "temp":
            return temp()
        entry = None
        if find_config_file(name) is None and "." in name:
            # 'csx.raw': the 'raw' catalog of the intake file csx.yml
            file_name, _, entry = name.partition(".")
            if find_config_file(file_name) is not None:
                name = file_name
            else:
                entry = None
        config = lookup_config(name)
        path = find_config_file(name)
        # Annotated Broker, what nearly every config opens; api_version: 2 opens its catalog.
        opened: Broker = cls.from_config(config, auto_register=auto_register,
                                         name=name if entry is None else f"{name}.{entry}",
                                         source=str(path) if path else None, entry=entry)
        return opened

    def get_config(self) -> dict[str, Any] | None:
        """A copy of the config this Broker was built from (``None`` if built from a store),
        with credentials (passwords in URIs, secret keys) replaced by ``***``."""
        from .config import redact_config

        if self._config is None:
            if self._name == "temp":
                return copy.deepcopy(_TEMP_MEMORY_CONFIG)
            return None
        return redact_config(copy.deepcopy(self._config))  # type: ignore[no-any-return]

    @property
    def name(self) -> str | None:
        """The name the Broker was opened by, or ``None``."""
        return self._name

    @property
    def v2(self) -> Catalog:
        """The v2 catalog of this Broker's runs (``db.v2.v1 is db``)."""
        cached = self.__dict__.get("_v2")
        if cached is None:
            from .v2 import Catalog

            cached = Catalog(self._reading)
            self.__dict__["_v2"] = cached
        return cached

    @property
    def v1(self) -> Broker:
        """This Broker (so code can accept a Broker or a v2 catalog and call ``.v1``)."""
        return self

    @property
    def root_map(self) -> dict[str, str]:
        """``{old_root: new_root}`` applied to resource roots (the same dict as
        ``db.reg.root_map``)."""
        return self.reg.root_map

    @property
    def fs(self) -> HandlerRegistry:
        """Deprecated alias of :attr:`reg`."""
        warnings.warn("db.fs is deprecated; use db.reg.", UserWarning, stacklevel=2)
        return self.reg

    @property
    def store(self) -> DocumentStore:
        """The store behind this Broker."""
        return self._store

    def __repr__(self) -> str:
        return f"<Broker {self._name or ''} on {self._store.describe()}>".replace("  ", " ")

    # ------------------------------------------------------------------ documents out
    def _header(self, start: dict[str, Any]) -> Header:
        return Header(self._reading, self._reading.run(start), self.fetch_external)

    def fetch_external(self, start: Mapping[str, Any], stop: Mapping[str, Any]) -> dict[str, Any]:
        """``{name: fetcher(start, stop)}`` for every external fetcher."""
        return {name: func(start, stop) for name, func in self.external_fetchers.items()}

    # ------------------------------------------------------------------ lookup and search
    # Typed per key, so that db[-1]['start'] type-checks in users' code.
    @overload
    def __getitem__(self, key: str | SupportsIndex) -> Header: ...
    @overload
    def __getitem__(self, key: slice | list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]
                    ) -> list[Header]: ...
    @overload
    def __getitem__(self, key: Any) -> Header | list[Header]: ...

    def __getitem__(self, key: Any) -> Header | list[Header]:
        """Look runs up: ``db[-1]``, ``db[scan_id]``, ``db[uid]``, ``db['3f2a']``, ``db[-5:]``,
        ``db[[k1, k2]]``.  Filters do not apply to lookups."""
        if is_multi_key(key):
            return [self._header(s) for s in lookup_many(self._store, key)]
        return self._header(lookup_one(self._store, key))

    def __call__(self, text_search: str | None = None, **kwargs: Any) -> Results:
        """Search start documents; see the v1 docs for every accepted form.

        Parameters
        ----------
        text_search
            Words searched in every string value of the start documents.
        **kwargs
            Conditions on start fields (Mongo operators and dotted keys allowed), ``since``,
            ``until`` (inclusive; strings read in ``db.timezone``), ``data_key`` (runs
            with that field in any stream) and, opt-in, conditions on the stop document
            with keys prefixed ``stop.`` (``db(**{'stop.exit_status': 'fail'})``).
        """
        data_key = kwargs.pop("data_key", None)
        stop_query = {k[len("stop."):]: kwargs.pop(k) for k in list(kwargs)
                      if isinstance(k, str) and k.startswith("stop.")}
        query = build_query(
            kwargs, text_search=text_search, filters=self.filters, timezone=self.timezone
        )
        self._store.check_query(query)  # fail now on a bad query, not at the first iteration
        if stop_query:
            self._store.check_query(stop_query)
        return Results(self, query, data_key, stop_query)

    def add_filter(self, **kwargs: Any) -> None:
        """Add conditions AND-ed with every later ``db(...)`` search."""
        self.filters.update(kwargs)

    def clear_filters(self, **kwargs: Any) -> None:
        """Remove every filter."""
        self.filters.clear()

    def alias(self, key: str, **query: Any) -> None:
        """Name a search: ``db.alias('cal', purpose='calibration')`` then ``db.cal``."""
        self._check_alias(key)
        self.aliases[key] = query

    def dynamic_alias(self, key: str, func: Callable[[], Mapping[str, Any]]) -> None:
        """Like :meth:`alias`, but ``func()`` makes the query at each access."""
        self._check_alias(key)
        self.aliases[key] = func

    def _check_alias(self, key: str) -> None:
        if key not in self.aliases and (hasattr(type(self), key) or key in self.__dict__):
            raise ValueError(f"{key!r} is already an attribute of Broker; choose another alias.")

    def __getattr__(self, key: str) -> Any:
        aliases = self.__dict__.get("aliases", {})
        if key in aliases:
            query = aliases[key]
            return self(**(query() if callable(query) else query))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    # ------------------------------------------------------------------ writing
    def insert(self, name: str, doc: Mapping[str, Any]) -> None:
        """Store one document; subscribe it to a RunEngine with ``RE.subscribe(db.insert)``.

        Accepts every event-model document type (and the deprecated ``bulk_events`` /
        ``bulk_datum``, converted to pages with a warning).

        Raises
        ------
        InvalidDocument
            Malformed, or linked to a document the store does not hold; nothing written.
        DuplicateDocument
            A different document with the same uid exists (identical ones are no-ops).
        ReadOnlyStore
            The store is read-only.
        """
        if name == "bulk_events":
            import event_model

            warnings.warn("'bulk_events' is deprecated; insert event_page documents.",
                          UserWarning, stacklevel=2)
            for page in event_model.bulk_events_to_event_pages(dict(doc)):
                self._store.insert("event_page", page)
            return
        if name == "bulk_datum":
            import event_model

            warnings.warn("'bulk_datum' is deprecated; insert datum_page documents.",
                          UserWarning, stacklevel=2)
            self._store.insert("datum_page", event_model.bulk_datum_to_datum_page(dict(doc)))
            return
        self._store.insert(name, doc)

    # ------------------------------------------------------------------ reading data
    @staticmethod
    def _headers(headers: Any) -> list[Header]:
        if isinstance(headers, Header):
            return [headers]
        return list(headers)

    def _runs(self, headers: Any) -> Iterator[RunView]:
        for header in self._headers(headers):  # lazily: get_* calls fail at first next()
            yield header.run_view

    def get_fields(self, header: Header, name: str | None = None) -> set[str]:
        """The data keys of a header, optionally of one stream."""
        return get_fields(header, name)

    def stream_names_given_header(self, header: Header) -> list[str]:
        """The stream names of one header (nameless descriptors count as ``'primary'``)."""
        return header.stream_names

    def get_table(
        self,
        headers: Any,
        stream_name: Any = "primary",
        fields: list[str] | None = None,
        fill: Any = False,
        handler_registry: Any = None,
        convert_times: bool = True,
        timezone: str | None = None,
        localize_times: bool = True,
    ) -> pandas.DataFrame:
        """The events of one stream of one or more runs as a ``pandas.DataFrame``.

        Index ``seq_num``; ``time`` first, then fields in descriptor order; ``fields`` are
        full-match regular expressions (configuration, start and stop values they name become
        constant columns).  Times are local wall-clock times in ``timezone`` (default: the
        Broker's) unless ``convert_times`` and ``localize_times`` are both False.
        """
        return self._reading.table(
            self._runs(headers), stream_name=stream_name, fields=fields, fill=fill,
            handler_registry=handler_registry, convert_times=convert_times,
            timezone=timezone, localize_times=localize_times,
        )

    def export(self, headers: Any, db: Broker, new_root: str | None = None,
               copy_kwargs: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """Copy runs (every document; external files too with ``new_root``) into ``db``.

        Returns the ``(old_path, new_path)`` pairs of the files copied.  Runs already in
        ``db`` with identical documents are skipped; see :func:`broker_v1.copying.export`.
        """
        from . import copying

        return copying.export(self, headers, db, new_root=new_root, copy_kwargs=copy_kwargs)

    def export_size(self, headers: Any) -> float:
        """Gigabytes (bytes x 1e-9) of the external files behind the runs' resources."""
        from . import copying

        return copying.export_size(self, headers)

    def fill_events(
        self, events: Iterable[Any], descriptors: Iterable[Any], fields: Any = True,
        inplace: bool = False, handler_registry: Any = None,
    ) -> Iterator[Any]:
        """Fill the external fields of events (a generator; 0.13 behaviour).

        Parameters
        ----------
        events, descriptors
            The events and the descriptors they reference.
        fields
            True (all external fields), False (none) or the names of the fields to fill.
        inplace
            Mutate the given events instead of returning filled copies.
        handler_registry
            Extra ``{spec: handler}`` for this call.
        """
        filler = self._reading.data_filler(handler_registry)
        return fill_events(filler, events, list(descriptors), fields=fields, inplace=inplace,
                           prepare=self.prepare_hook)

    def fill_event(self, event: Any, inplace: bool = True, handler_registry: Any = None) -> Any:
        """Deprecated: fill one event (looks its descriptor up)."""
        warnings.warn("fill_event is deprecated; use fill_events or get_events(fill=True).",
                      UserWarning, stacklevel=2)
        descriptor = self._reading.transform(
            "descriptor", self._store.get_descriptor(event["descriptor"]))
        return next(iter(self.fill_events([event], [descriptor], inplace=inplace,
                                          handler_registry=handler_registry)))

    def get_images(self, headers: Any, name: str, stream_name: str = "primary",
                   handler_registry: Any = None) -> Images:
        """Deprecated: a lazy, sliceable sequence of the frames of field ``name``.

        Only the frames that are indexed are read.  Prefer ``h.data(name)`` or
        ``run.primary.to_dask()``.
        """
        warnings.warn("get_images is deprecated; use Header.data or the v2 to_dask().",
                      UserWarning, stacklevel=2)
        from . import replay

        datum_ids: list[Any] = []
        runs = (run.docs() for run in self._runs(headers))
        for _, event in replay.iter_events(self._store, runs, stream_name=stream_name,
                                           fields=[re.escape(name)]):
            datum_ids.append(event["data"][name])
        filler = self._reading.data_filler(handler_registry)
        return Images(datum_ids, filler)

    def get_events(
        self,
        headers: Any,
        stream_name: Any = "primary",
        fields: list[str] | None = None,
        fill: Any = False,
        handler_registry: Any = None,
    ) -> Iterator[Any]:
        """Event documents of one stream (``ALL`` for every stream), in time order."""
        return self._reading.events(self._runs(headers), stream_name=stream_name,
                                    fields=fields, fill=fill, handler_registry=handler_registry)

    def get_documents(
        self,
        headers: Any,
        stream_name: Any = ALL,
        fields: list[str] | None = None,
        fill: Any = False,
        handler_registry: Any = None,
    ) -> Iterator[tuple[str, Any]]:
        """Replay runs as ``(name, doc)`` pairs in event-model order."""
        return self._reading.documents(self._runs(headers), stream_name=stream_name,
                                       fields=fields, fill=fill,
                                       handler_registry=handler_registry)

    def restream(
        self, headers: Any, fields: list[str] | None = None, fill: Any = False
    ) -> Iterator[tuple[str, Any]]:
        """Every document of the runs, for feeding callbacks as a RunEngine would."""
        return self.get_documents(headers, fields=fields, fill=fill)

    def stream(self, headers: Any, fields: list[str] | None = None, fill: Any = False
               ) -> Iterator[tuple[str, Any]]:
        """Deprecated alias of :meth:`restream`."""
        warnings.warn("Broker.stream is deprecated; use Broker.restream.", UserWarning,
                      stacklevel=2)
        return self.restream(headers, fields=fields, fill=fill)

    def process(
        self, headers: Any, func: Callable[[str, Any], Any], fields: list[str] | None = None,
        fill: Any = False,
    ) -> None:
        """Call ``func(name, doc)`` for every document of :meth:`restream`."""
        for name, doc in self.restream(headers, fields=fields, fill=fill):
            func(name, doc)


_TEMP_MEMORY_CONFIG = {"description": "temporary", "store": {"backend": "memory"}}


def temp_config() -> dict[str, Any]:
    """A config for a fresh temporary files store (a new empty directory on each call).

    ``Broker.from_config(temp_config())`` opens it; unlike :func:`temp`, the runs can be
    shared with other processes through the directory.
    """
    import tempfile

    path = tempfile.mkdtemp(prefix="broker_v1-")
    return {"description": "temporary", "store": {"backend": "files", "path": path}}


def temp() -> Broker:
    """A Broker on a fresh, empty in-memory store; two calls give independent stores."""
    from .stores.memory import MemoryStore

    db = Broker(MemoryStore(), name="temp")
    db._config = copy.deepcopy(_TEMP_MEMORY_CONFIG)
    return db
