"""The store contract: every backend must pass every test here, unchanged.

Tests take only the ``store`` / ``store_harness`` fixtures and never look at the concrete class.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import (
    CONTRACT_KINDS,
    insert_all,
    make_harness,
    make_run,
    read_while_writing,
    require_kept,
    sample_runs,
)

from broker_v1.documents import event_to_page
from broker_v1.errors import (
    DatumNotFound,
    DuplicateDocument,
    InvalidDocument,
    InvalidQuery,
    ReadOnlyStore,
    ResourceNotFound,
    RunNotFound,
    UnsupportedQuery,
)
from broker_v1.stores.base import DocumentStore


def snapshot(store: DocumentStore) -> list:
    """Everything a store holds, via the public reads, for before/after comparisons."""
    out = []
    for start in store.find_run_starts({}):
        out.extend(store.iter_documents(start["uid"]))
    return out


@pytest.fixture(params=CONTRACT_KINDS)
def store_harness(request, tmp_path):
    """A fresh, empty, writable store of each kind, tiled included."""
    yield from make_harness(request.param, tmp_path)


@pytest.fixture(scope="module", params=CONTRACT_KINDS)
def loaded(request, tmp_path_factory):
    """A store holding the sample runs, shared by the tests that leave it as it is (reads,
    refused writes, identical re-inserts: each checks that nothing changed), so a remote
    store is filled once per module."""
    for harness in make_harness(request.param,
                                tmp_path_factory.mktemp(f"loaded-{request.param}")):
        insert_all(harness.store, sample_runs())
        yield harness.store


@pytest.fixture
def loaded_fresh(store):
    """A store of its own holding the sample runs, for tests that add to it."""
    insert_all(store, sample_runs())
    return store


# ---------------------------------------------------------------------- empty store
def test_empty_store_answers_with_nothing(store):
    """An empty store finds no runs and reports absence the documented way."""
    assert list(store.find_run_starts({})) == []
    assert store.count_runs({}) == 0
    assert store.get_run_stop("nope") is None
    assert store.get_descriptors("nope") == []
    assert list(store.iter_event_pages("nope")) == []
    assert list(store.iter_datum_pages("nope")) == []
    with pytest.raises(RunNotFound, match="No run with uid 'nope'"):
        store.get_run_start("nope")
    with pytest.raises(ResourceNotFound):
        store.get_resource("nope")
    with pytest.raises(DatumNotFound):
        store.get_datum("nope")


# ---------------------------------------------------------------------- starts and search
def test_start_round_trips_identically(store):
    """A start document reads back equal to what was inserted, with no keys added."""
    run = make_run(t0=1e9, metadata={"nested": {"a": [1, 2, {"b": None}]}, "unicode key: é": "ü"})
    store.insert("start", run.start)
    assert store.get_run_start(run.uid) == run.start


def test_returned_documents_are_private_copies(loaded):
    """Mutating a returned document, or the inserted one, never changes what is stored."""
    uid = sample_runs()[1].uid
    first = loaded.get_run_start(uid)
    first["sample"]["name"] = "changed"
    first["new"] = 1
    assert loaded.get_run_start(uid)["sample"]["name"] == "silicon"
    primary = loaded.get_descriptors(uid)[1]["uid"]
    page = next(loaded.iter_event_pages(primary))
    page["data"]["det"][0] = -1
    again = next(loaded.iter_event_pages(primary))
    assert again["data"]["det"][0] != -1


def test_arrays_of_single_events_read_back_as_private_copies(store):
    """A list value inserted with a single event (a spectrum) comes back as a copy: mutating
    what a read returns, as an event or in a page, never changes what is stored.  (20 values:
    a tiled 0.2.20 server refuses in-event arrays of 16 or fewer, which TiledWriter puts in
    the stream's table.)"""
    store.insert("start", {"uid": "spectra-run", "time": 1e9})
    store.insert("descriptor", {
        "uid": "spectra-primary", "run_start": "spectra-run", "time": 1e9 + 0.1,
        "name": "primary", "data_keys": {
            "spectrum": {"source": "SIM:spectrum", "dtype": "array", "shape": [20]},
            "det": {"source": "SIM:det", "dtype": "number", "shape": []}}})
    for i in (1, 2):
        store.insert("event", {
            "descriptor": "spectra-primary", "uid": f"spectrum-{i}", "time": 1e9 + i,
            "seq_num": i, "data": {"spectrum": [1.0 * i] + [2.0] * 19, "det": 5.0},
            "timestamps": {"spectrum": 1e9 + i, "det": 1e9 + i}, "filled": {}})
    event = next(store.iter_events("spectra-primary"))
    event["data"]["spectrum"][0] = -1.0
    page = next(store.iter_event_pages("spectra-primary"))
    page["data"]["spectrum"][1][0] = -1.0
    stored = [list(e["data"]["spectrum"]) for e in store.iter_events("spectra-primary")]
    assert stored == [[1.0] + [2.0] * 19, [2.0] + [2.0] * 19]


def test_inserted_document_is_copied(store):
    """Changing a document after inserting it does not change the stored copy."""
    run = make_run(t0=1e9, metadata={"sample": {"name": "a"}})
    doc = copy.deepcopy(run.start)
    store.insert("start", doc)
    doc["sample"]["name"] = "b"
    assert store.get_run_start(run.uid)["sample"]["name"] == "a"


def test_runs_come_newest_first_with_uid_tiebreak(store):
    """Default order is start time descending, ties broken by uid descending."""
    runs = [
        make_run(t0=100.0, uid="aaaa0000-0000-4000-8000-000000000000"),
        make_run(t0=300.0, uid="bbbb0000-0000-4000-8000-000000000000"),
        make_run(t0=200.0, uid="cccc0000-0000-4000-8000-000000000000"),
        make_run(t0=200.0, uid="dddd0000-0000-4000-8000-000000000000"),
    ]
    for run in runs:
        store.insert("start", run.start)
    found = [s["uid"][:4] for s in store.find_run_starts({})]
    assert found == ["bbbb", "dddd", "cccc", "aaaa"]
    assert [s["uid"][:4] for s in store.find_run_starts({}, skip=1, limit=2)] == ["dddd", "cccc"]
    assert list(store.find_run_starts({}, limit=0)) == []
    ascending = [s["uid"][:4] for s in store.find_run_starts({}, sort=[("time", 1), ("uid", 1)])]
    assert ascending == ["aaaa", "cccc", "dddd", "bbbb"]


@pytest.mark.parametrize("sort", [None, [("time", 1), ("uid", 1)]],
                         ids=["newest-first", "oldest-first"])
def test_a_search_on_another_thread_while_runs_start(store, sort):
    """A thread searching (newest first, or oldest first as ``serve`` lists) while another
    inserts starts gets, every time, runs in the order asked for, every run stored before
    among them once, and no error."""
    for i in range(60):
        store.insert("start", make_run(t0=1000.0 + i).start)
    order = {} if sort is None else {"sort": sort}

    def read_once() -> str | None:
        times = [s["time"] for s in store.find_run_starts({}, **order)]
        if times != sorted(times, reverse=sort is None):
            return f"out of order: {times[:5]}..."
        if sum(1000.0 <= t < 1060.0 for t in times) != 60:
            return f"{len(times)} runs, not each of those stored before once"
        return None

    def start_runs() -> None:
        for i in range(60):
            store.insert("start", make_run(t0=2000.0 + i).start)

    problems = read_while_writing(read_once, start_runs)
    assert not problems, problems[:3]
    assert store.count_runs({}) == 120


@pytest.mark.parametrize(
    ("query", "expected_scan_ids"),
    [
        ({}, [4, 3, 2, 2, 1]),
        ({"plan_name": "scan"}, [4, 2, 2]),
        ({"scan_id": 2}, [2, 2]),
        ({"scan_id": {"$gt": 2}}, [4, 3]),
        ({"scan_id": {"$in": [1, 3]}}, [3, 1]),
        ({"sample.name": "silicon"}, [2]),
        ({"operator": {"$exists": False}}, [3, 1]),
        ({"plan_name": {"$regex": "^co"}}, [3, 1]),
        ({"plan_name": {"$regex": "^CO"}}, []),
        # $options as MongoDB applies them (mongoquery alone has none).
        ({"plan_name": {"$regex": "^CO", "$options": "i"}}, [3, 1]),
        ({"$or": [{"scan_id": 1}, {"operator": "Michael"}]}, [2, 1]),
        ({"$and": [{"plan_name": "scan"}, {"operator": "Dmitri"}]}, [4, 2]),
        ({"time": {"$gte": 1_700_000_100.0, "$lte": 1_700_000_300.0}}, [3, 2, 2]),
        ({"plan_name": "nothing"}, []),
    ],
)
def test_find_run_starts_evaluates_mongo_queries(loaded, query, expected_scan_ids):
    """Mongo-dialect filters select the same runs, newest first, in every store."""
    assert [s["scan_id"] for s in loaded.find_run_starts(query)] == expected_scan_ids
    assert loaded.count_runs(query) == len(expected_scan_ids)


def test_equality_also_matches_list_elements(loaded):
    """As in MongoDB, equality with a value also matches a list field that contains it."""
    require_kept(loaded, "list_equality")
    assert [s["scan_id"] for s in loaded.find_run_starts({"detectors": "det"})] == [
        4, 3, 2, 2, 1]
    assert loaded.count_runs({"detectors": "det"}) == 5


@pytest.mark.parametrize(
    "query, expected_scan_ids",
    [
        ({"detectors": {"$eq": "det"}}, [4, 3, 2, 2, 1]),
        ({"detectors": {"$ne": "det"}}, []),
        ({"detectors": {"$not": {"$eq": "det"}}}, []),
        ({"detectors": {"$nin": ["det"]}}, []),
        ({"motors": {"$lt": "n"}}, [4, 3, 2, 2, 1]),
        ({"motors": {"$gt": "n"}}, []),
        ({"detectors": {"$regex": "^de"}}, [4, 3, 2, 2, 1]),
        ({"detectors": {"$not": {"$regex": "^de"}}}, []),
    ],
)
def test_operators_on_list_fields_test_their_elements(loaded, query, expected_scan_ids):
    """As in MongoDB, an operator on a field holding a list matches when an element does
    (``$ne`` / ``$nin`` / ``$not``: when none does), in every store."""
    require_kept(loaded, "list_equality")
    assert [s["scan_id"] for s in loaded.find_run_starts(query)] == expected_scan_ids
    assert loaded.count_runs(query) == len(expected_scan_ids)


#: Where mongomock, the in-process MongoDB double, answers otherwise than a MongoDB server.
MONGOMOCK_DIFFERS = {
    "$gte null": "mongomock's $gte: None does not match missing fields",
    "$mod": "mongomock has no $mod",
    "bool": "mongomock compares True equal to 1",
}


@pytest.mark.parametrize(
    "query, expected_scan_ids, mongomock_differs",
    [
        # A missing field equals null, as on a MongoDB server.
        ({"operator": None}, [3, 1], None),
        ({"operator": {"$eq": None}}, [3, 1], None),
        ({"operator": {"$ne": None}}, [4, 2, 2], None),
        ({"operator": {"$in": [None, "Michael"]}}, [3, 2, 1], None),
        ({"operator": {"$nin": [None]}}, [4, 2, 2], None),
        ({"operator": {"$gte": None}}, [3, 1], "$gte null"),
        # $mod tests numbers and skips everything else (it used to fail the whole query).
        ({"sample.position": {"$mod": [2, 1]}}, [2], "$mod"),
        ({"scan_id": {"$mod": [2, 0]}}, [4, 2, 2], "$mod"),
        ({"plan_name": {"$mod": [2, 0]}}, [], "$mod"),
        # Values of different kinds are never equal or ordered: True is not 1.
        ({"scan_id": True}, [], "bool"),
        ({"scan_id": {"$in": [True, False]}}, [], "bool"),
        ({"scan_id": {"$gt": False}}, [], None),
        ({"scan_id": {"$lt": "5"}}, [], None),
        ({"plan_name": {"$gt": 1}}, [], None),
        # Documents with documents and arrays with arrays compare in BSON's order.
        ({"sample": {"$gt": {"name": "h"}}}, [2], None),
        ({"sample": {"$lt": {"name": "h"}}}, [2], None),
        ({"detectors": {"$gte": ["det"]}}, [4, 3, 2, 2, 1], None),
        ({"detectors": {"$lt": ["det"]}}, [], None),
        # A literal document is compared whole (silicon's sample also has a position).
        ({"sample": {"name": "gold"}}, [2], None),
        ({"sample": {"name": "silicon"}}, [], None),
        ({"sample.name": {"$type": "string"}}, [2, 2], None),
        ({"scan_id": {"$type": "int"}}, [4, 3, 2, 2, 1], None),
        # Strings are not arrays: no $elemMatch, no paths into their characters.
        ({"plan_name": {"$elemMatch": {"$eq": "scan"}}}, [], None),
        ({"plan_name.0": {"$exists": True}}, [], None),
        ({"detectors": {"$elemMatch": {"$eq": "det"}}}, [4, 3, 2, 2, 1], None),
        ({"detectors": {"$all": ["det"]}}, [4, 3, 2, 2, 1], None),
        ({"detectors.0": "det"}, [4, 3, 2, 2, 1], None),
        ({"detectors.1": {"$exists": False}}, [4, 3, 2, 2, 1], None),
    ],
)
def test_queries_answer_as_a_mongodb_server_does(loaded, query, expected_scan_ids,
                                                 mongomock_differs):
    """Null and missing fields, $mod, values of different kinds, literal documents and
    strings under array operators: the same runs in every store as on a MongoDB server."""
    if mongomock_differs and "mongomock://" in loaded.describe():
        pytest.skip(MONGOMOCK_DIFFERS[mongomock_differs])
    assert [s["scan_id"] for s in loaded.find_run_starts(query)] == expected_scan_ids
    assert loaded.count_runs(query) == len(expected_scan_ids)


def test_uid_prefix_and_scan_id_lookups(loaded):
    """Prefix lookups are anchored and case-sensitive; scan_id lookups put the newest first."""
    assert [s["uid"][:8] for s in loaded.find_runs_by_uid_prefix("abcdef")] == [
        "abcdef02", "abcdef01"]
    assert loaded.find_runs_by_uid_prefix("bcdef0") == []
    assert loaded.find_runs_by_uid_prefix("ABCDEF") == []
    assert len(loaded.find_runs_by_uid_prefix("abcdef", limit=1)) == 1
    newest = loaded.find_runs_by_scan_id(2)
    assert len(newest) == 1 and newest[0]["uid"] == sample_runs()[2].uid
    assert [s["uid"] for s in loaded.find_runs_by_scan_id(2, limit=None)] == [
        sample_runs()[2].uid, sample_runs()[1].uid]
    assert loaded.find_runs_by_scan_id(99) == []


@pytest.mark.parametrize("operator", ["$where", "$function", "$accumulator", "$expr"])
def test_code_execution_operators_are_refused(loaded, operator):
    """Operators that run code on a server are refused before evaluation, everywhere."""
    with pytest.raises(UnsupportedQuery, match="executes code") as info:
        list(loaded.find_run_starts({operator: "function() { return true; }"}))
    assert info.value.operator == operator
    with pytest.raises(UnsupportedQuery):
        list(loaded.find_run_starts({"$or": [{"a": 1}, {operator: "x"}]}))


@pytest.mark.parametrize(
    "query", [["plan_name"], {"$or": "x"}, {"$and": []}, {1: 2}, {"a": {"$nosuchop": 1}}]
)
def test_malformed_queries_raise_invalid_query(loaded, query):
    """Malformed queries raise a clear InvalidQuery instead of returning a wrong answer."""
    with pytest.raises(InvalidQuery):
        list(loaded.find_run_starts(query))


def test_text_search_or_clear_refusal(loaded):
    """Stores with text search follow MongoDB's $text rules; others refuse it explicitly."""
    def search(words):
        return [s["scan_id"] for s in loaded.find_run_starts({"$text": {"$search": words}})]

    if not loaded.supports_text_search:
        with pytest.raises(UnsupportedQuery, match=r"\$text"):
            search("gold")
        return
    assert search("gold") == [2]
    assert search("GOLD") == [2]  # case-insensitive
    assert search("gol") == []  # whole words only
    assert search("gold silicon") == [2, 2]  # any word
    assert search('"sample alignment"') == [2]
    assert search('"alignment sample"') == []
    assert search("scan -gold") == [4, 2]  # exclusion
    assert search("plan_name") == []  # keys are not searched
    combined = {"$and": [{"$text": {"$search": "Dmitri"}}, {"scan_id": 4}]}
    assert [s["scan_id"] for s in loaded.find_run_starts(combined)] == [4]


# ---------------------------------------------------------------------- stops, descriptors
def test_stop_and_descriptors(loaded):
    """Stops are found by run; descriptors of every stream come in ascending time."""
    require_kept(loaded, "exact_descriptors")
    runs = sample_runs()
    stop = loaded.get_run_stop(runs[0].uid)
    assert stop == runs[0].docs[-1][1]
    assert loaded.get_run_stop(runs[3].uid) is None
    stops = loaded.get_run_stops([r.uid for r in runs])
    assert set(stops) == {runs[0].uid, runs[1].uid, runs[2].uid, runs[4].uid}
    descriptors = loaded.get_descriptors(runs[0].uid)
    assert [d["name"] for d in descriptors] == ["baseline", "primary"]  # baseline is earlier
    assert descriptors[1] == runs[0].docs[1][1]


# ---------------------------------------------------------------------- events
def _columns(store, descriptor_uid, **kwargs):
    out = {"time": [], "seq_num": [], "uid": [], "data": {}}
    for page in store.iter_event_pages(descriptor_uid, **kwargs):
        for key in ("time", "seq_num", "uid"):
            out[key].extend(page[key])
        for key, col in page["data"].items():
            out["data"].setdefault(key, []).extend(col)
    return out


def test_event_pages_are_sorted_by_time_then_seq_num(store):
    """Events inserted out of order come back ordered by (time, seq_num)."""
    require_kept(store, "event_uids")
    run = make_run(t0=1000.0, with_baseline=False, with_stop=False, n_events=0)
    insert_all(store, [run])
    descriptor = run.docs[1][1]
    rows = [(1005.0, 3), (1001.0, 1), (1005.0, 2), (1003.0, 4)]
    for i, (t, seq) in enumerate(rows):
        store.insert("event", {
            "descriptor": descriptor["uid"], "uid": f"ev-{i}", "time": t, "seq_num": seq,
            "data": {"motor": t, "motor_setpoint": t, "det": float(seq)},
            "timestamps": {"motor": t, "motor_setpoint": t, "det": t},
        })
    cols = _columns(store, descriptor["uid"])
    assert list(zip(cols["time"], cols["seq_num"])) == sorted(rows)
    assert cols["data"]["det"] == [1.0, 4.0, 2.0, 3.0]
    events = list(store.iter_events(descriptor["uid"]))
    assert [e["uid"] for e in events] == ["ev-1", "ev-3", "ev-2", "ev-0"]
    assert events[0]["data"] == {"motor": 1001.0, "motor_setpoint": 1001.0, "det": 1.0}


def test_event_page_projection_keeps_requested_fields(loaded):
    """A projection hint never loses the requested fields or the rows."""
    run = sample_runs()[4]
    primary = [d for d in loaded.get_descriptors(run.uid) if d["name"] == "primary"][0]
    cols = _columns(loaded, primary["uid"], fields=["det"])
    assert cols["data"]["det"] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert cols["seq_num"] == [1, 2, 3, 4, 5]


def test_event_pages_and_singles_agree(store):
    """An event_page insert and the same events inserted singly read back identically."""
    require_kept(store, "event_uids")
    run = make_run(t0=2000.0, with_baseline=False, n_events=4)
    insert_all(store, [run])
    descriptor = run.docs[1][1]
    singles = [doc for name, doc in run.docs if name == "event"]
    read = list(store.iter_events(descriptor["uid"]))
    for got, sent in zip(read, singles):
        assert {k: got[k] for k in ("uid", "time", "seq_num", "data", "timestamps")} == {
            k: sent[k] for k in ("uid", "time", "seq_num", "data", "timestamps")}
    # A page holding the same events is an identical re-insert: nothing changes.
    from broker_v1.documents import pack_events

    store.insert("event_page", pack_events(singles))
    assert len(list(store.iter_events(descriptor["uid"]))) == 4


def test_a_reader_thread_sees_whole_events_of_a_run_being_recorded(store):
    """A thread reading a run while another records it (a live plot in the RunEngine's
    process) gets pages of whole events: every column as long as the others, each row its
    own event's values, no error or warning; afterwards every event, in order."""
    run = make_run(t0=3000.0, with_baseline=False, with_stop=False, n_events=0)
    insert_all(store, [run])
    descriptor = run.docs[1][1]
    keys = sorted(descriptor["data_keys"])

    def event(i: int) -> dict:
        return {"descriptor": descriptor["uid"], "uid": f"live-{i}", "time": 3001.0 + i,
                "seq_num": i + 1, "data": {k: float(10 * i + j) for j, k in enumerate(keys)},
                "timestamps": {k: 3001.0 + i for k in keys}}

    def read_once() -> str | None:
        for page in store.iter_event_pages(descriptor["uid"]):
            lengths = {len(page["time"]), len(page["seq_num"])}
            lengths.update(len(page[part][k]) for part in ("data", "timestamps") for k in keys)
            if len(lengths) != 1:
                return f"columns of lengths {sorted(lengths)} in one page"
            for row, seq in enumerate(page["seq_num"]):
                got = {k: page["data"][k][row] for k in keys}
                if got != event(seq - 1)["data"]:
                    return f"event {seq - 1} read as {got}"
        return None

    def record() -> None:
        for i in range(150):
            store.insert("event", event(i))
        store.insert("stop", {"uid": "live-stop", "run_start": run.uid, "time": 4000.0,
                              "exit_status": "success"})

    problems = read_while_writing(read_once, record)
    assert not problems, problems[:3]
    cols = _columns(store, descriptor["uid"])
    assert cols["seq_num"] == list(range(1, 151))
    assert cols["data"][keys[0]] == [event(i)["data"][keys[0]] for i in range(150)]


def test_values_round_trip_exactly(store):
    """NaN, infinities, integers beyond 2**53, unicode keys and nested lists survive."""
    require_kept(store, "exact_numbers")
    run = make_run(t0=3000.0, with_baseline=False, with_stop=False, n_events=0,
                   metadata={"big": 2**63 - 1, "weird key: with spaces": [1.5, None, "x"]})
    store.insert("start", run.start)
    store.insert("descriptor", run.docs[1][1])
    descriptor = run.docs[1][1]
    values = [math.nan, math.inf, -math.inf, 2**53 + 1]
    for i, v in enumerate(values):
        store.insert("event", {
            "descriptor": descriptor["uid"], "uid": f"v-{i}", "time": 3001.0 + i,
            "seq_num": i + 1, "data": {"motor": v, "motor_setpoint": 0.0, "det": 0.0},
            "timestamps": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0},
        })
    got = _columns(store, descriptor["uid"])["data"]["motor"]
    assert math.isnan(got[0]) and got[1:3] == [math.inf, -math.inf]
    assert got[3] == 2**53 + 1 and isinstance(got[3], int)
    start = store.get_run_start(run.uid)
    assert start["big"] == 2**63 - 1
    assert start["weird key: with spaces"] == [1.5, None, "x"]


def test_numpy_values_are_stored_as_plain_values(store):
    """Numpy scalars and arrays become numbers and lists; the caller's objects are untouched."""
    array = np.arange(6).reshape(2, 3)
    run = make_run(t0=4000.0, metadata={"grid": array, "count": np.int64(7),
                                        "flag": np.bool_(True)})
    store.insert("start", run.start)
    got = store.get_run_start(run.uid)
    assert got["grid"] == [[0, 1, 2], [3, 4, 5]]
    assert got["count"] == 7 and type(got["count"]) is int
    assert got["flag"] is True
    assert isinstance(run.start["grid"], np.ndarray)


# ---------------------------------------------------------------------- assets
def test_resources_and_datums(loaded):
    """Resources, datum pages and single datums read back as inserted."""
    require_kept(loaded, "resources")
    run = sample_runs()[2]
    resource = next(doc for name, doc in run.docs if name == "resource")
    datums = [doc for name, doc in run.docs if name == "datum"]
    assert loaded.get_resource(resource["uid"]) == resource
    assert loaded.get_datum(datums[1]["datum_id"]) == datums[1]
    pages = list(loaded.iter_datum_pages(resource["uid"]))
    ids = [i for p in pages for i in p["datum_id"]]
    assert ids == [d["datum_id"] for d in datums]
    assert [d["datum_kwargs"] for d in loaded.iter_datums(resource["uid"])] == [
        {"index": 0}, {"index": 1}, {"index": 2}]
    assert set(loaded.get_datums([d["datum_id"] for d in datums])) == {
        d["datum_id"] for d in datums}


def test_datum_page_insert(store):
    """A datum_page is stored as its datums."""
    require_kept(store, "resources")
    run = make_run(t0=5000.0, with_baseline=False, n_events=0)
    insert_all(store, [run])
    resource = {"uid": "res-1", "spec": "NPY_SEQ", "root": "/r", "resource_path": "p",
                "resource_kwargs": {}, "path_semantics": "posix", "run_start": run.uid}
    store.insert("resource", resource)
    page = {"resource": "res-1", "datum_id": ["res-1/0", "res-1/1"],
            "datum_kwargs": {"index": [0, 1]}}
    store.insert("datum_page", page)
    assert store.get_datum("res-1/1") == {"resource": "res-1", "datum_id": "res-1/1",
                                          "datum_kwargs": {"index": 1}}
    store.insert("datum_page", page)  # identical again: a no-op
    assert [d["datum_id"] for d in store.iter_datums("res-1")] == ["res-1/0", "res-1/1"]


def test_documents_replay_in_event_model_order(loaded):
    """iter_documents: start, descriptors, each resource/datum before its first event, stop."""
    require_kept(loaded, "resources")
    run = sample_runs()[2]
    names = [name for name, _ in loaded.iter_documents(run.uid)]
    assert names[0] == "start" and names[-1] == "stop"
    assert names[1:3] == ["descriptor", "descriptor"]
    first_event = names.index("event")
    first_datum = names.index("datum")
    assert names.index("resource") < first_datum < names.index("event", first_datum)
    assert names.count("resource") == 1 and names.count("datum") == 3
    assert names.count("event") == 5
    docs = list(loaded.iter_documents(run.uid))
    times = [doc["time"] for name, doc in docs if name == "event"]
    assert times == sorted(times)
    assert first_event < first_datum  # the baseline event precedes every datum
    no_stop = sample_runs()[3]
    assert [n for n, _ in loaded.iter_documents(no_stop.uid)][-1] == "event"


def test_filled_event_stores_the_datum_id(store):
    """Inserting a filled event stores the datum id from ``filled``, not the array."""
    require_kept(store, "resources")
    loaded = store
    insert_all(loaded, sample_runs())
    run = sample_runs()[2]
    primary = [d for d in loaded.get_descriptors(run.uid) if d["name"] == "primary"][0]
    event = {"descriptor": primary["uid"], "uid": "filled-1", "time": 1_700_000_299.0,
             "seq_num": 99, "data": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0,
                                      "img": np.ones((4, 4))},
             "timestamps": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0, "img": 0.0},
             "filled": {"img": "some-datum-id"}}
    loaded.insert("event", event)
    stored = [e for e in loaded.iter_events(primary["uid"]) if e["uid"] == "filled-1"][0]
    assert stored["data"]["img"] == "some-datum-id"
    assert isinstance(event["data"]["img"], np.ndarray)  # the caller's event is unchanged


# ---------------------------------------------------------------------- duplicates
def test_identical_reinsert_is_a_no_op(loaded):
    """Inserting every document a second time changes nothing."""
    before = snapshot(loaded)
    insert_all(loaded, sample_runs())
    assert snapshot(loaded) == before


def test_identical_reinsert_with_nan_is_a_no_op(store):
    """NaN values compare equal to themselves for the duplicate policy, in every store."""
    require_kept(store, "exact_numbers")
    run = make_run(t0=6000.0, with_baseline=False, n_events=0, metadata={"offset": math.nan})
    for _ in range(2):
        store.insert("start", run.start)
    descriptor = run.docs[1][1]
    store.insert("descriptor", descriptor)
    event = {"descriptor": descriptor["uid"], "uid": "nan-event", "time": 6001.0, "seq_num": 1,
             "data": {"motor": math.nan, "motor_setpoint": 0.0, "det": 0.0},
             "timestamps": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0}}
    store.insert("event", event)
    store.insert("event", copy.deepcopy(event))
    assert len(list(store.iter_events(descriptor["uid"]))) == 1


@pytest.mark.parametrize("index", [0, 1, 2, -1])
def test_different_document_with_existing_uid_is_refused(loaded, index):
    """A different document reusing a uid raises DuplicateDocument and changes nothing."""
    run = sample_runs()[0]
    name, doc = [d for d in run.docs if d[0] in ("start", "descriptor", "event", "stop")][index]
    before = snapshot(loaded)
    changed = {**doc, "time": doc["time"] + 0.5}
    with pytest.raises(DuplicateDocument, match="already in") as info:
        loaded.insert(name, changed)
    assert info.value.uid == doc["uid"]
    assert snapshot(loaded) == before


def test_second_stop_is_refused(loaded):
    """A run has exactly one stop; a second, different one is refused."""
    run = sample_runs()[0]
    stop = run.docs[-1][1]
    with pytest.raises(DuplicateDocument, match="already has a stop"):
        loaded.insert("stop", {**stop, "uid": "another-stop"})


# ---------------------------------------------------------------------- validation
def _bad_documents():
    run = make_run(t0=1_800_000_000.0, with_baseline=False, n_events=1)
    start = run.docs[0][1]
    descriptor = run.docs[1][1]
    event = run.docs[2][1]
    stop = run.docs[-1][1]
    return [
        ("start", {k: v for k, v in start.items() if k != "time"}, "time"),
        ("start", {**start, "time": "yesterday"}, "time"),
        ("start", {**start, "uid": 5}, "uid"),
        ("start", {**start, "time": math.nan}, "time"),
        ("start", {**start, 7: "non-string key"}, None),
        ("start", {**start, "when": object()}, None),
        ("descriptor", {**descriptor, "run_start": "no-such-run"}, "run_start"),
        ("descriptor", {**descriptor, "data_keys": {"a.b": {"source": "s", "dtype": "number",
                                                             "shape": []}}}, "data_keys.a.b"),
        ("event", {**event, "descriptor": "no-such-descriptor"}, "descriptor"),
        ("event", {**event, "data": {**event["data"], "extra": 1.0}}, "data.extra"),
        ("event", {**event, "timestamps": {"motor": 0.0}}, None),
        ("event", {k: v for k, v in event.items() if k != "seq_num"}, "seq_num"),
        ("event", {**event, "filled": None}, "filled"),
        ("event", {**event, "filled": ["motor"]}, "filled"),
        ("event_page", {**event_to_page(event), "filled": None}, "filled"),
        ("event_page", {"descriptor": descriptor["uid"], "uid": ["a", "b"], "time": [1.0],
                        "seq_num": [1, 2], "data": {}, "timestamps": {}}, "time"),
        ("datum", {"resource": "no-such-resource", "datum_id": "x/1", "datum_kwargs": {}},
         "resource"),
        ("stop", {**stop, "run_start": "no-such-run"}, "run_start"),
        ("stop", {**stop, "time": start["time"] - 10}, "time"),
        ("resource", {"uid": "r", "spec": 5, "root": "/", "resource_path": "",
                      "resource_kwargs": {}}, "spec"),
        ("nonsense", {"uid": "x"}, None),
        ("start", ["not", "a", "dict"], None),
    ], run


def test_malformed_documents_are_refused_and_nothing_changes(store):
    """Each malformed document raises InvalidDocument naming the field; the store is unchanged."""
    bad, run = _bad_documents()
    store.insert("start", run.docs[0][1])
    store.insert("descriptor", run.docs[1][1])
    before = snapshot(store)
    for name, doc, field in bad:
        with pytest.raises(InvalidDocument) as info:
            store.insert(name, doc)
        assert "Nothing was written" in str(info.value), (name, doc)
        if field is not None:
            assert info.value.field == field, (name, field, str(info.value))
        assert snapshot(store) == before


def test_read_only_store_refuses_writes(store_harness):
    """A read-only store refuses insert with ReadOnlyStore and writes nothing."""
    store = store_harness.store
    run = make_run(t0=1e9)
    store.insert("start", run.start)
    store.read_only = True
    with pytest.raises(ReadOnlyStore, match="read-only"):
        store.insert("stop", run.docs[-1][1])
    store.read_only = False
    assert store.get_run_stop(run.uid) is None


def test_reopened_store_sees_everything(store_harness):
    """A new store object over the same storage reads back every document."""
    insert_all(store_harness.store, sample_runs())
    before = snapshot(store_harness.store)
    reopened = store_harness.reopen()
    assert snapshot(reopened) == before


def test_documents_written_in_deferred_sync_read_back_at_once_and_after_reopen(store_harness):
    """Inside deferred_sync() every document is readable at once; after it, from a new store
    object too (the block only postpones syncing to disk); nesting is allowed."""
    store = store_harness.store
    runs = sample_runs()
    with store.deferred_sync():
        with store.deferred_sync():
            insert_all(store, runs[:1])
        insert_all(store, runs[1:])
        inside = snapshot(store)
        assert {d["uid"] for name, d in inside if name == "start"} == {r.uid for r in runs}
    assert snapshot(store_harness.reopen()) == inside


def test_describe_names_the_backend(store):
    """describe() names the backend, for error messages."""
    assert store.backend in store.describe()


def test_search_on_stop_fields(loaded_fresh):
    """find_run_stop_uids matches stop documents; runs without a stop never match."""
    loaded = loaded_fresh
    runs = sample_runs()
    failed = make_run(t0=1_700_000_900.0, scan_id=9, with_baseline=False, n_events=1)
    stop = {**failed.docs[-1][1], "exit_status": "fail", "reason": "beam dump"}
    insert_all(loaded, [type(failed)(failed.uid, failed.docs[:-1] + [("stop", stop)])])
    assert loaded.find_run_stop_uids({"exit_status": "fail"}) == [failed.uid]
    ok = set(loaded.find_run_stop_uids({"exit_status": "success"}))
    assert ok == {runs[0].uid, runs[1].uid, runs[2].uid, runs[4].uid}
    assert loaded.find_run_stop_uids({"reason": {"$regex": "beam"}}) == [failed.uid]
    with pytest.raises(UnsupportedQuery):
        loaded.find_run_stop_uids({"$where": "1"})


def test_trusted_insert_skips_only_the_schema(store):
    """insert(trusted=True) skips the JSON schema but still checks links and duplicates."""
    require_kept(store, "schema_free_documents")
    odd = {"uid": "trusted-1", "time": 10.0, "scan_id": "abc"}
    with pytest.raises(InvalidDocument, match="scan_id"):
        store.insert("start", odd)
    store.insert("start", odd, trusted=True)
    assert store.get_run_start("trusted-1") == odd
    with pytest.raises(InvalidDocument, match="run_start"):
        store.insert("descriptor", {"uid": "d", "time": 11.0, "run_start": "nope",
                                    "data_keys": {}}, trusted=True)
    with pytest.raises(DuplicateDocument):
        store.insert("start", {**odd, "time": 12.0}, trusted=True)
