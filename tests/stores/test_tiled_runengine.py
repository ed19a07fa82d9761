"""A real RunEngine records into tiled through broker_v1: ``RE.subscribe(db.insert)``.

One RunEngine with ophyd.sim devices, subscribed to a tiled-backed Broker (a fresh catalog on
the session's writable server) and to a MemoryStore Broker, runs three plans: a scan with a
baseline stream (``SupplementalData``), a ``count`` of a registry-backed image detector (one
``.npy`` file per frame, written inside the server's ``readable_storage`` so TiledWriter's
array node can read it) and a scan of a 20-value in-event array.  Everything broker_v1 reads
back from tiled is compared with the memory store holding the same documents.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from broker_v1 import Broker


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{"db", "memory", "uids"}``: the tiled Broker, the memory Broker and the run uids
    (scan, image count, array scan), recorded by one RunEngine."""
    pytest.importorskip("bluesky", reason='bluesky is in the test extra (pip install -e ".[test]")')
    pytest.importorskip("ophyd", reason='ophyd is in the test extra (pip install -e ".[test]")')
    from conftest import _tiled_writable_server, new_tiled_catalog

    tmp = tmp_path_factory.mktemp("runengine")
    uri = new_tiled_catalog(tmp)
    server = _tiled_writable_server(tmp)
    # ophyd.sim makes temporary folders when imported: keep them in this test's folder.
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp)
    try:
        from bluesky import RunEngine
        from bluesky.plans import count, list_scan, scan
        from bluesky.preprocessors import SupplementalData
        from ophyd.sim import (
            NumpySeqHandler,
            SynSignal,
            SynSignalWithRegistry,
            det,
            motor,
            motor1,
            motor2,
        )
    finally:
        tempfile.tempdir = saved
    from tiled_server import broker_config

    db = Broker.from_config(broker_config(uri))
    memory = Broker.from_config({"store": {"backend": "memory"}, "timezone": "US/Eastern"})
    memory.reg.register_handler("NPY_SEQ", NumpySeqHandler)
    # Inside the server's readable_storage, or its array node could not read the frames.
    frames = server.folder / "catalog" / "external" / f"re-{uuid.uuid4().hex[:8]}"
    frames.mkdir(parents=True)
    img = SynSignalWithRegistry(
        func=lambda: np.arange(48.0).reshape(6, 8) * 10 + motor.position, name="img",
        save_path=str(frames), labels={"detectors"})
    spectrum = SynSignal(func=lambda: np.arange(20.0) * motor.position, name="spectrum")

    RE = RunEngine({})
    RE.subscribe(db.insert)
    RE.subscribe(memory.insert)
    baseline = SupplementalData(baseline=[motor1, motor2])
    RE.preprocessors.append(baseline)
    uids = list(RE(scan([det], motor, -1, 1, 5), sample={"name": "gold"}))
    RE.preprocessors.remove(baseline)
    uids += RE(count([img, det], num=3), purpose="images")
    uids += RE(list_scan([spectrum], motor, [1.0, 2.0, 3.0]), purpose="arrays")
    try:
        yield {"db": db, "memory": memory, "uids": uids}
    finally:
        db.store.close()


def test_headers_and_descriptors_match_the_memory_store(recorded: dict[str, Any]) -> None:
    """Start and stop documents are the RunEngine's; descriptors (configuration included)
    are what TiledWriter keeps of them (``stored_form``), configuration included."""
    db, memory = recorded["db"], recorded["memory"]
    assert [h.start["uid"] for h in db[-3:]] == recorded["uids"][::-1]
    for uid in recorded["uids"]:
        ours, ref = db[uid], memory[uid]
        assert ours.start == ref.start and ours.stop == ref.stop
        assert ours.stream_names == ref.stream_names
        expected = [db.store.stored_form("descriptor", dict(d)) for d in ref.descriptors]
        assert [dict(d) for d in ours.descriptors] == expected
        # Configuration values and timestamps are the devices' (its data keys gain
        # dtype_numpy, as the stream's do).
        assert [{obj: (c["data"], c["timestamps"]) for obj, c in d["configuration"].items()}
                for d in ours.descriptors] == [
            {obj: (c["data"], c["timestamps"]) for obj, c in d["configuration"].items()}
            for d in ref.descriptors]
    scan_run = db[recorded["uids"][0]]
    assert scan_run.stream_names == ["baseline", "primary"]
    assert set(scan_run.descriptors[0]["configuration"]) >= {"motor1", "motor2"}


def test_tables_match_the_memory_store(recorded: dict[str, Any]) -> None:
    """Scalar tables (primary and baseline) are equal; the 20-value arrays are equal."""
    db, memory = recorded["db"], recorded["memory"]
    scan_uid, _, array_uid = recorded["uids"]
    for stream in ("primary", "baseline"):
        ours = db.get_table(db[scan_uid], stream_name=stream)
        ref = memory.get_table(memory[scan_uid], stream_name=stream)
        assert len(ours) == len(ref) > 0
        assert ours.equals(ref), stream
    ours = db.get_table(db[array_uid])
    ref = memory.get_table(memory[array_uid])
    assert ours.drop(columns="spectrum").equals(ref.drop(columns="spectrum"))
    np.testing.assert_array_equal(np.stack([np.asarray(v) for v in ours["spectrum"]]),
                                  np.stack([np.asarray(v) for v in ref["spectrum"]]))
    assert np.asarray(ours["spectrum"].iloc[2]).shape == (20,)


def test_external_images_fill_as_the_memory_store(recorded: dict[str, Any]) -> None:
    """The image detector's frames, registered by TiledWriter from this process, fill
    through the server's array node as the memory store fills them through ophyd's
    NPY_SEQ handler; the other columns are equal."""
    db, memory = recorded["db"], recorded["memory"]
    image_uid = recorded["uids"][1]
    ours = db.get_table(db[image_uid], fill=True)
    ref = memory.get_table(memory[image_uid], fill=True)
    assert ours.drop(columns="img").equals(ref.drop(columns="img"))
    np.testing.assert_array_equal(np.stack(ours["img"].to_numpy()),
                                  np.stack(ref["img"].to_numpy()))
    assert np.stack(ours["img"].to_numpy()).shape == (3, 6, 8)
    unfilled = db.get_table(db[image_uid])
    assert all(str(v).startswith("sr-") for v in unfilled["img"])


def test_the_runs_are_in_tiled_s_own_client(recorded: dict[str, Any]) -> None:
    """tiled's own client reads the recorded scan (what another tiled user sees)."""
    from tiled.client import from_uri
    from tiled_server import API_KEY

    uid = recorded["uids"][0]
    client = from_uri(recorded["db"].store.uri, api_key=API_KEY)
    try:
        run = client[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert list(run["primary"].read()["motor"].values) == list(np.linspace(-1, 1, 5))
    finally:
        client.context.close()

