"""broker_v1.serve in-process: tiled's own app over memory, files and mongomock stores.

Each store holds the conftest sample runs (repeated scan_ids, an open run, a shared uid
prefix, an external-image run) and is read through ``tiled.client.Context.from_app`` with
bluesky-tiled-plugins' clients, exactly as a remote client would read it, minus the socket.
Answers are compared with the store read directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tiled.server", reason='the serve extra is not installed '
                    '(pip install -e ".[test,serve]")')
pytest.importorskip("bluesky_tiled_plugins", reason="bluesky-tiled-plugins is not installed")

import event_model  # noqa: E402
from conftest import insert_all, make_run, sample_runs  # noqa: E402
from handlers import NpySeqHandler  # noqa: E402
from tiled.client import Context, from_context  # noqa: E402
from tiled.queries import (  # noqa: E402
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    Key,
    KeyPresent,
    Like,
    NotEq,
    NotIn,
)

from broker_v1 import Broker  # noqa: E402
from broker_v1.serve import build_app  # noqa: E402
from broker_v1.stores.base import DocumentStore  # noqa: E402

# tiled's in-process client is built on starlette's TestClient, which warns about httpx.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient`")

KEY = "servetestkey"


def _store(kind: str, folder: Path) -> DocumentStore:
    from broker_v1.stores import store_from_config

    if kind == "memory":
        return store_from_config({"backend": "memory"})
    if kind == "files":
        return store_from_config({"backend": "files", "path": str(folder / "store")})
    if kind == "mongo":  # the wire-protocol test server CI starts
        base = os.environ["BROKER_V1_TEST_MONGO_URI"].rstrip("/")
        return store_from_config({"backend": "mongo",
                                  "uri": f"{base}/serve_{uuid.uuid4().hex[:10]}"})
    return store_from_config({"backend": "mongo",
                              "uri": f"mongomock://localhost/serve-{uuid.uuid4().hex[:10]}"})


#: The stores served: a MongoDB server too when the wire test server is given.
KINDS = ["memory", "files", "mongomock"] + (
    ["mongo"] if os.environ.get("BROKER_V1_TEST_MONGO_URI") else [])


@dataclass
class Served:
    """A store with the sample runs, its app and a plugins client over it."""

    store: DocumentStore
    runs: list[Any]
    app: Any
    context: Any
    client: Any

    def raw(self, path: str) -> Any:
        """A GET on the app (the client's own HTTP connection, key included)."""
        return self.context.http_client.get(path)


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The sample runs in one store kind, served in-process, per module."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    store = _store(request.param, folder)
    runs = sample_runs()
    insert_all(store, runs)
    # The image run's frames (NPY_SEQ, recorded under /tmp/data), filled through root_map.
    for i in range(3):
        np.save(folder / f"img_{i}.npy", np.full((4, 4), 10 * i, dtype="uint16"))
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler}, root_map={"/tmp/data": str(folder)})
    app = build_app(store, api_key=KEY, filler=db.reg.filler(store))
    context = Context.from_app(app, api_key=KEY)
    try:
        yield Served(store, runs, app, context, from_context(context))
    finally:
        context.close()
        store.close()
        if request.param == "mongo":
            import pymongo

            uri = store.config()["uri"]
            with pymongo.MongoClient(uri) as client:
                client.drop_database(uri.rsplit("/", 1)[1])


def _uids(node: Any) -> list[str]:
    return list(node.keys())


def test_root_is_a_catalog_of_bluesky_runs(served: Served) -> None:
    """The plugins' client sees a CatalogOfBlueskyRuns 3.0 holding every run."""
    c = served.client
    assert type(c).__name__ == "CatalogOfBlueskyRuns"
    assert [(s.name, s.version) for s in c.specs] == [("CatalogOfBlueskyRuns", "3.0")]
    assert len(c) == len(served.runs) == served.store.count_runs({})
    # Oldest first (as TiledWriter's catalog lists runs), so c[-1] is the newest.
    assert _uids(c) == [r.uid for r in served.runs]


def test_lookups_as_the_plugins_client_makes_them(served: Served) -> None:
    """c[-1], c[-N], c[uid], c[uid[:8]], c[scan_id] and c[-1:-4:-1] find the store's runs."""
    c, runs = served.client, served.runs
    assert c[-1].start["uid"] == runs[-1].uid
    assert c[-5].start["uid"] == runs[0].uid
    assert c[runs[1].uid].start["scan_id"] == 2
    assert c[runs[3].uid[:8]].start["uid"] == runs[3].uid
    assert c["abcdef01"].start["uid"] == runs[0].uid
    with pytest.raises(ValueError, match="multiple matches"):
        c["abcdef0"]  # two runs share this prefix
    assert c[2].start["uid"] == runs[2].uid  # the latest of the two runs with scan_id 2
    assert [r.start["scan_id"] for r in c[-1:-4:-1]] == [4, 3, 2]
    assert c.keys()[1:3] == [runs[1].uid, runs[2].uid]


def test_unknown_uid_is_404(served: Served) -> None:
    """A uid the store does not hold is a KeyError for the client and a 404 on the wire."""
    missing = "ffffffff-0000-4000-8000-000000000000"
    with pytest.raises(KeyError):
        served.client[missing]
    response = served.raw(f"/api/v1/metadata/{missing}")
    assert response.status_code == 404
    assert served.raw("/api/v1/metadata/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert served.raw(f"/api/v1/metadata/{served.runs[0].uid}/nostream").status_code == 404


def test_runs_carry_start_and_stop(served: Served) -> None:
    """run.start and run.stop are the store's documents; an open run's stop is None."""
    for run in served.runs:
        client_run = served.client[run.uid]
        assert type(client_run).__name__ == "BlueskyRunV3"
        assert dict(client_run.start) == served.store.get_run_start(run.uid)
        stop = client_run.stop
        assert (None if stop is None else dict(stop)) == served.store.get_run_stop(run.uid)
    assert served.client[served.runs[3].uid].stop is None
    # A search page gives each run's stream count (from the stop's num_events when it has one).
    for uid, listed in served.client.items():
        names = {d["name"] for d in served.store.get_descriptors(uid)}
        assert listed.item["attributes"]["structure"]["count"] == len(names)


def _events(store: DocumentStore, run_uid: str, stream: str) -> list[dict[str, Any]]:
    events = [e for d in store.get_descriptors(run_uid) if d["name"] == stream
              for e in store.iter_events(d["uid"])]
    return sorted(events, key=lambda e: (e["time"], e["seq_num"]))


def test_stream_read_equals_the_store_events(served: Served) -> None:
    """run[stream].read() holds every event's values and times, in (time, seq_num) order."""
    for run in served.runs:
        client_run = served.client[run.uid]
        assert sorted(client_run) == ["baseline", "primary"]
        for stream in ("primary", "baseline"):
            events = _events(served.store, run.uid, stream)
            ds = client_run[stream].read()
            np.testing.assert_array_equal(ds["time"].values, [e["time"] for e in events])
            fields = [k for k in events[0]["data"] if k != "img"]
            assert set(ds.data_vars) == set(fields) | ({"img"} if "img" in events[0]["data"]
                                                       else set())
            for field in fields:
                np.testing.assert_array_equal(ds[field].values,
                                              [e["data"][field] for e in events])
            if "img" in events[0]["data"]:  # external: filled on the server via root_map
                assert ds["img"].dims == ("time", "img_dim_1", "img_dim_2")
                np.testing.assert_array_equal(ds["img"].values, [
                    np.full((4, 4), 10 * i, dtype="uint16") for i in range(len(events))])
            table = client_run[stream].base["internal"].read()
            assert list(table["seq_num"]) == [e["seq_num"] for e in events]
            for field in fields:
                assert list(table[f"ts_{field}"]) == [e["timestamps"][field] for e in events]


def test_stream_descriptors_round_trip(served: Served) -> None:
    """The plugins rebuild each stream's descriptors from the node's metadata."""
    run = served.runs[1]
    for descriptor in served.store.get_descriptors(run.uid):
        expected = dict(descriptor)
        # The layout keeps object_keys as each data key's object_name (TiledWriter's way).
        expected["data_keys"] = {k: dict(v) for k, v in descriptor["data_keys"].items()}
        for name, keys in descriptor["object_keys"].items():
            for key in keys:
                expected["data_keys"][key]["object_name"] = name
        got = served.client[run.uid][descriptor["name"]].descriptors
        assert got == [expected]


@pytest.mark.parametrize("query, mongo", [
    (Key("plan_name") == "scan", {"plan_name": "scan"}),
    (Key("plan_name") != "scan", {"plan_name": {"$ne": "scan"}}),
    (NotEq("sample.name", "gold"), {"sample.name": {"$ne": "gold"}}),
    (Key("scan_id") > 2, {"scan_id": {"$gt": 2}}),
    (Comparison("le", "scan_id", 2), {"scan_id": {"$lte": 2}}),
    (In("operator", ["Dmitri", "Michael"]), {"operator": {"$in": ["Dmitri", "Michael"]}}),
    (NotIn("operator", ["Dmitri"]), {"operator": {"$nin": ["Dmitri"]}}),
    (Contains("detectors", "det"), {"detectors": {"$elemMatch": {"$eq": "det"}}}),
    (Eq("detectors", "det"), {"detectors": "det"}),
    (KeyPresent("sample", True), {"sample": {"$exists": True}}),
    (KeyPresent("sample", False), {"sample": {"$exists": False}}),
    (Eq("sample.name", "gold"), {"sample.name": "gold"}),
    (Like("uid", "abcdef0%"), {"uid": {"$regex": "^abcdef0"}}),
    (Like("plan_name", "c_u%"), {"plan_name": {"$regex": "^c.u.*$"}}),
])
def test_search_translates_to_the_store_query(served: Served, query: Any,
                                              mongo: dict[str, Any]) -> None:
    """Each tiled query finds exactly the runs the store's own query finds, in order."""
    expected = [s["uid"] for s in served.store.find_run_starts(mongo, sort=(("time", 1),))]
    assert expected, "the sample runs should match"
    found = served.client.search(query)
    assert _uids(found) == expected
    assert len(found) == len(expected)


def test_searches_combine_and_reach_stop_documents(served: Served) -> None:
    """Chained searches AND together; stop.<field> searches the stop documents."""
    c = served.client
    scans = c.search(Key("plan_name") == "scan").search(Key("scan_id") == 2)
    assert _uids(scans) == [served.runs[1].uid, served.runs[2].uid]
    finished = c.search(Key("stop.exit_status") == "success")
    assert _uids(finished) == [r.uid for r in served.runs if r.uid != served.runs[3].uid]
    assert len(c.search(Key("stop.exit_status") == "abort")) == 0
    # A run found inside a search must satisfy it.
    with pytest.raises(KeyError):
        scans[served.runs[0].uid]
    assert scans[served.runs[1].uid].start["scan_id"] == 2


def test_full_text_is_answered_or_refused(served: Served) -> None:
    """FullText is the store's $text where it has one, else a 400 naming it."""
    if served.store.supports_text_search:
        found = _uids(served.client.search(FullText("alignment")))
        assert found == [served.runs[2].uid]
    else:
        response = served.raw("/api/v1/search/?filter[fulltext][condition][text]=alignment")
        assert response.status_code == 400
        assert "FullText('alignment')" in response.json()["detail"]


@pytest.mark.parametrize("query, status, named", [
    ("filter[regex][condition][key]=plan_name&filter[regex][condition][pattern]=x", 400,
     "Regex on key 'plan_name'"),
    ("filter[regex][condition][key]=start.plan_name&filter[regex][condition][pattern]=(",
     400, "not a valid regular expression"),
    ("filter[bogus][condition][key]=start.plan_name", 400, "Unknown filter 'bogus'"),
    ("filter[specs][condition][include]=x", 400, "filter[specs] is malformed"),
    ("filter[notin][condition][key]=start.scan_id&filter[notin][condition][value]=5", 400,
     "filter[notin] is malformed"),
    ("filter[specs][condition][include]=%5B%22x%22%5D&filter[specs][condition][exclude]=%5B%5D",
     400, "'SpecsQuery' is not supported"),
    ("sort=stop.time", 400, "Sorting by 'stop.time' is not supported"),
    ("sort=scan_id", 400, "e.g. 'start.scan_id'"),
])
def test_bad_requests_are_400_naming_the_problem(served: Served, query: str, status: int,
                                                 named: str) -> None:
    """Untranslatable, malformed or unknown filters and sorts: a 4xx with a message."""
    response = served.raw(f"/api/v1/search/?{query}")
    assert response.status_code == status
    assert named in response.json()["detail"]


def test_sorting_by_start_fields(served: Served) -> None:
    """sort by start.<field> follows the store's sort."""
    found = served.client.sort(("start.scan_id", -1), ("start.time", 1))
    expected = [s["uid"] for s in served.store.find_run_starts(
        {}, sort=(("scan_id", -1), ("time", 1)))]
    assert _uids(found) == expected


def test_key_required_and_public_access(served: Served) -> None:
    """Without the key (or with a wrong one) a request is 401; a public app reads anonymously."""
    from starlette.testclient import TestClient

    # A bare HTTP client: tiled's Context.from_app would send the app's own key by itself.
    with TestClient(served.app) as anonymous:
        assert anonymous.get("/api/v1/metadata/").status_code == 401
        assert anonymous.get(f"/api/v1/metadata/{served.runs[0].uid}").status_code == 401
        wrong = {"Authorization": "Apikey wrongkey"}
        assert anonymous.get("/api/v1/metadata/", headers=wrong).status_code == 401
        right = {"Authorization": f"Apikey {KEY}"}
        assert anonymous.get("/api/v1/metadata/", headers=right).status_code == 200
    with TestClient(build_app(served.store, public=True)) as public:
        response = public.get(f"/api/v1/metadata/{served.runs[0].uid}")
        assert response.status_code == 200
        assert response.json()["data"]["attributes"]["metadata"]["start"]["scan_id"] == 1


def test_runs_written_meanwhile_appear(tmp_path: Path) -> None:
    """A run inserted into the store after the client connected is c[-1] on the next read."""
    store = _store("files", tmp_path)
    insert_all(store, sample_runs()[:2])
    context = Context.from_app(build_app(store, api_key=KEY), api_key=KEY)
    try:
        client = from_context(context)
        assert len(client) == 2
        new = make_run(t0=1_800_000_000.0, scan_id=9, n_events=2)
        stop = new.docs.pop()  # the run stays open until its stop is inserted below
        assert stop[0] == "stop"
        insert_all(store, [new])
        assert client[-1].start["uid"] == new.uid
        assert client[-1].stop is None
        assert list(client[-1]["primary"].read()["det"].values) == [0.0, 10.0]
        # The open run grows: the next read has the new event (no stale table).
        primary = next(d for n, d in new.docs if n == "descriptor" and d["name"] == "primary")
        store.insert("event", {"descriptor": primary["uid"], "uid": str(uuid.uuid4()),
                               "time": 1_800_000_010.0, "seq_num": 3,
                               "data": {"motor": 2.0, "motor_setpoint": 2.0, "det": 20.0},
                               "timestamps": {"motor": 1.0, "motor_setpoint": 1.0,
                                              "det": 1.0}, "filled": {}})
        assert list(client[-1]["primary"].read()["det"].values) == [0.0, 10.0, 20.0]
        store.insert(*stop)
        assert client[-1].stop["uid"] == stop[1]["uid"]
        assert list(client[-1]["primary"].read()["det"].values) == [0.0, 10.0, 20.0]
    finally:
        context.close()
        store.close()


def test_build_app_needs_a_key_or_public() -> None:
    """Neither or both of api_key and public, or a key tiled refuses: ConfigError."""
    from broker_v1.errors import ConfigError
    from broker_v1.stores.memory import MemoryStore

    with pytest.raises(ConfigError, match="either an API key or public access"):
        build_app(MemoryStore())
    with pytest.raises(ConfigError, match="either an API key or public access"):
        build_app(MemoryStore(), api_key="abc", public=True)
    with pytest.raises(ConfigError, match="letters and digits only"):
        build_app(MemoryStore(), api_key="not a key!")


def test_documents_are_the_recorded_documents(served: Served) -> None:
    """run.documents() gives back every recorded document, uids and values included."""
    for run in served.runs:
        got = list(served.client[run.uid].documents())
        names = [name for name, _ in got]
        assert names[0] == "start" and (names[-1] == "stop") == (run.uid != served.runs[3].uid)
        recorded: dict[str, dict[str, dict[str, Any]]] = {}
        for name, doc in run.docs:
            key = doc.get("datum_id") or doc["uid"]
            recorded.setdefault(name, {})[key] = doc
        served_docs: dict[str, dict[str, dict[str, Any]]] = {}
        for name, doc in got:
            doc = dict(doc)
            if name == "datum_page":  # the client reads datums in pages
                for i, datum_id in enumerate(doc["datum_id"]):
                    served_docs.setdefault("datum", {})[datum_id] = {
                        "datum_id": datum_id, "resource": doc["resource"],
                        "datum_kwargs": {k: v[i] for k, v in doc["datum_kwargs"].items()}}
                continue
            served_docs.setdefault(name, {})[doc.get("datum_id") or doc["uid"]] = doc
        assert set(served_docs) == set(recorded)
        for name, docs in recorded.items():
            assert set(served_docs[name]) == set(docs), name
            for key, doc in docs.items():
                expected = {k: v for k, v in doc.items() if k != "filled"}
                got_doc = {k: v for k, v in served_docs[name][key].items() if k != "filled"}
                assert _plain(got_doc) == expected, (name, key)


def _plain(value: Any) -> Any:
    """The client's read-only document views as plain dicts and lists."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("route, path, fmt", [
    ("container", "{run}", "application/json"),
    ("container", "{run}", "application/x-hdf5"),
    ("container", "{run}/primary", "application/json"),
    ("container", "{run}/primary", "application/json-seq"),
    ("table", "{run}/primary/internal", "application/x-hdf5"),
    ("table", "{run}/primary/internal", "text/csv"),
    ("container", "", "application/json"),
])
def test_exports_answer_content_or_4xx(served: Served, route: str, path: str,
                                       fmt: str) -> None:
    """Whole-node exports in tiled's formats give content or a 4xx, never a 500."""
    path = path.format(run=served.runs[1].uid)
    response = served.raw(f"/api/v1/{route}/full/{path}?format={fmt}")
    assert response.status_code in (200, 400, 406), response.text
    if path == "":
        assert response.status_code == 400
        assert "cannot be exported whole" in response.json()["detail"]
    if route == "table" and fmt == "text/csv":
        assert response.status_code == 200
        assert response.text.splitlines()[0].startswith("seq_num,time,motor")
    if route == "table" and fmt == "application/x-hdf5":
        import io

        import h5py

        assert response.status_code == 200
        with h5py.File(io.BytesIO(response.content), "r") as file:
            assert list(file["det"][:]) == [0.0, 10.0, 20.0]
            assert list(file["seq_num"][:]) == [1, 2, 3]


def test_external_frames_are_read_by_block(served: Served) -> None:
    """An external field's node slices and blocks load only the frames asked for."""
    img = served.client[served.runs[2].uid]["primary"]["img"]
    assert img.shape == (3, 4, 4) and img.dims == ("time", "img_dim_1", "img_dim_2")
    assert img[1:3, 0, 0].tolist() == [10, 20]
    block = served.raw(f"/api/v1/array/block/{served.runs[2].uid}/primary/img?block=0,0,0")
    assert block.status_code == 200


def test_external_fields_need_a_filler(tmp_path: Path) -> None:
    """Without a filler (no handlers), external fields are left out; the rest is served."""
    store = _store("memory", tmp_path)
    runs = sample_runs()
    insert_all(store, runs)
    context = Context.from_app(build_app(store, api_key=KEY), api_key=KEY)
    try:
        primary = from_context(context)[runs[2].uid]["primary"]
        assert "img" not in primary
        assert list(primary.read()["det"].values) == [0.0, 10.0, 20.0]
    finally:
        context.close()


def test_unreadable_external_data_is_left_out(tmp_path: Path) -> None:
    """A handler the server lacks: the field is left out and the rest of the stream reads;
    a frame that fails after listing is a 500 naming the handler's problem."""
    store = _store("memory", tmp_path)
    runs = sample_runs()
    insert_all(store, runs)
    app = build_app(store, api_key=KEY, filler=Broker(store).reg.filler(store))
    context = Context.from_app(app, api_key=KEY)
    try:
        primary = from_context(context)[runs[2].uid]["primary"]
        assert "img" not in primary
        assert list(primary.read()["det"].values) == [0.0, 10.0, 20.0]
        response = context.http_client.get(f"/api/v1/array/full/{runs[2].uid}/primary/img")
        assert response.status_code == 404
    finally:
        context.close()
    # Frames present for the first event only: listed, and reading the rest fails loudly.
    np.save(tmp_path / "img_0.npy", np.zeros((4, 4)))
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler}, root_map={"/tmp/data": str(tmp_path)})
    context = Context.from_app(build_app(store, api_key=KEY, filler=db.reg.filler(store)),
                               api_key=KEY)
    try:
        response = context.http_client.get(f"/api/v1/array/full/{runs[2].uid}/primary/img")
        assert response.status_code == 500
        assert "NpySeqHandler" in response.json()["detail"]
    finally:
        context.close()


def test_fields_named_time_or_seq_num_are_served_renamed(tmp_path: Path) -> None:
    """'time' and 'seq_num' fields are served as 'time_'/'seq_num_' (TiledWriter's names),
    with one more '_' while the name is taken ('time_' recorded too: 'time' -> 'time__');
    the documents keep the recorded names."""
    store = _store("memory", tmp_path)
    bundle = event_model.compose_run(time=1_700_000_000.0, metadata={"plan_name": "odd"})
    number = {"source": "SIM:x", "dtype": "number", "shape": []}
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"time": number, "seq_num": number, "time_": number,
                                   "det": number},
        object_keys={"clock": ["time", "time_"], "det": ["det", "seq_num"]})
    store.insert("start", bundle.start_doc)
    store.insert("descriptor", desc.descriptor_doc)
    for i in range(3):
        data = {"time": 100.0 + i, "seq_num": 7.0 * i, "time_": -1.0 * i, "det": 0.5 * i}
        store.insert("event", desc.compose_event(
            data=data, timestamps={k: 1_700_000_001.0 + i for k in data},
            time=1_700_000_001.0 + i))
    store.insert("stop", bundle.compose_stop(time=1_700_000_010.0))
    context = Context.from_app(build_app(store, api_key=KEY), api_key=KEY)
    try:
        run = from_context(context)[-1]
        keys = run["primary"].metadata["data_keys"]
        assert list(keys) == ["time__", "seq_num_", "time_", "det"]
        assert keys["time__"]["object_name"] == "clock"
        assert keys["seq_num_"]["object_name"] == "det"
        table = run["primary"].base["internal"].read()
        assert table["time__"].tolist() == [100.0, 101.0, 102.0]
        assert table["seq_num_"].tolist() == [0.0, 7.0, 14.0]
        assert table["time_"].tolist() == [0.0, -1.0, -2.0]
        assert table["seq_num"].tolist() == [1, 2, 3]  # the table's own columns unchanged
        assert table["time"].tolist() == [1_700_000_001.0, 1_700_000_002.0, 1_700_000_003.0]
        assert table["ts_time__"].tolist() == table["time"].tolist()
        assert run["primary"].read()["seq_num_"].values.tolist() == [0.0, 7.0, 14.0]
        events = [doc for name, doc in run.documents() if name == "event"]
        assert [e["data"]["time"] for e in events] == [100.0, 101.0, 102.0]
        assert set(events[0]["data"]) == {"time", "seq_num", "time_", "det"}
    finally:
        context.close()
