"""MongoStore beyond the contract: databroker's on-disk layout, legacy shapes, indexes, errors.

Every test that needs a database runs on mongomock and, when ``BROKER_V1_TEST_MONGO_URI`` is
set, on that server too (the wire-protocol test server in CI, a real MongoDB elsewhere).
Databases are seeded with raw inserts in the shapes old databroker versions wrote.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from conftest import insert_all, make_run, sample_runs

from broker_v1 import Broker
from broker_v1.documents import pack_events
from broker_v1.errors import (
    ConfigError,
    DuplicateDocument,
    InvalidDocument,
    ReadOnlyStore,
    StoreUnavailable,
    UnsupportedQuery,
)
from broker_v1.stores.memory import MemoryStore
from broker_v1.stores.mongo import MissingIndexWarning, MongoStore, make_client
from broker_v1.stores.mongo import _store as mongo_module

TARGETS = ["mongomock", "mongo"]


@dataclass
class Target:
    """A fresh database name on one kind of server, plus raw access to it."""

    kind: str
    base: str
    client: Any

    def uri(self, name: str) -> str:
        return f"{self.base}/{name}"

    def new_db(self) -> tuple[str, Any]:
        name = f"layout-{uuid.uuid4().hex[:12]}"
        self.created.append(name)
        return self.uri(name), self.client[name]

    created: list[str]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """mongomock always; the server named by BROKER_V1_TEST_MONGO_URI when it is set."""
    if request.param == "mongomock":
        base = "mongomock://layout-tests"
        yield Target("mongomock", base, make_client(base + "/x"), [])
        return
    server = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if not server:
        pytest.skip("set BROKER_V1_TEST_MONGO_URI to run against a MongoDB server")
    client = pymongo.MongoClient(server)
    t = Target("mongo", server.rstrip("/"), client, [])
    try:
        yield t
    finally:
        for name in t.created:
            client.drop_database(name)
        client.close()


# Every store a test opens, closed after it: pymongo clients left to the garbage collector
# warn (ResourceWarning, unclosed sockets) in whichever later test collects them.
_OPENED: list[MongoStore] = []


def _track(store: MongoStore) -> MongoStore:
    _OPENED.append(store)
    return store


def new_store(**kwargs: Any) -> MongoStore:
    """``MongoStore(**kwargs)``, closed after the test."""
    return _track(MongoStore(**kwargs))


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close the test's stores."""
    yield
    while _OPENED:
        _OPENED.pop().close()


@pytest.fixture(autouse=True, scope="module")
def _nothing_left_open() -> Iterator[None]:
    """After the module, collecting garbage finds no client or socket left open (a
    ResourceWarning, or an error raised while finalizing one).  Once per module: a full
    collection costs ~0.1 s here."""
    yield
    unraisable: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook
    leaks = [str(w.message).splitlines()[0] for w in seen
             if issubclass(w.category, ResourceWarning)]
    leaks += [repr(u.exc_value) for u in unraisable]
    assert not leaks, f"left open by this module's tests: {leaks}"


def all_indexes(db: Any) -> dict[str, Any]:
    """index_information() of every collection, for before/after comparisons."""
    return {name: db[name].index_information() for name in sorted(db.list_collection_names())}


def key_lists(db: Any, collection: str) -> set[tuple[tuple[str, Any], ...]]:
    """The key patterns of a collection's indexes."""
    return {tuple(spec["key"]) for spec in db[collection].index_information().values()}


def seed_legacy(db: Any) -> dict[str, Any]:
    """Raw inserts in the shapes 0.13-era databases hold; returns the ids a test needs."""
    t0 = 1_500_000_000.0
    start_oid = ObjectId()
    res_oid = ObjectId()
    db.run_start.insert_many([
        {"_id": start_oid, "uid": "legacy-run-1", "time": t0, "scan_id": 7,
         "plan_name": "count", "beamline_config_id": "abc"},
        {"uid": "legacy-run-2", "time": t0 + 50, "scan_id": 8, "plan_name": "scan"},
    ])
    # Very old stops and descriptors name their run 'run_start_id' (uid or ObjectId).
    db.run_stop.insert_many([
        {"run_start_id": "legacy-run-1", "uid": "legacy-stop-1", "time": t0 + 10,
         "exit_status": "success", "reason": ""},
        {"run_start_id": "legacy-run-2-missing", "uid": "other", "time": t0 + 60,
         "exit_status": "abort"},
    ])
    db.event_descriptor.insert_many([
        # No 'name': very old data, read as 'primary'.
        {"run_start_id": start_oid, "uid": "legacy-desc-1", "time": t0 + 1,
         "data_keys": {"det": {"source": "PV:det", "dtype": "number", "shape": []},
                       "img": {"source": "PV:img", "dtype": "array", "shape": [2, 2],
                               "external": "FILESTORE:"}}},
        {"run_start": "legacy-run-2", "uid": "legacy-desc-2", "time": t0 + 51, "name": "primary",
         "data_keys": {"x": {"source": "PV:x", "dtype": "number", "shape": []}}},
    ])
    # Events one per document, stored out of time order, two sharing a time.
    rows = [(t0 + 4, 3), (t0 + 2, 1), (t0 + 4, 2), (t0 + 5, 4)]
    db.event.insert_many([
        {"descriptor": "legacy-desc-1", "uid": f"legacy-ev-{seq}", "time": t, "seq_num": seq,
         "data": {"det": float(seq), "img": f"{res_oid}/{seq}"},
         "timestamps": {"det": t, "img": t}}
        for t, seq in rows
    ])
    # A resource from before resources had uids; datums name it by its ObjectId's hex.
    db.resource.insert_one({"_id": res_oid, "spec": "AD_HDF5", "root": "/GPFS",
                            "resource_path": "data/a.h5", "resource_kwargs": {"frame_per_point": 1},
                            "path_semantics": "posix"})
    db.datum.insert_many([
        {"resource": str(res_oid), "datum_id": f"{res_oid}/{seq}",
         "datum_kwargs": {"point_number": seq}} for seq in (1, 2, 3, 4)
    ])
    # The same resource inserted twice (ophyd/RunEngine double insertion in old databases).
    dup = {"uid": "dup-res", "spec": "AD_SPE", "root": "/", "resource_path": "x.spe",
           "resource_kwargs": {}, "path_semantics": "posix"}
    db.resource.insert_many([dict(dup), dict(dup)])
    return {"resource_hex": str(res_oid), "start_oid": start_oid}


def open_store(uri: str, **kwargs: Any) -> MongoStore:
    """A store on ``uri`` whose first contact may warn about the seeded DB's missing indexes."""
    store = new_store(uri=uri, **kwargs)
    with pytest.warns(MissingIndexWarning):
        store.count_runs()
    return store


# ---------------------------------------------------------------------- reading legacy data
def test_legacy_layout_reads_through_broker(target: Target) -> None:
    """A 0.13-era database (run_start_id links, nameless descriptor, uid-less resource) reads."""
    uri, raw = target.new_db()
    ids = seed_legacy(raw)
    db = Broker(open_store(uri))
    h = db[-2]
    assert h.start["uid"] == "legacy-run-1"
    assert "_id" not in h.start and h.start["beamline_config_id"] == "abc"
    assert h.stop["run_start"] == "legacy-run-1" and "run_start_id" not in h.stop
    assert h.stop["reason"] == ""
    [descriptor] = h.descriptors
    assert descriptor["run_start"] == "legacy-run-1" and "name" not in descriptor
    assert h.stream_names == ["primary"]
    assert db[7] == h and db["legacy-run-1"] == h
    assert db[-1].stop == {}  # its stop links a run that does not exist
    events = list(db.store.iter_events("legacy-desc-1"))
    assert [(e["time"] - 1_500_000_000.0, e["seq_num"]) for e in events] == [
        (2.0, 1), (4.0, 2), (4.0, 3), (5.0, 4)]
    assert all("_id" not in e for e in events)
    resource = db.store.get_resource(ids["resource_hex"])
    assert resource["uid"] == ids["resource_hex"] and "_id" not in resource
    assert [d["datum_kwargs"]["point_number"] for d in db.store.iter_datums(
        ids["resource_hex"])] == [1, 2, 3, 4]
    assert db.store.get_datum(f"{ids['resource_hex']}/3")["resource"] == ids["resource_hex"]
    assert db.store.get_resource("dup-res")["spec"] == "AD_SPE"
    names = [name for name, _ in h.documents()]
    assert names == ["start", "descriptor"] + ["resource"] + ["datum", "event"] * 4 + ["stop"]


def test_nameless_descriptor_table_and_legacy_links_by_objectid(target: Target) -> None:
    """A descriptor linked by the start's ObjectId is found, and its events fill a table."""
    uri, raw = target.new_db()
    seed_legacy(raw)
    db = Broker(open_store(uri))
    table = db["legacy-run-1"].table(stream_name="primary", fields=["det"])
    assert list(table["det"]) == [1.0, 2.0, 3.0, 4.0]
    assert db.store.get_descriptors("legacy-run-1")[0]["uid"] == "legacy-desc-1"


def test_results_never_carry_mongo_ids(target: Target) -> None:
    """No read hands out a Mongo _id, whatever wrote the documents."""
    uri, raw = target.new_db()
    ids = seed_legacy(raw)
    store = open_store(uri)
    with warnings.catch_warnings():
        # On a server the legacy stops (run_start null) prevent the unique run_stop index.
        warnings.simplefilter("ignore", MissingIndexWarning)
        insert_all(store, sample_runs())
    docs: list[dict[str, Any]] = list(store.find_run_starts({}))
    for start in list(docs):
        for _name, doc in store.iter_documents(start["uid"]):
            docs.append(doc)
        docs.extend(store.get_run_stops([start["uid"]]).values())
        for d in store.get_descriptors(start["uid"]):
            docs.extend(store.iter_event_pages(d["uid"], fields=["det"]))
    docs.append(store.get_resource(ids["resource_hex"]))
    docs.extend(store.iter_datum_pages(ids["resource_hex"]))
    docs.extend(store.get_datums([f"{ids['resource_hex']}/1"]).values())
    docs.extend(store.find_runs_by_uid_prefix("abcdef"))
    assert len(docs) > 50
    assert not [d for d in docs if "_id" in d]


# ---------------------------------------------------------------------- what broker_v1 writes
def test_written_layout_is_what_old_readers_read(target: Target) -> None:
    """Writes land as single documents in databroker's collections, with their exact fields."""
    uri, raw = target.new_db()
    store = new_store(uri=uri)
    run = make_run(t0=1e9, external=True, n_events=3)
    insert_all(store, [run])
    # An event_page is unpacked: one stored document per event.
    primary = run.docs[1][1]
    page = pack_events([
        {"descriptor": primary["uid"], "uid": f"paged-{i}", "time": 2e9 + i, "seq_num": 10 + i,
         "data": {"motor": 1.0, "motor_setpoint": 1.0, "det": 2.0, "img": "x"},
         "timestamps": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0, "img": 0.0}}
        for i in range(4)])
    store.insert("event_page", page)
    assert set(raw.list_collection_names()) == {
        "run_start", "run_stop", "event_descriptor", "event", "resource", "datum", "sentinel"}
    assert raw.run_start.find_one({}, {"_id": 0}) == run.start
    assert raw.run_stop.count_documents({}) == 1 and raw.event_descriptor.count_documents({}) == 2
    events = list(raw.event.find({}))
    assert len(events) == sum(1 for n, _ in run.docs if n == "event") + 4
    for event in events:
        assert set(event) <= {"_id", "descriptor", "uid", "time", "seq_num", "data", "timestamps",
                              "filled"}
        assert isinstance(event["_id"], ObjectId) and isinstance(event["uid"], str)
        assert set(event["data"]) == set(event["timestamps"])
    assert raw.event.find_one({"uid": "paged-2"})["seq_num"] == 12
    datums = list(raw.datum.find({}))
    assert len(datums) == 3
    assert all(set(d) == {"_id", "datum_id", "resource", "datum_kwargs"} for d in datums)
    assert [d["datum_kwargs"] for d in datums] == [{"index": 0}, {"index": 1}, {"index": 2}]
    sentinels = list(raw.sentinel.find({}, {"_id": 0}))
    assert sorted(sentinels, key=str) == [{"collection": "datum", "version": 1},
                                          {"collection": "resource", "version": 1}]


def test_separate_assets_database(target: Target) -> None:
    """With asset_uri, resources, datums and the sentinel go to the assets database only."""
    meta_uri, meta = target.new_db()
    asset_uri, assets = target.new_db()
    store = new_store(uri=meta_uri, asset_uri=asset_uri)
    insert_all(store, [make_run(t0=1e9, external=True)])
    assert {"resource", "datum", "sentinel"} <= set(assets.list_collection_names())
    assert not {"resource", "datum", "sentinel"} & set(meta.list_collection_names())
    assert "(assets: " in store.describe()
    reopened = new_store(uri=meta_uri, asset_uri=asset_uri)
    assert len(list(reopened.iter_documents(next(reopened.find_run_starts())["uid"]))) > 5


def test_no_sentinel_added_to_an_existing_assets_database(target: Target) -> None:
    """The version sentinel is written only when this store creates the assets database."""
    uri, raw = target.new_db()
    raw.resource.insert_one({"uid": "r", "spec": "S", "root": "/", "resource_path": "p",
                             "resource_kwargs": {}})
    store = open_store(uri)
    store.insert("start", make_run(t0=1.0).start)
    assert "sentinel" not in raw.list_collection_names()


# ---------------------------------------------------------------------- indexes
def test_reads_never_create_indexes(target: Target) -> None:
    """Every read path leaves index_information() of every collection unchanged."""
    uri, raw = target.new_db()
    ids = seed_legacy(raw)
    before = all_indexes(raw)
    store = open_store(uri)
    db = Broker(store)
    for h in db():
        list(h.documents())
        h.table(fields=["det"])
    db[-1], db[7], db["legacy-run-2"]
    store.find_runs_by_uid_prefix("legacy")
    store.get_run_stops(["legacy-run-1", "nope"])
    store.get_datums([f"{ids['resource_hex']}/1"])
    store.get_resource(ids["resource_hex"])
    store.count_runs({"plan_name": "scan"})
    assert store.supports_text_search is False
    assert all_indexes(raw) == before


def test_ensure_indexes_creates_the_layout_once(target: Target) -> None:
    """ensure_indexes() creates databroker's indexes (unique where it matters) and is idempotent."""
    uri, raw = target.new_db()
    store = new_store(uri=uri)
    created = store.ensure_indexes(text=False)
    assert "event (descriptor, time)" in created and len(created) == 14
    assert store.ensure_indexes(text=False) == []
    assert (("descriptor", -1), ("time", 1)) in key_lists(raw, "event")
    assert (("time", -1), ("scan_id", -1)) in key_lists(raw, "run_start")
    assert (("run_start", -1), ("time", -1)) in key_lists(raw, "event_descriptor")
    assert key_lists(raw, "datum") == {(("_id", 1),), (("datum_id", 1),), (("resource", 1),)}
    info = raw.event.index_information()
    uid_index = next(spec for spec in info.values() if spec["key"] == [("uid", -1)])
    # mongomock checks a unique index by scanning the collection per insert, so the store
    # leaves uniqueness to its own checks there; a server gets the unique index.
    assert bool(uid_index.get("unique")) is (target.kind == "mongo")


def test_first_write_creates_indexes(target: Target) -> None:
    """Indexes appear with the first write, not before."""
    uri, raw = target.new_db()
    store = new_store(uri=uri)
    list(store.find_run_starts({}))
    assert raw.list_collection_names() == []
    store.insert("start", make_run(t0=1.0).start)
    assert (("uid", -1),) in key_lists(raw, "run_start")
    assert (("descriptor", -1), ("time", 1)) in key_lists(raw, "event")


def test_existing_databroker_indexes_are_reused(target: Target) -> None:
    """Indexes an old database already has (in any direction) are not created again."""
    uri, raw = target.new_db()
    raw.event.create_index([("descriptor", 1), ("time", 1)])
    raw.event.create_index([("uid", 1)])
    raw.run_start.create_index([("time", -1), ("scan_id", -1)])
    store = new_store(uri=uri)
    with pytest.warns(MissingIndexWarning, match=r"run_start \(uid\) unique"):
        created = store.ensure_indexes(text=False)
    assert not [c for c in created if c.startswith("event ")]
    assert "run_start (time, scan_id)" not in created
    assert len(raw.event.index_information()) == 3


def test_unique_index_impossible_on_old_data(target: Target) -> None:
    """Old stops without run_start block the unique index: ensure_indexes says so, writes warn."""
    if target.kind == "mongomock":
        pytest.skip("mongomock indexes are created without unique (see ensure_indexes)")
    uri, raw = target.new_db()
    seed_legacy(raw)
    store = open_store(uri)
    with pytest.raises(DuplicateDocument, match=r"run_stop \(run_start\) unique.*None"):
        store.ensure_indexes(text=False)
    with pytest.warns(MissingIndexWarning, match="Cannot create the unique index"):
        new_store(uri=uri).insert("start", make_run(t0=1.0).start)


def test_missing_index_warning_names_them_once(target: Target) -> None:
    """Opening a database whose collections lack read indexes warns once, naming them."""
    uri, raw = target.new_db()
    raw.event.insert_one({"descriptor": "d", "uid": "e", "time": 1.0, "seq_num": 1,
                          "data": {}, "timestamps": {}})
    raw.run_start.insert_one({"uid": "s", "time": 1.0})
    raw.run_start.create_index([("uid", -1)], unique=True)
    raw.run_start.create_index([("time", -1), ("scan_id", -1)])
    with pytest.warns(MissingIndexWarning, match=r"event \(uid\) unique, event \(descriptor, time\)"
                      ) as record:
        new_store(uri=uri).get_run_start("s")
    assert "run_start" not in str(record[0].message)
    assert "ensure_indexes()" in str(record[0].message)
    new_store(uri=uri).get_run_start("s")  # once per database: no second warning


def test_empty_database_does_not_warn(target: Target) -> None:
    """A fresh database with no collections opens without any warning."""
    uri, _ = target.new_db()
    store = new_store(uri=uri)
    assert list(store.find_run_starts({})) == [] and store.count_runs() == 0


# ---------------------------------------------------------------------- paging and order
def test_pages_agree_with_memory_store(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny pages, runs and events come in the memory store's order, whole and once."""
    monkeypatch.setattr(mongo_module, "_START_PAGE", 3)
    monkeypatch.setattr(mongo_module, "_CLIENT_SKIP", 4)
    uri, _ = target.new_db()
    store = new_store(uri=uri, page_size=4)
    memory = MemoryStore()
    times = [5.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 5.0, 4.0, 3.0, 6.0, 1.0]
    runs = [make_run(t0=t, uid=f"{i:02x}" + "0" * 6 + "-0000-4000-8000-000000000000",
                     n_events=0, with_baseline=False, with_stop=False) for i, t in enumerate(times)]
    for target_store in (store, memory):
        insert_all(target_store, runs)
    for query in ({}, {"time": {"$gte": 2.0}}):
        expected = [s["uid"] for s in memory.find_run_starts(query)]
        assert [s["uid"] for s in store.find_run_starts(query)] == expected
        for skip, limit in ((0, 1), (1, 1), (5, 2), (6, None), (9, 3), (12, 5), (20, 1)):
            got = [s["uid"] for s in store.find_run_starts(query, skip=skip, limit=limit)]
            want = [s["uid"] for s in memory.find_run_starts(query, skip=skip, limit=limit)]
            assert got == want, (query, skip, limit)
    ascending = [("time", 1), ("uid", 1)]
    assert [s["uid"] for s in store.find_run_starts({}, sort=ascending, skip=2)] == [
        s["uid"] for s in memory.find_run_starts({}, sort=ascending, skip=2)]
    descriptor = runs[0].docs[1][1]
    event_times = [3.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 9.0, 3.0, 4.0]
    page = pack_events([
        {"descriptor": descriptor["uid"], "uid": f"ev-{i}", "time": t, "seq_num": 20 - i,
         "data": {"motor": t, "motor_setpoint": 0.0, "det": float(i)},
         "timestamps": {"motor": t, "motor_setpoint": 0.0, "det": t}}
        for i, t in enumerate(event_times)])
    for target_store in (store, memory):
        target_store.insert("event_page", page)
    got_pages = list(store.iter_event_pages(descriptor["uid"]))
    # Pages hold at most 4 rows, except one made of a whole group of equal time (7 at t=3).
    assert all(len(p["uid"]) <= 4 or len(set(p["time"])) == 1 for p in got_pages)
    assert len(got_pages) > 2
    assert [u for p in got_pages for u in p["uid"]] == [
        u for p in memory.iter_event_pages(descriptor["uid"]) for u in p["uid"]]


def test_newest_run_hint_never_changes_answers(target: Target) -> None:
    """db[-1] stays right when newer runs arrive and when the runs it remembered are gone."""
    uri, raw = target.new_db()
    store = new_store(uri=uri)
    db = Broker(store)
    runs = [make_run(t0=float(i), n_events=0, with_baseline=False) for i in range(1, 6)]
    insert_all(store, runs)
    assert db[-1].uid == runs[4].uid and db[-2].uid == runs[3].uid
    assert db[-1].uid == runs[4].uid  # answered within the remembered bound
    newer = make_run(t0=10.0, n_events=0, with_baseline=False)
    insert_all(store, [newer])
    assert db[-1].uid == newer.uid and db[-2].uid == runs[4].uid
    raw.run_start.delete_many({"time": {"$gte": 4.0}})
    assert db[-1].uid == runs[2].uid and db[-2].uid == runs[1].uid
    assert [s["uid"] for s in store.find_run_starts({}, limit=3)] == [
        runs[2].uid, runs[1].uid, runs[0].uid]


# ---------------------------------------------------------------------- duplicates
def test_event_page_with_a_conflicting_event_writes_nothing(target: Target) -> None:
    """A page reusing a stored uid with different data is refused whole; identical is a no-op."""
    uri, raw = target.new_db()
    store = new_store(uri=uri)
    run = make_run(t0=1e9, with_baseline=False, n_events=2)
    insert_all(store, [run])
    events = [doc for name, doc in run.docs if name == "event"]
    fresh = {**events[0], "uid": "new-one", "seq_num": 9}
    before = raw.event.count_documents({})
    conflicting = {**events[1], "data": {**events[1]["data"], "det": -1.0}}
    with pytest.raises(DuplicateDocument, match=events[1]["uid"]):
        store.insert("event_page", pack_events([fresh, conflicting]))
    assert raw.event.count_documents({}) == before
    store.insert("event_page", pack_events([fresh, events[1]]))  # identical + new
    assert raw.event.count_documents({}) == before + 1


# ---------------------------------------------------------------------- errors and secrets
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_names_host_timeout_and_config() -> None:
    """An unreachable server raises StoreUnavailable naming host, timeout and the config key."""
    port = closed_port()
    store = _track(MongoStore.from_config(
        {"uri": f"mongodb://127.0.0.1:{port}/csx?serverSelectionTimeoutMS=200"},
        source="/etc/databroker/csx.yml",
    ))
    with pytest.raises(StoreUnavailable) as info:
        store.get_run_start("x")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "within 0.2 s" in message
    assert "store.uri in /etc/databroker/csx.yml" in message
    assert isinstance(info.value, ConnectionError)


def test_credentials_never_shown() -> None:
    """describe(), config(), repr() and error messages never show the password."""
    port = closed_port()
    uri = (f"mongodb://alice:s3cr%40t@127.0.0.1:{port}/csx?authSource=admin"
           "&serverSelectionTimeoutMS=200")
    store = new_store(uri=uri, asset_uri=uri.replace("/csx?", "/csx-assets?"))
    shown = [store.describe(), repr(store), str(store.config())]
    with pytest.raises(StoreUnavailable) as info:
        store.count_runs()
    shown.append(str(info.value))
    for text in shown:
        assert "s3cr" not in text and "alice:s" not in text
    assert store.config()["uri"] == (
        f"mongodb://alice:***@127.0.0.1:{port}/csx?authSource=admin&serverSelectionTimeoutMS=200")
    assert store.describe() == f"mongo store csx on 127.0.0.1:{port} (assets: csx-assets)"


@pytest.mark.parametrize("operator", ["$where", "$function", "$expr"])
def test_code_operators_refused_before_the_server(operator: str) -> None:
    """$where and friends are refused without contacting the server (it is not even there)."""
    store = new_store(uri=f"mongodb://127.0.0.1:{closed_port()}/db?serverSelectionTimeoutMS=5000")
    with pytest.raises(UnsupportedQuery, match="executes code"):
        list(store.find_run_starts({operator: "sleep(100)"}))
    with pytest.raises(UnsupportedQuery, match="executes code"):
        store.count_runs({"$or": [{"a": 1}, {operator: "x"}]})
    assert not store._connected


@pytest.mark.parametrize(
    "uri",
    ["postgres://db/x", "mongodb://db.example:27017", "mongodb://db.example/a.b", 5,
     "mongodb://db.example/csx?noSuchOption=1", "mongodb://db.example:notaport/csx"],
)
def test_bad_uris_are_config_errors(uri: Any) -> None:
    """A URI that is not MongoDB's, or names no usable database, is a ConfigError."""
    with pytest.raises(ConfigError, match="store.uri"):
        new_store(uri=uri)


def test_config_errors_name_the_file() -> None:
    """A bad option in a config file is reported with the file's path."""
    with pytest.raises(ConfigError, match=r"^/etc/databroker/csx.yml: .*noSuchOption"):
        MongoStore.from_config({"uri": "mongodb://db.example/csx?noSuchOption=1"},
                               source="/etc/databroker/csx.yml")


def test_write_refused_by_the_server_is_read_only_store(target: Target) -> None:
    """A server that refuses a write for lack of permission raises ReadOnlyStore."""
    uri, _ = target.new_db()
    store = new_store(uri=uri)
    store.ensure_indexes(text=False)
    coll = store._coll("run_start")

    class Refusing:
        name = "run_start"

        def insert_one(self, doc: Any) -> None:
            raise pymongo.errors.OperationFailure("not authorized on db to execute insert",
                                                  code=13)

        def __getattr__(self, attr: str) -> Any:
            return getattr(coll, attr)

    store._coll = lambda name: Refusing() if name == "run_start" else coll  # type: ignore
    try:
        with pytest.raises(ReadOnlyStore, match="may not write"):
            store.insert("start", make_run(t0=1.0).start)
    finally:
        # Closed here: the class above keeps the client alive until a later garbage
        # collection, whose unclosed-client warning would fail whichever test runs then.
        store.close()


def test_read_only_store_creates_nothing(target: Target) -> None:
    """read_only=True refuses ensure_indexes and inserts and leaves the database untouched."""
    uri, raw = target.new_db()
    store = new_store(uri=uri, read_only=True)
    with pytest.raises(ReadOnlyStore):
        store.ensure_indexes()
    with pytest.raises(ReadOnlyStore):
        store.insert("start", make_run(t0=1.0).start)
    assert raw.list_collection_names() == []


# ---------------------------------------------------------------------- text search, clients
def test_text_search_refusal_says_how(target: Target) -> None:
    """Without usable text search the refusal names $text and says what to do."""
    uri, _ = target.new_db()
    store = new_store(uri=uri)
    insert_all(store, sample_runs()[:1])
    if store.supports_text_search:
        pytest.skip(f"{store.describe()} has text search; the contract suite covers it")
    with pytest.raises(UnsupportedQuery, match=r"\$text") as info:
        list(store.find_run_starts({"$text": {"$search": "count"}}))
    assert "mongomock" in str(info.value) or "text ind" in str(info.value)
    with pytest.raises(UnsupportedQuery, match=r"\$text"):
        store.count_runs({"$text": {"$search": "count"}})


def test_mongomock_patch_reaches_the_client_factory() -> None:
    """mongodb:// URIs go through pymongo.MongoClient looked up at call time (mongomock.patch)."""
    mongomock = pytest.importorskip("mongomock")
    with mongomock.patch(servers=(("db.example.org", 27017),)):
        store = new_store(uri="mongodb://db.example.org/csx")
        insert_all(store, sample_runs()[:2])
        again = new_store(uri="mongodb://db.example.org/csx")
        assert again.count_runs() == 2
        assert again.describe() == "mongo store csx on db.example.org"


# ---------------------------------------------------------------------- writes: round trips
def test_recording_a_run_costs_one_write_per_document(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the layout's unique indexes, a RunEngine's run costs what pymongo alone does:
    one insert per document and no lookup (starts come from the store's memory of them)."""
    if target.kind == "mongomock":
        pytest.skip("mongomock has no unique indexes (the store looks duplicates up there)")
    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        def __init__(self) -> None:
            self.names: list[str] = []

        def started(self, event: Any) -> None:
            self.names.append(event.command_name)

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    listener = Commands()
    real = pymongo.MongoClient
    monkeypatch.setattr(pymongo, "MongoClient",
                        lambda *a, **k: real(*a, event_listeners=[listener], **k))
    uri, _ = target.new_db()
    store = new_store(uri=uri)
    insert_all(store, [make_run(t0=1.0, uid=str(uuid.uuid4()))])  # first contact, indexes
    listener.names.clear()
    run = make_run(t0=100.0, uid=str(uuid.uuid4()), n_events=5)
    insert_all(store, [run])
    assert listener.names == ["insert"] * len(run.docs)
    store.close()


def _outcome(store: Any, name: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    try:
        store.insert(name, copy_of(doc))
    except (DuplicateDocument, InvalidDocument) as err:
        return type(err).__name__, str(err).replace(store.describe(), "<store>"), err.uid
    return ("ok",)


def copy_of(doc: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(doc)


def test_writing_first_refuses_and_ignores_as_the_lookups_did(target: Target) -> None:
    """Duplicates the unique indexes catch give the memory store's answers, word for word:
    identical re-inserts are no-ops (NaN equals NaN), different ones are refused, a second
    stop of a run is refused, and a stop that is both a duplicate and older than its start is
    reported as the duplicate."""
    import math

    uri, _ = target.new_db()
    stores = [MemoryStore(), new_store(uri=uri)]
    first = make_run(t0=1000.0, uid=str(uuid.uuid4()), n_events=2,
                     metadata={"note": math.nan})
    second = make_run(t0=2000.0, uid=str(uuid.uuid4()), n_events=2, with_stop=False)
    start, descriptor, stop = first.docs[0][1], first.docs[1][1], first.docs[-1][1]
    cases = [
        *first.docs, *second.docs,
        ("start", start), ("descriptor", descriptor), ("stop", stop),
        ("start", {**start, "plan_name": "other"}),
        ("descriptor", {**descriptor, "name": "other"}),
        ("stop", {**stop, "exit_status": "abort"}),
        ("stop", {**stop, "uid": str(uuid.uuid4())}),  # a second stop of the run
        ("stop", {**stop, "run_start": second.uid}),  # another run, a stored stop's uid
        ("stop", {**stop, "run_start": second.uid, "time": 1.0}),  # ... and too old
        ("stop", {**stop, "run_start": second.uid, "uid": str(uuid.uuid4()), "time": 1.0}),
        ("stop", {**stop, "run_start": second.uid, "uid": str(uuid.uuid4()),
                  "time": 3000.0}),
    ]
    outcomes = [[_outcome(store, name, doc) for name, doc in cases] for store in stores]
    assert outcomes[1] == outcomes[0]
    assert {o[0] for o in outcomes[0]} == {"ok", "DuplicateDocument", "InvalidDocument"}
    for store in stores:
        assert store.get_run_stop(first.uid)["exit_status"] == stop["exit_status"]
        assert store.get_run_stop(second.uid)["time"] == 3000.0
        assert store.get_run_start(first.uid)["plan_name"] == start["plan_name"]
    stores[1].close()


def test_a_duplicate_is_reported_before_a_value_bson_cannot_hold(target: Target) -> None:
    """Writing first changes no verdict: a different start with a stored uid is a duplicate
    even when it also holds an integer BSON cannot encode, which alone is refused as such."""
    uri, _ = target.new_db()
    store = new_store(uri=uri)
    start = make_run(t0=1.0, uid=str(uuid.uuid4())).start
    store.insert("start", start)
    with pytest.raises(DuplicateDocument, match="A different start document"):
        store.insert("start", {**start, "big": 2**70})
    with pytest.raises(InvalidDocument, match="big"):
        store.insert("start", {**start, "uid": str(uuid.uuid4()), "big": 2**70})
    store.close()
