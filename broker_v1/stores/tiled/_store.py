"""TiledStore: read runs from a tiled server's catalog of Bluesky runs (either layout)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ...errors import (
    ConfigError,
    DatumNotFound,
    DuplicateDocument,
    ResourceNotFound,
    RunNotFound,
    UnsupportedQuery,
)
from ..base import DocumentStore, Sort, not_found_run
from ._client import TiledConnection, check_uri, profile_uri
from ._external import ExternalReader
from ._layout import SqlLayout
from ._layout_api import Layout, StreamRef
from ._mongo_layout import MongoLayout
from ._queries import Plan
from ._writer import DEFAULT_BATCH_SIZE, RunRecorder, layout_descriptor

__all__ = ["TiledStore"]

Doc = dict[str, Any]

#: Runs fetched per request while paging through a search (tiled servers cap it at 300).
_PAGE = 300
#: Runs asked for by a search's first request (pages grow from there to _PAGE).
_FIRST_PAGE = 10
#: Run clients kept (their metadata holds start and stop).
_RUN_CACHE = 256
#: Streams kept (client and descriptor); older ones are found again through their run.
_STREAM_CACHE = 1024
#: Event uids written through this store remembered for the duplicate policy (the layout
#: keeps no event uids): uid -> (descriptor uid, seq_num).
_EVENT_IDS = 200_000
#: Resources and datums written through this store remembered for links and duplicates.
_ASSET_DOCS = 200_000


class TiledStore(DocumentStore):
    """Runs in a tiled server's catalog of Bluesky runs, read through tiled's client.

    Reads both layouts, told apart by the root's spec: the SQL catalog that
    bluesky-tiled-plugins' ``TiledWriter`` writes (``CatalogOfBlueskyRuns`` version 3) and
    databroker 2's MongoAdapter over the normalized Mongo layout (version 1).  Records runs
    into the SQL layout through the same writer (see :meth:`insert`); the Mongo layout is
    served read-only.

    Parameters
    ----------
    uri
        ``http(s)://host:port[/sub/path]`` of the catalog node.
    profile
        Instead of ``uri``: the name of a tiled client profile (``tiled profile list``),
        whose ``uri`` is used.
    api_key
        The API key; by default the ``TILED_API_KEY`` environment variable (or none).
    client_filter_limit
        Parts of a query the server cannot answer are checked here on the runs the server
        returns, when it returns at most this many; otherwise the query is refused with
        :class:`~broker_v1.errors.UnsupportedQuery`.
    timeout
        Seconds to wait for the server on each request (``None``: tiled's defaults, 30 s for
        a read).
    write_batch_size
        Event rows of a stream kept before they are sent (TiledWriter's batching; rows are
        also sent at the run's stop and before this store reads).
    exact_list_equality
        On the SQL layout, give equality with a string MongoDB's meaning (it also matches a
        list holding the string) at the cost of a second search per page of runs; ``$in``
        with strings is then checked here (under ``client_filter_limit``).  The Mongo layout
        always has it.
    read_only, validate
        As for every store.

    Notes
    -----
    Nothing is contacted until the first read.  See :mod:`broker_v1.stores.tiled` for what
    the layout does not keep and what is returned instead.
    """

    backend: ClassVar[str] = "tiled"
    supports_writes: ClassVar[bool] = True
    #: ``$text``: prefiltered by the SQL catalog's full-text index, else checked here on a
    #: bounded set of runs (see :meth:`_bounded`).
    supports_text_search: ClassVar[bool] = True
    layout_losses: ClassVar[Mapping[str, str]] = {
        "event_uids": "the SQL layout keeps no event uids (they read back as "
                      "event-<descriptor uid>-<seq_num>)",
        "resources": "the SQL layout keeps no resource or datum documents (TiledWriter "
                     "turns them into stream resources)",
        "filled": "the SQL layout keeps no 'filled' of events",
        "exact_descriptors": "TiledWriter adds dtype_numpy and object_name to the data keys "
                             "of descriptors",
        "exact_numbers": "the SQL layout keeps one type per event column, and metadata "
                         "loses NaN and clamps numbers beyond +-2**53 and infinities",
        "list_equality": "the SQL catalog's equality does not match a list containing the "
                         "value, as MongoDB's does (exact_list_equality: true makes it)",
        "schema_free_documents": "TiledWriter checks every document against event-model's "
                                 "schema, so insert(trusted=True) cannot store one that "
                                 "fails it",
    }

    def __init__(
        self,
        *,
        uri: str | None = None,
        profile: str | None = None,
        api_key: str | None = None,
        client_filter_limit: int = 1000,
        timeout: float | None = None,
        write_batch_size: int = DEFAULT_BATCH_SIZE,
        exact_list_equality: bool = False,
        read_only: bool = False,
        validate: str = "compatible",
    ) -> None:
        super().__init__(read_only=read_only, validate=validate)
        if (uri is None) == (profile is None):
            raise ConfigError(
                "A tiled store needs one of store.uri (http://host:port/path) and "
                "store.profile (a tiled profile name); this config gives "
                + ("both." if uri is not None else "neither."),
                key="store.uri")
        self.profile = profile
        self.uri = profile_uri(profile) if profile is not None else check_uri(uri)
        if api_key is not None and not isinstance(api_key, str):
            raise ValueError(f"api_key must be a string, got {type(api_key).__name__}")
        if (isinstance(client_filter_limit, bool) or not isinstance(client_filter_limit, int)
                or client_filter_limit < 0):
            raise ValueError(
                f"client_filter_limit must be a whole number >= 0, got {client_filter_limit!r}")
        self.client_filter_limit = client_filter_limit
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        if (isinstance(write_batch_size, bool) or not isinstance(write_batch_size, int)
                or write_batch_size < 1):
            raise ValueError(
                f"write_batch_size must be a whole number >= 1, got {write_batch_size!r}")
        self.write_batch_size = write_batch_size
        if not isinstance(exact_list_equality, bool):
            raise ValueError("exact_list_equality must be true or false, got "
                             f"{exact_list_equality!r}")
        self.exact_list_equality = exact_list_equality
        if exact_list_equality:
            # An instance's own list: the contract suite then checks list equality here too.
            kept = {k: v for k, v in type(self).layout_losses.items() if k != "list_equality"}
            self.layout_losses = kept  # type: ignore[misc]
        self._conn = TiledConnection(self.uri, api_key, label=self.describe(),
                                     timeout=self.timeout)
        self._recorder = RunRecorder(self._conn, label=self.describe(),
                                     batch_size=write_batch_size)
        self._event_ids: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._resources: OrderedDict[str, Doc] = OrderedDict()
        self._datums: OrderedDict[str, Doc] = OrderedDict()
        self._stop_runs: OrderedDict[str, str] = OrderedDict()  # stop uid -> run uid
        # descriptor uid -> {seq_num: event} of stored rows, for duplicate checks of events.
        self._stored_rows: dict[str, dict[int, Doc]] = {}
        self._lock = threading.RLock()
        self._runs: OrderedDict[str, Any] = OrderedDict()
        self._streams: OrderedDict[str, StreamRef] = OrderedDict()
        self._reader: Layout | None = None
        # descriptor uid -> run uid of every descriptor read, so an evicted stream is found
        # again (a descriptor cannot be looked up by uid on the server).
        self._descriptor_runs: dict[str, str] = {}
        self._external = ExternalReader(self._conn, self._stream, label=self.describe())

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """``tiled store http://host:port/path`` (credentials never shown)."""
        from ._client import redact_uri

        return f"{self.backend} store {redact_uri(self.uri)}"

    def config(self) -> dict[str, Any]:
        """The ``store:`` section without the API key (give it again, or set TILED_API_KEY)."""
        # Reopened through the profile when there is one.
        where = ("profile", self.profile) if self.profile is not None else (
            "uri", self._conn.redacted)
        out: dict[str, Any] = {"backend": self.backend, where[0]: where[1],
                               "read_only": self.read_only}
        if self.client_filter_limit != 1000:
            out["client_filter_limit"] = self.client_filter_limit
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.write_batch_size != DEFAULT_BATCH_SIZE:
            out["write_batch_size"] = self.write_batch_size
        if self.exact_list_equality:
            out["exact_list_equality"] = True
        return out

    def insert(self, name: str, doc: Mapping[str, Any], *, trusted: bool = False) -> None:
        """Validate and record one document into the catalog through TiledWriter.

        As :meth:`DocumentStore.insert`, plus: before the first write the server is asked
        whether this caller may record runs (see
        :meth:`~broker_v1.stores.tiled._writer.RunRecorder.check_writable`); a run's documents
        must all go through this store object, from its start to its stop (TiledWriter
        records a run in one writer); event rows are sent in batches of
        ``write_batch_size``, when this store next reads and at the stop, so
        ``insert('stop', ...)`` returns once the whole run is on the server.

        Raises
        ------
        ReadOnlyStore
            Opened read-only, or the server would refuse this caller's writes; nothing is
            sent.
        InvalidDocument, DuplicateDocument
            As for every store; a start whose uid the server already holds (409) is a
            :class:`~broker_v1.errors.DuplicateDocument` unless it is identical.
        """
        if not self.read_only:
            self._recorder.check_writable()
        super().insert(name, doc, trusted=trusted)

    # ------------------------------------------------------------------ writing
    def _writes_refuse_duplicates(self, name: str) -> bool:
        # The server answers 409 to a second container with a start's uid.
        return name == "start"

    def _write_new(self, name: str, doc: Doc) -> bool:
        try:
            self._write_document(name, doc)
        except DuplicateDocument:
            return False
        return True

    def _write_document(self, name: str, doc: Doc) -> None:
        if name == "event_page":
            self._stored_rows.pop(doc["descriptor"], None)
        self._recorder.write(name, doc)
        if name == "event_page":
            for uid, seq in zip(doc["uid"], doc["seq_num"]):
                _bounded_put(self._event_ids, uid, (doc["descriptor"], seq), _EVENT_IDS)
        elif name == "resource":
            _bounded_put(self._resources, doc["uid"], doc, _ASSET_DOCS)
        elif name == "datum_page":
            from event_model import unpack_datum_page

            for datum in unpack_datum_page(doc):  # type: ignore[arg-type]
                _bounded_put(self._datums, datum["datum_id"], dict(datum), _ASSET_DOCS)
        elif name == "descriptor":
            with self._lock:
                self._descriptor_runs[doc["uid"]] = doc["run_start"]
                # A stream's cached descriptors are stale once it has a configuration update.
                for uid in [u for u, st in self._streams.items()
                            if st.run_uid == doc["run_start"]]:
                    del self._streams[uid]
        elif name == "stop":
            _bounded_put(self._stop_runs, doc["uid"], doc["run_start"], _ASSET_DOCS)
            with self._lock:
                self._runs.pop(doc["run_start"], None)

    def stored_form(self, name: str, doc: Mapping[str, Any]) -> Doc:
        """A descriptor as TiledWriter keeps it (``dtype_numpy`` and ``object_name`` added to
        its data keys); other documents unchanged."""
        return layout_descriptor(doc) if name == "descriptor" else dict(doc)

    def _is_new(self, name: str, doc: Doc) -> bool:
        # Stored documents read back as TiledWriter keeps them: compare in that form.
        if name == "descriptor":
            doc = self.stored_form(name, doc)
        elif name == "event" and self._stored_event(doc["uid"]) is not None:
            doc = self._layout_event(doc)
        return super()._is_new(name, doc)

    def _layout_event(self, event: Doc) -> Doc:
        """The event as the layout keeps it: no ``filled``, no external keys."""
        descriptor = self._stored_descriptor(event["descriptor"]) or {"data_keys": {}}
        external = {k for k, v in descriptor["data_keys"].items() if v.get("external")}
        return {**{k: v for k, v in event.items() if k != "filled"},
                "data": {k: v for k, v in event["data"].items() if k not in external},
                "timestamps": {k: v for k, v in event["timestamps"].items()
                               if k not in external}}

    def _get_existing(self, name: str, key: str) -> Doc | None:
        if name == "start":
            try:
                return self.get_run_start(key)
            except RunNotFound:
                return None
        if name == "stop":
            return self._stored_stop(key)
        if name == "descriptor":
            return self._stored_descriptor(key)
        if name == "event":
            return self._stored_event(key)
        if name == "resource":
            found = self._resources.get(key)
        else:
            found = self._datums.get(key)
        return None if found is None else _doc(found)

    def _stored_stop(self, uid: str) -> Doc | None:
        """The stop with this uid: written here, or found by a search on ``stop.uid``."""
        run_uid = self._stop_runs.get(uid)
        if run_uid is None:
            from tiled.queries import Eq

            catalog = self._conn.catalog()
            with self._conn.errors("search the stops"):
                found = list(catalog.search(Eq("stop.uid", uid)).keys()[:1])
            if not found:
                return None
            run_uid = found[0]
        stop = self.get_run_stop(run_uid)
        return stop if stop is not None and stop["uid"] == uid else None

    def _stored_descriptor(self, uid: str) -> Doc | None:
        found = self._stream(uid)  # read again when a write made the cached one stale
        return None if found is None else _doc(found.descriptor)

    def _stored_event(self, uid: str) -> Doc | None:
        """The stored row of an event this store wrote (or of a uid in the layout's
        ``event-<descriptor>-<seq_num>`` form), carrying ``uid``; else None."""
        where = self._event_ids.get(uid)
        if where is None and uid.startswith("event-"):
            descriptor, _, number = uid[len("event-"):].rpartition("-")
            if number.isdigit() and descriptor in self._descriptor_runs:
                where = (descriptor, int(number))
        if where is None:
            return None
        descriptor_uid, seq_num = where
        rows = self._stored_rows.get(descriptor_uid)
        if rows is None:
            rows = {e["seq_num"]: e for e in self.iter_events(descriptor_uid)}
            self._stored_rows[descriptor_uid] = rows
        found = rows.get(seq_num)
        # Compared without external keys: what a reader puts there is not what was written.
        return None if found is None else self._layout_event({**_doc(found), "uid": uid})

    # ------------------------------------------------------------------ runs
    def _layout(self) -> Layout:
        """The server's layout (connecting first if needed), chosen from the root's spec."""
        if self._reader is None:
            self._conn.catalog()
            with self._lock:
                if self._reader is None:
                    self._reader = (MongoLayout(self._run, _plain)
                                    if self._conn.layout == "mongo"
                                    else SqlLayout(self._external, self._conn,
                                                   list_equality=self.exact_list_equality))
        return self._reader

    def _remember(self, uid: str, run: Any) -> Any:
        with self._lock:
            self._runs[uid] = run
            self._runs.move_to_end(uid)
            while len(self._runs) > _RUN_CACHE:
                self._runs.popitem(last=False)
        return run

    def _run(self, uid: str, *, fresh: bool = False) -> Any:
        """The run's client (cached), or :class:`RunNotFound`."""
        if not isinstance(uid, str) or not uid or "/" in uid or uid in (".", ".."):
            raise not_found_run(self, str(uid))
        if not fresh:
            with self._lock:
                run = self._runs.get(uid)
            if run is not None:
                return run
        catalog = self._conn.catalog()
        from tiled.client.container import Container

        with self._conn.errors(f"read run {uid}", uid=uid):
            try:
                # The plain container lookup: the catalog's own __getitem__ falls back to a
                # partial-uid search, which is not what an exact uid means.
                run = Container.__getitem__(catalog, uid)
            except KeyError:
                raise not_found_run(self, uid) from None
        return self._remember(uid, run)

    def get_run_start(self, uid: str) -> Doc:
        """The start document with exactly this uid; missing -> :class:`RunNotFound`."""
        return _doc(self._run(uid).metadata["start"])

    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        """The stop document, or ``None`` while the run is open (or after a crash, or for an
        unknown run, as every store answers)."""
        try:
            stop = self._run(run_start_uid).metadata.get("stop")
        except RunNotFound:
            return None
        if not stop:
            # The cached client may predate the stop: ask the server again.
            stop = self._run(run_start_uid, fresh=True).metadata.get("stop")
        return _plain(stop) if stop else None

    # ------------------------------------------------------------------ search
    def _candidates(self, plan: Plan, sort: Sort) -> list[Any]:
        """The searches whose answers together hold the candidates: one, or one per
        alternative of the plan (merged by :meth:`_iter_search`)."""
        node = self._conn.catalog()
        for query in plan.queries:
            node = node.search(query)
        sorting = self._layout().sort(sort)
        if not plan.alternatives:
            return [node.sort(*sorting)]
        return [node.search(query).sort(*sorting) for query in plan.alternatives]

    def _bounded(self, query: Mapping[str, Any], plan: Plan, nodes: list[Any]) -> None:
        """Refuse a query with a residual unless the server narrowed it to few runs."""
        if not plan.residual:
            return
        with self._conn.errors("count the runs of a search"):
            count = sum(len(node) for node in nodes)
        if count > self.client_filter_limit:
            operator = plan.residual[0]
            raise UnsupportedQuery(
                f"{self.describe()} cannot evaluate {operator!r} in {dict(query)!r} on the "
                f"server (a {self._layout().name}), and the rest of the query leaves {count} "
                f"runs, more than client_filter_limit ({self.client_filter_limit}) to check "
                "here. Narrow the search with conditions the server answers "
                f"({self._layout().answers}), or raise client_filter_limit in the store's "
                "config.",
                operator=operator,
                store=self.describe(),
            )

    def _check_evaluable(self, query: Mapping[str, Any]) -> None:
        plan = self._layout().plan(query)
        if plan.residual:
            self._bounded(query, plan, self._candidates(plan, (("time", -1),)))

    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        plan = self._layout().plan(query)
        nodes = self._candidates(plan, sort)
        self._bounded(query, plan, nodes)
        matcher = None
        if not plan.exact:
            from .._query import QueryMatcher

            matcher = QueryMatcher(query, store=self.describe(), supports_text=True)
        return self._iter_search(nodes, sort, matcher, skip, limit)

    def _iter_search(self, nodes: list[Any], sort: Sort, matcher: Any, skip: int,
                     limit: int | None) -> Iterator[Doc]:
        # With a residual, skip/limit apply after filtering here; without, the server pages.
        offset = 0 if matcher is not None else skip
        to_skip = skip if matcher is not None else 0
        produced = 0

        def wanted() -> int | None:
            return None if limit is None else limit - produced + to_skip

        if len(nodes) == 1:
            found = self._answer(nodes[0], offset, wanted)
        else:
            from ._merge import merge_runs

            found = merge_runs([self._answer(node, 0, wanted) for node in nodes], sort)
        for _uid, _run, start in found:
            if matcher is not None and not matcher(start):
                continue
            if to_skip:
                to_skip -= 1
                continue
            yield _plain(start)
            produced += 1
            if limit is not None and produced >= limit:
                return

    def _answer(self, node: Any, offset: int,
                wanted: Callable[[], int | None]) -> Iterator[tuple[str, Any, Any]]:
        """``(uid, run, start)`` of one search from ``offset`` on, page by page."""
        # The first page is small, so the first header comes quickly; pages then grow to
        # _PAGE, so iterating thousands of runs takes few requests.
        page_size = _FIRST_PAGE
        # Pages are asked for by offset: a run that starts meanwhile (newest first) moves
        # every later run one place on, so a page can begin with one already yielded.
        yielded: set[str] = set()
        while True:
            # Ask for what is still wanted (most candidates match even when checked here).
            still = wanted()
            size = page_size if still is None else max(1, min(page_size, still))
            page_size = min(_PAGE, page_size * 4)
            with self._conn.errors("search runs"):
                page = node.items()[offset:offset + size]
            for uid, run in page:
                if uid in yielded:
                    continue
                yielded.add(uid)
                self._remember(uid, run)
                yield uid, run, run.metadata["start"]
            if len(page) < size:
                return
            offset += size

    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        """How many runs match (one counting request when the server answers the whole query)."""
        query = {} if query is None else query
        plan = self._layout().plan(query) if query else Plan()
        if not plan.exact:
            return super().count_runs(query)
        (node,) = self._candidates(plan, (("time", -1),))  # exact: no alternatives
        with self._conn.errors("count runs"):
            return len(node)

    # ------------------------------------------------------------------ descriptors, events
    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        """Every stream's descriptors, rebuilt from the stream nodes, in ascending time
        (``[]`` for an unknown run)."""
        try:
            run = self._run(run_start_uid)
        except RunNotFound:
            return []
        out: list[Doc] = []
        with self._conn.errors(f"read the streams of run {run_start_uid}",
                               uid=run_start_uid):
            streams = list(run.base.items())
        for name, stream in streams:
            if "BlueskyEventStream" not in {s.name for s in stream.specs}:
                continue
            with self._conn.errors(f"read stream {name!r} of run {run_start_uid}"):
                docs = self._layout().descriptors(stream.metadata, name, run_start_uid)
            times = [(d["time"], d["uid"]) for d in docs]
            with self._lock:
                for d in docs:
                    self._streams[d["uid"]] = StreamRef(run_start_uid, name, stream, d, times)
                    self._streams.move_to_end(d["uid"])
                    self._descriptor_runs[d["uid"]] = run_start_uid
                while len(self._streams) > _STREAM_CACHE:
                    self._streams.popitem(last=False)
            out.extend(docs)
        out.sort(key=lambda d: d["time"])
        return [_plain(d) for d in out]

    def _stream(self, descriptor_uid: str) -> StreamRef | None:
        """Where a descriptor read before lives (read again if it was evicted), or None."""
        with self._lock:
            found = self._streams.get(descriptor_uid)
            run_uid = self._descriptor_runs.get(descriptor_uid)
        if found is None and run_uid is not None:
            self.get_descriptors(run_uid)
            with self._lock:
                found = self._streams.get(descriptor_uid)
        return found

    def get_descriptor(self, uid: str) -> Doc:
        """A descriptor already seen through :meth:`get_descriptors`; else ``KeyError``."""
        found = self._stream(uid)
        if found is None:
            raise KeyError(f"No descriptor with uid {uid!r} read yet from {self.describe()}.")
        return _doc(found.descriptor)

    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """The descriptor's events as one page, read in one request per stream (SQL layout)
        or per run (Mongo layout).

        Only descriptors of runs whose descriptors were read (:meth:`get_descriptors`, as
        every reader does first) are known; any other uid yields nothing.  On the SQL layout,
        fields marked ``external`` hold placeholder datum ids (see :mod:`._external`), which
        :meth:`read_external` reads.
        """
        if self._recorder.pending():
            with self._write_lock:  # not while an insert of another thread adds rows
                self._recorder.flush()  # rows batched by this store's writer: send them
        found = self._stream(descriptor_uid)
        if found is None:
            return
        with self._conn.errors(f"read the events of stream {found.name!r} of run "
                               f"{found.run_uid}"):
            pages = list(self._layout().event_pages(found, fields))
        yield from pages

    # ------------------------------------------------------------------ external data
    def _layout_document(self, what: str, key: str, action: str) -> Any:
        with self._conn.errors(action):
            return getattr(self._layout(), what)(key)

    def _no_external(self, kind: str, key: str) -> str:
        if self._conn.layout == "mongo":
            return (f"No {kind} {key!r} read yet from {self.describe()}: on databroker's Mongo "
                    f"layout a {kind} is found through the run that references it, so read "
                    "that run's events first (h.documents(), get_events).")
        return (f"No {kind} {key!r} in {self.describe()}: catalogs written by TiledWriter "
                f"keep no {kind} documents; their events carry placeholder ids "
                "(sr-<descriptor uid>-<field>/<row>) that fill=True reads through the "
                "server's array nodes.")

    def read_external(self, datum_ids: Sequence[str]) -> dict[str, Any] | None:
        """The frames behind placeholder datum ids, read through the server's array nodes
        (few requests: see :mod:`broker_v1.stores.tiled._external`); ``None`` for other ids.
        """
        return self._external.load(datum_ids)

    def get_resource(self, uid: str) -> Doc:
        """A resource of a run whose events were read (Mongo layout); else
        :class:`ResourceNotFound` (always on the SQL layout, which keeps none)."""
        found = self._layout_document("get_resource", uid, f"read resource {uid}")
        if found is None:
            raise ResourceNotFound(self._no_external("resource", uid), uid=uid,
                                   store=self.describe())
        return _doc(found)

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """The datums of a resource known as in :meth:`get_resource` (nothing otherwise)."""
        pages = self._layout_document("iter_datum_pages", resource_uid,
                                      f"read the datums of resource {resource_uid}")
        yield from (_doc(p) for p in list(pages))

    def get_datums(self, datum_ids: Iterable[str], *,
                   run_start: str | None = None) -> dict[str, Doc]:
        """Several datums as :meth:`get_datum`; on the Mongo layout, ``run_start`` (the run
        whose events hold the ids) is read first when they are not known yet."""
        ids = list(dict.fromkeys(datum_ids))
        if run_start is not None:
            try:
                self._layout_document_of_run(ids, run_start)
            except RunNotFound:
                pass  # the not-found error below names the datum
        return {d: self.get_datum(d) for d in ids}

    def _layout_document_of_run(self, datum_ids: list[str], run_start: str) -> None:
        with self._conn.errors(f"read the documents of run {run_start}", uid=run_start):
            self._layout().find_datums(datum_ids, run_start)

    def get_datum(self, datum_id: str) -> Doc:
        """A datum of a run whose events were read (Mongo layout); else
        :class:`DatumNotFound` (always on the SQL layout, which keeps none)."""
        found = self._layout_document("get_datum", datum_id, f"read datum {datum_id}")
        if found is None:
            raise DatumNotFound(self._no_external("datum", datum_id), datum_id=datum_id,
                                store=self.describe())
        return _doc(found)

    def close(self) -> None:
        """Close the connections and forget cached runs (a later read connects again)."""
        with self._lock:
            try:
                self._recorder.close()
            finally:
                self._runs.clear()
                self._streams.clear()
                self._descriptor_runs.clear()
                self._stored_rows.clear()
                if self._reader is not None:
                    self._reader.forget()
                self._reader = None
                self._external.clear()
                self._conn.close()


def _bounded_put(cache: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


def _doc(value: Mapping[str, Any]) -> Doc:
    """A fresh plain copy of a document."""
    return {k: _plain(v) for k, v in value.items()}


def _plain(value: Any) -> Any:
    """A fresh copy as plain dicts and lists (tiled hands out read-only DictView/ListView)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
