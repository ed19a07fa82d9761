"""The tiled store against a real tiled server (SQL catalog) filled by a real RunEngine.

The session's server (``tiled_server`` in ``tests/conftest.py``) holds six runs recorded by
bluesky's RunEngine with ophyd's simulated devices through bluesky-tiled-plugins'
``TiledWriter`` (``tests/stores/tiled_fill.py``): scan_ids 1-6, a ``count``, a 20-point
``scan`` with a ``baseline`` stream, a ``list_scan``, two more ``count`` and a ``list_scan``
of in-event arrays (a 20-value spectrum, a 4x8 frame); and two older runs built with
event-model and given to TiledWriter directly (scan_ids 7 and 8, uids sharing the prefix
``abcdef0``): one with a configuration update (a second ``primary`` descriptor), one left
open; and a ``rel_scan`` of an external-image detector recorded as if two days earlier
(scan_id 9; its tests are in ``test_tiled_external.py``).  Everything is read through
``Broker.from_config`` and compared with what tiled's own client gives.

Tests that do not depend on which runs a server holds run on both layouts (``layout_server``:
this SQL catalog and ``tiled_mongo_server``, databroker 2's MongoAdapter); the Mongo layout's
own tests are in ``test_tiled_mongo.py``.

Writing into a tiled server is tested in ``test_tiled_writing.py`` and by the contract suite
(``test_contract.py``, kind ``tiled``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from broker_v1 import Broker
from broker_v1.errors import (
    AmbiguousUid,
    ConfigError,
    DatumNotFound,
    ReadOnlyStore,
    ResourceNotFound,
    RunNotFound,
    StoreUnavailable,
    UnsupportedQuery,
)


def _config(server: Any, **options: Any) -> dict[str, Any]:
    from tiled_server import API_KEY

    return {"store": {"backend": "tiled", "uri": server.uri, "api_key": API_KEY, **options},
            "timezone": "US/Eastern"}


def _plain(value: Any) -> Any:
    """tiled's read-only DictView/ListView metadata as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def db(tiled_server: Any) -> Iterator[Broker]:
    """A Broker over the session's tiled server."""
    db = Broker.from_config(_config(tiled_server))
    yield db
    db.store.close()


@pytest.fixture
def open_broker() -> Iterator[Callable[[dict[str, Any]], Broker]]:
    """``Broker.from_config`` whose stores are closed after the test."""
    opened: list[Broker] = []

    def open_(config: dict[str, Any]) -> Broker:
        opened.append(Broker.from_config(config))
        return opened[-1]

    yield open_
    for db in opened:
        db.store.close()


@pytest.fixture(params=["sql", "mongo"])
def layout_server(request: pytest.FixtureRequest) -> Any:
    """Each layout's session server (for tests that hold on both)."""
    return request.getfixturevalue({"sql": "tiled_server",
                                    "mongo": "tiled_mongo_server"}[request.param])


def _newest_uid(server: Any) -> str:
    """The start uid of the server's newest run (from what was written into it)."""
    if server.layout == "mongo":
        return str(max((docs[0][1] for docs in server.mongo_runs),
                       key=lambda start: start["time"])["uid"])
    return str(max(server.runs, key=lambda run: run["scan_id"] if run["scan_id"] <= 6
                   else 0)["uid"])  # scan_ids 7 and 8 are the older composed runs


@pytest.fixture(scope="module")
def catalog(tiled_server: Any) -> Iterator[Any]:
    """tiled's own client on the same catalog: the reference answers."""
    from tiled.client import from_uri
    from tiled_server import API_KEY

    client = from_uri(tiled_server.uri, api_key=API_KEY)
    yield client
    client.context.close()


@pytest.fixture(scope="module")
def runs(tiled_server: Any) -> dict[int, dict[str, Any]]:
    """What the RunEngine wrote, by scan_id."""
    return {run["scan_id"]: run for run in tiled_server.runs}


def test_server_holds_the_runengine_runs(tiled_server: Any, runs: dict[int, Any]) -> None:
    """The RunEngine recorded six runs (the scan with a baseline stream), plus two composed
    and the older image run."""
    assert sorted(runs) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert runs[2]["plan_name"] == "scan" and runs[2]["streams"] == ["baseline", "primary"]
    print(f"tiled server start {tiled_server.timings['start']:.1f} s, "
          f"fill {tiled_server.timings['fill']:.1f} s")


def test_lookups(db: Broker, runs: dict[int, Any]) -> None:
    """db[-1], db[uid], db[uid[:8]], db[scan_id] and db[-3:] find the runs tiled holds."""
    assert db[-1].start["uid"] == runs[6]["uid"]
    assert db[-6].start["uid"] == runs[1]["uid"]
    uid = runs[2]["uid"]
    assert db[uid].start["scan_id"] == 2
    assert db[uid[:8]].start["uid"] == uid
    assert db["abcdef01"].start["uid"] == runs[7]["uid"]
    with pytest.raises(RunNotFound):  # case-sensitive, as MongoDB (SQLite's LIKE is not)
        db["ABCDEF01"]
    assert db[3].start["uid"] == runs[3]["uid"]
    assert [h.start["scan_id"] for h in db[-3:]] == [6, 5, 4]
    assert [h.start["scan_id"] for h in db[-4:-2]] == [4, 3]
    assert [h.start["scan_id"] for h in db[[1, -1]]] == [1, 6]


def test_unknown_uid_is_the_not_found_error(db: Broker) -> None:
    """An unknown uid, full or partial, is RunNotFound (a KeyError and a ValueError)."""
    with pytest.raises(RunNotFound, match="No run with uid") as info:
        db["00000000-0000-4000-8000-000000000000"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(RunNotFound, match="starting 'zzzzzz'"):
        db["zzzzzz"]
    with pytest.raises(RunNotFound):
        db[99]
    with pytest.raises(IndexError):
        db[-10]


def test_search(db: Broker, runs: dict[int, Any]) -> None:
    """db(...) answers equality, $in, comparisons, dotted fields and since/until."""
    def ids(results: Any) -> list[int]:
        return [h.start["scan_id"] for h in results]

    assert ids(db(plan_name="count")) == [5, 4, 1]
    assert ids(db(plan_name={"$in": ["scan", "list_scan"]})) == [6, 3, 2]
    assert ids(db(scan_id={"$gte": 2, "$lt": 4})) == [3, 2]
    assert ids(db(**{"sample.name": "gold"})) == [2]
    assert ids(db(operator="Dmitri", plan_name="count")) == [4]
    assert ids(db(sample={"$exists": False})) == [6, 5, 3, 1]
    t2, t4 = (db[i].start["time"] for i in (2, 4))
    assert ids(db(since=t2, until=t4)) == [4, 3, 2]
    assert ids(db(since=t4)) == [6, 5, 4]
    assert db.store.count_runs({"plan_name": "count"}) == 3
    assert ids(db(plan_name="nothing-like-this")) == []
    # The SQL catalog says every string is > 1; MongoDB compares numbers with numbers only.
    assert ids(db(plan_name={"$gt": 1})) == []


def test_search_pages_grow_without_losing_or_repeating_runs(
        tiled_server: Any, open_broker: Any, runs: dict[int, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 1, then 3: every run once, newest first, as one big page gives them; skip and
    limit across page boundaries too."""
    from broker_v1.stores.tiled import _store as tiled_store

    db = open_broker(_config(tiled_server))
    whole = [h.start["uid"] for h in db()]
    monkeypatch.setattr(tiled_store, "_FIRST_PAGE", 1)
    monkeypatch.setattr(tiled_store, "_PAGE", 3)
    small = open_broker(_config(tiled_server))
    assert [h.start["uid"] for h in small()] == whole
    assert sorted(whole) == sorted(r["uid"] for r in runs.values())
    starts = list(small.store.find_run_starts({}, skip=2, limit=5))
    assert [s["uid"] for s in starts] == whole[2:7]
    checked_here = list(small.store.find_run_starts({"plan_name": {"$ne": "count"}}))
    assert [s["uid"] for s in checked_here] == [
        u for u in whole if db[u].start["plan_name"] != "count"]


def test_untranslatable_operators_are_checked_here_when_few_runs(db: Broker) -> None:
    """$ne, $regex and $or are evaluated here (with MongoDB's meaning) on a bounded set."""
    def ids(results: Any) -> list[int]:
        return [h.start["scan_id"] for h in results]

    # $ne matches runs without the field, as in MongoDB (the server's NotEq does not).
    assert ids(db(operator={"$ne": "Dmitri"})) == [6, 5, 3, 1]
    assert ids(db(plan_name={"$regex": "^list"})) == [6, 3]
    assert ids(db(**{"$or": [{"scan_id": 1}, {"scan_id": 5}]})) == [5, 1]
    assert db.store.count_runs({"operator": {"$ne": "Dmitri"}}) == 4


def test_untranslatable_query_is_refused_when_unbounded(tiled_server: Any,
                                                        open_broker: Any) -> None:
    """Beyond client_filter_limit, an untranslatable operator is UnsupportedQuery naming it
    and the server, at the db(...) call."""
    db = open_broker(_config(tiled_server, client_filter_limit=3))
    with pytest.raises(UnsupportedQuery, match=r"cannot evaluate '\$ne'.*leaves 9 runs") as info:
        db(operator={"$ne": "Dmitri"})
    assert info.value.operator == "$ne"
    assert tiled_server.uri in info.value.store
    # Narrowed by a condition the server answers, the same operator is fine again.
    assert [h.start["scan_id"] for h in db(plan_name="count",
                                           operator={"$ne": "Dmitri"})] == [5, 1]
    # A phrase is not answered by the catalog's full-text index (plain words are).
    with pytest.raises(UnsupportedQuery, match=r"cannot evaluate '\$text'.*leaves 9 runs"):
        db('"gold"')
    # A $in longer than a URL can carry is checked here, so it needs a bound too.
    many = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(2000)]
    with pytest.raises(UnsupportedQuery, match=r"cannot evaluate '\$in'.*leaves 9 runs"):
        db(uid={"$in": many})
    assert [h.start["scan_id"] for h in db(uid={"$in": many + [db[-1].start["uid"]]},
                                           plan_name="list_scan")] == [6]


def test_header(db: Broker, catalog: Any, runs: dict[int, Any]) -> None:
    """start, stop and descriptors (configuration included) are what TiledWriter stored."""
    uid = runs[2]["uid"]
    h = db[uid]
    run = catalog[uid]
    assert dict(h.start) == _plain(run.metadata["start"])
    assert dict(h.stop) == _plain(run.metadata["stop"])
    assert h.stop["exit_status"] == "success"
    names = [d["name"] for d in h.descriptors]
    assert sorted(names) == ["baseline", "primary"]
    times = [d["time"] for d in h.descriptors]
    assert times == sorted(times)
    primary = next(d for d in h.descriptors if d["name"] == "primary")
    assert _plain(primary) == _plain(run["primary"].descriptors[0])
    assert primary["run_start"] == uid
    assert primary["object_keys"] == {"det": ["det"], "motor": ["motor", "motor_setpoint"]}
    assert primary["configuration"]["det"]["data"]["det_sigma"] == 1
    assert h.fields() == {"det", "motor", "motor_setpoint", "motor1", "motor1_setpoint",
                          "motor2", "motor2_setpoint"}
    assert h.fields("primary") == {"det", "motor", "motor_setpoint"}


def test_get_table_matches_tiled_read(db: Broker, catalog: Any, runs: dict[int, Any]) -> None:
    """get_table gives, column by column, what tiled's run['primary'].read() gives."""
    for scan_id in (1, 2, 3, 6):
        uid = runs[scan_id]["uid"]
        h = db[uid]
        table = db.get_table(h, convert_times=False, localize_times=False)
        expected = catalog[uid]["primary"].read()
        assert list(table.index) == list(range(1, expected.sizes["time"] + 1))
        np.testing.assert_array_equal(table["time"].to_numpy(), expected["time"].values)
        data_vars = set(expected.data_vars)
        assert set(table.columns) - {"time"} == data_vars
        for name in data_vars:
            column = table[name].to_numpy()
            if expected[name].ndim > 1:  # in-event arrays: one array per row
                column = np.stack(column)
            np.testing.assert_array_equal(column, expected[name].values,
                                          err_msg=f"scan {scan_id}, column {name}")
    assert np.stack(db.get_table(db[6])["frame"].to_numpy()).shape == (3, 4, 8)
    assert len(db.get_table(db[2])) == 20
    baseline = db.get_table(db[2], stream_name="baseline")
    assert len(baseline) == 2 and "motor1" in baseline.columns
    assert list(db.get_table(db[2], fields=["det"]).columns) == ["time", "det"]


def test_get_events_have_stable_uids(db: Broker, runs: dict[int, Any]) -> None:
    """Events carry uids made from descriptor uid and seq_num, the same on every read."""
    h = db[runs[2]["uid"]]
    events = list(db.get_events(h))
    primary = next(d for d in h.descriptors if d["name"] == "primary")
    assert len(events) == 20
    assert [e["seq_num"] for e in events] == list(range(1, 21))
    assert events[0]["uid"] == f"event-{primary['uid']}-1"
    assert [e["uid"] for e in db.get_events(db[runs[2]["uid"]])] == [e["uid"] for e in events]
    assert set(events[0]["data"]) == {"det", "motor", "motor_setpoint"}
    assert set(events[0]["timestamps"]) == set(events[0]["data"])
    table = db.get_table(h)
    assert [e["data"]["det"] for e in events] == list(table["det"])


def test_streams_are_found_again_after_eviction(db: Broker, runs: dict[int, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for one stream only, the events of a stream read earlier are still found
    (through its run), never an empty answer."""
    from broker_v1.stores.tiled import _store

    monkeypatch.setattr(_store, "_STREAM_CACHE", 1)
    h = db[runs[2]["uid"]]
    primary = next(d for d in h.descriptors if d["name"] == "primary")
    db.store.get_descriptors(runs[1]["uid"])  # evicts the scan's streams
    assert sum(len(p["seq_num"]) for p in db.store.iter_event_pages(primary["uid"])) == 20
    assert db.store.get_descriptor(primary["uid"])["uid"] == primary["uid"]
    assert list(db.store.iter_event_pages("no-such-descriptor")) == []


def test_documents(db: Broker, runs: dict[int, Any]) -> None:
    """h.documents() replays start, both descriptors, 22 events in time order, then stop."""
    h = db[runs[2]["uid"]]
    docs = list(h.documents())
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("descriptor") == 2 and names.count("event") == 22
    assert names.index("event") > max(i for i, n in enumerate(names) if n == "descriptor")
    times = [doc["time"] for name, doc in docs if name == "event"]
    assert times == sorted(times)
    assert docs[-1][1] == h.stop


def test_ambiguous_uid_prefix(db: Broker, runs: dict[int, Any]) -> None:
    """A prefix two uids share is AmbiguousUid listing both; one more character decides."""
    with pytest.raises(AmbiguousUid, match="'abcdef' matches 2 runs") as info:
        db["abcdef"]
    assert sorted(info.value.matches) == [runs[7]["uid"], runs[8]["uid"]]
    assert db["abcdef02"].start["scan_id"] == 8


def test_open_run(db: Broker, runs: dict[int, Any]) -> None:
    """A run without a stop has stop {} (None from the store) and its descriptor; TiledWriter
    has not flushed its events yet (it does every 10,000 events and at stop)."""
    h = db[runs[8]["uid"]]
    assert h.stop == {}
    assert db.store.get_run_stop(runs[8]["uid"]) is None
    assert [d["name"] for d in h.descriptors] == ["primary"]
    assert len(db.get_table(h)) == 0


def test_configuration_update(db: Broker, runs: dict[int, Any]) -> None:
    """A stream with a second descriptor gives both, each with its configuration, and each
    event belongs to the descriptor in force at its time."""
    h = db[runs[7]["uid"]]
    before, after = h.descriptors
    assert (before["name"], after["name"]) == ("primary", "primary")
    assert before["configuration"]["x"]["data"] == {"x_gain": 1}
    assert after["configuration"]["x"]["data"] == {"x_gain": 2}
    events = list(db.get_events(h))
    assert [(e["descriptor"], e["seq_num"], e["data"]["gain"]) for e in events] == [
        (before["uid"], 1, 1), (before["uid"], 2, 1), (after["uid"], 3, 2), (after["uid"], 4, 2)]
    assert list(db.get_table(h)["x"]) == [0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize("scan_id", [2, 7])
def test_events_agree_with_tiled_document_export(db: Broker, catalog: Any,
                                                 runs: dict[int, Any], scan_id: int) -> None:
    """Event uids, descriptors, seq_nums, times and data are those of tiled's own export of
    the run (run.documents())."""
    uid = runs[scan_id]["uid"]

    def key(doc: Mapping[str, Any]) -> tuple[Any, ...]:
        return (doc["uid"], doc["descriptor"], doc["seq_num"], doc["time"],
                _plain(doc["data"]), _plain(doc["timestamps"]))

    expected = sorted(key(doc) for name, doc in catalog[uid].documents() if name == "event")
    got = sorted(key(doc) for name, doc in db[uid].documents() if name == "event")
    assert got == expected and len(got) == {2: 22, 7: 4}[scan_id]


def test_no_resources_or_datums(db: Broker) -> None:
    """The SQL layout keeps no resource or datum documents; the store says so."""
    with pytest.raises(ResourceNotFound, match="keep no resource documents"):
        db.store.get_resource("r1")
    with pytest.raises(DatumNotFound, match="keep no datum documents"):
        db.store.get_datum("d1")
    assert list(db.store.iter_datum_pages("r1")) == []


def test_read_only_config_refuses_inserts(tiled_server: Any, open_broker: Any,
                                         catalog: Any) -> None:
    """A store configured read_only: true refuses insert before anything is sent."""
    db = open_broker(_config(tiled_server, read_only=True))
    with pytest.raises(ReadOnlyStore, match="opened read-only"):
        db.insert("start", {"uid": "read-only-run", "time": 1.0})
    assert "read-only-run" not in catalog


def test_wrong_api_key(layout_server: Any, open_broker: Any) -> None:
    """A wrong key is StoreUnavailable naming the server and the setting, never the key."""
    db = open_broker({"store": {"backend": "tiled", "uri": layout_server.uri,
                                       "api_key": "notthekey"}})
    with pytest.raises(StoreUnavailable, match=r"refused the API key \(401\).*store.api_key") \
            as info:
        db[-1]
    assert layout_server.uri in str(info.value) and "notthekey" not in str(info.value)


def test_api_key_from_the_environment(layout_server: Any, open_broker: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key in the config, TILED_API_KEY is used; without either, a clear error."""
    from tiled_server import API_KEY

    config = {"store": {"backend": "tiled", "uri": layout_server.uri}}
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(StoreUnavailable, match="requires an API key.*TILED_API_KEY"):
        open_broker(config)[-1]
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    assert open_broker(config)[-1].start["uid"] == _newest_uid(layout_server)


def test_cli_takes_a_tiled_uri_as_name(tiled_server: Any, runs: dict[int, Any],
                                       tmp_path: Path) -> None:
    """`broker-v1 ls/show/table http://...` read the server (key from TILED_API_KEY); without
    a key the error is one line naming the server and the setting."""
    from tiled_server import API_KEY

    env = {k: v for k, v in os.environ.items() if k != "TILED_API_KEY"}
    env.update({"HOME": str(tmp_path), "BROKER_V1_CONFIG_PATH": str(tmp_path), "COLUMNS": "80"})

    def cli(*args: str, key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "broker_v1", *args], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path,
                              env={**env, "TILED_API_KEY": key} if key else env)

    listed = cli("ls", tiled_server.uri, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["scan_id"] for r in json.loads(listed.stdout)][:3] == [6, 5, 4]
    shown = cli("show", tiled_server.uri, runs[2]["uid"][:8], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["start"]["uid"] == runs[2]["uid"]
    table = cli("table", tiled_server.uri, "2")
    assert table.returncode == 0 and len(table.stdout.splitlines()) > 20, table.stderr
    refused = cli("ls", tiled_server.uri, key=None)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "TILED_API_KEY" in refused.stderr and tiled_server.uri in refused.stderr


def test_copy_to_a_portable_files_store(layout_server: Any, open_broker: Any,
                                        tmp_path: Path) -> None:
    """`broker-v1 copy http://... ./portable` copies every run; the copy reads as the server
    does (tables, descriptors, the event uids; on the Mongo layout every document, resources
    and datums included), and a second copy skips them all."""
    from tiled_server import API_KEY

    env = {**os.environ, "TILED_API_KEY": API_KEY, "HOME": str(tmp_path),
           "BROKER_V1_CONFIG_PATH": str(tmp_path)}

    def copy() -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "broker_v1", "copy", layout_server.uri,
                               str(tmp_path / "portable"), "--json", "--no-progress"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        report: dict[str, Any] = json.loads(proc.stdout)
        return report

    first = copy()
    db = open_broker(_config(layout_server))
    portable = open_broker({"store": {"backend": "files", "path": str(tmp_path / "portable")},
                            "timezone": "US/Eastern"})
    uids = [run["uid"] for run in layout_server.runs]
    for uid in uids:
        here, there = portable[uid], db[uid]
        assert here.start == there.start and here.stop == there.stop
        assert [dict(d) for d in here.descriptors] == [dict(d) for d in there.descriptors]
        for stream in there.stream_names:
            assert here.table(stream).equals(there.table(stream)), (uid, stream)
        assert ([e["uid"] for e in portable.get_events(here)]
                == [e["uid"] for e in db.get_events(there)])
        if layout_server.layout == "mongo":
            assert list(portable.get_documents(here)) == list(db.get_documents(there))
    assert first["ok"] and sorted(first["copied"]) == sorted(uids)
    second = copy()
    assert second["ok"] and second["copied"] == []
    assert sorted(second["skipped"]) == sorted(first["copied"])


# The MongoAdapter's server answers tiled's very first request (made inside Context's
# constructor) with the 404, so tiled leaves that client unclosed: collected here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_wrong_path_is_a_404_naming_the_uri(layout_server: Any, open_broker: Any) -> None:
    """A uri whose path is no node of the server is StoreUnavailable saying 404."""
    import gc

    db = open_broker(_config(layout_server) | {"store": {
        **_config(layout_server)["store"], "uri": layout_server.uri + "/no/such/node"}})
    with pytest.raises(StoreUnavailable, match=r"no node at this address \(404\)"):
        db[-1]
    gc.collect()


# tiled's Context leaves its HTTP client unclosed when its first request fails (the store
# never receives it to close); collected inside the test so the warning is attributed here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreachable_server(tiled_server: Any, open_broker: Any) -> None:
    """A server that is not there is StoreUnavailable naming it (tiled's retries off)."""
    import gc
    import socket

    import stamina

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = open_broker({"store": {"backend": "tiled",
                                       "uri": f"http://user:pw@127.0.0.1:{port}/raw",
                                       "api_key": "k"}})
    stamina.set_testing(True, attempts=1)  # tiled retries a refused connection for ~25 s
    try:
        with pytest.raises(StoreUnavailable, match=r"Could not reach the tiled server at "
                           rf"http://user:\*\*\*@127.0.0.1:{port}/raw") as info:
            db[-1]
    finally:
        stamina.set_testing(False)
    assert "pw" not in str(info.value)
    del info
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_timeout(tiled_server: Any, open_broker: Any) -> None:
    """A server slower than store.timeout is StoreUnavailable saying so (tiled's retries
    off); the option is checked when the store is built."""
    import gc

    import stamina

    db = open_broker(_config(tiled_server, timeout=1e-6))
    stamina.set_testing(True, attempts=1)
    try:
        with pytest.raises(StoreUnavailable, match=r"did not answer in time.*store.timeout"):
            db[-1]
    finally:
        stamina.set_testing(False)
    gc.collect()
    with pytest.raises(ConfigError, match="timeout must be a number of seconds > 0"):
        open_broker(_config(tiled_server, timeout=0))
    assert open_broker(_config(tiled_server, timeout=60))[-1].start["scan_id"] == 6


def test_config_and_describe_hide_the_key(layout_server: Any, open_broker: Any) -> None:
    """describe() names the server; config() reopens it without the key."""
    db = open_broker(_config(layout_server))
    assert db.store.describe() == f"tiled store {layout_server.uri}"
    assert db.store.config() == {"backend": "tiled", "uri": layout_server.uri,
                                 "read_only": False}
    from tiled_server import API_KEY

    reopened = open_broker({"store": {**db.store.config(), "api_key": API_KEY}})
    assert reopened[-1].start["uid"] == _newest_uid(layout_server)


def test_store_from_a_tiled_profile(layout_server: Any, tmp_path: Path) -> None:
    """``store: {backend: tiled, profile: NAME}`` reads the server of tiled's client profile
    NAME (its uri, found where tiled looks: ``TILED_PROFILES`` here; the key from
    ``TILED_API_KEY``, as tiled's profiles hold none); config() names the profile; an
    unknown profile is a ConfigError listing the profiles found and where."""
    from tiled_server import API_KEY

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "beamline.yml").write_text(f"beamline:\n  uri: {layout_server.uri}\n")
    script = "\n".join([
        "import json",
        "from broker_v1 import Broker",
        "from broker_v1.errors import ConfigError",
        "db = Broker.from_config({'store': {'backend': 'tiled', 'profile': 'beamline'}})",
        "out = {'newest': db[-1].start['uid'], 'config': db.store.config(),",
        "       'describe': db.store.describe()}",
        "try:",
        "    Broker.from_config({'store': {'backend': 'tiled', 'profile': 'elsewhere'}})",
        "except ConfigError as err:",
        "    out['unknown'] = str(err)",
        "db.store.close()",
        "print(json.dumps(out))",
    ])
    env = {**os.environ, "TILED_API_KEY": API_KEY, "TILED_PROFILES": str(profiles),
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["newest"] == _newest_uid(layout_server)
    assert out["config"] == {"backend": "tiled", "profile": "beamline", "read_only": False}
    assert out["describe"] == f"tiled store {layout_server.uri}"
    assert "'elsewhere'" in out["unknown"] and "beamline" in out["unknown"]
    assert str(profiles) in out["unknown"]


@pytest.mark.parametrize("store, given", [
    ({"backend": "tiled"}, "neither"),
    ({"backend": "tiled", "uri": "http://localhost:1", "profile": "beamline"}, "both"),
])
def test_one_of_uri_and_profile_is_required(store: dict[str, Any], given: str) -> None:
    """A tiled store names its server once: by uri or by profile."""
    with pytest.raises(ConfigError, match=f"store.uri .* store.profile .*gives {given}"):
        Broker.from_config({"store": store})


# ---------------------------------------------------------------------- query translation
def test_every_operator_is_translated_or_checked_here() -> None:
    """No part of a filter is dropped: each operator becomes a tiled query or a residual
    that is checked here (a tiled server ignores what it does not know)."""
    pytest.importorskip("tiled.queries", reason='the tiled extra is not installed')
    from broker_v1.stores._query import MONGO_OPERATORS
    from broker_v1.stores.tiled._queries import plan_query

    samples = {"$eq": 1, "$ne": 1, "$gt": 1, "$gte": 1, "$lt": 1, "$lte": 1, "$in": [1],
               "$nin": [1], "$exists": True, "$regex": "^a", "$size": 1, "$all": [1],
               "$elemMatch": {"$gt": 1}, "$mod": [2, 0], "$type": "int"}
    for op, value in samples.items():
        plan = plan_query({"scan_id": {op: value}})
        assert len(plan.queries) + len(plan.residual) >= 1, op
    for op in ("$or", "$nor"):
        assert plan_query({op: [{"scan_id": 1}]}).residual == [op]
    assert plan_query({"scan_id": {"$not": {"$gt": 1}}}).residual == ["$not"]
    assert set(samples) | {"$or", "$nor", "$not", "$and"} <= MONGO_OPERATORS


def test_translated_conditions_keep_mongodb_meaning() -> None:
    """What goes to the server is exactly the conditions whose meaning is MongoDB's."""
    pytest.importorskip("tiled.queries", reason='the tiled extra is not installed')
    from tiled.queries import Comparison, Eq, In, KeyPresent, Like

    from broker_v1.stores.tiled._queries import plan_query

    plan = plan_query({"$and": [{"plan_name": "scan", "sample.name": {"$in": ["a", "b"]}},
                                {"time": {"$gte": 10.0, "$lte": 20.0}},
                                {"uid": {"$regex": "^abc\\.1"}, "x": {"$exists": False}}]})
    assert plan.residual == [] and plan.recheck == ["$gte", "$lte", "$regex"]
    assert [type(q) for q in plan.queries] == [Eq, In, Comparison, Comparison, Like,
                                               KeyPresent]
    assert plan.queries[4].pattern == "abc.1%"
    # Each of these has a different meaning on the SQL catalog, so it is checked here.
    for query in ({"operator": {"$ne": "x"}}, {"operator": {"$nin": ["x"]}},
                  {"operator": {"$lt": "E"}}, {"detectors": ["det"]},
                  {"sample": {"name": "gold"}}, {"plan_name": {"$regex": "^sc"}},
                  {"plan_name": None}):
        assert plan_query(query).residual, query


# ---------------------------------------------------------------------- text_search
TEXT_SEARCHES = ["gold", "Dmitri count", "count -dmitri", "MICHAEL silicon", '"count"',
                 "-gold", "nosuchword"]


def test_text_search_matches_mongodb_s_rule_on_every_run(layout_server: Any,
                                                         open_broker: Any) -> None:
    """db(text_search=...) gives exactly the runs whose start documents MongoDB's $text rule
    (as the server-less stores evaluate it) matches, on both layouts."""
    from broker_v1.stores._query import searchable_text, text_matches

    db = open_broker(_config(layout_server))
    starts = [h.start for h in db()]
    found = 0
    for search in TEXT_SEARCHES:
        expected = [s["uid"] for s in starts if text_matches(search, searchable_text(s))]
        assert [h.start["uid"] for h in db(text_search=search)] == expected, search
        assert db.store.count_runs({"$text": {"$search": search}}) == len(expected), search
        found += len(expected)
    assert found > 4  # the searches do match runs
    assert ([h.start["uid"] for h in db(text_search="gold", operator="Dmitri")]
            == [s["uid"] for s in starts if text_matches("gold", searchable_text(s))
                and s.get("operator") == "Dmitri"])


def test_text_search_the_server_cannot_answer_is_refused(layout_server: Any,
                                                         open_broker: Any) -> None:
    """Beyond client_filter_limit, a $text the server cannot answer is UnsupportedQuery
    naming '$text' and the server, at the db(...) call: a phrase on the SQL catalog (its
    index matches tokens), any search on the MongoAdapter (no text index).  Plain words on
    the SQL catalog are answered by its full-text index (one search per word, merged here),
    then checked here: no bound, paging included."""
    db = open_broker(_config(layout_server, client_filter_limit=0))
    layout = "SQL catalog" if layout_server.layout == "sql" else "MongoAdapter"
    refused = ['"gold"'] + (["gold silicon", "gold"] if layout_server.layout == "mongo" else [])
    for search in refused:
        with pytest.raises(UnsupportedQuery,
                           match=rf"cannot evaluate '\$text'.*{layout}") as info:
            db(text_search=search)
        assert info.value.operator == "$text"
    if layout_server.layout == "mongo":
        return
    from broker_v1.stores._query import searchable_text, text_matches

    everything = open_broker(_config(layout_server))
    starts = [h.start for h in everything()]
    expected = [s["uid"] for s in starts if text_matches("Gold silicon", searchable_text(s))]
    assert len(expected) == 2
    assert [h.start["uid"] for h in db(text_search="Gold silicon")] == expected
    query = {"$text": {"$search": "gold silicon"}}
    assert [s["uid"] for s in db.store.find_run_starts(query, skip=1, limit=1)] == expected[1:]
    assert [s["uid"] for s in db.store.find_run_starts(query, sort=[("time", 1)])] == (
        expected[::-1])
    from tiled.queries import FullText

    catalog = db.store._conn.catalog()
    narrowed = catalog.search(FullText("silicon"))
    assert 0 < len(narrowed) < len(catalog)  # the server really answers FullText
    assert [h.start["sample"]["name"] for h in db(text_search="silicon -michael")] == [
        "silicon"]


def test_exact_list_equality_matches_lists_holding_the_value(tiled_server: Any,
                                                             open_broker: Any) -> None:
    """With exact_list_equality, equality with a string also finds runs whose field is a
    list holding it (two searches merged, then rechecked), as MongoDB does, with sort,
    skip and limit; a second string condition narrows; without the option only the field's
    own value matches (the documented difference)."""
    db = open_broker(_config(tiled_server, exact_list_equality=True, client_filter_limit=0))
    plain = open_broker(_config(tiled_server))
    starts = [h.start for h in plain()]

    def holds(start: dict[str, Any], key: str, value: str) -> bool:
        field = start.get(key)
        return field == value or (isinstance(field, list) and value in field)

    expected = [s["uid"] for s in starts if holds(s, "detectors", "det")]
    assert len(expected) >= 3
    assert [h.start["uid"] for h in db(detectors="det")] == expected
    assert db.store.count_runs({"detectors": "det"}) == len(expected)
    assert [s["uid"] for s in db.store.find_run_starts(
        {"detectors": "det"}, sort=[("time", 1)], skip=1, limit=2)] == expected[::-1][1:3]
    both = [s["uid"] for s in starts
            if holds(s, "detectors", "det") and holds(s, "plan_name", "scan")]
    assert [h.start["uid"] for h in db(detectors="det", plan_name="scan")] == both != []
    assert [h.start["uid"] for h in db(plan_name="scan")] == [
        s["uid"] for s in starts if s["plan_name"] == "scan"]
    assert list(plain(detectors="det")) == []  # the server's equality: the value itself
    with pytest.raises(UnsupportedQuery, match=r"'\$in'"):
        db(detectors={"$in": ["det"]})  # checked here, and client_filter_limit is 0


def test_list_equality_plan() -> None:
    """exact_list_equality's plan: the first string equality is Eq or a Like of the list's
    JSON text, later ones a Like narrowing it; values a pattern cannot hold and $in with
    strings are checked here; numbers stay Eq."""
    pytest.importorskip("tiled.queries", reason="the tiled extra is not installed")
    from tiled.queries import Eq, Like

    from broker_v1.stores.tiled._queries import plan_query

    plan = plan_query({"detectors": "det", "plan_name": {"$eq": "scan"}, "scan_id": 3,
                       "sample": "caf\u00e9", "motors": {"$in": ["m1"]}}, list_equality=True)
    assert [(type(q), q.pattern if isinstance(q, Like) else q.value)
            for q in plan.alternatives] == [(Eq, "det"), (Like, '%"det"%')]
    assert [(type(q), getattr(q, "pattern", None)) for q in plan.queries] == [
        (Like, "%scan%"), (Eq, None)]
    assert plan.residual == ["sample='caf\u00e9'", "$in"]
    assert plan.recheck == ["detectors='det'", "plan_name='scan'"]
    assert not plan_query({"detectors": "det"}).alternatives  # the default: Eq alone


def test_merged_searches_keep_the_sort_order_and_each_run_once() -> None:
    """Answers of several searches merge in the order the server sorts (descending time,
    then uid), each run once, reading each answer only as far as needed."""
    from broker_v1.stores.tiled._merge import merge_runs

    def answer(starts: list[dict[str, Any]]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
        for start in starts:
            yield start["uid"], None, start
        raise AssertionError("read past what was asked")  # pragma: no cover

    a, b, c, d = ({"uid": u, "time": t} for u, t in (("a", 3.0), ("b", 2.0), ("c", 2.0),
                                                        ("d", 1.0)))
    merged = merge_runs([answer([a, c, d]), answer([c, b])], [("time", -1), ("uid", -1)])
    assert [next(merged)[0] for _ in range(3)] == ["a", "c", "b"]
    ascending = merge_runs([iter([("d", None, d), ("b", None, b)]),
                            iter([("x", None, {"uid": "x"}), ("a", None, a)])],
                           [("time", 1), ("uid", 1)])
    assert [uid for uid, _, _ in ascending] == ["x", "d", "b", "a"]  # missing time first


def test_full_text_prefilter_sends_only_what_the_index_answers() -> None:
    """One plain word goes to the SQL catalog as that bare word (exclusions dropped, checked
    here), a form SQLite's FTS5 and PostgreSQL's to_tsquery both read, and several words as
    one such search each; a phrase, other characters or only exclusions send nothing; the
    MongoAdapter never gets $text."""
    pytest.importorskip("tiled.queries", reason="the tiled extra is not installed")
    from tiled.queries import FullText

    from broker_v1.stores.tiled._mongo_layout import plan_mongo_query
    from broker_v1.stores.tiled._queries import (
        full_text_prefilter,
        full_text_queries,
        plan_query,
    )

    sent = full_text_prefilter({"$search": "Gold  -dmitri gold"})
    assert isinstance(sent, FullText) and sent.text == "gold"
    for search in ('"a phrase" gold', "-only -exclusions", "", "-", "gold silicon", "x_1",
                   "café", "a-b"):
        assert full_text_prefilter({"$search": search}) is None, search
    plan = plan_query({"$text": {"$search": "gold"}, "plan_name": "scan"})
    assert plan.recheck == ["$text"] and not plan.residual and len(plan.queries) == 2
    # Several plain words: one FullText search each (any word matches), merged here.
    assert [q.text for q in full_text_queries({"$search": "Silicon gold -x GOLD"})] == [
        "gold", "silicon"]
    for search in ('"a phrase" gold', "gold café", " ".join(f"w{n}" for n in range(9))):
        assert full_text_queries({"$search": search}) is None, search
    plan = plan_query({"$text": {"$search": "gold silicon"}, "plan_name": "scan"})
    assert plan.recheck == ["$text"] and not plan.residual and len(plan.queries) == 1
    assert [q.text for q in plan.alternatives] == ["gold", "silicon"]
    assert plan_query({"$text": {"$search": '"gold"'}}).residual == ["$text"]
    mongo = plan_mongo_query({"$text": {"$search": "gold"}})
    assert mongo.residual == ["$text"] and mongo.queries == []


def test_event_pages_of_one_descriptor_in_order_equal_the_row_by_row_path() -> None:
    """Rows of one descriptor already in (time, seq_num) order become the page directly; the
    page equals the one the row-by-row path (several descriptors) builds, and rows out of
    order still come out ordered."""
    import random

    from broker_v1.stores.tiled._layout import event_pages

    n = 50
    columns = {"seq_num": list(range(1, n + 1)), "time": [100.0 + i // 2 for i in range(n)],
               "x": [float(i) for i in range(n)], "ts_x": [200.0 + i for i in range(n)],
               "y": [str(i) for i in range(n)]}  # no ts_y: timestamps fall back to time
    keys = ["x", "y", "absent"]
    (direct,) = event_pages(columns, "d1", [(0.0, "d1")], keys)
    (row_by_row,) = event_pages(columns, "d1", [(0.0, "d1"), (1e12, "d2")], keys)
    assert direct == row_by_row
    assert direct["uid"][0] == "event-d1-1" and direct["timestamps"]["y"] == columns["time"]
    assert set(direct["data"]) == {"x", "y"}
    order = list(range(n))
    random.Random(5).shuffle(order)
    shuffled = {k: [v[i] for i in order] for k, v in columns.items()}
    (reordered,) = event_pages(shuffled, "d1", [(0.0, "d1")], keys)
    assert reordered == direct
    assert list(event_pages({"seq_num": [], "time": []}, "d1", [(0.0, "d1")], keys)) == []
