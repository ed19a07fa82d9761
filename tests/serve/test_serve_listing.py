"""Listings through tiled's cursor paging: few store queries, no run lost or repeated, fresh.

A memory store of small runs (start and stop only) served in-process; the client pages with
small page sizes so that a listing spans many pages.  The store is a MemoryStore that
counts the queries it is asked (the real store, its answers unchanged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("tiled.server", reason='the serve extra is not installed '
                    '(pip install -e ".[test,serve]")')
pytest.importorskip("bluesky_tiled_plugins", reason="bluesky-tiled-plugins is not installed")

import event_model  # noqa: E402
from conftest import insert_all, sample_runs  # noqa: E402
from tiled.client import Context, from_context  # noqa: E402
from tiled.queries import Key  # noqa: E402

from broker_v1.serve import build_app  # noqa: E402
from broker_v1.serve._listing import Listings  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient`")

KEY = "listingkey"
T0 = 1_700_000_000.0


class CountingStore(MemoryStore):
    """A memory store that counts the run queries it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0
        self.counts = 0

    def find_run_starts(self, *args: Any, **kwargs: Any) -> Any:
        self.finds += 1
        return super().find_run_starts(*args, **kwargs)

    def count_runs(self, *args: Any, **kwargs: Any) -> int:
        self.counts += 1
        return super().count_runs(*args, **kwargs)


def add_run(store: Any, t: float, plan_name: str = "scan") -> str:
    """A run of a start and a stop at time ``t``; returns its uid."""
    bundle = event_model.compose_run(time=t, metadata={"plan_name": plan_name,
                                                       "scan_id": int(t - T0)})
    store.insert("start", bundle.start_doc)
    store.insert("stop", bundle.compose_stop(time=t + 0.5))
    return str(bundle.start_doc["uid"])


def serve(store: Any, fresh: float) -> tuple[Any, Any]:
    context = Context.from_app(build_app(store, api_key=KEY, fresh_seconds=fresh),
                               api_key=KEY)
    return context, from_context(context)


@pytest.fixture(scope="module")
def listed() -> Iterator[tuple[CountingStore, list[str], Any]]:
    """250 runs (every third 'count'), served; nothing is written while they are read, so
    snapshots and counts stay fresh for a minute (store queries do not depend on timing)."""
    store = CountingStore()
    uids = [add_run(store, T0 + i, "count" if i % 3 == 0 else "scan") for i in range(250)]
    context, client = serve(store, 60)
    try:
        yield store, uids, client
    finally:
        context.close()


def test_a_listing_is_every_run_once_in_few_store_queries(listed: Any) -> None:
    """Paging through 250 runs 10 at a time: every run once, in order, and the count and 25
    pages cost a handful of store queries (chunks growing 4x), not one count and one
    skipping query per page."""
    store, uids, c = listed
    store.finds = store.counts = 0
    assert list(c.keys().page_size(10)) == uids
    assert [k for k, _ in c.items().page_size(10)] == uids
    # The second listing reuses the first's snapshot: chunks of 11, 44, 176 and the rest.
    assert store.finds <= 4
    assert store.counts <= 1  # the catalog's, once (none if an earlier test asked it)


def test_a_search_is_counted_and_paged_from_its_snapshot(listed: Any) -> None:
    store, uids, c = listed
    expected = uids[::3]
    store.finds = store.counts = 0
    found = c.search(Key("plan_name") == "count")
    assert len(found) == len(expected)
    assert [r.start["uid"] for r in found.values().page_size(7)] == expected
    assert found.values().first().start["uid"] == expected[0]
    assert c[-1].start["uid"] == uids[-1]
    # The search's count, once, and perhaps the catalog's for c[-1].
    assert 1 <= store.counts <= 2
    assert store.finds <= 5


def test_sorted_listings_page_through_the_store_order(listed: Any) -> None:
    store, uids, c = listed
    newest_first = c.sort(("start.scan_id", -1))
    assert list(newest_first.keys().page_size(9)) == uids[::-1]
    assert [r.start["uid"] for r in c.values()[-1:-30:-1]] == uids[-1:-30:-1]


@pytest.mark.parametrize("view", ["keys", "items"])
def test_runs_written_during_a_listing_neither_repeat_nor_drop_runs(view: str) -> None:
    """A run older than the page being read (written into the store's past) shifts offsets:
    tiled's offset paging would then show one run twice.  The cursor continues the listing
    it started; a newer run shows up at its end."""
    store = CountingStore()
    uids = [add_run(store, T0 + 10 * i) for i in range(40)]
    context, c = serve(store, 0.0)
    try:
        seen = []
        # keys: uids only; items: runs, their next chunk and stops read ahead.
        listing = (c.keys().page_size(5) if view == "keys"
                   else (uid for uid, _ in c.items().page_size(5)))
        for n, uid in enumerate(listing):
            seen.append(uid)
            if n == 7:  # in the second page
                add_run(store, T0 + 5)  # between the first two runs
                newest = add_run(store, T0 + 1000)
        assert len(seen) == len(set(seen))
        assert seen == uids + [newest]
    finally:
        context.close()


def test_a_new_run_appears_to_new_requests_within_fresh_seconds() -> None:
    store = CountingStore()
    first = add_run(store, T0)
    context, c = serve(store, 0.3)
    try:
        assert c[-1].start["uid"] == first and len(c) == 1
        newer = add_run(store, T0 + 1)
        time.sleep(0.35)
        assert c[-1].start["uid"] == newer
        assert len(c) == 2
        assert list(c.keys()) == [first, newer]
    finally:
        context.close()
    # fresh_seconds=0: every new request asks the store.
    context, c = serve(store, 0)
    try:
        assert len(c) == 2
        newest = add_run(store, T0 + 2)
        assert c[-1].start["uid"] == newest and len(c) == 3
    finally:
        context.close()


def test_a_cursor_of_another_process_continues_by_position(listed: Any) -> None:
    """A cursor whose snapshot this process does not hold (another worker, a restart) is read
    as a position, like tiled's offset paging."""
    _, uids, c = listed
    foreign = Listings.cursor(12, token=123456)
    answer = c.context.http_client.get("/api/v1/search/", params={
        "page[cursor]": foreign, "page[limit]": 4, "fields": ""})
    assert answer.status_code == 200, answer.text
    assert [d["id"] for d in answer.json()["data"]] == uids[12:16]
    following = answer.json()["links"]["next"]
    assert following and "page[cursor]=" in following


def test_bad_fresh_seconds_is_refused() -> None:
    from broker_v1.errors import ConfigError

    with pytest.raises(ConfigError, match="fresh_seconds"):
        build_app(MemoryStore(), public=True, fresh_seconds=-1)


def test_memory_is_bounded_and_a_trimmed_listing_still_complete() -> None:
    """At most max_starts starts are held; a listing longer than that is still whole."""
    store = MemoryStore()
    uids = [add_run(store, T0 + i) for i in range(120)]
    listings = Listings(max_starts=30)
    other = Listings.cursor(0)
    listings.page("other", lambda skip, limit: [{"uid": "x"}] * limit, other, 20)

    def fetch(skip: int, limit: int) -> list[dict[str, Any]]:
        return list(store.find_run_starts({}, sort=(("time", 1), ("uid", 1)), skip=skip,
                                          limit=limit))

    seen: list[str] = []
    cursor: int | None = Listings.cursor(0)
    while cursor is not None:
        rows, cursor = listings.page("all", fetch, cursor, 7)
        seen.extend(r["uid"] for r in rows)
        assert listings.held() <= 30
    assert seen == uids


def test_listings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="fresh"):
        Listings(fresh=5, keep=1)
    with pytest.raises(ValueError, match="cursor"):
        Listings().page("k", lambda s, n: [], -1, 5)


class LoopWatchingStore(MemoryStore):
    """A memory store noting each read it answers on a thread running an event loop."""

    READS = ("find_run_starts", "count_runs", "get_run_start", "get_run_stop",
             "get_run_stops", "get_descriptors", "iter_event_pages", "find_run_stop_uids")

    def __init__(self) -> None:
        super().__init__()
        self.in_loop: list[str] = []
        self.reads = 0

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name in LoopWatchingStore.READS:
            def watched(*args: Any, **kwargs: Any) -> Any:
                self.reads += 1
                try:
                    asyncio.get_running_loop()
                    self.in_loop.append(name)
                except RuntimeError:  # no loop in this thread: a worker thread
                    pass
                return found(*args, **kwargs)
            return watched
        return found


def test_store_reads_run_off_the_event_loop() -> None:
    """Lookups, listings, searches and table reads ask the store from worker threads, never
    from the thread running tiled's event loop (a slow read would stall every request)."""
    store = LoopWatchingStore()
    runs = sample_runs()
    insert_all(store, runs)
    context, c = serve(store, 0)
    try:
        assert c[-1].start["uid"] == runs[-1].uid
        assert c[runs[1].uid].start["uid"] == runs[1].uid
        assert c[runs[1].uid[:8]].start["uid"] == runs[1].uid
        assert c[4].start["uid"] == runs[-1].uid
        assert len(c.search(Key("plan_name") == "scan")) == 3
        assert [k for k, _ in c.items()] == [r.uid for r in runs]
        assert c[-1]["primary"].read()["det"].size == 5
        assert sorted(c[-1]) == ["baseline", "primary"]
    finally:
        context.close()
    assert store.reads > 10
    assert store.in_loop == []


def test_a_run_ending_while_the_previous_page_is_read_shows_its_stop() -> None:
    """The next page's stops are read ahead; a run that ends meanwhile still shows its stop
    (runs without one are asked again when their page is sent)."""
    store = CountingStore()
    bundles = []
    for i in range(6):
        bundle = event_model.compose_run(time=T0 + i, metadata={"plan_name": "scan"})
        store.insert("start", bundle.start_doc)
        bundles.append(bundle)
    for bundle in bundles[:2]:
        store.insert("stop", bundle.compose_stop(time=T0 + 10))
    context, c = serve(store, 60)
    try:
        stops = {}
        for n, (uid, run) in enumerate(c.items().page_size(2)):
            stops[uid] = run.metadata["stop"]
            if n == 0:  # page 2's stops are being read ahead (none written yet)
                for bundle in bundles[2:4]:
                    store.insert("stop", bundle.compose_stop(time=T0 + 20))
        uids = [b.start_doc["uid"] for b in bundles]
        assert list(stops) == uids
        assert [s and s["time"] for s in stops.values()] == [T0 + 10] * 2 + [T0 + 20] * 2 + [
            None, None]
    finally:
        context.close()


def test_work_ahead_that_fails_is_redone_by_the_page() -> None:
    from broker_v1.serve._listing import Ahead

    ahead = Ahead(keep=2)
    ahead.start("a", lambda: 1 / 0)
    ahead.start("b", lambda: {"x": 1})
    assert ahead.take("a") is None
    assert ahead.take("b") == {"x": 1}
    assert ahead.take("b") is None  # taken once
    for key in "cde":
        ahead.start(key, lambda: 2)
    assert ahead.take("c") is None  # beyond keep: dropped
    assert ahead.take("e") == 2


def test_cursors_beyond_the_end_are_empty_pages_and_snapshots_stay_bounded() -> None:
    """Any cursor a client makes up is a page (empty beyond the end), never an error, and
    the snapshots such cursors start are bounded in number."""
    from broker_v1.serve import _listing

    listings = Listings()
    for n in range(_listing._MAX_SNAPSHOTS + 50):
        rows, following = listings.page("k", lambda skip, limit: [], Listings.cursor(2**40 + n),
                                        3)
        assert rows == [] and following is None
    assert len(listings._snapshots) == _listing._MAX_SNAPSHOTS


def test_stream_counts_of_pages_read_ahead() -> None:
    """Runs whose stop does not count their streams (no ``num_events``): each page gives every
    run's stream count, whether its descriptors were read with the page or ahead of it; an
    open run's are asked again when its page is sent (a stream may start meanwhile)."""
    store = CountingStore()
    bundles = []
    for i in range(6):
        bundle = event_model.compose_run(time=T0 + i, metadata={"plan_name": "scan"})
        store.insert("start", bundle.start_doc)
        for name in ["primary", "baseline", "extra"][:i % 3 + 1]:
            store.insert("descriptor", bundle.compose_descriptor(
                name=name, data_keys={"x": {"source": "x", "dtype": "number", "shape": []}},
                time=T0 + i).descriptor_doc)
        if i != 3:  # run 3 stays open
            stop = bundle.compose_stop(time=T0 + 10)
            del stop["num_events"]
            store.insert("stop", stop)
        bundles.append(bundle)
    context, c = serve(store, 60)
    try:
        counts = {}
        for n, (uid, run) in enumerate(c.items().page_size(2)):
            counts[uid] = run.item["attributes"]["structure"]["count"]
            if n == 0:  # page 2 (runs 2 and 3) is being read ahead
                store.insert("descriptor", bundles[3].compose_descriptor(
                    name="late", data_keys={"y": {"source": "y", "dtype": "number",
                                                  "shape": []}},
                    time=T0 + 20).descriptor_doc)
        assert list(counts) == [b.start_doc["uid"] for b in bundles]
        assert list(counts.values()) == [1, 2, 3, 1 + 1, 2, 3]
    finally:
        context.close()
