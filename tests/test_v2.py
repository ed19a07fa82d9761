"""The v2 migration shim over every store: catalogs, runs, streams, documents, queries."""

from __future__ import annotations

import copy
import json
import pickle

import event_model
import numpy as np
import pytest
import xarray
from handlers import Hdf5FrameHandler

import broker_v1
from broker_v1 import AmbiguousUid, Broker, InvalidQuery, RunIndexError, RunNotFound
from broker_v1.queries import TextQuery, TimeRange
from broker_v1.v2 import BlueskyRun, Catalog, NotMutable, Start, Stop


def walkthrough_run(db, tmp_path, *, scan_id=1, proposal_id=12345, n=3, t0=None):
    """A scan of a motor with a 10x10 image detector (HDF5 frames) and a baseline stream."""
    import h5py

    path = tmp_path / f"img_{scan_id}.h5"
    frames = np.arange(n * 100, dtype="float64").reshape(n, 10, 10) + scan_id
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames)
    bundle = event_model.compose_run(time=t0, metadata={
        "plan_name": "scan", "scan_id": scan_id, "proposal_id": proposal_id,
        "num_points": n, "detectors": ["img"], "motors": ["motor"],
        "purpose": "walkthrough example"})
    db.insert("start", bundle.start_doc)
    base = bundle.compose_descriptor(name="baseline", data_keys={
        "temp": {"source": "T", "dtype": "number", "shape": []}}, object_keys={"temp": ["temp"]})
    db.insert("descriptor", base.descriptor_doc)
    db.insert("event", base.compose_event(data={"temp": 20.0}, timestamps={"temp": 0.0}))
    primary = bundle.compose_descriptor(name="primary", data_keys={
        "motor": {"source": "m", "dtype": "number", "shape": [], "units": "mm"},
        "motor_setpoint": {"source": "m_sp", "dtype": "number", "shape": []},
        "img": {"source": "cam", "dtype": "array", "shape": [10, 10], "external": "FILESTORE:"},
    }, object_keys={"motor": ["motor", "motor_setpoint"], "det": ["img"]},
        configuration={"det": {"data": {"exposure": 0.5}, "timestamps": {"exposure": 0.0},
                               "data_keys": {"exposure": {"source": "e", "dtype": "number",
                                                          "shape": []}}}})
    db.insert("descriptor", primary.descriptor_doc)
    resource = bundle.compose_resource(spec="AD_HDF5_TEST", root=str(tmp_path),
                                       resource_path=path.name, resource_kwargs={})
    db.insert("resource", resource.resource_doc)
    for i in range(n):
        datum = resource.compose_datum(datum_kwargs={"point_number": i})
        db.insert("datum", datum)
        db.insert("event", primary.compose_event(
            data={"motor": float(i), "motor_setpoint": float(i), "img": datum["datum_id"]},
            timestamps={"motor": 0.0, "motor_setpoint": 0.0, "img": 0.0},
            filled={"img": False}))
    db.insert("stop", bundle.compose_stop())
    return bundle.start_doc["uid"], frames


@pytest.fixture
def v2db(store, tmp_path):
    db = Broker(store, handlers={"AD_HDF5_TEST": Hdf5FrameHandler}, timezone="US/Eastern")
    uids = [walkthrough_run(db, tmp_path, scan_id=i, proposal_id=12345 if i < 3 else 999,
                            t0=1_600_000_000.0 + i * 100)[0] for i in range(1, 5)]
    return db, uids


def test_v1_v2_round_trip(v2db):
    """db.v2 is a catalog over the same runs and its .v1 is the Broker."""
    db, uids = v2db
    cat = db.v2
    assert isinstance(cat, Catalog) and cat.v1 is db and db.v2 is cat and cat.v2 is cat
    assert len(cat) == 4 and list(cat) == uids[::-1]
    assert [uid for uid, run in cat.items()] == uids[::-1]
    assert uids[0] in cat and "nope" not in cat
    assert db[-1].uid == cat[-1].uid


def test_catalog_lookups(v2db):
    """cat[uid], cat[prefix], cat[scan_id], cat[-1] and digit strings find runs."""
    db, uids = v2db
    cat = db.v2
    assert cat[uids[0]].uid == uids[0]
    # Digit strings are scan_ids in the v2 API (as in databroker 1.2), so a random uid whose
    # first 8 characters are digits is looked up by 9 (the '-' makes it a prefix).
    prefix = uids[1][:8] if not uids[1][:8].isdigit() else uids[1][:9]
    assert cat[prefix].uid == uids[1]
    assert cat[2].uid == uids[1] and cat["2"].uid == uids[1]
    assert cat[-1].uid == uids[3] and cat["-1"].uid == uids[3]
    with pytest.raises(RunIndexError):
        cat[-5]
    with pytest.raises(KeyError):
        cat["zzzzzz"]
    with pytest.raises(RunNotFound):
        cat[99]
    assert cat()[uids[0]].uid == uids[0] and cat.get()[-1].uid == uids[3]


def test_search_chains_and_query_objects(v2db):
    """search() ANDs queries; TimeRange (until exclusive) and dicts combine."""
    db, uids = v2db
    results = db.v2.search({"proposal_id": 12345})
    assert list(results) == uids[:2][::-1]
    narrowed = results.search(TimeRange(since=1_600_000_150.0, until=1_600_000_300.0))
    assert list(narrowed) == [uids[1]]
    assert narrowed.query == {"$and": [{"proposal_id": 12345},
                                       {"time": {"$gte": 1_600_000_150.0, "$lt": 1_600_000_300.0}}]}
    assert list(db.v2.search({"num_points": {"$gt": 50}})) == []
    assert narrowed[-1].uid == uids[1]
    with pytest.raises(InvalidQuery):
        db.v2.search("proposal_id")
    if db.store.supports_text_search:
        assert len(db.v2.search(TextQuery("walkthrough"))) == 4


def test_time_range_query_object():
    """TimeRange behaves as a read-only mapping with pinned values, replace and pickling."""
    q = TimeRange(since="2020", timezone="US/Eastern")
    assert dict(q) == {"time": {"$gte": 1577854800.0}}
    assert q == {"time": {"$gte": 1577854800.0}}
    assert dict(TimeRange(since="2020-01-01 9:52", timezone="Europe/Amsterdam")) == {
        "time": {"$gte": 1577868720.0}}
    assert repr(q) == "TimeRange(since='2020', timezone='US/Eastern')"
    later = q.replace(since="2021")
    assert later.kwargs["since"] == "2021" and q.kwargs["since"] == "2020"
    assert pickle.loads(pickle.dumps(q)) == q
    assert dict(TimeRange()) == {}
    with pytest.raises(InvalidQuery, match="after until"):
        TimeRange(since="2021", until="2020")
    assert dict(TextQuery("a b")) == {"$text": {"$search": "a b"}}


def test_run_metadata_streams_and_repr(v2db):
    """A run has start/stop metadata, streams as items and attributes, and a compact repr."""
    db, uids = v2db
    run = db.v2[uids[0]]
    assert isinstance(run, BlueskyRun)
    assert isinstance(run.metadata["start"], Start)
    assert isinstance(run.metadata["stop"], Stop)
    assert run.metadata["start"]["scan_id"] == 1
    assert sorted(run) == ["baseline", "primary"]
    assert run.primary is run["primary"]
    assert "primary" in dir(run)
    assert repr(run) == f"<BlueskyRun uid={uids[0]!r}>"
    assert run() is run and run.get() is run
    with pytest.raises(AttributeError, match="streams: baseline, primary"):
        _ = run.nothing
    with pytest.raises(NotImplementedError):
        run.read()
    assert repr(run.primary) == f"<BlueskyEventStream 'primary' from Run {uids[0][:8]}...>"


def test_stream_read_shape(v2db):
    """read(): one variable per field, time coordinate in epoch seconds, dim_N names, filled."""
    db, uids = v2db
    run = db.v2[uids[0]]
    ds = run.primary.read()
    assert isinstance(ds, xarray.Dataset)
    assert list(ds.data_vars) == ["motor", "motor_setpoint", "img"]
    assert ds["motor"].dims == ("time",)
    assert ds["img"].dims == ("time", "dim_0", "dim_1")
    assert ds["img"].shape == (3, 10, 10)
    assert list(ds.coords) == ["time"] and ds["time"].dtype == np.float64
    assert ds["motor"].attrs["object"] == "motor" and ds["img"].attrs["object"] == "det"
    np.testing.assert_array_equal(ds["img"].values[2], np.arange(200, 300).reshape(10, 10) + 1)
    meta = run.primary.metadata
    assert meta["dims"] == {"time": 3, "dim_0": 10, "dim_1": 10}
    assert meta["data_vars"]["img"] == ["time", "dim_0", "dim_1"]
    assert meta["coords"] == ("time",)
    assert [d["name"] for d in meta["descriptors"]] == ["primary"]
    assert run.baseline.read()["temp"].values.tolist() == [20.0]
    assert run.primary.config["det"].read()["exposure"].values.tolist() == [0.5] * 3
    only = run.primary(include=["motor"]).read()
    assert list(only.data_vars) == ["motor"]
    assert "img" not in run.primary(exclude=["img"]).read()
    with pytest.raises(ValueError):
        run.primary(include=["a"], exclude=["b"])


def test_to_dask_is_lazy(v2db):
    """to_dask() reads no external data until computed, then matches read()."""
    db, uids = v2db
    run = db.v2[uids[0]]
    before = Hdf5FrameHandler.calls
    lazy = run.primary.to_dask()
    assert Hdf5FrameHandler.calls == before
    frame = lazy["img"][1].compute()
    assert Hdf5FrameHandler.calls == before + 1
    np.testing.assert_array_equal(frame.values, run.primary.read()["img"].values[1])
    assert lazy["img"].shape == (3, 10, 10)


def test_documents_replay(v2db):
    """documents(fill=...) replays immutable documents; fill is required and validated."""
    db, uids = v2db
    run = db.v2[uids[0]]
    docs = list(run.documents(fill="no"))
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert "event" not in names and names.count("event_page") == 4
    assert names.index("resource") < names.index("datum_page")
    page = next(d for n, d in docs if n == "event_page" and "img" in d["data"])
    assert isinstance(page["data"]["img"][0], str)
    filled = [d for n, d in run.documents(fill="yes") if n == "event_page" and "img" in d["data"]]
    assert filled[0]["data"]["img"][0].shape == (10, 10)
    with pytest.raises(ValueError, match="fill must be one of"):
        list(run.documents(fill="maybe"))
    with pytest.raises(TypeError):
        run.documents("yes")
    with pytest.warns(UserWarning, match="canonical is deprecated"):
        assert [n for n, _ in run.canonical(fill="no")] == names
    delayed = [d for n, d in run.documents(fill="delayed")
               if n == "event_page" and "img" in d["data"]]
    assert delayed[0]["data"]["img"][0].compute().shape == (10, 10)


def test_document_classes_are_immutable_and_round_trip():
    """Start/Stop/... refuse mutation, copy, pickle and JSON round trip."""
    doc = Start({"uid": "u", "time": 1.0, "nested": {"a": [1]}})
    for mutate in (lambda d: d.__setitem__("x", 1), lambda d: d.pop("uid"),
                   lambda d: d.update(x=1), lambda d: d.clear(), lambda d: d.setdefault("x"),
                   lambda d: d.__delitem__("uid"), lambda d: d.popitem()):
        with pytest.raises(NotMutable):
            mutate(doc)
    plain = doc.to_dict()
    plain["nested"]["a"].append(2)
    assert doc["nested"]["a"] == [1]
    deep = copy.deepcopy(doc)
    assert deep == doc and type(deep) is Start
    assert pickle.loads(pickle.dumps(doc)) == doc
    assert json.loads(json.dumps(doc)) == dict(doc)
    assert eval(repr(doc), {"Start": Start}) == doc


def test_configured_catalog_discovery(tmp_path, monkeypatch):
    """broker_v1.catalog lists configs; nested intake entries are reachable four ways."""
    import yaml

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "solo.yml").write_text("store: {backend: memory}\n")
    (folder / "csx.yml").write_text(yaml.safe_dump({"sources": {
        "raw": {"driver": "bluesky-jsonl-catalog",
                "args": {"paths": [str(tmp_path / "raw/*.jsonl")]}},
        "processed": {"driver": "bluesky-jsonl-catalog",
                      "args": {"paths": [str(tmp_path / "proc/*.jsonl")]}}}}))
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    catalog = broker_v1.catalog
    assert {"solo", "csx"} <= set(catalog)
    assert "csx" in dir(catalog) and "solo" in catalog._ipython_key_completions_()
    assert isinstance(catalog["solo"], Catalog)
    assert sorted(catalog["csx"]) == ["processed", "raw"]
    pytest.importorskip("broker_v1.stores.files", reason="the files store opens jsonl entries")
    for reach in (lambda: catalog["csx"]["raw"], lambda: catalog["csx", "raw"],
                  lambda: catalog["csx.raw"], lambda: catalog.csx.raw):
        assert isinstance(reach(), Catalog)
    with pytest.raises(KeyError, match="available"):
        catalog["nope"]
    with pytest.raises(AttributeError):
        _ = catalog.nope


def test_ambiguous_prefix_in_catalog(store):
    """An ambiguous uid prefix in a catalog names the candidates."""
    db = Broker(store)
    for i in range(3):
        bundle = event_model.compose_run(uid=f"aaaa{i}000-0000-4000-8000-000000000000")
        db.insert("start", bundle.start_doc)
    with pytest.raises(AmbiguousUid, match="matches 3 runs"):
        db.v2["aaaa"]


def test_api_version_2_returns_the_catalog():
    """api_version: 2 in a config makes from_config return the v2 catalog."""
    cat = Broker.from_config({"store": {"backend": "memory"}, "api_version": 2})
    assert isinstance(cat, Catalog) and isinstance(cat.v1, Broker)
