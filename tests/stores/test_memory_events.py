"""The memory store's event columns: a stopped run's are kept as tuples, which the garbage
collector stops tracking (a list is walked element by element at every full collection), and
read and appended to as before; single events and pages give the same rows; readers on other
threads see whole rows of a running stream."""

from __future__ import annotations

import gc
import uuid
from typing import Any

import pytest
from conftest import read_while_writing

from broker_v1.documents import event_to_page, pack_events
from broker_v1.stores.memory import MemoryStore


def _run(store: MemoryStore, n: int, *, stop: bool = True) -> tuple[str, str]:
    run, desc = str(uuid.uuid4()), str(uuid.uuid4())
    store.insert("start", {"uid": run, "time": 1.0})
    store.insert("descriptor", {
        "uid": desc, "run_start": run, "time": 1.0, "name": "primary",
        "data_keys": {"x": {"source": "PV:x", "dtype": "number", "shape": []},
                      "label": {"source": "PV:l", "dtype": "string", "shape": []}},
    })
    for i in range(n):
        store.insert("event", _event(desc, i))
    if stop:
        store.insert("stop", {"uid": str(uuid.uuid4()), "run_start": run, "time": 99.0,
                              "exit_status": "success"})
    return run, desc


def _event(desc: str, i: int) -> dict[str, Any]:
    return {"uid": f"{desc}-{i}", "descriptor": desc, "time": 2.0 + i, "seq_num": i + 1,
            "data": {"x": 0.5 * i, "label": f"p{i}"}, "timestamps": {"x": 2.0, "label": 2.0},
            "filled": {}}


def _column_objects(store: MemoryStore, desc: str) -> list[Any]:
    columns = store._events[desc]
    return [columns.time, columns.seq_num, columns.uid, *columns.data.values(),
            *columns.timestamps.values()]


def _all_events(store: MemoryStore, desc: str) -> list[dict[str, Any]]:
    return [e for page in store.iter_event_pages(desc) for e in _unpack(page)]


def _unpack(page: dict[str, Any]) -> list[dict[str, Any]]:
    assert all(type(page[k]) is list for k in ("time", "seq_num", "uid"))
    assert all(type(c) is list for c in page["data"].values())
    return [{"uid": u, "seq_num": s, "x": page["data"]["x"][i]}
            for i, (u, s) in enumerate(zip(page["uid"], page["seq_num"], strict=True))]


def test_a_stopped_runs_events_are_not_walked_by_the_garbage_collector() -> None:
    store = MemoryStore()
    _, open_desc = _run(store, 5, stop=False)
    _, stopped_desc = _run(store, 5)
    gc.collect()
    assert not any(gc.is_tracked(col) for col in _column_objects(store, stopped_desc))
    assert all(gc.is_tracked(col) for col in _column_objects(store, open_desc))


def test_events_read_and_append_as_before_after_the_stop() -> None:
    """Pages of a sealed run come back as lists; an event inserted after the stop (a copy
    arriving late) is appended, and the run reads whole, in order."""
    store = MemoryStore()
    _, desc = _run(store, 4)
    assert [e["seq_num"] for e in _all_events(store, desc)] == [1, 2, 3, 4]
    store.insert("event", _event(desc, 4))
    events = _all_events(store, desc)
    assert [e["seq_num"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["x"] for e in events] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert store._get_existing("event", f"{desc}-2")["data"] == {"x": 1.0, "label": "p2"}


def test_single_events_keep_the_same_columns_as_pages() -> None:
    """Single events take a path of their own into the columns (no page is built); they must
    give the pages that inserting each as a one-row event page gives: events without filled,
    with an empty one, with one that names a key, with a datum id to rotate, and with a list
    value (kept as a private copy)."""
    def events(desc: str) -> list[dict[str, Any]]:
        base = [_event(desc, i) for i in range(5)]
        del base[0]["filled"]
        base[2]["filled"] = {"label": False}
        base[3]["filled"] = {"label": "datum-3"}
        base[4]["data"]["x"] = [1.0, 2.0]
        return base

    pages = {}
    for kind in ("event", "event_page"):
        store = MemoryStore()
        run, desc = "run-" + kind, "primary-" + kind
        store.insert("start", {"uid": run, "time": 1.0})
        store.insert("descriptor", {
            "uid": desc, "run_start": run, "time": 1.0, "name": "primary",
            "data_keys": {"x": {"source": "PV:x", "dtype": "number", "shape": []},
                          "label": {"source": "PV:l", "dtype": "string", "shape": []}}})
        for event in events(desc):
            if kind == "event":
                store.insert("event", event)
            else:
                store.insert("event_page", event_to_page(event))
        [page] = store.iter_event_pages(desc)
        page["data"]["x"][4].append(3.0)  # a read's list is the reader's own
        [pages[kind]] = store.iter_event_pages(desc)
        pages[kind]["descriptor"] = "primary"
        pages[kind]["uid"] = [u.rsplit("-", 1)[-1] for u in pages[kind]["uid"]]
    assert pages["event"] == pages["event_page"]
    assert pages["event"]["filled"] == {"label": [False] * 5}
    assert pages["event"]["data"]["label"][3] == "datum-3"
    assert pages["event"]["data"]["x"][4] == [1.0, 2.0]


def _stream(desc: str, keys: tuple[str, ...]) -> dict[str, Any]:
    return {"uid": desc, "run_start": "run-" + desc, "time": 1.0, "name": "primary",
            "data_keys": {k: {"source": f"PV:{k}", "dtype": "number", "shape": []}
                          for k in keys}}


def _keyed_event(desc: str, i: int, keys: tuple[str, ...]) -> dict[str, Any]:
    # Keys in a different order every other event: the columns go by key, not position.
    order = keys if i % 2 else keys[::-1]
    return {"uid": f"{desc}-{i}", "descriptor": desc, "time": 2.0 + i, "seq_num": i + 1,
            "data": {k: 10.0 * i + n for n, k in enumerate(order)},
            "timestamps": {k: 2.0 + i for k in order}, "filled": {}}


def _insert_mixed(kind: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Events of one stream inserted one by one (``kind`` "event": single events, with one
    page among them) or each as a page, with reads, a duplicate lookup, the stop and a late
    event in between; the stream's pages read at the end."""
    store = MemoryStore()
    desc = f"d{len(keys)}-{kind}"
    store.insert("start", {"uid": "run-" + desc, "time": 1.0})
    store.insert("descriptor", _stream(desc, keys))
    for i in range(151):
        event = _keyed_event(desc, i, keys)
        if kind == "event_page" or i == 5:
            store.insert("event_page", event_to_page(event))
        else:
            store.insert("event", event)
        if i == 2:
            assert len(list(store.iter_event_pages(desc))) == 1  # a read mid-run
        elif i == 100:
            assert store._get_existing("event", f"{desc}-40")["seq_num"] == 41
        elif i == 149:
            store.insert("stop", {"uid": "stop-" + desc, "run_start": "run-" + desc,
                                  "time": 999.0})
    pages = list(store.iter_event_pages(desc))
    for page in pages:
        page["descriptor"] = "d"
        page["uid"] = [u.rsplit("-", 1)[-1] for u in page["uid"]]
    return pages


def test_single_events_mixed_with_pages_reads_and_the_stop_keep_their_rows() -> None:
    """Single events mixed with pages, reads, the stop (which seals the columns) and a late
    event, in streams of several keys (in changing order), one key and none: every row must
    read back as inserting each as a page gives, each value in its own event's row."""
    for keys in (("a", "b", "c"), ("a",), ()):
        pages = _insert_mixed("event", keys)
        assert pages == _insert_mixed("event_page", keys)
        # And each value in its own event's row (not only the same rows both ways).
        for k in keys:
            assert [v for p in pages for v in p["data"][k]] == [
                _keyed_event("d", i, keys)["data"][k] for i in range(151)]
        assert [s for p in pages for s in p["seq_num"]] == list(range(1, 152))


@pytest.mark.parametrize("in_time_order", [True, False])
def test_readers_on_other_threads_see_whole_rows_while_events_are_inserted(
    in_time_order: bool,
) -> None:
    """Readers on threads of their own (reads take no lock) read a running stream while
    the writer inserts single events and pages, in time order or with neighbours swapped
    (read back sorted): every page read has columns of one length and every row its own
    event's values, and no row is lost.  Before the uid was appended last, a reader counted
    rows whose values were not in the columns yet; before the sorted order was checked
    against the row count, a reader could keep an order sorted while a row was being
    appended, and later reads missed it."""
    store = MemoryStore()
    keys = ("a", "b", "c")
    desc = "busy"
    store.insert("start", {"uid": "run-busy", "time": 1.0})
    store.insert("descriptor", _stream(desc, keys))

    def read_once() -> str | None:
        for page in store.iter_event_pages(desc):
            lengths = {len(page[f]) for f in ("uid", "time", "seq_num")}
            lengths.update(len(page[part][k]) for part in ("data", "timestamps") for k in keys)
            if len(lengths) != 1:
                return f"columns of lengths {sorted(lengths)} in one page"
            for row, seq in enumerate(page["seq_num"]):
                values = {k: page["data"][k][row] for k in keys}
                if values != _keyed_event(desc, seq - 1, keys)["data"]:
                    return f"row of event {seq - 1}: {values}"
        return None

    def record() -> None:
        for i in range(3_000):  # single events and pages, turn about
            event = _keyed_event(desc, i, keys)
            if not in_time_order:
                event["time"] = 2.0 + (i ^ 1)
            store.insert(*(("event", event) if i % 2 else ("event_page", pack_events([event]))))

    problems = read_while_writing(read_once, record, readers=3)
    assert not problems, problems[:3]
    pages = list(store.iter_event_pages(desc))
    rows = [r for p in pages for r in zip(p["seq_num"], p["data"]["a"], strict=True)]
    expected = [(i + 1, _keyed_event(desc, i, keys)["data"]["a"]) for i in range(3_000)]
    if not in_time_order:
        expected = [expected[i ^ 1] for i in range(3_000)]
    assert rows == expected
