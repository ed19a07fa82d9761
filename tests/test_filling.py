"""External data: handlers, root_map and filling, over every store."""

from __future__ import annotations

import gc
import os
import tracemalloc

import event_model
import numpy as np
import pytest
import realdata
from handlers import ExplodingHandler, Hdf5FrameHandler, NewtonHandler, NpySeqHandler

from broker_v1 import Broker, ExternalDataError, MissingHandler
from broker_v1.utils import DuplicateHandler


def insert_docs(db, documents):
    for name, doc in documents:
        db.insert(name, doc)


def test_npy_seq_real_data_with_root_map(store):
    """The databroker-pack NPY_SEQ run fills from its shipped .npy files through root_map."""
    run = realdata.get_run("pack-jsonl/1069c439")
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler}, root_map=run.root_map)
    insert_docs(db, run.documents)
    h = db[run.uid]
    unfilled = h.table()
    assert all(isinstance(v, str) for v in unfilled["img"])
    table = h.table(fill=True)
    assert len(table) == 3
    for frame in table["img"]:
        assert frame.shape == (10, 10) and np.all(frame == 1.0)
    frames = list(h.data("img"))
    assert len(frames) == 3 and frames[0].shape == (10, 10)


def test_computed_frames_newton(store):
    """A handler with no file computes frames; fill=False keeps datum ids."""
    run = [r for r in realdata.runs_by_set()["tutorials"]
           if any(n == "resource" for n, _ in r.documents)][0]
    db = Broker(store, handlers={"newton": NewtonHandler})
    insert_docs(db, run.documents)
    h = db[run.uid]
    events = list(h.events(fill=True))
    resource = next(d for n, d in run.documents if n == "resource")
    datum_pages = [d for n, d in run.documents if n == "datum_page"]
    gaps = [g for p in datum_pages for g in p["datum_kwargs"]["gap"]]
    assert len(events) == 25
    for event, gap in zip(events, gaps):
        expected = NewtonHandler("", **resource["resource_kwargs"])(gap=gap)
        np.testing.assert_allclose(event["data"]["ns_image"], expected)
        assert event["filled"]["ns_image"].startswith(resource["uid"])
    assert isinstance(next(iter(h.events()))["data"]["ns_image"], str)


def _hdf5_run(tmp_path, n=6, shape=(4, 4)):
    import h5py

    path = tmp_path / "frames.h5"
    frames = np.arange(n * shape[0] * shape[1], dtype="uint16").reshape(n, *shape)
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=frames)
    bundle = event_model.compose_run(metadata={"plan_name": "count", "scan_id": 7})
    docs = [("start", bundle.start_doc)]
    resource = bundle.compose_resource(spec="AD_HDF5_TEST", root=str(tmp_path),
                                       resource_path="frames.h5",
                                       resource_kwargs={"frame_per_point": 1})
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "img": {"source": "cam", "dtype": "array", "shape": list(shape), "external": "FILESTORE:"},
        "mask": {"source": "cam2", "dtype": "array", "shape": list(shape),
                 "external": "FILESTORE:"},
        "det": {"source": "det", "dtype": "number", "shape": []}})
    docs += [("descriptor", desc.descriptor_doc), ("resource", resource.resource_doc)]
    for i in range(n):
        d1 = resource.compose_datum(datum_kwargs={"point_number": i})
        d2 = resource.compose_datum(datum_kwargs={"point_number": n - 1 - i})
        docs += [("datum", d1), ("datum", d2)]
        docs.append(("event", desc.compose_event(
            data={"img": d1["datum_id"], "mask": d2["datum_id"], "det": float(i)},
            timestamps={"img": 0.0, "mask": 0.0, "det": 0.0},
            filled={"img": False, "mask": False})))
    docs.append(("stop", bundle.compose_stop()))
    return docs, frames


def test_hdf5_frames_and_partial_fill(store, tmp_path):
    """HDF5 frames fill through a handler; fill=['img'] fills only that field."""
    docs, frames = _hdf5_run(tmp_path)
    db = Broker(store, handlers={"AD_HDF5_TEST": Hdf5FrameHandler})
    insert_docs(db, docs)
    h = db[-1]
    table = h.table(fill=["img"])
    np.testing.assert_array_equal(np.stack(table["img"]), frames)
    assert all(isinstance(v, str) for v in table["mask"])
    full = h.table(fill=True)
    np.testing.assert_array_equal(np.stack(full["mask"]), frames[::-1])
    events = list(h.events(fill=["mask"]))
    assert isinstance(events[0]["data"]["img"], str)
    np.testing.assert_array_equal(events[0]["data"]["mask"], frames[-1])


def test_missing_handler_error_and_unfilled_reads(store, tmp_path):
    """Without a handler, fill raises MissingHandler naming spec and resource; fill=False works."""
    docs, _ = _hdf5_run(tmp_path)
    db = Broker(store, auto_register=False)
    insert_docs(db, docs)
    h = db[-1]
    assert len(h.table()) == 6
    resource_uid = next(d for n, d in docs if n == "resource")["uid"]
    with pytest.raises(MissingHandler, match=rf"spec 'AD_HDF5_TEST' \(resource {resource_uid}\)"
                       r".*Registered specs: none") as info:
        h.table(fill=True)
    assert isinstance(info.value, KeyError)
    assert info.value.spec == "AD_HDF5_TEST"


def test_missing_file_error_names_roots_and_path(store, tmp_path):
    """A missing file names the spec, resource, original and mapped roots and the path."""
    run = realdata.get_run("pack-jsonl/1069c439")
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler},
                root_map={"/tmp/tmpp5_kcw9q": str(tmp_path / "moved")})
    insert_docs(db, run.documents)
    with pytest.raises(ExternalDataError) as info:
        db[run.uid].table(fill=True)
    message = str(info.value)
    assert "spec 'NPY_SEQ'" in message and "/tmp/tmpp5_kcw9q" in message
    assert str(tmp_path / "moved") in message
    assert os.path.join(str(tmp_path / "moved"), "f48217") in message
    assert info.value.mapped_root == str(tmp_path / "moved")
    assert isinstance(info.value, OSError)


def test_failing_handler_is_wrapped_with_cause(store, tmp_path):
    """A handler that raises is wrapped with the same context and the cause kept."""
    docs, _ = _hdf5_run(tmp_path)
    db = Broker(store, handlers={"AD_HDF5_TEST": ExplodingHandler})
    insert_docs(db, docs)
    with pytest.raises(ExternalDataError, match="firmware says no") as info:
        list(db[-1].events(fill=True))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_registry_spelling(store, tmp_path):
    """register/deregister/overwrite follow v1; a per-call registry layers on top."""
    db = Broker(store, auto_register=False)
    db.reg.register_handler("AD_HDF5_TEST", Hdf5FrameHandler)
    db.reg.register_handler("AD_HDF5_TEST", Hdf5FrameHandler)  # same class: no-op
    with pytest.raises(DuplicateHandler):
        db.reg.register_handler("AD_HDF5_TEST", NpySeqHandler)
    assert db.reg.handler_reg["AD_HDF5_TEST"] is Hdf5FrameHandler
    with pytest.raises(TypeError):
        db.reg.handler_reg["X"] = 1
    db.reg.deregister_handler("AD_HDF5_TEST")
    db.reg.deregister_handler("never-registered")
    assert "AD_HDF5_TEST" not in db.reg.handler_reg
    docs, frames = _hdf5_run(tmp_path)
    insert_docs(db, docs)
    table = db.get_table(db[-1], fill=True,
                         handler_registry={"AD_HDF5_TEST": Hdf5FrameHandler})
    np.testing.assert_array_equal(table["img"].iloc[2], frames[2])
    with pytest.raises(MissingHandler):
        db.get_table(db[-1], fill=True)  # the per-call registry did not stick


def test_get_images_reads_only_indexed_frames(store, tmp_path):
    """get_images is lazy: indexing one frame calls the handler once."""
    docs, frames = _hdf5_run(tmp_path)
    db = Broker(store, handlers={"AD_HDF5_TEST": Hdf5FrameHandler})
    insert_docs(db, docs)
    with pytest.warns(UserWarning, match="deprecated"):
        images = db.get_images(db[-1], "img")
    before = Hdf5FrameHandler.calls
    assert len(images) == 6
    assert Hdf5FrameHandler.calls == before
    np.testing.assert_array_equal(images[4], frames[4])
    assert Hdf5FrameHandler.calls == before + 1
    assert images.shape == (6, 4, 4)
    np.testing.assert_array_equal(images[1:3], frames[1:3])


def test_fill_events_and_fill_event(store, tmp_path):
    """fill_events (copies by default) and the deprecated fill_event fill given events."""
    docs, frames = _hdf5_run(tmp_path)
    db = Broker(store, handlers={"AD_HDF5_TEST": Hdf5FrameHandler},
                prepare_hook=lambda name, doc: doc)
    insert_docs(db, docs)
    h = db[-1]
    events = list(h.events())
    filled = list(db.fill_events(events, h.descriptors, fields=["img"]))
    np.testing.assert_array_equal(filled[0]["data"]["img"], frames[0])
    assert isinstance(events[0]["data"]["img"], str)  # not in place
    assert isinstance(filled[0]["data"]["mask"], str)
    with pytest.warns(UserWarning, match="fill_event is deprecated"):
        one = db.fill_event(events[1])
    np.testing.assert_array_equal(one["data"]["img"], frames[1])
    assert events[1]["data"]["img"] is one["data"]["img"]  # inplace=True by default


def test_config_handlers_and_relative_root_map(tmp_path, monkeypatch):
    """Config handlers import by dotted path; a relative root_map is read from the file's folder."""
    run = realdata.get_run("pack-jsonl/1069c439")
    target = tmp_path / "cfg"
    target.mkdir()
    os.symlink(run.external_root, target / "frames")
    (target / "beamline.yml").write_text(
        "store: {backend: memory}\n"
        "handlers: {NPY_SEQ: {module: handlers, class: NpySeqHandler}}\n"
        "root_map: {/tmp/tmpp5_kcw9q: frames}\n")
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(target))
    db = Broker.named("beamline")
    assert db.reg.root_map == {"/tmp/tmpp5_kcw9q": str(target / "frames")}
    insert_docs(db, run.documents)
    assert np.all(db[-1].table(fill=True)["img"].iloc[0] == 1.0)


def test_filling_many_frames_keeps_memory_bounded(tmp_path):
    """Looping over 500 filled frames keeps memory bounded (frames are not retained)."""
    import h5py

    n, shape = 500, (64, 64)
    frames = np.ones((n, *shape), dtype="float64")
    bundle = event_model.compose_run()
    db = Broker(__import__("broker_v1").temp().store,
                handlers={"AD_HDF5_TEST": Hdf5FrameHandler})
    paths = []
    for r in range(5):  # five resources/files, more than one handler
        path = tmp_path / f"f{r}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/data/data", data=frames[: n // 5])
        paths.append(path)
    db.insert("start", bundle.start_doc)
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "img": {"source": "c", "dtype": "array", "shape": list(shape), "external": "X:"}})
    db.insert("descriptor", desc.descriptor_doc)
    for path in paths:
        res = bundle.compose_resource(spec="AD_HDF5_TEST", root=str(tmp_path),
                                      resource_path=path.name, resource_kwargs={})
        db.insert("resource", res.resource_doc)
        for i in range(n // 5):
            datum = res.compose_datum(datum_kwargs={"point_number": i})
            db.insert("datum", datum)
            db.insert("event", desc.compose_event(data={"img": datum["datum_id"]},
                                                  timestamps={"img": 0.0}))
    h = db[-1]
    frame_bytes = frames[0].nbytes  # 32 KiB
    gc.collect()
    tracemalloc.start()
    count = 0
    for event in h.events(fill=True):
        count += 1
        assert event["data"]["img"].shape == shape
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    # All 500 frames would be 16 MiB; a page of them at most 1/5 of that plus overhead.
    assert peak < 120 * frame_bytes, peak
