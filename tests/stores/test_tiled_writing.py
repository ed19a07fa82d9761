"""Writing runs into a tiled server (SQL catalog) through TiledWriter, beyond the contract.

Each test gets a fresh catalog container on the session's writable tiled server (started
once by ``tests/conftest.py``; anonymous callers may read it, the key may write).  What is
written is read back through a *second* store object, which sees only what the server holds,
and through tiled's own client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_run, new_tiled_catalog

from broker_v1.errors import DuplicateDocument, InvalidDocument, ReadOnlyStore
from broker_v1.stores.base import DocumentStore


@pytest.fixture
def catalog_uri(tmp_path: Path) -> str:
    """A fresh, empty catalog of Bluesky runs on the session's writable server."""
    return new_tiled_catalog(tmp_path)


@pytest.fixture
def open_store(catalog_uri: str) -> Iterator[Callable[..., DocumentStore]]:
    """Open TiledStores on the catalog (with the server's key unless told otherwise)."""
    from tiled_server import API_KEY

    from broker_v1.stores.tiled import TiledStore

    opened: list[DocumentStore] = []

    def open_(**options: Any) -> DocumentStore:
        options.setdefault("api_key", API_KEY)
        opened.append(TiledStore(uri=catalog_uri, **options))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def _primary(store: DocumentStore, uid: str) -> str:
    return next(d["uid"] for d in store.get_descriptors(uid) if d["name"] == "primary")


def _rows(store: DocumentStore, descriptor_uid: str) -> list[tuple[Any, ...]]:
    return [(e["seq_num"], e["time"], e["data"], e["timestamps"])
            for e in store.iter_events(descriptor_uid)]


def test_a_run_is_on_the_server_when_its_stop_is_inserted(open_store: Any,
                                                          catalog_uri: str) -> None:
    """With batched rows, another reader sees the events once insert('stop') returns, and
    tiled's own client reads the same values."""
    writer = open_store(write_batch_size=1000)
    reader = open_store()
    run = make_run(t0=1_700_000_000.0, n_events=4)
    for name, doc in run.docs[:-1]:
        writer.insert(name, doc)
    primary = _primary(reader, run.uid)
    assert _rows(reader, primary) == []  # still batched in the writer
    assert reader.get_run_stop(run.uid) is None
    writer.insert("stop", run.docs[-1][1])
    assert reader.get_run_stop(run.uid) == run.docs[-1][1]
    sent = [(e["seq_num"], e["time"], e["data"], e["timestamps"]) for name, e in run.docs
            if name == "event" and e["descriptor"] == primary]
    assert _rows(reader, primary) == sent and len(sent) == 4

    from tiled.client import from_uri
    from tiled_server import API_KEY

    client = from_uri(catalog_uri, api_key=API_KEY)
    try:
        assert list(client[run.uid]["primary"].read()["det"].values) == [0.0, 10.0, 20.0, 30.0]
    finally:
        client.context.close()


def test_the_writing_store_reads_its_batched_rows(open_store: Any) -> None:
    """Reading through the store that batches rows sends them first, so it sees its writes
    (and so does everyone else from then on)."""
    writer = open_store(write_batch_size=1000)
    run = make_run(t0=1_700_000_100.0, n_events=3, with_stop=False, with_baseline=False)
    for name, doc in run.docs:
        writer.insert(name, doc)
    primary = _primary(writer, run.uid)
    assert [row[0] for row in _rows(writer, primary)] == [1, 2, 3]
    reader = open_store()
    assert [row[0] for row in _rows(reader, _primary(reader, run.uid))] == [1, 2, 3]


def test_in_event_arrays_round_trip(open_store: Any) -> None:
    """In-event 1-D and 2-D arrays (numpy values, as a RunEngine sends them) read back as
    nested lists (bluesky's own TiledWriter fails on 2-D ones; the plugins' one is used)."""
    import event_model

    bundle = event_model.compose_run(time=1_700_000_200.0, metadata={"scan_id": 1})
    keys = {"spectrum": {"source": "s", "dtype": "array", "shape": [20]},
            "frame": {"source": "f", "dtype": "array", "shape": [4, 8]}}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys, time=1_700_000_200.1)
    events = [desc.compose_event(
        data={"spectrum": np.arange(20.0) * i, "frame": np.arange(32.0).reshape(4, 8) + i},
        timestamps={"spectrum": 1_700_000_201.0 + i, "frame": 1_700_000_201.0 + i},
        time=1_700_000_201.0 + i) for i in range(3)]
    writer = open_store()
    writer.insert("start", bundle.start_doc)
    writer.insert("descriptor", desc.descriptor_doc)
    for event in events:
        writer.insert("event", event)
    writer.insert("stop", bundle.compose_stop(time=1_700_000_210.0))
    reader = open_store()
    got = list(reader.iter_events(_primary(reader, bundle.start_doc["uid"])))
    assert [e["data"]["frame"] for e in got] == [e["data"]["frame"].tolist() for e in events]
    assert [e["data"]["spectrum"] for e in got] == [
        e["data"]["spectrum"].tolist() for e in events]


def test_rows_the_table_cannot_hold_are_refused_at_insert(open_store: Any) -> None:
    """An event the stream's typed table cannot hold is refused by its own insert
    (InvalidDocument, nothing of it written); the run goes on."""
    store = open_store()
    run = make_run(t0=1_700_000_300.0, n_events=1, with_baseline=False)
    for name, doc in run.docs[:-1]:
        store.insert(name, doc)
    primary = run.docs[1][1]["uid"]
    bad = {"descriptor": primary, "uid": "too-big", "time": 1_700_000_302.0, "seq_num": 2,
           "data": {"motor": 2**53 + 1, "motor_setpoint": 0.0, "det": 0.0},
           "timestamps": {"motor": 0.0, "motor_setpoint": 0.0, "det": 0.0}}
    with pytest.raises(InvalidDocument, match="could not be stored in the stream's table"):
        store.insert("event", bad)
    store.insert("event", {**bad, "uid": "fits", "data": {**bad["data"], "motor": 2.0}})
    store.insert("stop", run.docs[-1][1])
    reader = open_store()
    assert [row[0] for row in _rows(reader, _primary(reader, run.uid))] == [1, 2]


def test_documents_of_a_run_another_store_started_are_refused(open_store: Any) -> None:
    """TiledWriter records a run in one writer: a stop for a run this store did not start
    is refused with InvalidDocument saying so, and nothing is written."""
    first = open_store()
    run = make_run(t0=1_700_000_400.0, n_events=1, with_baseline=False)
    for name, doc in run.docs[:-1]:
        first.insert(name, doc)
    second = open_store()
    with pytest.raises(InvalidDocument, match="did not start that run"):
        second.insert("stop", run.docs[-1][1])
    assert second.get_run_stop(run.uid) is None
    first.insert("stop", run.docs[-1][1])
    assert second.get_run_stop(run.uid) == run.docs[-1][1]


def test_anonymous_caller_is_refused_before_anything_is_sent(
        open_store: Any, monkeypatch: pytest.MonkeyPatch, catalog_uri: str) -> None:
    """Without a key the server lets callers only read: insert raises ReadOnlyStore naming
    the server and the setting, and the catalog stays empty."""
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    anonymous = open_store(api_key=None)
    assert list(anonymous.find_run_starts({})) == []  # reading is allowed
    run = make_run(t0=1_700_000_500.0)
    with pytest.raises(ReadOnlyStore, match=r"would refuse to record runs.*anonymous.*"
                       r"store.api_key.*Nothing was sent") as info:
        anonymous.insert("start", run.start)
    assert catalog_uri.split("/api/")[0] in str(info.value)
    assert info.value.store == anonymous.describe()
    assert list(open_store().find_run_starts({})) == []


def test_read_only_store_refuses_before_asking_the_server(open_store: Any) -> None:
    """read_only: true refuses at once, even where the key could write."""
    store = open_store(read_only=True)
    with pytest.raises(ReadOnlyStore, match="opened read-only"):
        store.insert("start", make_run(t0=1_700_000_600.0).start)
    assert list(open_store().find_run_starts({})) == []


def test_a_start_written_by_another_writer_is_a_duplicate(open_store: Any,
                                                          catalog_uri: str) -> None:
    """A start whose uid the server already holds (another TiledWriter wrote it) is a
    no-op when identical and DuplicateDocument when different; the server's 409 Conflict
    becomes the same error."""
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri
    from tiled_server import API_KEY

    from broker_v1.stores.tiled._client import TiledConnection
    from broker_v1.stores.tiled._writer import RunRecorder

    run = make_run(t0=1_700_000_700.0, n_events=1, with_baseline=False)
    client = from_uri(catalog_uri, api_key=API_KEY)
    try:
        TiledWriter(client)("start", run.start)
    finally:
        client.context.close()
    store = open_store()
    store.insert("start", run.start)  # identical: nothing to do
    with pytest.raises(DuplicateDocument, match="different start document") as info:
        store.insert("start", {**run.start, "time": run.start["time"] + 1})
    assert info.value.uid == run.uid
    assert store.get_run_start(run.uid) == run.start

    conn = TiledConnection(catalog_uri, API_KEY, label="probe")
    try:
        with pytest.raises(DuplicateDocument, match=r"409 Conflict"):
            RunRecorder(conn, label="probe").write("start", dict(run.start))
    finally:
        conn.close()


def test_a_runengine_callback_records_into_tiled(catalog_uri: str) -> None:
    """``db.insert`` given a RunEngine's documents in its order (what
    ``RE.subscribe(db.insert)`` does: numpy values, single events, a baseline read before
    and after, a stop counting events) records a run that ``db[-1]`` reads back."""
    import event_model
    from tiled_server import API_KEY

    from broker_v1 import Broker

    db = Broker.from_config({"store": {"backend": "tiled", "uri": catalog_uri,
                                       "api_key": API_KEY}})
    try:
        t0 = 1_700_001_000.0
        bundle = event_model.compose_run(time=t0, metadata={
            "plan_name": "scan", "plan_type": "generator", "scan_id": 12,
            "exposure": {"time": np.float64(0.1), "frames": np.arange(3)},
            "detectors": ["det"], "motors": ["motor"], "num_points": 5,
            "plan_args": {"start": -1, "stop": 1, "num": 5},
            "hints": {"dimensions": [[["motor"], "primary"]]},
            "versions": {"bluesky": "1.15.1", "ophyd": "1.11.2"}})
        baseline = bundle.compose_descriptor(
            name="baseline", time=t0 + 0.1, object_keys={"motor1": ["motor1"]},
            data_keys={"motor1": {"source": "SIM:motor1", "dtype": "number", "shape": [],
                                  "precision": 3}})
        primary = bundle.compose_descriptor(
            name="primary", time=t0 + 0.3,
            object_keys={"motor": ["motor", "motor_setpoint"], "det": ["det"]},
            hints={"det": {"fields": ["det"]}, "motor": {"fields": ["motor"]}},
            configuration={"det": {"data": {"det_noise": 0.0},
                                   "timestamps": {"det_noise": t0},
                                   "data_keys": {"det_noise": {"source": "SIM:noise",
                                                               "dtype": "number",
                                                               "shape": []}}}},
            data_keys={"motor": {"source": "SIM:motor", "dtype": "number", "shape": []},
                       "motor_setpoint": {"source": "SIM:motor", "dtype": "number",
                                          "shape": []},
                       "det": {"source": "SIM:det", "dtype": "number", "shape": []}})
        docs: list[tuple[str, Any]] = [("start", bundle.start_doc),
                                       ("descriptor", baseline.descriptor_doc)]
        docs.append(("event", baseline.compose_event(
            data={"motor1": np.float64(0.5)}, timestamps={"motor1": t0 + 0.2}, time=t0 + 0.2)))
        docs.append(("descriptor", primary.descriptor_doc))
        positions = np.linspace(-1, 1, 5)
        for i, x in enumerate(positions):
            docs.append(("event", primary.compose_event(
                data={"motor": x, "motor_setpoint": x, "det": np.exp(-x * x)},
                timestamps={k: t0 + 1 + i for k in ("motor", "motor_setpoint", "det")},
                time=t0 + 1 + i)))
        docs.append(("event", baseline.compose_event(
            data={"motor1": np.float64(0.5)}, timestamps={"motor1": t0 + 7}, time=t0 + 7)))
        docs.append(("stop", bundle.compose_stop(time=t0 + 8)))

        callback = db.insert  # RE.subscribe(callback) calls it with each document
        for name, doc in docs:
            callback(name, doc)

        header = db[-1]
        assert header.start["uid"] == bundle.start_doc["uid"]
        assert header.start["scan_id"] == 12
        assert header.start["exposure"] == {"time": 0.1, "frames": [0, 1, 2]}
        assert header.stop["num_events"] == {"baseline": 2, "primary": 5}
        table = header.table()
        assert list(table["motor"]) == list(positions)
        assert np.allclose(list(table["det"]), np.exp(-positions * positions))
        assert list(header.table("baseline")["motor1"]) == [0.5, 0.5]
    finally:
        db.store.close()


def test_copying_into_tiled_then_again_skips(open_store: Any) -> None:
    """The copy machinery writes runs of another store into tiled, and a second copy finds
    them all there (compared as tiled keeps them) and skips them."""
    from conftest import insert_all, sample_runs

    from broker_v1.copying import copy_runs
    from broker_v1.stores.memory import MemoryStore

    source = MemoryStore()
    # Two runs (one stopped, one open) keep the test short; the contract suite covers more.
    runs = [run for run in sample_runs() if not any(n == "resource" for n, _ in run.docs)][2:]
    insert_all(source, runs)
    report = copy_runs(source, open_store(write_batch_size=1000))
    assert [r.status for r in report.runs] == ["copied"] * len(runs)
    reader = open_store()
    for run in runs:
        assert reader.get_run_start(run.uid) == run.start
        assert reader.get_run_stop(run.uid) == source.get_run_stop(run.uid)
        assert len(reader.get_descriptors(run.uid)) == len(source.get_descriptors(run.uid))
        for descriptor in source.get_descriptors(run.uid):
            sent = [(e["seq_num"], e["data"]) for e in source.iter_events(descriptor["uid"])]
            assert sent == [(e["seq_num"], e["data"])
                            for e in reader.iter_events(descriptor["uid"])]
    again = copy_runs(source, open_store())
    assert [r.status for r in again.runs] == ["skipped"] * len(runs)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A tiled server with an authentication provider (one user), for this module."""
    pytest.importorskip("tiled.client", reason="the tiled extra is not installed")
    from tiled_server import TiledServer, server_venv

    venv = server_venv()
    if venv is None:
        pytest.skip("no tiled server venv (BROKER_V1_TILED_VENV or .ci/tiled-venv)")
    server = TiledServer(venv, tmp_path_factory.mktemp("tiled-auth"), user=("alice", "pw1"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_key_scopes_are_checked_before_anything_is_sent(auth_server: Any) -> None:
    """On a server with logins, a key whose scopes only read is refused (ReadOnlyStore naming
    the missing scopes) before anything is sent; a key inheriting the user's scopes writes."""
    from broker_v1.stores.tiled import TiledStore

    read_key = auth_server.api_key(["read:metadata", "read:data"])
    reader = TiledStore(uri=auth_server.uri, api_key=read_key)
    writer = TiledStore(uri=auth_server.uri, api_key=auth_server.api_key(["inherit"]))
    try:
        run = make_run(t0=1_700_000_800.0, n_events=2)
        with pytest.raises(ReadOnlyStore, match=r"lacks the scopes create:node, write:data, "
                           r"write:metadata.*Nothing was sent") as info:
            reader.insert("start", run.start)
        assert auth_server.uri in str(info.value) and read_key not in str(info.value)
        assert list(reader.find_run_starts({})) == []
        for name, doc in run.docs:
            writer.insert(name, doc)
        assert reader.get_run_stop(run.uid) == run.docs[-1][1]
    finally:
        reader.close()
        writer.close()


def test_a_resource_without_run_start_goes_to_the_one_open_run(open_store: Any) -> None:
    """A legacy resource (no run_start) is given to the run being recorded; while two runs
    are open it is refused with InvalidDocument, as nothing says which one it belongs to."""
    store = open_store()
    first = make_run(t0=1_700_000_900.0, n_events=0, with_baseline=False, with_stop=False)
    second = make_run(t0=1_700_000_950.0, n_events=0, with_baseline=False)
    resource = {"uid": "legacy-res", "spec": "NPY_SEQ", "root": "/r", "resource_path": "p",
                "resource_kwargs": {}, "path_semantics": "posix"}
    for name, doc in first.docs + second.docs[:-1]:
        store.insert(name, doc)
    with pytest.raises(InvalidDocument, match="names no run_start and 2 runs"):
        store.insert("resource", resource)
    store.insert("stop", second.docs[-1][1])
    store.insert("resource", resource)
    store.insert("datum", {"resource": "legacy-res", "datum_id": "legacy-res/0",
                           "datum_kwargs": {"index": 0}})
    store.insert("resource", resource)  # identical again: a no-op


def test_trusted_documents_failing_the_schema_are_invalid(open_store: Any) -> None:
    """TiledWriter checks every document against event-model's schema, so a trusted insert
    that fails it is refused with InvalidDocument naming the field, and nothing is written."""
    store = open_store()
    with pytest.raises(InvalidDocument, match="TiledWriter refused.*at scan_id") as info:
        store.insert("start", {"uid": "trusted-1", "time": 10.0, "scan_id": "abc"},
                     trusted=True)
    assert info.value.field == "scan_id"
    assert list(store.find_run_starts({})) == []
    run = make_run(t0=1_700_001_100.0, n_events=0, with_baseline=False)
    store.insert("start", run.start)
    bad = {**run.docs[1][1], "hints": 5}
    with pytest.raises(InvalidDocument, match="TiledWriter would refuse.*at hints"):
        store.insert("descriptor", bad, trusted=True)
    assert store.get_descriptors(run.uid) == []


def test_write_batch_size_is_checked_and_kept_in_the_config() -> None:
    """write_batch_size must be a whole number >= 1 (ConfigError naming it otherwise) and is
    part of config() when not the default; nothing is contacted."""
    pytest.importorskip("tiled.client", reason="the tiled extra is not installed")
    from broker_v1.errors import ConfigError
    from broker_v1.stores.tiled import TiledStore

    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="write_batch_size must be a whole number >= 1"):
            TiledStore.from_config({"uri": "http://127.0.0.1:9", "write_batch_size": bad})
    store = TiledStore.from_config({"uri": "http://127.0.0.1:9", "write_batch_size": 500})
    assert store.config()["write_batch_size"] == 500
    assert "write_batch_size" not in TiledStore(uri="http://127.0.0.1:9").config()
