"""The root of the served tree: every run of one store as a ``CatalogOfBlueskyRuns``.

Nothing is read when the catalog is built: each request asks the store's own index
(``find_run_starts``, ``count_runs``, ``get_run_start``), so runs a RunEngine writes into the
store meanwhile appear without a restart, and a 100,000-run store starts as fast as an empty
one.  Listings and counts go through :class:`~._listing.Listings` (tiled's cursor paging:
``items_page``/``keys_page``): a search's count and its consecutive pages come from a few
store queries, not one count and one skipping query per page, and stay at most ``fresh``
seconds (1 s) behind the store for new requests.  Those store reads run in a worker thread,
off tiled's event loop.

Order: oldest first by start ``time`` (ties by ``uid``), as a catalog written by TiledWriter
lists its runs, so the plugins' ``c[-1]`` (tiled's default order, reversed) is the newest run
and ``c[-3:]``-style reads go newest first.  Clients may also sort by ``start.<field>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from tiled.queries import QueryValueError
from tiled.structures.core import Spec

from ..errors import InvalidQuery, RunNotFound, UnsafeUid, UnsupportedQuery
from ..stores._query import check_query
from ..stores.base import DocumentStore
from ._listing import Listings
from ._nodes import Node, in_worker, store_errors
from ._queries import QUERIES
from ._run import RunAdapter, streams_counted

__all__ = ["CatalogAdapter", "SPEC_VERSION"]

#: The catalog spec version presented: the SQL layout TiledWriter writes (see the package
#: docstring for why).
SPEC_VERSION = "3.0"

Sort = tuple[tuple[str, int], ...]
#: Read ahead for a page: ``({run uid: stop}, {run uid: descriptors})``.
_Known = tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]
_OWN_ORDER: Sort = (("time", 1), ("uid", 1))


class CatalogAdapter(Node):
    """Every run of ``store``, narrowed by searches, as tiled's server reads a container.

    Parameters
    ----------
    store
        Any broker_v1 store; it is only read.
    metadata
        The root node's metadata (for example a description of the store).
    filler
        broker_v1's data filler (``db.reg.filler(db.store)``): external fields are then
        served as arrays filled on the server.
    listings
        The snapshots and counts shared by the requests of this server process (default:
        a new :class:`~._listing.Listings`, fresh for 1 s).
    """

    specs = [Spec("CatalogOfBlueskyRuns", version=SPEC_VERSION)]
    query_registry = QUERIES

    def __init__(self, store: DocumentStore, *, metadata: dict[str, Any] | None = None,
                 filler: Any = None, listings: Listings | None = None) -> None:
        super().__init__(metadata=metadata)
        self.store = store
        self.filler = filler
        self.listings = listings if listings is not None else Listings()
        self._start: list[dict[str, Any]] = []  # AND-ed conditions on start documents
        self._stop: list[dict[str, Any]] = []  # AND-ed conditions on stop documents
        self._sort: Sort = _OWN_ORDER
        self._sorting: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"<CatalogAdapter over {self.store.describe()}>"

    # ------------------------------------------------------------------ search and sort
    def search(self, query: Any) -> CatalogAdapter:
        """The catalog narrowed by a tiled query (translated in :mod:`._queries`)."""
        return QUERIES(query, self)  # type: ignore[no-any-return]

    def narrowed(self, document: str, condition: Mapping[str, Any], *,
                 described: str) -> CatalogAdapter:
        """A copy with one more condition on the ``start`` or ``stop`` document.

        Raises tiled's ``QueryValueError`` (a 400) naming ``described`` when the store would
        refuse the resulting filter, so a refusal comes at search time, never later.
        """
        other = self._copy()
        other._start = list(self._start)
        other._stop = list(self._stop)
        (other._start if document == "start" else other._stop).append(dict(condition))
        try:
            if other._start:
                self.store.check_query(_and(other._start))
            if other._stop:
                check_query(_and(other._stop), store=self.store.describe())
        except (InvalidQuery, UnsupportedQuery) as err:
            raise QueryValueError(f"{described} cannot be answered by "
                                  f"{self.store.describe()}: {err}") from err
        return other

    def sort(self, sorting: list[tuple[str, int]]) -> CatalogAdapter:
        """Sorted by start-document fields (``start.<field>``) or the own order (key ``""``)."""
        pairs: list[tuple[str, int]] = []
        for key, direction in sorting:
            way = -1 if direction < 0 else 1
            if key in ("", "_"):
                pairs.extend((name, way) for name, _ in _OWN_ORDER)
            elif key.startswith("start.") and len(key) > len("start."):
                pairs.append((key[len("start."):], way))
            else:
                raise HTTPException(
                    status_code=400,
                    detail=f"Sorting by {key!r} is not supported: runs sort by fields of "
                           "their start document, named 'start.<field>' (e.g. "
                           f"'start.{key.rpartition('.')[2]}').")
        other = self._copy()
        other._sort = tuple(pairs) or _OWN_ORDER
        other._sorting = list(sorting)
        return other

    @property
    def sorting(self) -> list[tuple[str, int]]:
        """The sorting a client asked for (empty: the own order)."""
        return self._sorting

    def _query(self) -> dict[str, Any] | None:
        """The store filter of this catalog; ``None`` when a stop condition matches no run."""
        query = _and(self._start)
        if self._stop:
            uids = self.store.find_run_stop_uids(_and(self._stop))
            if not uids:
                return None
            query = _and([*self._start, {"uid": {"$in": uids}}])
        return query

    # ------------------------------------------------------------------ reads
    def read(self, fields: list[str] | None = None) -> CatalogAdapter:
        """Refused: exporting the whole catalog would read every run of the store."""
        raise HTTPException(
            status_code=400,
            detail="The catalog cannot be exported whole (it would read every run of "
                   f"{self.store.describe()}); export one run or one stream instead.")

    def __len__(self) -> int:
        # tiled calls len() in a worker thread, with every page and for the client's len().
        with store_errors():
            return self.listings.count(self._key(with_sort=False), self._count)

    def _count(self) -> int:
        query = self._query()
        return 0 if query is None else self.store.count_runs(query)

    def _key(self, *, with_sort: bool = True) -> str:
        """This search (and its order) as a key of :class:`Listings`."""
        parts: list[Any] = [self._start, self._stop]
        if with_sort:
            parts.append(self._sort)
        return json.dumps(parts, sort_keys=True, default=repr)

    def _fetch(self, skip: int, limit: int) -> list[dict[str, Any]]:
        query = self._query()
        if query is None:
            return []
        return list(self.store.find_run_starts(query, sort=self._sort, skip=skip,
                                               limit=limit))

    def _runs(self, starts: list[dict[str, Any]], known: _Known | None = None
              ) -> list[tuple[str, RunAdapter]]:
        # A stop, once written, never changes; a run without one (yet) is asked again.
        # Descriptors read ahead are only a finished run's, which no longer change either.
        known_stops, known_descriptors = known or ({}, {})
        stops = dict(known_stops)
        missing = [s["uid"] for s in starts if s["uid"] not in stops]
        if missing:
            stops.update(self.store.get_run_stops(missing))
        return [(s["uid"], RunAdapter(self.store, s, stops.get(s["uid"]), filler=self.filler,
                                      descriptors=known_descriptors.get(s["uid"])))
                for s in starts]

    def _ahead(self, uids: list[str]) -> _Known:
        """What a page of ``uids`` will need: their stops, and the descriptors of the
        finished runs whose stop does not count their streams (tiled asks each run's
        length)."""
        stops = self.store.get_run_stops(uids) if uids else {}
        descriptors = {uid: self.store.get_descriptors(uid) for uid in uids
                       if uid in stops and streams_counted(stops[uid]) is None}
        return stops, descriptors

    def _entries(self, offset: int, limit: int | None, direction: int
                 ) -> list[tuple[str, Any]]:
        query = self._query()
        if query is None:
            return []
        sort = tuple((name, way * direction) for name, way in self._sort)
        starts = list(self.store.find_run_starts(query, sort=sort, skip=offset, limit=limit))
        return self._runs(starts)

    # ---------------------------------------------------------- tiled's cursor paging
    # tiled's search route uses these (async) instead of slicing keys()/items(): a new
    # listing's page comes through cursor_for_offset + items_page, the following ones through
    # the cursor of the page's 'next' link.  Store reads run in a worker thread.
    async def cursor_for_offset(self, offset: int) -> int:
        """The cursor of the page at ``offset`` of a new listing."""
        return Listings.cursor(offset)

    async def items_page(self, cursor: int | None, limit: int
                         ) -> tuple[list[tuple[str, RunAdapter]], int | None]:
        """The runs of the page at ``cursor`` (``None``: the first), and the next cursor."""
        return await in_worker(self._page_sync, cursor or 0, limit, True)

    async def keys_page(self, cursor: int | None, limit: int
                        ) -> tuple[list[str], int | None]:
        """The uids of the page at ``cursor``, and the next cursor."""
        return await in_worker(self._page_sync, cursor or 0, limit, False)

    async def items_range(self, offset: int = 0, limit: int | None = None
                          ) -> list[tuple[str, RunAdapter]]:
        """The runs at ``offset`` .. ``offset + limit`` (``None``: to the end)."""
        if limit is None:
            return await super().items_range(offset, None)
        return (await self.items_page(Listings.cursor(offset), limit))[0]

    async def keys_range(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """The uids at ``offset`` .. ``offset + limit`` (``None``: to the end)."""
        if limit is None:
            return await super().keys_range(offset, None)
        return (await self.keys_page(Listings.cursor(offset), limit))[0]

    def _page_sync(self, cursor: int, limit: int, items: bool) -> tuple[list[Any], int | None]:
        key = self._key()
        with store_errors():
            # A listing's next chunk of runs, and its next page's stops, are read ahead.
            starts, following = self.listings.page(key, self._fetch, cursor, limit,
                                                   ahead=items and limit > 1)
            if not items:
                return [s["uid"] for s in starts], following
            runs = self._runs(starts, self.listings.ahead.take((key, cursor)))
            # tiled asks each run of the page for its length in the event loop; a run whose
            # stop does not count its streams would each hop to a worker thread to read them
            # (100 hops a page), so they are read here, in this thread, at once.
            for _, run in runs:
                run.warm()
        if following is not None and limit > 1:  # a listing, not c[-1] or .first()
            # The stops (and descriptors) of the page the client will ask next, read while it
            # reads this one (after the chunk read ahead above, if any: one background
            # thread, in order).
            def ahead() -> _Known:
                return self._ahead([s["uid"] for s in self.listings.peek(key, following,
                                                                          limit)])

            self.listings.ahead.start((key, following), ahead)
        return runs, following

    def __getitem__(self, key: str) -> RunAdapter:
        if not isinstance(key, str):
            raise KeyError(key)
        with store_errors():
            try:
                start = self.store.get_run_start(key)
            except (RunNotFound, UnsafeUid):  # a hostile key is just not a run: 404
                raise KeyError(key) from None
            if self._start or self._stop:
                # A run looked up inside a search must satisfy it.
                query = self._query()
                if query is None or not self.store.count_runs(_and([query, {"uid": key}])):
                    raise KeyError(key)
            return RunAdapter(self.store, start, self.store.get_run_stop(key),
                              filler=self.filler)


def _and(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    if not conditions:
        return {}
    if len(conditions) == 1:
        return dict(conditions[0])
    return {"$and": [dict(c) for c in conditions]}
