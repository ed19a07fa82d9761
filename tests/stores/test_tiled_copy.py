"""Portable copies of a tiled catalog's external data (``broker-v1 copy URI DIR --copy-files``).

SQL layout: the session server's image run (scan_id 9, five 6x8 frames of ophyd.sim's
registry-backed detector, recorded by a real RunEngine) keeps no resource or datum documents;
with ``--copy-files`` the frames are read through the server's array nodes and written as
``NPY_SEQ`` files inside the copy, which ophyd.sim's ``NumpySeqHandler`` fills exactly as the
tiled store does.  Without it, the report says the values stayed placeholders and what to do.

Mongo layout: the MongoAdapter hands out the detector's own resources and datums; their files
are copied from where the client's ``root_map`` finds them, as for every store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiled_server import API_KEY, broker_config

from broker_v1 import Broker


@pytest.fixture(scope="module")
def npy_seq_handler(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """ophyd.sim's NPY_SEQ handler, the one the field uses, imported here first (ophyd.sim
    makes a temporary folder when imported: it goes to this module's folder)."""
    pytest.importorskip("ophyd", reason='ophyd is in the test extra (pip install -e ".[test]")')
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("ophyd"))
    try:
        from ophyd.sim import NumpySeqHandler
    finally:
        tempfile.tempdir = saved
    return NumpySeqHandler


@pytest.fixture(scope="module")
def image_uid(tiled_server: Any) -> str:
    (run,) = [r for r in tiled_server.runs if r["scan_id"] == 9]
    return str(run["uid"])


@pytest.fixture(scope="module")
def db(tiled_server: Any) -> Iterator[Broker]:
    db = Broker.from_config(broker_config(tiled_server.uri))
    yield db
    db.store.close()


def _copy(uri: str, dst: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TILED_API_KEY": API_KEY, "HOME": str(home),
           "BROKER_V1_CONFIG_PATH": str(home)}
    return subprocess.run([sys.executable, "-m", "broker_v1", "copy", uri, str(dst),
                           "--no-progress", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _portable(path: Path, handler: Any) -> Broker:
    """The copy as a v1 user opens it: no handler registered, ophyd's NPY_SEQ handler found
    through the ``databroker.handlers`` entry point it advertises."""
    portable = Broker.from_config({"store": {"backend": "files", "path": str(path)},
                                   "timezone": "US/Eastern"})
    assert portable.reg.handler_reg["NPY_SEQ"] is handler
    return portable


def _images(db: Broker, uid: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # get_images is deprecated (v1 says so)
        return np.asarray(db.get_images(db[uid], "img"))


def test_copy_files_makes_the_sql_layout_s_frames_fillable(
        tiled_server: Any, db: Broker, image_uid: str, npy_seq_handler: Any,
        tmp_path: Path) -> None:
    """--copy-files writes each frame as an NPY_SEQ file inside the copy, with a resource
    per stream and field and a datum per frame named by the event's own id; the copy's
    filled table, events and get_images equal the tiled store's, and a second copy skips."""
    dst = tmp_path / "portable"
    proc = _copy(tiled_server.uri, dst, "--uid", image_uid, "--copy-files", "--json",
                 home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["copied"] == [image_uid] and report["unresolved"] == []
    assert [f["status"] for f in report["files"]] == ["copied"] * 5
    (descriptor,) = db[image_uid].descriptors
    name = f"sr-{descriptor['uid']}-img"
    assert sorted(os.listdir(dst / "files" / image_uid)) == [
        f"{name}_{n}.npy" for n in range(5)]

    portable = _portable(dst, npy_seq_handler)
    try:
        here, there = portable[image_uid], db[image_uid]
        resource = portable.store.get_resource(name)
        assert resource["spec"] == "NPY_SEQ" and resource["root"] == str(dst / "files")
        assert portable.store.get_datum(f"{name}/3")["datum_kwargs"] == {"index": 3}
        # Unfilled, the copy holds the tiled store's ids; filled, the same frames.
        assert here.table().equals(there.table())
        ours, ref = portable.get_table(here, fill=True), db.get_table(there, fill=True)
        assert ours.drop(columns="img").equals(ref.drop(columns="img"))
        np.testing.assert_array_equal(np.stack(ours["img"].to_numpy()),
                                      np.stack(ref["img"].to_numpy()))
        assert np.stack(ours["img"].to_numpy()).dtype == np.float64
        np.testing.assert_array_equal(_images(portable, image_uid), _images(db, image_uid))
        for mine, theirs in zip(portable.get_events(here, fill=True),
                                db.get_events(there, fill=True), strict=True):
            np.testing.assert_array_equal(mine["data"]["img"], theirs["data"]["img"])
    finally:
        portable.store.close()

    again = _copy(tiled_server.uri, dst, "--uid", image_uid, "--copy-files", "--json",
                  home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == [image_uid]


def test_without_copy_files_the_report_says_the_data_stayed_behind(
        tiled_server: Any, image_uid: str, tmp_path: Path) -> None:
    """Without --copy-files the run copies with its placeholder ids and the summary names
    the field and how to get the data (--copy-files); the JSON report counts them."""
    dst = tmp_path / "plain"
    proc = _copy(tiled_server.uri, dst, "--uid", image_uid, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "External data not copied: 5 values of field img in 1 run" in proc.stdout
    assert "--copy-files" in proc.stdout and "fill=True" in proc.stdout
    assert not (dst / "files").exists()
    from broker_v1.copying import copy_runs
    from broker_v1.stores.memory import MemoryStore

    source = Broker.from_config(broker_config(tiled_server.uri))
    try:
        report = copy_runs(source.store, MemoryStore(), uids=[image_uid], progress=False)
    finally:
        source.store.close()
    assert report.ok
    assert report.to_dict()["unresolved"] == [{"uid": image_uid, "field": "img", "values": 5}]


def test_a_different_file_in_the_way_fails_the_run_and_a_later_copy_completes(
        tiled_server: Any, db: Broker, image_uid: str, tmp_path: Path) -> None:
    """A file of other content where a frame goes is never overwritten: the run fails with
    the file named; once it is removed, the same copy completes the run, finding the frames
    written before as present."""
    from broker_v1.copying import copy_runs
    from broker_v1.stores.files import FileStore

    (descriptor,) = db[image_uid].descriptors
    files = tmp_path / "portable" / "files"
    in_the_way = files / image_uid / f"sr-{descriptor['uid']}-img_3.npy"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_bytes(b"not a frame")
    with FileStore(path=tmp_path / "portable") as portable:
        def copy() -> Any:
            return copy_runs(db.store, portable, uids=[image_uid], copy_files=True,
                             new_root=files, progress=False)

        first = copy()
        assert not first.ok and [r.uid for r in first.failed] == [image_uid]
        (problem,) = first.file_problems
        assert problem.path == str(in_the_way) and "different content" in problem.message
        assert in_the_way.read_bytes() == b"not a frame"
        in_the_way.unlink()
        second = copy()
        assert second.ok and second.completed == [image_uid]
        # Frames 0-2 were written before the failure; 3 and 4 only now.
        assert [f.status for f in second.files] == ["present"] * 3 + ["copied"] * 2
        frames = [np.load(files / image_uid / f"sr-{descriptor['uid']}-img_{n}.npy")
                  for n in range(5)]
    np.testing.assert_array_equal(np.stack(frames), _images(db, image_uid))


def test_mongo_layout_copies_the_detector_s_files(tiled_mongo_server: Any,
                                                  npy_seq_handler: Any, tmp_path: Path) -> None:
    """On the Mongo layout the detector's own resource and datums are copied, and its files
    from where root_map finds them; the copy fills as the tiled store does."""
    from handlers import NpySeqHandler

    from broker_v1.copying import copy_runs

    uid = "cafe0001-0000-4000-8000-000000000005"  # tiled_server.npy_image_run_documents
    source = Broker.from_config({
        **broker_config(tiled_mongo_server.uri), "root_map": dict(tiled_mongo_server.root_map),
        "handlers": {"NPY_SEQ": {"module": "handlers", "class": "NpySeqHandler"}}})
    portable = _portable(tmp_path / "portable", npy_seq_handler)
    try:
        report = copy_runs(source.store, portable.store, uids=[uid], copy_files=True,
                           new_root=tmp_path / "portable" / "files",
                           root_map=tiled_mongo_server.root_map,
                           handler_registry={"NPY_SEQ": NpySeqHandler}, progress=False)
        assert report.ok and report.copied == [uid] and not report.unresolved
        assert len(report.files) == 5
        ours = portable.get_table(portable[uid], fill=True)
        ref = source.get_table(source[uid], fill=True)
        np.testing.assert_array_equal(np.stack(ours["img"].to_numpy()),
                                      np.stack(ref["img"].to_numpy()))
        (resource,) = [d for n, d in portable.get_documents(portable[uid]) if n == "resource"]
        assert resource["root"] == str(tmp_path / "portable" / "files")
    finally:
        portable.store.close()
        source.store.close()


def test_a_portable_copy_goes_back_into_tiled_with_its_files(
        tiled_server: Any, db: Broker, image_uid: str, npy_seq_handler: Any,
        tmp_path: Path) -> None:
    """Both ways: the SQL layout's image run copied out with --copy-files, then from that
    portable store into a fresh catalog with --copy-files and a --new-root the server may
    read; TiledWriter registers the NPY_SEQ files and the server's frames equal the first
    server's."""
    from conftest import _TILED_WRITABLE, new_tiled_catalog

    from broker_v1.copying import copy_runs
    from broker_v1.stores.files import FileStore
    from broker_v1.stores.tiled import TiledStore

    out = _copy(tiled_server.uri, tmp_path / "portable", "--uid", image_uid, "--copy-files",
                home=tmp_path)
    assert out.returncode == 0, out.stderr
    uri = new_tiled_catalog(tmp_path)
    # Inside the writable server's readable_storage ({data}/external), as a beamline's
    # files must be where its server may read them.
    served = _TILED_WRITABLE["server"].folder / "catalog" / "external" / tmp_path.name
    with FileStore(path=tmp_path / "portable") as portable, \
            TiledStore(uri=uri, api_key=API_KEY) as target:
        report = copy_runs(portable, target, uids=[image_uid], copy_files=True,
                           new_root=served, handler_registry={"NPY_SEQ": npy_seq_handler},
                           progress=False)
        assert report.ok and report.copied == [image_uid], report.to_dict()["failed"]
        assert [f.status for f in report.files] == ["copied"] * 5
    back = Broker.from_config(broker_config(uri))
    try:
        np.testing.assert_array_equal(_images(back, image_uid), _images(db, image_uid))
        assert back[image_uid].table().drop(columns="img").equals(
            db[image_uid].table().drop(columns="img"))
    finally:
        back.store.close()
