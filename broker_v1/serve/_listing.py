"""Short-lived listings of a search: one store query serves a count and many pages.

tiled's server answers every page of a listing with the page's runs *and* the count of the
whole search, and its client asks ``len()`` as a separate request before the first page.
Asked of the store one by one, a listing of N runs in pages of 100 costs N/100 counts and
N/100 queries each skipping up to N runs: quadratic on a server that skips by scanning.

:class:`Listings` keeps, per search (the store filter and sort, as a key), *snapshots*: a
window of start documents in the search's order, fetched from the store in chunks that grow
geometrically as a client pages on (so a 5,000-run listing is a handful of store queries).
Each page a client is sent carries a cursor (an integer, as tiled's ``page[cursor]``
demands): the snapshot's random token in its low 32 bits and the position of the next page
above them.  A continuation is served from that snapshot however old it is, and a snapshot
grows from where its last run now stands in the store's order, so a listing never shifts under
the client (no run twice, none lost) while runs are written; when the cursor's
snapshot is gone (evicted, another worker process, a restart) the position alone continues
it, as tiled's offset paging would.

**Freshness.**  New listings (offset pages, ``c[-1]``, a search's first page) and counts reuse
a snapshot or count only while it is younger than ``fresh`` seconds (default 1 s), so a run a
RunEngine writes appears to a new request within that time.  A continuation reaching the end
of a snapshot older than that asks the store once more for what lies beyond, so a listing
in the catalog's own order (oldest first) ends with the runs written while it was read.

**Memory.**  At most ``max_starts`` start documents are held over all snapshots; the least
recently used snapshots go first, and a snapshot bigger than the bound keeps only its most
recent part (a listing moves forward).  Snapshots unused for ``keep`` seconds are dropped, and
no more than 1,024 are held (any cursor a client sends may start one).

**Ahead.**  While a client reads one page, :class:`Ahead` may already do the next page's
own work (the catalog reads the next page's stop documents) in a background thread, so a
listing's pages cost the client only tiled's time.

Nothing here knows tiled or the store: the catalog passes ``fetch`` and ``ahead`` callables.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["Ahead", "Fetch", "Listings"]

Doc = dict[str, Any]
#: ``fetch(skip, limit)`` -> up to ``limit`` starts in the search's order from position
#: ``skip`` (fewer only at the search's end).
Fetch = Callable[[int, int], list[Doc]]

_TOKEN_BITS = 32
_TOKEN_MASK = (1 << _TOKEN_BITS) - 1
#: The first chunk of a snapshot is the page asked for (plus one row, to know if more exist);
#: each later chunk is this many times what the snapshot holds.
_GROWTH = 4
#: Snapshots held at most (each costs little without starts, but cursors are the client's).
_MAX_SNAPSHOTS = 1024


class _Snapshot:
    """Starts ``base .. base + len(starts)`` of one search, in its order."""

    __slots__ = ("key", "token", "base", "starts", "drift", "complete", "created", "fetched",
                 "used", "lock")

    def __init__(self, key: Hashable, base: int, now: float) -> None:
        self.key = key
        self.token = secrets.randbits(_TOKEN_BITS) or 1  # 0 means "no snapshot"
        self.base = base
        self.starts: list[Doc] = []
        # Runs written into the store's order before the snapshot's end since it was read:
        # the store's position of the snapshot's last run is end - 1 + drift.
        self.drift = 0
        self.complete = False  # the store held nothing beyond, when last asked
        self.created = now  # its first rows are as old as this
        self.fetched = now  # when the store was last asked
        self.used = now
        self.lock = threading.Lock()  # one extension at a time

    @property
    def end(self) -> int:
        return self.base + len(self.starts)


class Listings:
    """Snapshots and counts of searches, shared by every request of one server process.

    Parameters
    ----------
    fresh
        Seconds a snapshot or count may answer a *new* request (0: never; each new listing
        and count asks the store).
    keep
        Seconds an unused snapshot stays available to continuations.
    max_starts
        Start documents held over all snapshots (bounds memory; ~1 KB each).
    clock
        Monotonic seconds (tests may pass their own).
    """

    def __init__(self, *, fresh: float = 1.0, keep: float = 60.0, max_starts: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if fresh < 0 or keep < fresh or max_starts < 1:
            raise ValueError(f"Listings needs 0 <= fresh <= keep and max_starts >= 1, got "
                             f"fresh={fresh}, keep={keep}, max_starts={max_starts}.")
        self.fresh = float(fresh)
        self.keep = float(keep)
        self.max_starts = int(max_starts)
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()  # token -> , LRU order
        self._counts: dict[Hashable, tuple[int, float]] = {}
        #: Work started for the pages clients will ask next.
        self.ahead = Ahead()

    # ------------------------------------------------------------------ counts
    def count(self, key: Hashable, counter: Callable[[], int]) -> int:
        """The number of runs of search ``key``: a count younger than ``fresh``, or
        ``counter()`` (the store's count), remembered."""
        now = self._clock()
        with self._lock:
            known = self._counts.get(key)
            if known is not None and now - known[1] < self.fresh:
                return known[0]
        n = int(counter())
        with self._lock:
            self._counts[key] = (n, now)
            if len(self._counts) > 4 * len(self._snapshots) + 64:
                self._counts = {k: v for k, v in self._counts.items()
                                if now - v[1] < self.fresh}
        return n

    # ------------------------------------------------------------------ pages
    @staticmethod
    def cursor(position: int, token: int = 0) -> int:
        """The cursor of the page at ``position`` of the snapshot ``token`` (0: none)."""
        return (position << _TOKEN_BITS) | token

    def page(self, key: Hashable, fetch: Fetch, cursor: int, limit: int, *,
             ahead: bool = False) -> tuple[list[Doc], int | None]:
        """The page at ``cursor`` of search ``key``, and the cursor of the next page
        (``None`` when nothing lies beyond, as far as the store said).  With ``ahead``, the
        snapshot is extended in the background to hold the next page too, if it does not.

        Raises
        ------
        ValueError
            A negative cursor or limit.
        """
        if cursor < 0 or limit < 0:
            raise ValueError(f"page cursor and limit must be >= 0, got {cursor}, {limit}")
        position, token = cursor >> _TOKEN_BITS, cursor & _TOKEN_MASK
        snap = self._find(key, position, token)
        with snap.lock:
            self._extend(snap, fetch, position + limit + 1)
            rows = snap.starts[position - snap.base:position - snap.base + limit]
            more = position + limit < snap.end
            snap.used = self._clock()
            until = position + 2 * limit + 1
            extend = ahead and more and until > snap.end and not snap.complete
        self._trim(snap)
        if extend:
            self.ahead.run(lambda: self._extend_now(snap, fetch, until))
        return rows, (self.cursor(position + limit, snap.token) if more and limit else None)

    def _extend_now(self, snap: _Snapshot, fetch: Fetch, until: int) -> None:
        with snap.lock:
            self._extend(snap, fetch, until)
        self._trim(snap)

    def peek(self, key: Hashable, cursor: int, limit: int) -> list[Doc]:
        """The page at ``cursor`` if its snapshot holds all of it already (nothing is
        fetched), else ``[]``."""
        position, token = cursor >> _TOKEN_BITS, cursor & _TOKEN_MASK
        with self._lock:
            snap = self._snapshots.get(token) if token else None
        if snap is None or snap.key != key:
            return []
        with snap.lock:
            if not snap.base <= position or (position + limit > snap.end
                                              and not snap.complete):
                return []
            return snap.starts[position - snap.base:position - snap.base + limit]

    def _find(self, key: Hashable, position: int, token: int) -> _Snapshot:
        now = self._clock()
        with self._lock:
            self._expire(now)
            snap = self._snapshots.get(token) if token else None
            if snap is not None and snap.key == key and snap.base <= position <= snap.end:
                self._snapshots.move_to_end(token)
                return snap  # a continuation: the same snapshot, however old
            if not token:
                # A new listing may reuse a fresh snapshot of the same search.
                for other in reversed(self._snapshots.values()):
                    if other.key == key and now - other.created < self.fresh and \
                            other.base <= position <= other.end:
                        self._snapshots.move_to_end(other.token)
                        return other
            snap = _Snapshot(key, position, now)
            self._snapshots[snap.token] = snap
            while len(self._snapshots) > _MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            return snap

    def _extend(self, snap: _Snapshot, fetch: Fetch, until: int) -> None:
        """Fetch until the snapshot reaches position ``until`` or the search's end."""
        now = self._clock()
        if snap.complete and until > snap.end and now - snap.fetched >= self.fresh:
            snap.complete = False  # runs may have been written beyond it since
        while until > snap.end and not snap.complete:
            size = max(until - snap.end, _GROWTH * len(snap.starts))
            size = min(size, max(self.max_starts // 2, until - snap.end))
            if not snap.starts:
                rows = fetch(snap.end, size)
                new, full = rows, len(rows) == size
            else:
                # Read from the snapshot's last run on: where it is now says how far runs
                # written since have shifted the store's order, and only what follows it is
                # new (a skip alone would show a run twice, or miss one).
                rows = fetch(snap.end - 1 + snap.drift, size + 1)
                full = len(rows) == size + 1
                last = snap.starts[-1].get("uid")
                at = next((i for i, row in enumerate(rows) if row.get("uid") == last), None)
                if at is None:  # moved further than this chunk: take it as it comes
                    new = rows[1:]
                else:
                    snap.drift += at
                    new = rows[at + 1:]
            snap.starts.extend(new)
            snap.fetched = self._clock()
            if not full:
                snap.complete = True

    def _trim(self, current: _Snapshot) -> None:
        """Drop the least recently used snapshots (then the current one's oldest part)
        while more than ``max_starts`` starts are held."""
        with self._lock:
            held = sum(len(s.starts) for s in self._snapshots.values())
            for token in list(self._snapshots):
                if held <= self.max_starts:
                    return
                if token != current.token:
                    held -= len(self._snapshots.pop(token).starts)
            if held > self.max_starts:
                with current.lock:
                    cut = min(held - self.max_starts, len(current.starts))
                    del current.starts[:cut]
                    current.base += cut

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self._snapshots.items() if now - s.used > self.keep]:
            del self._snapshots[token]

    def held(self) -> int:
        """Start documents held now (for tests and monitoring)."""
        with self._lock:
            return sum(len(s.starts) for s in self._snapshots.values())


class Ahead:
    """Work for the page a client will ask next, started in the background meanwhile.

    Parameters
    ----------
    keep
        Started works remembered (the oldest untaken are dropped; their result is lost,
        never wrong: the page then does the work itself).
    """

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._works: OrderedDict[Hashable, Future[Any]] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None

    def start(self, key: Hashable, work: Callable[[], Any]) -> None:
        """Run ``work()`` in a background thread, for :meth:`take` with the same ``key``."""
        with self._lock:
            if key in self._works:
                return
            self._works[key] = self._submit(work)
            while len(self._works) > self.keep:
                self._works.popitem(last=False)[1].cancel()

    def run(self, work: Callable[[], Any]) -> None:
        """Run ``work()`` in the background, for its effect only (errors are dropped: the
        request that needs the effect does the work again, and reports them)."""
        with self._lock:
            self._submit(_quietly(work))

    def take(self, key: Hashable) -> Any:
        """What the work started for ``key`` returned (waiting for it), or ``None`` when none
        was started or it failed (the caller then does the work itself)."""
        with self._lock:
            work = self._works.pop(key, None)
        if work is None:
            return None
        try:
            return work.result()
        except Exception:  # noqa: BLE001 (the page redoes the work and reports its error)
            return None

    def _submit(self, work: Callable[[], Any]) -> Future[Any]:
        # One background thread: works run in the order they were started.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="broker-v1-ahead")
        return self._executor.submit(work)


def _quietly(work: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        except Exception:  # noqa: BLE001, S110 (see Ahead.run)
            pass
    return run
