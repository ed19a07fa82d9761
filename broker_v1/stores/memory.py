"""MemoryStore: the reference implementation of the store contract.

Documents live in dicts with secondary indexes (start time order, scan_id, sorted uids), so
``db[-1]``, ``db[uid]``, uid-prefix and scan_id lookups cost O(log n) or better.  Events are
kept column-wise per descriptor, so reading a stream hands out pages without building one dict
per event.  Descriptors are kept marshalled (bytes): a descriptor is a few dozen small dicts and
lists, which the garbage collector would otherwise walk again and again as the store grows
(it was a third of the time of recording short runs), and unmarshalling one is also the fastest
way to hand out a copy.  Nothing is shared with callers: documents are copied on the way in (by
the insert path) and on the way out.
"""

from __future__ import annotations

import bisect
import marshal
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..errors import DatumNotFound, ResourceNotFound
from ._columns import _Columns, _sort_key
from ._query import QueryMatcher
from ._util import datum_page, json_copy
from .base import DEFAULT_SORT, Doc, DocumentStore, Sort, not_found_run

__all__ = ["MemoryStore"]


class MemoryStore(DocumentStore):
    """An in-process store held in dicts; the reference for every other backend.

    Parameters
    ----------
    read_only, validate
        See :class:`~broker_v1.stores.base.DocumentStore`.
    page_size
        Largest number of events handed out in one page.
    """

    backend = "memory"
    supports_writes = True
    supports_text_search = True
    evaluates_queries = True

    def __init__(
        self, *, read_only: bool = False, validate: str = "compatible", page_size: int = 100_000
    ) -> None:
        super().__init__(read_only=read_only, validate=validate)
        self.page_size = page_size
        self._starts: dict[str, Doc] = {}
        self._by_time: list[tuple[float, str]] = []  # ascending (time, uid)
        self._sorted_uids: list[str] = []
        self._by_scan_id: dict[Any, list[tuple[float, str]]] = {}
        self._stops: dict[str, Doc] = {}  # run uid -> stop
        self._stop_uids: dict[str, str] = {}  # stop uid -> run uid
        self._descriptors: dict[str, bytes | Doc] = {}  # uid -> _freeze(descriptor)
        self._descriptor_times: dict[str, Any] = {}
        self._descriptors_by_run: dict[str, list[str]] = {}
        self._events: dict[str, _Columns] = {}
        self._event_index: dict[str, tuple[str, int]] = {}  # event uid -> (descriptor, row)
        self._resources: dict[str, Doc] = {}
        self._datums: dict[str, Doc] = {}
        self._datums_by_resource: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ reads
    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        matcher = QueryMatcher(query, store=self.describe())
        if tuple(sort) == tuple(DEFAULT_SORT):
            candidates = self._candidates_newest_first(query)
            return self._page(candidates, matcher, skip, limit)
        # A snapshot first (one C call): the matcher runs Python, and a writer on another
        # thread would change the dict's size under a live iteration.
        docs = [d for d in list(self._starts.values()) if matcher(d)]
        for field, direction in reversed(tuple(sort)):
            docs.sort(key=_field_sort_key(field), reverse=direction < 0)
        end = None if limit is None else skip + limit
        return iter([json_copy(d) for d in docs[skip:end]])

    def _candidates_newest_first(self, query: Mapping[str, Any]) -> Iterator[Doc]:
        scan_id = query.get("scan_id")
        if type(scan_id) is int and "$or" not in query:
            pairs = self._by_scan_id.get(scan_id, [])
        else:
            pairs = self._by_time
        # Walk back by position without copying the index.  If runs were inserted meanwhile,
        # re-find our place from the last key yielded, so nothing repeats or is skipped.
        i = len(pairs) - 1
        size = len(pairs)
        while i >= 0:
            key = pairs[i]
            yield self._starts[key[1]]
            if len(pairs) != size:
                size = len(pairs)
                i = bisect.bisect_left(pairs, key)
            i -= 1

    def _page(
        self, candidates: Iterator[Doc], matcher: QueryMatcher, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        produced = 0
        for doc in candidates:
            if not matcher(doc):
                continue
            if skip:
                skip -= 1
                continue
            yield json_copy(doc)
            produced += 1
            if limit is not None and produced >= limit:
                return

    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        if not query:
            return len(self._starts)
        return super().count_runs(query)

    def find_runs_by_uid_prefix(self, prefix: str, *, limit: int | None = 11) -> list[Doc]:
        uids = self._sorted_uids
        i = bisect.bisect_left(uids, prefix)
        found = []
        while i < len(uids) and uids[i].startswith(prefix):
            found.append(self._starts[uids[i]])
            i += 1
        found.sort(key=lambda d: (d["time"], d["uid"]), reverse=True)
        return [json_copy(d) for d in found[:limit]]

    def find_run_stop_uids(self, query: Mapping[str, Any]) -> list[str]:
        from ._query import check_query

        check_query(query, store=self.describe())
        matcher = QueryMatcher(query, store=self.describe(), supports_text=False)
        return [run for run, stop in list(self._stops.items()) if matcher(stop)]

    def get_run_start(self, uid: str) -> Doc:
        try:
            return json_copy(self._starts[uid])
        except (KeyError, TypeError):
            raise not_found_run(self, uid) from None

    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        stop = self._stops.get(run_start_uid)
        return None if stop is None else json_copy(stop)

    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        uids = self._descriptors_by_run.get(run_start_uid, ())
        return [_thaw(self._descriptors[u]) for u in uids]

    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        columns = self._events.get(descriptor_uid)
        if columns is None:
            return
        wanted = None if fields is None else set(fields)
        n = len(columns)
        for start in range(0, n, self.page_size):
            yield columns.page(descriptor_uid, start, min(n, start + self.page_size), wanted)

    def get_resource(self, uid: str) -> Doc:
        try:
            return json_copy(self._resources[uid])
        except (KeyError, TypeError):
            raise ResourceNotFound(
                f"No resource with uid {uid!r} in {self.describe()}.",
                uid=uid,
                store=self.describe(),
            ) from None

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        ids = self._datums_by_resource.get(resource_uid)
        if not ids:
            return
        yield datum_page(resource_uid, [self._datums[i] for i in ids])

    def get_datum(self, datum_id: str) -> Doc:
        try:
            return json_copy(self._datums[datum_id])
        except (KeyError, TypeError):
            raise DatumNotFound(
                f"No datum with datum_id {datum_id!r} in {self.describe()}.",
                datum_id=datum_id,
                store=self.describe(),
            ) from None

    # ------------------------------------------------------------------ writes
    def _get_existing(self, name: str, key: str) -> Doc | None:
        if not isinstance(key, str):
            return None
        if name == "event":  # first: asked once per event inserted
            where = self._event_index.get(key)
            if where is None:
                return None
            return self._events[where[0]].row(where[1], where[0])
        if name == "start":
            return self._starts.get(key)
        if name == "descriptor":
            stored = self._descriptors.get(key)
            return None if stored is None else _thaw(stored)
        if name == "stop":
            run = self._stop_uids.get(key)
            return None if run is None else self._stops[run]
        if name == "resource":
            return self._resources.get(key)
        if name == "datum":
            return self._datums.get(key)
        raise ValueError(name)

    def _is_new(self, name: str, doc: Doc) -> bool:
        # A new event (nearly every one) is told by one lookup; a known uid is compared as in
        # every store.  (check_event has made its uid a str.)
        if name == "event" and doc["uid"] not in self._event_index:
            return True
        return super()._is_new(name, doc)

    def _write_event(self, event: Doc) -> None:
        descriptor = event["descriptor"]
        columns = self._events.get(descriptor)
        if columns is None:
            columns = self._events[descriptor] = _Columns()
        row = len(columns)
        columns.append_event(event)
        self._event_index[event["uid"]] = (descriptor, row)

    def _write_document(self, name: str, doc: Doc) -> None:
        if name == "start":
            uid = doc["uid"]
            self._starts[uid] = doc
            key = (doc["time"], uid)
            bisect.insort(self._by_time, key)
            bisect.insort(self._sorted_uids, uid)
            scan_id = doc.get("scan_id")
            if type(scan_id) is int:
                bisect.insort(self._by_scan_id.setdefault(scan_id, []), key)
        elif name == "descriptor":
            uid = doc["uid"]
            self._descriptors[uid] = _freeze(doc)
            self._descriptor_times[uid] = doc["time"]
            uids = self._descriptors_by_run.setdefault(doc["run_start"], [])
            uids.append(uid)
            uids.sort(key=self._descriptor_times.__getitem__)
        elif name == "event_page":
            columns = self._events.setdefault(doc["descriptor"], _Columns())
            first = len(columns)
            columns.append(doc)
            for i, uid in enumerate(doc["uid"]):
                self._event_index[uid] = (doc["descriptor"], first + i)
        elif name == "stop":
            self._stops[doc["run_start"]] = doc
            self._stop_uids[doc["uid"]] = doc["run_start"]
            for descriptor in self._descriptors_by_run.get(doc["run_start"], ()):
                stopped = self._events.get(descriptor)
                if stopped is not None:
                    stopped.seal()  # its events leave the garbage collector's walks
        elif name == "resource":
            self._resources[doc["uid"]] = doc
        elif name == "datum_page":
            ids = self._datums_by_resource.setdefault(doc["resource"], [])
            kwargs = doc["datum_kwargs"]
            for i, datum_id in enumerate(doc["datum_id"]):
                self._datums[datum_id] = {
                    "datum_id": datum_id,
                    "datum_kwargs": {k: col[i] for k, col in kwargs.items()},
                    "resource": doc["resource"],
                }
                ids.append(datum_id)
        else:  # pragma: no cover - the insert path sends nothing else
            raise ValueError(name)


def _freeze(doc: Doc) -> bytes | Doc:
    """``doc`` as bytes that :func:`_thaw` turns back into an equal document of the same types
    (marshal keeps NaN, -0.0, big integers and lone surrogates); the document itself when it
    holds a subclass of a plain type (an ``IntEnum``, a ``str`` subclass), which marshal
    refuses and which is kept as given."""
    try:
        return marshal.dumps(doc)
    except ValueError:
        return doc


def _thaw(stored: bytes | Doc) -> Doc:
    """A fresh copy of a document kept by :func:`_freeze`."""
    if type(stored) is bytes:
        doc: Doc = marshal.loads(stored)
        return doc
    return json_copy(stored)


def _field_sort_key(field: str) -> Callable[[Doc], Any]:
    """The sort key of documents by one (possibly missing) field."""
    return lambda doc: _sort_key(doc.get(field))
