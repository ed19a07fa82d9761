"""The :class:`MongoStore` facade: the store's reads and its insert path.

It holds one of each component (``_client._Connection``, ``_errors._ErrorTranslator``,
``_indexes._Indexes``) and hands them, or a collection, to the functions of ``_layout``,
``_paging`` and ``_writes``; none of them calls back into the store.  The package docstring
gives the design.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pymongo.errors
from bson import ObjectId

from ...documents import unpack_events
from ...errors import (
    BrokerError,
    ConfigError,
    DatumNotFound,
    DuplicateDocument,
    ReadOnlyStore,
    ResourceNotFound,
    UnsupportedQuery,
)
from .._query import check_query, split_text
from .._util import valid_unicode as _encodable
from ..base import DEFAULT_SORT, Doc, DocumentStore, Sort, not_found_run
from ._client import _Connection, _MongoUri
from ._errors import _INT64, _ErrorTranslator
from ._indexes import _Indexes
from ._layout import (
    ASSET_COLLECTIONS,
    _datum,
    _datum_page_to_rows,
    _event_key,
    _event_projection,
    _is_object_id,
    _number,
    _rows_to_datum_page,
    _rows_to_event_page,
    _start_key,
)
from ._paging import _and, _chunks, _time_pages
from ._writes import _insert_rows

__all__ = ["MongoStore"]

# Rows fetched per query when reading run starts (the first page is sized to the request).
_START_PAGE = 1000
# A db[-N] deeper than this skips on the server and counts the runs before the boundary.
_CLIENT_SKIP = 1000
# Characters with a meaning in a regex ('-' has none outside brackets; escaping it would stop
# MongoDB from reading the pattern as a plain prefix).
_REGEX_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}]")
# The collection each document written with _write_new goes to.
_COLLECTIONS = {"start": "run_start", "descriptor": "event_descriptor", "stop": "run_stop"}
# Starts kept by _remember_start: more than the runs any RunEngine has open at once.
_RECENT_STARTS = 256


class MongoStore(DocumentStore):
    """Runs in MongoDB, in databroker's normalized layout (one document per event).

    Parameters
    ----------
    uri
        The metadata database: ``mongodb://[user:password@]host[:port][,host2...]/database
        [?options]``, ``mongodb+srv://...``, or ``mongomock://host/database`` for an in-process
        mock.  Credentials and options (``replicaSet``, ``readPreference``, ``authSource``,
        ``serverSelectionTimeoutMS``, TLS, ...) are taken from the URI.
    asset_uri
        The assets database (``resource``, ``datum``), if it is not the metadata database.
    read_only
        Refuse every write and never create an index or collection.
    validate
        See :class:`~broker_v1.stores.base.DocumentStore`.
    page_size
        Most events (or datums) read per query; each page is a separate query.

    Notes
    -----
    Nothing is contacted until the first operation.  Indexes are created on the first write or
    by :meth:`ensure_indexes`, never by reading.  ``$text`` searches need a text index on
    ``run_start`` (databroker created one); :attr:`supports_text_search` says whether there is
    one that this server can use.
    """

    backend = "mongo"
    supports_writes = True

    def __init__(
        self,
        *,
        uri: str,
        asset_uri: str | None = None,
        read_only: bool = False,
        validate: str = "compatible",
        page_size: int = 50_000,
    ) -> None:
        super().__init__(read_only=read_only, validate=validate)
        self._meta_uri = _MongoUri.parse(uri, key="uri")
        self._asset_uri = (
            self._meta_uri if asset_uri is None or asset_uri == uri
            else _MongoUri.parse(asset_uri, key="asset_uri")
        )
        if self._meta_uri.scheme == "mongomock" and self._asset_uri.scheme != "mongomock" or (
            self._asset_uri.scheme == "mongomock" and self._meta_uri.scheme != "mongomock"
        ):
            raise ConfigError("store.uri and store.asset_uri must both be mongomock:// or neither.",
                              key="store.asset_uri")
        if not isinstance(page_size, int) or page_size < 1:
            raise ConfigError(f"store.page_size must be a positive integer, got {page_size!r}.",
                              key="store.page_size")
        self.page_size = page_size
        self._lock = threading.RLock()
        self._connection = _Connection(self._meta_uri, self._asset_uri)
        self._errors = _ErrorTranslator(self._connection, label=self.describe())
        self._indexes = _Indexes(self._connection, self._errors, label=self.describe())
        self._connected = False
        self._write_ready = False
        self._legacy_links: dict[str, bool] = {}
        # Where the first page of the newest (or oldest) runs ended last time, by page size.
        self._hints: dict[tuple[int, int], Any] = {}
        # The bulk insert in progress: which kind, its keys, and what a lookup found.
        self._bulk_name: str | None = None
        self._bulk_keys: list[str] = []
        self._bulk_keyset: frozenset[str] = frozenset()
        self._bulk_found: dict[str, Doc] | None = None
        # Starts written or read lately, by uid: the descriptors and stop of a run being
        # recorded find their start here instead of on the server (documents are immutable).
        self._recent_starts: dict[str, Doc] = {}

    # ------------------------------------------------------------------ description
    @classmethod
    def from_config(cls, options: Mapping[str, Any], *, source: str | None = None) -> MongoStore:
        """Build the store from a config's ``store:`` section (see the base class).

        The config file's path is remembered so connection errors can name it.
        """
        try:
            store = super().from_config(options, source=source)
        except ConfigError as err:
            if not source or str(err).startswith(source):
                raise
            raise ConfigError(f"{source}: {err}", source=source, key=err.key) from err
        assert isinstance(store, MongoStore)
        store._errors.source = source
        return store

    def describe(self) -> str:
        """``mongo store <db> on <host:port>`` (plus the assets database when separate);
        never shows credentials."""
        text = f"{self.backend} store {self._meta_uri.database} on {self._meta_uri.location}"
        if self._asset_uri is not self._meta_uri:
            text += f" (assets: {self._asset_uri.database}"
            if self._asset_uri.location != self._meta_uri.location:
                text += f" on {self._asset_uri.location}"
            text += ")"
        return text

    def config(self) -> dict[str, Any]:
        """The ``store:`` section, with the password and secret URI options shown as ``***``
        (supply them again to reopen)."""
        out: dict[str, Any] = {"backend": self.backend, "uri": self._meta_uri.redacted}
        if self._asset_uri is not self._meta_uri:
            out["asset_uri"] = self._asset_uri.redacted
        out["read_only"] = self.read_only
        if self.page_size != 50_000:
            out["page_size"] = self.page_size
        return out

    @property
    def supports_text_search(self) -> bool:  # type: ignore[override]
        """Whether ``$text`` queries work here: the server is a real MongoDB (not mongomock)
        and ``run_start`` has a text index."""
        return self._text_available(refresh=False)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        """Open the clients on first use and look at the indexes once (never creating any)."""
        if self._connected:
            return
        with self._lock:
            if self._connected:
                return
            with self._errors("connect"):
                self._connection.open()
                self._indexes.check()
            self._connected = True

    def _coll(self, name: str) -> Any:
        self._connect()
        return self._connection.db("assets" if name in ASSET_COLLECTIONS else "meta")[name]

    def close(self) -> None:
        """Close the clients this store opened (shared mongomock clients stay open)."""
        with self._lock:
            self._connection.close()
            self._connected = False
            self._write_ready = False

    # ------------------------------------------------------------------ indexes
    def ensure_indexes(self, *, text: bool | None = None) -> list[str]:
        """Create the layout's indexes (databroker's specifications) where they are missing.

        Parameters
        ----------
        text
            The ``$**`` text index on ``run_start`` that full-text search needs: ``None``
            (default) creates it if the server supports text indexes, ``True`` requires it,
            ``False`` leaves it out.

        Returns
        -------
        list of str
            The indexes created (empty when all were present).

        Raises
        ------
        ReadOnlyStore
            The store is read-only, or the account may not create indexes.
        UnsupportedQuery
            ``text=True`` and the server refuses text indexes.

        Notes
        -----
        An index whose fields an existing index already has (in any direction) is left alone,
        so databases written by databroker or suitcase-mongo gain nothing twice.  On mongomock
        the indexes are created without ``unique``: mongomock checks a unique index by scanning
        the whole collection on every insert, and the store checks duplicates itself there.
        """
        if self.read_only:
            raise ReadOnlyStore(
                f"{self.describe()} was opened read-only, so ensure_indexes() was refused. "
                "Open it with read_only: false to create indexes.",
                store=self.describe(),
            )
        with self._lock:
            self._connect()
            return self._indexes.create(text=text, strict=True)

    def _prepare_write(self) -> None:
        """Before the first write: the assets sentinel for old clients, then the indexes."""
        if self._write_ready:
            return
        with self._lock:
            if self._write_ready:
                return
            self._connect()
            self._init_assets_database()
            self._indexes.create(text=None, strict=False)
            self._write_ready = True

    def _init_assets_database(self) -> None:
        # databroker 0.13's asset registry refuses an assets database without version
        # sentinels; write them when this store is the one creating the database.
        with self._errors("initialize the assets database", writing=True):
            names = set(self._connection.asset_db.list_collection_names())
            if names & {"resource", "datum", "sentinel"}:
                return
            self._connection.asset_db["sentinel"].insert_many(
                [{"collection": "resource", "version": 1}, {"collection": "datum", "version": 1}]
            )

    # ------------------------------------------------------------------ text search
    def _text_available(self, *, refresh: bool) -> bool:
        self._connect()
        return self._indexes.text_available(refresh=refresh)

    def _refuse_text(self) -> UnsupportedQuery:
        return self._indexes.refuse_text()

    # ------------------------------------------------------------------ run starts
    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        _, text = split_text(query)  # also refuses a misplaced $text
        if text is not None and not self._text_available(refresh=True):
            raise self._refuse_text()
        if skip >= _INT64:
            return iter(())  # no collection holds that many documents (and BSON cannot say it)
        sort = tuple((str(f), int(d)) for f, d in sort)
        if sort == tuple(DEFAULT_SORT):
            return self._ordered_starts(query, -1, skip, limit)
        if sort == (("time", 1), ("uid", 1)):
            return self._ordered_starts(query, 1, skip, limit)
        return self._sorted_starts(query, sort, skip, limit)

    def _ordered_starts(
        self, query: dict[str, Any], direction: int, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        """Starts by (time, uid) in ``direction``: the server sorts by time, we break ties."""
        coll = self._coll("run_start")
        bound = None
        to_skip = skip
        if skip > _CLIENT_SKIP:
            # Deep db[-N]: skip on the server, then place ourselves inside the boundary group.
            with self._errors("find runs", query=query):
                first = list(coll.find(query, {"_id": 0, "time": 1}).sort("time", direction)
                             .skip(skip).limit(1))
                if not first:
                    return
                t = first[0]["time"]
                before = coll.count_documents(_and(query, {"$gt" if direction < 0 else "$lt": t}))
            bound = ("$lte" if direction < 0 else "$gte", t)
            to_skip = skip - before
        remaining = limit
        size = min(to_skip + (limit if limit is not None else 100), _START_PAGE)
        # The newest runs of the whole store (db[-1], db[-5:]) are asked for again and again.
        hint_key = (direction, size) if not query and bound is None else None
        for rows in _time_pages(coll, query, {"_id": 0}, direction, size, _START_PAGE, bound,
                                _start_key, errors=self._errors, hints=self._hints,
                                hint_key=hint_key):
            for doc in rows:
                if to_skip:
                    to_skip -= 1
                    continue
                yield doc
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    def _sorted_starts(
        self, query: dict[str, Any], sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        # Any other order: the server sorts; pages by offset (uid last makes it total).
        coll = self._coll("run_start")
        spec = list(sort)
        if "uid" not in {f for f, _ in spec}:
            spec.append(("uid", 1))
        offset, remaining = skip, limit
        while remaining is None or remaining > 0:
            size = _START_PAGE if remaining is None else min(_START_PAGE, remaining)
            with self._errors("find runs", query=query):
                rows = list(coll.find(query, {"_id": 0}).sort(spec).skip(offset).limit(size))
            yield from rows
            if len(rows) < size:
                return
            offset += len(rows)
            if remaining is not None:
                remaining -= len(rows)

    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        """How many runs match ``query`` (``count_documents``; the collection's count for
        ``{}``)."""
        if not query:
            with self._errors("count runs"):
                return int(self._coll("run_start").estimated_document_count())
        check_query(query, store=self.describe())
        _, text = split_text(query)
        if text is not None and not self._text_available(refresh=True):
            raise self._refuse_text()
        with self._errors("count runs", query=query):
            return int(self._coll("run_start").count_documents(dict(query)))

    def find_runs_by_uid_prefix(self, prefix: str, *, limit: int | None = 11) -> list[Doc]:
        """Starts whose uid begins with ``prefix`` (case-sensitive), newest first.

        An anchored regex escaping only what is special, so a uid prefix (hex digits and
        dashes) stays a "prefix expression" MongoDB answers from the uid index's bounds.
        """
        if not isinstance(prefix, str) or not _encodable(prefix):
            return []  # no stored uid holds what MongoDB cannot encode
        pattern = "^" + _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), prefix)
        return list(self.find_run_starts({"uid": {"$regex": pattern}}, limit=limit))

    def find_runs_by_scan_id(self, scan_id: int, *, limit: int | None = 1) -> list[Doc]:
        """Starts with this ``scan_id``, most recent first (none beyond 8-byte integers, which
        MongoDB cannot hold)."""
        if isinstance(scan_id, int) and not -_INT64 <= scan_id < _INT64:
            return []
        return super().find_runs_by_scan_id(scan_id, limit=limit)

    def get_run_start(self, uid: str) -> Doc:
        if not isinstance(uid, str) or not _encodable(uid):
            raise not_found_run(self, uid)
        with self._errors("read a run start"):
            doc = self._coll("run_start").find_one({"uid": uid}, {"_id": 0})
        if doc is None:
            raise not_found_run(self, uid)
        return dict(doc)

    # ------------------------------------------------------------------ stops, descriptors
    def _has_legacy_links(self, collection: str) -> bool:
        # Very old documents name the run 'run_start_id'; look once per store whether any do.
        if collection not in self._legacy_links:
            with self._errors(f"read {collection}"):
                found = self._coll(collection).find_one({"run_start_id": {"$exists": True}},
                                                        {"_id": 1})
            self._legacy_links[collection] = found is not None
        return self._legacy_links[collection]

    def _legacy_run_keys(self, uid: str) -> list[Any]:
        # A legacy link holds the start's uid or its ObjectId.
        keys: list[Any] = [uid]
        with self._errors("read a run start"):
            start = self._coll("run_start").find_one({"uid": uid}, {"_id": 1})
        if start is not None:
            keys.append(start["_id"])
        return keys

    def _repair_link(self, doc: Doc, uid: str | None) -> Doc:
        """Drop ``_id``; rename a legacy ``run_start_id`` link to ``run_start`` (the uid)."""
        doc.pop("_id", None)
        if "run_start" not in doc and "run_start_id" in doc:
            link = doc.pop("run_start_id")
            if uid is None and isinstance(link, ObjectId):
                start = self._find_one_raw("run_start", {"_id": link}, {"uid": 1})
                uid = None if start is None else start.get("uid")
            doc["run_start"] = uid if uid is not None else str(link)
        return doc

    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        if not isinstance(run_start_uid, str):
            return None
        coll = self._coll("run_stop")
        with self._errors("read a run stop"):
            doc = coll.find_one({"run_start": run_start_uid}, {"_id": 0})
        if doc is None and self._has_legacy_links("run_stop"):
            keys = self._legacy_run_keys(run_start_uid)
            with self._errors("read a run stop"):
                doc = coll.find_one({"run_start_id": {"$in": keys}}, {"_id": 0})
        return None if doc is None else self._repair_link(doc, run_start_uid)

    def find_run_stop_uids(self, query: Mapping[str, Any]) -> list[str]:
        """One query on ``run_stop`` projected to the run link (legacy links repaired)."""
        check_query(query, store=self.describe())
        coll = self._coll("run_stop")
        found: list[str] = []
        with self._errors("search run stops", query=query):
            for doc in coll.find(dict(query), {"_id": 0, "run_start": 1, "run_start_id": 1}):
                run = doc.get("run_start") or doc.get("run_start_id")
                if isinstance(run, str):
                    found.append(run)
        return found

    def get_run_stops(self, run_start_uids: Sequence[str]) -> dict[str, Doc]:
        """Stops of several runs with one ``$in`` query per thousand runs."""
        uids = list(dict.fromkeys(u for u in run_start_uids if isinstance(u, str)))
        found: dict[str, Doc] = {}
        coll = self._coll("run_stop")
        for chunk in _chunks(uids):
            with self._errors("read run stops"):
                for doc in coll.find({"run_start": {"$in": chunk}}, {"_id": 0}):
                    found.setdefault(doc["run_start"], doc)
        if len(found) < len(uids) and self._has_legacy_links("run_stop"):
            for uid in uids:
                if uid not in found:
                    stop = self.get_run_stop(uid)
                    if stop is not None:
                        found[uid] = stop
        return {u: found[u] for u in uids if u in found}

    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        if not isinstance(run_start_uid, str):
            return []
        coll = self._coll("event_descriptor")
        with self._errors("read descriptors"):
            docs = list(coll.find({"run_start": run_start_uid}))
        if not docs and self._has_legacy_links("event_descriptor"):
            keys = self._legacy_run_keys(run_start_uid)
            with self._errors("read descriptors"):
                docs = list(coll.find({"run_start_id": {"$in": keys}}))
        # Ascending time; ties in insertion order (_id), as the memory store keeps them.
        docs.sort(key=lambda d: (_number(d.get("time")), str(d.get("_id"))))
        return [self._repair_link(d, run_start_uid) for d in docs]

    # ------------------------------------------------------------------ events
    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """Event pages of one descriptor in (time, seq_num) order, at most ``page_size`` rows
        each, every page its own query; ``fields`` becomes a server-side projection."""
        if not isinstance(descriptor_uid, str):
            return iter(())
        wanted = None if fields is None else list(dict.fromkeys(fields))
        return self._event_pages(descriptor_uid, _event_projection(wanted), wanted)

    def _event_pages(
        self, descriptor_uid: str, projection: dict[str, Any], wanted: list[str] | None
    ) -> Iterator[Doc]:
        coll = self._coll("event")
        for rows in _time_pages(coll, {"descriptor": descriptor_uid}, projection, 1,
                                self.page_size, self.page_size, None, _event_key,
                                errors=self._errors):
            page = _rows_to_event_page(descriptor_uid, rows)
            if wanted is not None and len(projection) == 1:  # fields the server could not project
                keep = set(wanted)
                for part in ("data", "timestamps", "filled"):
                    if part in page:
                        page[part] = {k: v for k, v in page[part].items() if k in keep}
            yield page

    # ------------------------------------------------------------------ assets
    def _find_resource(self, uid: str) -> Doc | None:
        coll = self._coll("resource")
        with self._errors("read a resource"):
            doc = coll.find_one({"uid": uid}, {"_id": 0})
            if doc is None and _is_object_id(uid):
                # Old resources have no uid: datums name them by their ObjectId's hex.
                doc = coll.find_one({"_id": ObjectId(uid)})
                if doc is not None:
                    doc.pop("_id")
                    doc.setdefault("uid", uid)
        return None if doc is None else dict(doc)

    def get_resource(self, uid: str) -> Doc:
        found = self._find_resource(uid) if isinstance(uid, str) else None
        if found is None:
            raise ResourceNotFound(
                f"No resource with uid {uid!r} in {self.describe()}.", uid=uid,
                store=self.describe(),
            )
        return found

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """Datum pages of one resource in insertion order, paged by ``_id``."""
        if not isinstance(resource_uid, str):
            return
        coll = self._coll("datum")
        match: Any = resource_uid
        if _is_object_id(resource_uid):
            match = {"$in": [resource_uid, ObjectId(resource_uid)]}
        last = None
        while True:
            q: dict[str, Any] = {"resource": match}
            if last is not None:
                q["_id"] = {"$gt": last}
            with self._errors("read datums"):
                rows = list(coll.find(q).sort("_id", 1).limit(self.page_size)
                            .batch_size(self.page_size))
            if not rows:
                return
            last = rows[-1]["_id"]
            yield _rows_to_datum_page(resource_uid, rows)
            if len(rows) < self.page_size:
                return

    def get_datum(self, datum_id: str) -> Doc:
        doc = None
        if isinstance(datum_id, str):
            with self._errors("read a datum"):
                doc = self._coll("datum").find_one({"datum_id": datum_id})
        if doc is None:
            raise DatumNotFound(
                f"No datum with datum_id {datum_id!r} in {self.describe()}.",
                datum_id=datum_id,
                store=self.describe(),
            )
        return _datum(doc)

    def get_datums(self, datum_ids: Iterable[str], *,
                   run_start: str | None = None) -> dict[str, Doc]:
        """Several datums with one ``$in`` query per thousand ids; an unknown id raises
        :class:`~broker_v1.errors.DatumNotFound` (``run_start`` is not needed here)."""
        ids = list(dict.fromkeys(datum_ids))
        found: dict[str, Doc] = {}
        coll = self._coll("datum")
        for chunk in _chunks([i for i in ids if isinstance(i, str)]):
            with self._errors("read datums"):
                for doc in coll.find({"datum_id": {"$in": chunk}}):
                    found.setdefault(doc["datum_id"], _datum(doc))
        for datum_id in ids:
            if datum_id not in found:
                self.get_datum(datum_id)  # raises the standard error
        return {i: found[i] for i in ids}

    # ------------------------------------------------------------------ the insert path
    # Event and datum inserts tell _get_existing which uids are coming, so it can answer
    # for the whole batch (by the unique index, or with one lookup) instead of per row.
    @contextmanager
    def _bulk(self, name: str, keys: Any) -> Iterator[None]:
        self._bulk_name = name
        self._bulk_keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
        self._bulk_keyset = frozenset(self._bulk_keys)
        self._bulk_found = None
        try:
            yield
        finally:
            self._bulk_name = None
            self._bulk_keys = []
            self._bulk_keyset = frozenset()
            self._bulk_found = None

    def _insert_event(self, event: Doc) -> None:
        with self._bulk("event", [event.get("uid")]):
            super()._insert_event(event)

    def _insert_event_page(self, page: Doc) -> None:
        with self._bulk("event", page.get("uid")):
            super()._insert_event_page(page)

    def _insert_datum(self, doc: Doc) -> None:
        with self._bulk("datum", [doc.get("datum_id")]):
            super()._insert_datum(doc)

    def _insert_datum_page(self, page: Doc) -> None:
        with self._bulk("datum", page.get("datum_id")):
            super()._insert_datum_page(page)

    def _get_existing(self, name: str, key: str) -> Doc | None:
        if not isinstance(key, str):
            return None
        if name == self._bulk_name:
            self._prepare_write()
            if self._indexes.unique[name]:
                # The unique index will refuse a duplicate; _insert_rows then compares.
                return None
            if self._bulk_found is None:
                self._bulk_found = self._lookup_many(name, self._bulk_keys)
            if key in self._bulk_keyset:
                return self._bulk_found.get(key)
        if name == "start":
            start = self._recent_starts.get(key)
            if start is None:
                start = self._find_one("run_start", {"uid": key})
                if start is not None:
                    self._remember_start(start)
            return start
        if name == "descriptor":
            doc = self._find_one("event_descriptor", {"uid": key})
            return None if doc is None else self._repair_link(doc, None)
        if name == "stop":
            return self._find_one("run_stop", {"uid": key})
        if name == "resource":
            return self._find_resource(key)
        if name == "event":
            return self._find_one("event", {"uid": key})
        if name == "datum":
            doc = self._find_one("datum", {"datum_id": key})
            return None if doc is None else _datum(doc)
        raise ValueError(name)

    def _remember_start(self, start: Doc) -> None:
        recent = self._recent_starts
        if len(recent) >= _RECENT_STARTS:
            del recent[next(iter(recent))]  # the oldest
        recent[start["uid"]] = start

    def _writes_refuse_duplicates(self, name: str) -> bool:
        """True where the layout's unique indexes exist: the server then refuses a duplicate
        start, descriptor or stop by itself, and the insert path skips its lookup."""
        self._prepare_write()
        return self._indexes.unique.get(name, False)

    def _write_new(self, name: str, doc: Doc) -> bool:
        """Insert ``doc`` (one round trip); False when the write was refused for any reason
        (a unique index, a value BSON cannot hold, no write permission, no server)."""
        coll = self._coll(_COLLECTIONS[name])
        try:
            with self._errors(f"insert {name}", writing=True, doc=doc):
                coll.insert_one(dict(doc))  # a copy: pymongo adds _id to what it is given
        except (pymongo.errors.DuplicateKeyError, BrokerError):
            # The full sequence of checks then answers as it did before writes came first:
            # a duplicate refused or an identical document ignored before any write problem.
            return False
        if name == "start":
            self._remember_start(doc)
        return True

    def _find_one(self, collection: str, query: dict[str, Any]) -> Doc | None:
        return self._find_one_raw(collection, query, {"_id": 0})

    def _find_one_raw(
        self, collection: str, query: dict[str, Any], projection: dict[str, Any]
    ) -> Doc | None:
        with self._errors(f"read {collection}"):
            doc = self._coll(collection).find_one(query, projection)
        return None if doc is None else dict(doc)

    def _lookup_many(self, name: str, keys: list[str]) -> dict[str, Doc]:
        collection, key_field = ("event", "uid") if name == "event" else ("datum", "datum_id")
        found: dict[str, Doc] = {}
        coll = self._coll(collection)
        for chunk in _chunks(list(dict.fromkeys(keys))):
            with self._errors(f"read {collection}"):
                for doc in coll.find({key_field: {"$in": chunk}}, {"_id": 0}):
                    found.setdefault(doc[key_field], _datum(doc) if name == "datum" else doc)
        return found

    def _write_document(self, name: str, doc: Doc) -> None:
        self._prepare_write()
        if name == "start":
            self._insert_one("run_start", "start", doc)
            self._remember_start(doc)
        elif name == "descriptor":
            self._insert_one("event_descriptor", "descriptor", doc)
        elif name == "stop":
            self._insert_one("run_stop", "stop", doc)
        elif name == "resource":
            self._insert_one("resource", "resource", doc)
        elif name == "event_page":
            # One document per event: the layout every old reader expects.
            self._insert_rows("event", "event", "uid", unpack_events(doc))
        elif name == "datum_page":
            self._insert_rows("datum", "datum", "datum_id", _datum_page_to_rows(doc))
        else:  # pragma: no cover - the insert path sends nothing else
            raise ValueError(name)

    def _insert_one(self, collection: str, name: str, doc: Doc) -> None:
        coll = self._coll(collection)
        try:
            with self._errors(f"insert {name}", writing=True, doc=doc):
                coll.insert_one(dict(doc))  # a copy: pymongo adds _id to what it is given
        except pymongo.errors.DuplicateKeyError as err:
            # Another writer got there between our check and our insert.
            if name == "stop" and "run_start" in str(err.details or err):
                other = self.get_run_stop(doc["run_start"])
                if other is not None and other["uid"] != doc["uid"]:
                    raise DuplicateDocument(
                        f"Run {doc['run_start']} already has a stop document (uid "
                        f"{other['uid']}) in {self.describe()}; a run has exactly one stop, "
                        f"so stop {doc['uid']} was refused. Nothing was written.",
                        name="stop", uid=doc["uid"], store=self.describe(),
                    ) from err
            existing = self._get_existing(name, doc["uid"])
            if existing == doc:
                return
            raise self._errors.duplicate(name, doc["uid"]) from err

    def _insert_rows(self, collection: str, name: str, key_field: str, rows: list[Doc]) -> None:
        if rows:
            _insert_rows(self._coll(collection), name, key_field, rows, errors=self._errors)
