"""The abstract document store every backend implements.

A store keeps bluesky documents and answers a small set of primitive questions about them
(find run starts by a Mongo-dialect query, one start by uid, the stop and descriptors of a
run, event pages of a descriptor, resources and datums).  Everything else — uid-prefix lookup,
single events, a whole run replayed in order, counting — is a default built on those
primitives, which a backend may override for speed but never for meaning.

Writing goes through one concrete :meth:`DocumentStore.insert` shared by every backend:
read-only check, validation (the functions of :mod:`broker_v1.stores._checks`), single →
page normalisation and the duplicate policy happen there, so a backend's
:meth:`DocumentStore._write_document` only persists what it is given.

Stores never import pandas or xarray; they hand out plain JSON-like dicts.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import heapq
import numbers
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ..documents import (
    VALIDATION_POLICIES,
    datum_to_page,
    event_to_page,
    pack_events,
    unpack_events,
)
from ..errors import (
    DatumNotFound,
    InvalidQuery,
    ReadOnlyStore,
    ResourceNotFound,
    RunNotFound,
    UnsupportedQuery,
)
from . import _checks
from ._query import QueryMatcher, check_query, prefix_regex, split_text
from ._util import json_copy

__all__ = ["DEFAULT_SORT", "DocumentStore", "RunCopy", "Sort"]

Sort = Sequence[tuple[str, int]]
#: Newest first, ties broken by uid so paging never skips or repeats a run.
DEFAULT_SORT: Sort = (("time", -1), ("uid", -1))

Doc = dict[str, Any]


@dataclasses.dataclass
class RunCopy:
    """What :meth:`DocumentStore.copy_run_from` wrote for one run.

    Attributes
    ----------
    documents : int
        Documents written, event and datum pages counted by rows.
    bytes : int
        Bytes written.
    """

    documents: int
    bytes: int


class DocumentStore(abc.ABC):
    """Abstract base class of every store.

    Parameters
    ----------
    read_only
        Refuse every write (insert, index creation, repair) although the backend could write.
    validate
        ``"compatible"`` (default: type-check what is present, require only identity and links)
        or ``"strict"`` (event-model's schemas unchanged).

    Notes
    -----
    Return conventions for implementers: plain dicts, never a Mongo ``_id``, a fresh copy on
    every call (callers may mutate what they get), lazy iterators.  Absence that is a normal
    state returns ``None`` (a run with no stop); absence that is the caller's mistake raises
    a typed error from :mod:`broker_v1.errors`.
    """

    #: Registry name, e.g. ``"files"``.
    backend: ClassVar[str]
    #: ``insert`` is implemented (``_write_document`` and ``_get_existing`` are overridden).
    supports_writes: ClassVar[bool] = False
    #: ``$text`` in queries can be evaluated.
    supports_text_search: ClassVar[bool] = False
    #: Queries are evaluated here by the shared matcher (``broker_v1.stores._query``), so a
    #: query it cannot evaluate is refused when ``db(...)`` is called, not at the first result.
    evaluates_queries: ClassVar[bool] = False
    #: What the backend does not keep (or answer) as the reference stores do, ``{what: why}``,
    #: e.g. ``{"event_uids": "the SQL layout keeps no event uids"}``.  Empty: documents read
    #: back as written.  Contract tests that need something listed here skip, giving why.
    layout_losses: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.supports_writes and not getattr(cls, "__abstractmethods__", None):
            for method in ("_write_document", "_get_existing"):
                if getattr(cls, method) is getattr(DocumentStore, method):
                    raise TypeError(
                        f"{cls.__name__} declares supports_writes = True but does not implement "
                        f"{method}()."
                    )

    def __init__(self, *, read_only: bool = False, validate: str = "compatible") -> None:
        if validate not in VALIDATION_POLICIES:
            raise ValueError(
                f"validate={validate!r} is not a validation policy; use one of "
                f"{', '.join(VALIDATION_POLICIES)}."
            )
        self.read_only = bool(read_only)
        self.validate = validate
        self._write_lock = threading.RLock()
        self._trusted = False  # set by insert(trusted=True) while its lock is held
        # descriptor uid -> (data keys, run_start uid); documents are immutable, so never stale.
        self._descriptor_keys: dict[str, tuple[frozenset[str], str]] = {}

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """A short human description used in every error message, e.g. ``files store /data``."""
        return f"{self.backend} store"

    def __repr__(self) -> str:
        read_only = " (read-only)" if self.read_only else ""
        return f"<{type(self).__name__} {self.describe()}{read_only}>"

    @classmethod
    def from_config(cls, options: Mapping[str, Any], *, source: str | None = None) -> DocumentStore:
        """Build a store from the ``store:`` section of a config (``backend`` already removed).

        Parameters
        ----------
        options
            The remaining keys of the section.
        source
            Where the config came from (a file path), for error messages.
        """
        import difflib
        import inspect

        from ..errors import BrokerError, ConfigError

        allowed = [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]
        where = source or "config"
        for key in options:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                raise ConfigError(
                    f"{where}: store.{key} is not an option of the {cls.backend} store "
                    f"(allowed: backend, {', '.join(allowed)})."
                    + (f" Did you mean {close[0]!r}?" if close else ""),
                    source=source,
                    key=f"store.{key}",
                )
        if "read_only" in options and not isinstance(options["read_only"], bool):
            raise ConfigError(
                f"{where}: store.read_only must be true or false, got {options['read_only']!r}.",
                source=source,
                key="store.read_only",
            )
        try:
            return cls(**dict(options))
        except (TypeError, ValueError) as err:
            if isinstance(err, BrokerError):
                raise
            # e.g. path: 5 or page_size: 0 -- a value of the wrong type or range.
            raise ConfigError(
                f"{where}: the {cls.backend} store options are not usable: {err}",
                source=source,
                key="store",
            ) from err

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """A block within which the store may make written documents durable later, in bulk.

        Bulk writers (copies between stores) wrap their inserts in it.  Documents written
        inside the block are readable at once, as always; the store may postpone the disk
        syncs that guard them against power loss (never against a killed process) until the
        block ends, and the block does not end before every one of them is done.  The default
        changes nothing.

        Raises
        ------
        StoreUnavailable
            When leaving the block, if a postponed sync failed.
        """
        yield

    def prepare_copies(  # noqa: B027 (a hint: optional to override)
        self, source: DocumentStore, run_start_uids: Sequence[str]
    ) -> None:
        """A hint: these runs of ``source`` are about to be copied here with
        :meth:`copy_run_from`, in this order.  Stores may start work on them ahead (the
        files store checks them in a second process); the default does nothing.
        """

    def copy_run_from(self, source: DocumentStore, run_start_uid: str) -> RunCopy | None:
        """Copy one whole, stopped run from ``source`` in one step, when this store can.

        Copies between stores call it first for each run that is not in this store yet.  A
        store that can take a run of ``source`` wholesale (the files store, from another
        files store: the run file itself) applies every check of ``insert(trusted=True)``
        to its documents (as a copy document by document does: no JSON-schema check, the
        documents come from a store), writes the run, reads it back and returns what it
        did.  ``None`` (the default, and whenever anything is unusual: a run still open,
        data in other files, a document that would be refused or changed on insert, a uid
        already present) means
        nothing was written and the caller copies document by document, which reports any
        problem precisely.

        Returns
        -------
        RunCopy or None
        """
        return None

    def stored_form(self, name: str, doc: Mapping[str, Any]) -> Doc:
        """``doc`` as this store reads it back once stored (for copies that resume and
        duplicate checks); a store whose layout changes documents (tiled's) overrides it."""
        return dict(doc)

    def config(self) -> dict[str, Any]:
        """The ``store:`` config section that reopens this store (``backend`` included)."""
        return {"backend": self.backend, "read_only": self.read_only}

    # ------------------------------------------------------------------ primitives (reads)
    def find_run_starts(
        self,
        query: Mapping[str, Any] | None = None,
        *,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[Doc]:
        """Start documents matching a Mongo-dialect filter, lazily, in ``sort`` order.

        Parameters
        ----------
        query
            Filter on start-document fields (``{}`` or None matches every run).
        sort
            ``(field, direction)`` pairs; the default is newest first, ties broken by uid.
        skip, limit
            Paging; ``limit=None`` means no limit.

        Raises
        ------
        UnsupportedQuery
            An operator this store cannot evaluate (``$text`` without support, ``$where``, ...).
        InvalidQuery
            A malformed query.
        """
        query = {} if query is None else query
        check_query(query, store=self.describe())
        skip, limit, sort = _check_paging(skip, limit, sort)
        if limit == 0:
            return iter(())
        return self._find_run_starts(dict(query), sort=sort, skip=skip, limit=limit)

    def check_query(self, query: Mapping[str, Any]) -> None:
        """Raise now if this store would refuse ``query`` (the Broker calls it before the
        first iteration, so ``db(...)`` fails at the call, not later).

        Raises
        ------
        InvalidQuery, UnsupportedQuery
            As :meth:`find_run_starts` would.
        """
        check_query(query, store=self.describe())
        if split_text(query)[1] is not None and not self.supports_text_search:
            raise self._refuse_text()
        self._check_evaluable(query)

    def _check_evaluable(self, query: Mapping[str, Any]) -> None:
        """Raise now what evaluating ``query`` would raise (:meth:`check_query` calls it after
        the shared checks).  Stores that set :attr:`evaluates_queries` compile the query with
        the shared matcher; others check nothing more unless they override this."""
        if self.evaluates_queries:
            QueryMatcher(query, store=self.describe(), supports_text=self.supports_text_search)

    def _refuse_text(self) -> UnsupportedQuery:
        """The error for ``$text`` on a store without text search (stores may say more)."""
        return UnsupportedQuery(
            f"{self.describe()} cannot evaluate '$text' (full-text search). Search a field "
            "instead, e.g. db(plan_name='scan').",
            operator="$text",
            store=self.describe(),
        )

    @abc.abstractmethod
    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        """Implementation of :meth:`find_run_starts`; the query is already checked."""

    @abc.abstractmethod
    def get_run_start(self, uid: str) -> Doc:
        """The start document with exactly this uid; missing → :class:`RunNotFound`."""

    @abc.abstractmethod
    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        """The run's stop document, or ``None`` while it is open or after a crash."""

    @abc.abstractmethod
    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        """The run's descriptors (every stream) in ascending ``time``; ``[]`` when none."""

    @abc.abstractmethod
    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """Event pages of one descriptor, rows ordered by (``time``, ``seq_num``).

        Page size is the store's choice.  ``fields`` is a projection hint: a store may drop
        the other data keys (and their timestamps) or ignore the hint.  Pages carry
        ``descriptor``, ``time``, ``seq_num``, ``uid``, ``data``, ``timestamps`` and, when it
        was stored, ``filled``.  An unknown descriptor yields nothing.
        """

    @abc.abstractmethod
    def get_resource(self, uid: str) -> Doc:
        """The resource with this uid (legacy resources: their ``_id`` hex); missing →
        :class:`~broker_v1.errors.ResourceNotFound`."""

    @abc.abstractmethod
    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """Datum pages of one resource (nothing for an unknown resource)."""

    @abc.abstractmethod
    def get_datum(self, datum_id: str) -> Doc:
        """The datum with this id; missing → :class:`DatumNotFound`."""

    # ------------------------------------------------------------------ write primitives
    def _write_document(self, name: str, doc: Doc) -> None:
        """Persist one validated document.

        Receives ``start``, ``descriptor``, ``event_page``, ``resource``, ``datum_page`` or
        ``stop``, already sanitized (JSON-like, a private copy) and checked against the
        duplicate policy; single events and datums arrive as one-row pages.  It must write all
        of the document or none of it.
        """
        raise NotImplementedError

    def _writes_refuse_duplicates(self, name: str) -> bool:
        """Whether :meth:`_write_new` can write a ``start``, ``descriptor`` or ``stop`` without
        the duplicate lookup before it (for a stop: a second stop of its run too), because the
        write itself refuses a document whose identity is stored (a unique index).

        The insert path then writes first and checks only when the write is refused, saving a
        round trip per document where lookups are remote.  The default is False.
        """
        return False

    def _write_new(self, name: str, doc: Doc) -> bool:
        """Write ``doc`` as :meth:`_write_document` would, unless the store already holds a
        document of this type and identity (or, for a stop, a stop of the same run): then write
        nothing and return False, and the insert path checks the document as it always does
        (identical: a no-op; different: refused).  Only called when
        :meth:`_writes_refuse_duplicates` says so.
        """
        raise NotImplementedError

    def _get_existing(self, name: str, key: str) -> Doc | None:
        """The stored document of this type and identity, or ``None``.

        ``name`` is one of ``start``, ``descriptor``, ``stop``, ``resource``, ``event`` (by
        uid; returned as a single event) or ``datum`` (by ``datum_id``).  Used by the insert
        path for links and duplicates.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ defaults (reads)
    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        """How many runs match ``query``."""
        return sum(1 for _ in self.find_run_starts(query))

    def find_runs_by_uid_prefix(self, prefix: str, *, limit: int | None = 11) -> list[Doc]:
        """Starts whose uid begins with ``prefix`` (case-sensitive), newest first.

        The Broker asks for 11 so it can say "matches more than 10".
        """
        query = {"uid": {"$regex": prefix_regex(prefix)}}
        return list(self.find_run_starts(query, limit=limit))

    def find_runs_by_scan_id(self, scan_id: int, *, limit: int | None = 1) -> list[Doc]:
        """Starts with this ``scan_id``, most recent first."""
        return list(self.find_run_starts({"scan_id": scan_id}, limit=limit))

    def find_run_stop_uids(self, query: Mapping[str, Any]) -> list[str]:
        """Start uids of the runs whose *stop* document matches ``query``.

        Used for opt-in search on stop fields (``db(**{'stop.exit_status': 'fail'})``): the
        Broker joins the result into the start query with one ``$in``.  Runs without a stop
        never match.  The default pages through every run; stores override it for speed.
        """
        from ._query import QueryMatcher

        check_query(query, store=self.describe())
        matcher = QueryMatcher(query, store=self.describe(), supports_text=False)
        found: list[str] = []
        page: list[str] = []
        for start in self.find_run_starts({}):
            page.append(start["uid"])
            if len(page) == 1000:
                found.extend(u for u, s in self.get_run_stops(page).items() if matcher(s))
                page = []
        if page:
            found.extend(u for u, s in self.get_run_stops(page).items() if matcher(s))
        return found

    def get_descriptor(self, uid: str) -> Doc:
        """One descriptor by uid; missing → ``KeyError``."""
        try:
            found = self._get_existing("descriptor", uid)
        except NotImplementedError:
            found = None
        if found is None:
            raise KeyError(f"No descriptor with uid {uid!r} in {self.describe()}.")
        return json_copy(found)

    def get_run_stops(self, run_start_uids: Sequence[str]) -> dict[str, Doc]:
        """Stops of several runs at once (runs without a stop are absent from the result)."""
        out = {}
        for uid in run_start_uids:
            stop = self.get_run_stop(uid)
            if stop is not None:
                out[uid] = stop
        return out

    def iter_events(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """Single events of one descriptor, ordered by (``time``, ``seq_num``)."""
        for page in self.iter_event_pages(descriptor_uid, fields=fields):
            yield from unpack_events(page)

    def iter_datums(self, resource_uid: str) -> Iterator[Doc]:
        """Single datums of one resource."""
        from event_model import unpack_datum_page

        for page in self.iter_datum_pages(resource_uid):
            yield from unpack_datum_page(page)  # type: ignore[arg-type]  # a plain dict

    def get_datums(self, datum_ids: Iterable[str], *,
                   run_start: str | None = None) -> dict[str, Doc]:
        """Several datums by id; unknown ids raise :class:`DatumNotFound`.  ``run_start``,
        the run holding them when the caller knows it, lets a store that finds datums only
        through their run (tiled's Mongo layout) read that run first."""
        return {d: self.get_datum(d) for d in datum_ids}

    def read_external(self, datum_ids: Sequence[str]) -> dict[str, Any] | None:
        """External data the store reads itself (``{datum id: value}``, for all ids or
        none), e.g. through tiled's array nodes; ``None`` (the default): read them through
        the client's handlers and ``root_map``."""
        return None

    def iter_documents(
        self, run_start_uid: str, *, descriptor_uids: Iterable[str] | None = None
    ) -> Iterator[tuple[str, Doc]]:
        """Replay a run as ``(name, doc)`` in event-model order.

        ``start``; the descriptors (all, or those in ``descriptor_uids``); the run's body as
        :meth:`iter_run_body` gives it; ``stop`` last when there is one.
        """
        yield "start", self.get_run_start(run_start_uid)
        descriptors = self.get_descriptors(run_start_uid)
        if descriptor_uids is not None:
            wanted = set(descriptor_uids)
            descriptors = [d for d in descriptors if d["uid"] in wanted]
        for d in descriptors:
            yield "descriptor", d
        yield from self.iter_run_body(descriptors)
        stop = self.get_run_stop(run_start_uid)
        if stop is not None:
            yield "stop", stop

    def iter_run_body(
        self,
        descriptors: Sequence[Mapping[str, Any]],
        *,
        external_keys: Mapping[str, Iterable[str]] | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        """The events of some descriptors with the resources and datums they reference.

        Events of all ``descriptors`` merged by time (ties: ``seq_num``, then the order
        given), each resource and datum emitted once, just before the first event that
        references it.  Events and datums are single documents.  The read path calls this
        with the descriptors it already holds, so a run's start, descriptors and stop are
        never fetched twice.

        Parameters
        ----------
        descriptors
            Descriptor documents of one run (only ``uid`` and ``data_keys`` are read).
        external_keys
            ``{descriptor uid: data keys}`` whose datum ids are followed; by default every
            data key marked ``external``.  A reader that keeps only some fields passes those,
            so no datum of a dropped field is emitted.

        Notes
        -----
        An event whose datum id or a datum whose resource is missing still replays: the
        missing document is left out, and filling reports it.
        """
        followed: dict[str, list[str]] = {}
        for d in descriptors:
            if external_keys is not None and d["uid"] in external_keys:
                followed[d["uid"]] = list(external_keys[d["uid"]])
            else:
                followed[d["uid"]] = [k for k, v in d["data_keys"].items()
                                      if v.get("external")]
        streams = [
            ((ev["time"], ev["seq_num"], i, ev) for ev in self.iter_events(d["uid"]))
            for i, d in enumerate(descriptors)
        ]
        seen_resources: set[str] = set()
        seen_datums: set[str] = set()
        for _, _, _, event in heapq.merge(*streams, key=lambda row: row[:3]):
            for key in followed[event["descriptor"]]:
                datum_id = event["data"].get(key)
                if not isinstance(datum_id, str) or datum_id in seen_datums:
                    continue
                try:
                    datum = self.get_datum(datum_id)
                except DatumNotFound:
                    continue
                seen_datums.add(datum_id)
                resource_uid = datum["resource"]
                if resource_uid not in seen_resources:
                    seen_resources.add(resource_uid)
                    try:
                        yield "resource", self.get_resource(resource_uid)
                    except ResourceNotFound:
                        pass
                yield "datum", datum
            yield "event", event

    def close(self) -> None:  # noqa: B027 (optional to override)
        """Release connections or file handles (a no-op by default)."""

    def __enter__(self) -> DocumentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the insert path
    def insert(self, name: str, doc: Mapping[str, Any], *, trusted: bool = False) -> None:
        """Validate and store one document of any event-model type.

        Parameters
        ----------
        name
            ``start``, ``descriptor``, ``event``, ``event_page``, ``resource``, ``datum``,
            ``datum_page`` or ``stop``.
        doc
            The document.  It is copied; numpy values become plain numbers and lists.
        trusted
            The document comes from another store (a copy or migration): skip the JSON-schema
            check.  Links, event keys, column lengths and the duplicate policy are still
            checked.

        Raises
        ------
        ReadOnlyStore
            The store was opened read-only (or cannot write at all).
        InvalidDocument
            The document is malformed or links to a document the store does not hold.
        DuplicateDocument
            A different document with the same uid is already stored.

        Notes
        -----
        Inserting a document identical to a stored one is a no-op.  An event whose
        ``filled[k]`` holds a datum id (it was filled) is stored with that datum id in
        ``data[k]`` and ``filled[k] = False`` (spec §9 #17).  The checks are the functions
        of :mod:`broker_v1.stores._checks`.
        """
        if self.read_only or not self.supports_writes:
            raise ReadOnlyStore(
                f"{self.describe()} was opened read-only, so insert({name!r}, ...) was refused. "
                + (
                    "Open it with read_only: false to write."
                    if self.supports_writes
                    else f"The {self.backend} backend cannot write."
                ),
                store=self.describe(),
            )
        clean = _checks.prepare(name, doc)
        with self._write_lock:
            self._trusted = trusted
            try:
                getattr(self, "_insert_" + name)(clean)
            finally:
                self._trusted = False

    # Each _insert_<name> checks, applies the duplicate policy and writes; stores may wrap
    # them (the files and Mongo stores do) but call them for the checks.
    # Where writes refuse duplicates themselves (_writes_refuse_duplicates), a new document is
    # written before any lookup; only a refused write takes the full sequence of checks below,
    # which then says what it always said, in the same order.
    def _insert_start(self, doc: Doc) -> None:
        _checks.check_schema("start", doc, self.validate, trusted=self._trusted)
        if self._writes_refuse_duplicates("start") and self._write_new("start", doc):
            return
        if self._is_new("start", doc):
            self._write_document("start", doc)

    def _insert_descriptor(self, doc: Doc) -> None:
        _checks.check_schema("descriptor", doc, self.validate, trusted=self._trusted)
        _checks.check_data_key_names(doc)
        _checks.require("descriptor", doc, "run_start", "start", self._get_existing,
                        self.describe)
        if not (self._writes_refuse_duplicates("descriptor")
                and self._write_new("descriptor", doc)) and self._is_new("descriptor", doc):
            self._write_document("descriptor", doc)
        self._descriptor_keys[doc["uid"]] = (frozenset(doc["data_keys"]), doc["run_start"])

    def _insert_stop(self, doc: Doc) -> None:
        _checks.check_schema("stop", doc, self.validate, trusted=self._trusted)
        start = _checks.require("stop", doc, "run_start", "start", self._get_existing,
                                self.describe)
        # A stop the time check would refuse goes the long way too: a duplicate comes first.
        if (self._writes_refuse_duplicates("stop") and _not_before(doc, start)
                and self._write_new("stop", doc)):
            return
        if not self._is_new("stop", doc):
            return
        _checks.check_one_stop(doc, self.get_run_stop(doc["run_start"]), self.describe())
        _checks.check_stop_time(doc, start)
        self._write_document("stop", doc)

    def _insert_resource(self, doc: Doc) -> None:
        _checks.legacy_resource(doc)
        _checks.check_schema("resource", doc, self.validate, trusted=self._trusted)
        if self._is_new("resource", doc):
            self._write_document("resource", doc)

    def _insert_datum(self, doc: Doc) -> None:
        if self.validate == "strict":
            _checks.check_schema("datum", doc, self.validate, trusted=self._trusted)
        _checks.check_datum_shape("datum", doc, page=False)
        _checks.require("datum", doc, "resource", "resource", self._get_existing,
                        self.describe)
        if self._is_new("datum", doc):
            self._write_document("datum_page", datum_to_page(doc))

    def _insert_datum_page(self, page: Doc) -> None:
        if self.validate == "strict":
            _checks.check_schema("datum_page", page, self.validate, trusted=self._trusted)
        _checks.check_datum_shape("datum_page", page, page=True)
        _checks.require("datum_page", page, "resource", "resource", self._get_existing,
                        self.describe)
        from event_model import unpack_datum_page

        rows = list(unpack_datum_page(page))  # type: ignore[arg-type]
        fresh = [d for d in rows if self._is_new("datum", d)]
        if len(fresh) == len(rows):
            self._write_document("datum_page", page)
        elif fresh:
            self._write_document("datum_page", _checks.datums_to_page(page["resource"], fresh))

    def _insert_event(self, event: Doc) -> None:
        if self.validate == "strict":
            _checks.check_schema("event", event, self.validate, trusted=self._trusted)
        _checks.check_event(event, self._event_keys)
        if event.get("filled"):  # a RunEngine's is empty: nothing to rotate, no call
            _checks.rotate_filled(event)
        if self._is_new("event", event):
            self._write_event(event)

    def _insert_event_page(self, page: Doc) -> None:
        if self.validate == "strict":
            _checks.check_schema("event_page", page, self.validate, trusted=self._trusted)
        _checks.check_event_page(page, self._event_keys)
        if "filled" in page:
            _checks.rotate_filled_page(page)
        # Fast path: look uids up first; build single events only if some already exist.
        get = self._get_existing
        if all(get("event", uid) is None for uid in page["uid"]):
            self._write_document("event_page", page)
            return
        events = unpack_events(page)
        fresh = [e for e in events if self._is_new("event", e)]
        if len(fresh) == len(events):
            self._write_document("event_page", page)
        elif fresh:
            self._write_document("event_page", pack_events(fresh))  # type: ignore[arg-type]

    def _write_event(self, event: Doc) -> None:
        """Store one new, checked event; stores may write it without making it a page."""
        self._write_document("event_page", event_to_page(event))

    def _is_new(self, name: str, doc: Doc) -> bool:
        """True when ``doc`` must be written, False when an identical one is stored; a
        different one raises :class:`DuplicateDocument`."""
        return _checks.is_new(name, doc, self._get_existing, self.describe)

    def _event_keys(self, name: str, doc: Doc) -> frozenset[str]:
        """The data keys of the descriptor of an event or page (cached per descriptor);
        refuses the document when that descriptor is not stored."""
        descriptor = doc.get("descriptor")
        known = self._descriptor_keys.get(descriptor) if isinstance(descriptor, str) else None
        if known is None:
            found = _checks.require(name, doc, "descriptor", "descriptor", self._get_existing,
                                    self.describe)
            known = (frozenset(found["data_keys"]), found["run_start"])
            self._descriptor_keys[found["uid"]] = known
        return known[0]

    # Delegations kept for the files store's copy checker, which calls them on a store it
    # builds for the purpose; new code calls broker_v1.stores._checks directly.
    def _check_event(self, event: Doc, keys_of: _checks.KeysOf) -> None:
        """:func:`broker_v1.stores._checks.check_event`."""
        _checks.check_event(event, keys_of)

    def _check_event_page(self, page: Doc, keys_of: _checks.KeysOf) -> None:
        """:func:`broker_v1.stores._checks.check_event_page`."""
        _checks.check_event_page(page, keys_of)

    def _check_datum_shape(self, name: str, doc: Doc, *, page: bool) -> None:
        """:func:`broker_v1.stores._checks.check_datum_shape`."""
        _checks.check_datum_shape(name, doc, page=page)


def _not_before(stop: Doc, start: Doc) -> bool:
    """True when :func:`~broker_v1.stores._checks.check_stop_time` would pass quietly."""
    try:
        return not stop["time"] < start["time"]
    except TypeError:  # times of other types (a trusted copy): the full checks decide
        return False


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_paging(skip: Any, limit: Any, sort: Any) -> tuple[int, int | None, Sort]:
    """Validate ``skip``, ``limit`` and ``sort`` of a search; plain ints and a tuple of pairs."""
    if not _whole(skip) or (limit is not None and not _whole(limit)):
        raise InvalidQuery(
            f"skip and limit must be whole numbers (limit may be None), got {skip!r}, {limit!r}."
        )
    if skip < 0 or (limit is not None and limit < 0):
        raise InvalidQuery(f"skip and limit must be non-negative, got {skip}, {limit}.")
    try:
        pairs = tuple((field, direction) for field, direction in sort)
    except (TypeError, ValueError):
        pairs = None
    if (
        not pairs
        or isinstance(sort, str | bytes)
        or not all(isinstance(f, str) and not isinstance(d, bool) and d in (1, -1)
                   for f, d in pairs)
    ):
        raise InvalidQuery(
            f"sort must be a list of (field, direction) pairs with direction 1 or -1, got {sort!r}."
        )
    return int(skip), (None if limit is None else int(limit)), tuple(
        (f, int(d)) for f, d in pairs)












#: The Mongo store compares duplicate events with it (it imports it from here).
_same_event = _checks.same_event


def not_found_run(store: DocumentStore, uid: str) -> RunNotFound:
    """The standard error for an unknown start uid."""
    return RunNotFound(
        f"No run with uid {uid!r} in {store.describe()}. Check the uid, or search with "
        "db(scan_id=...) or db(plan_name=...).",
        key=uid,
        store=store.describe(),
    )
