"""File-store behaviour the contract suite cannot see: the on-disk format, real data written by
other programs, crash safety, several processes, and the index beside the runs.

Everything runs against real temporary directories and, where processes matter, real
subprocesses (killed with SIGKILL where crashes matter).  No test asserts on timing.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SampleRun, insert_all, sample_runs
from files_harness import make_files_harness

from broker_v1.documents import pack_events, unpack_events
from broker_v1.errors import (
    CorruptRunFile,
    DuplicateDocument,
    InvalidDocument,
    MissingDependency,
    ReadOnlyStore,
    RunNotFound,
    StoreUnavailable,
    UnsafeUid,
)
from broker_v1.stores import store_from_config
from broker_v1.stores._query import QueryMatcher
from broker_v1.stores.files import ASSETS_NAME, FileStore, RunFileWarning, TornRunFileWarning
from broker_v1.stores.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import realdata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


# ---------------------------------------------------------------------- helpers
def compose(uid: str, *, n_events: int = 3, t0: float = T0, stop: bool = True,
            metadata: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """A small run with a primary stream, an external image key, a resource and datums."""
    desc = f"{uid}-primary"
    res = f"{uid}-res"
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": t0, "scan_id": 1, "plan_name": "scan", **(metadata or {})}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": t0 + 0.1, "name": "primary",
                        "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []},
                                      "img": {"source": "i", "dtype": "array", "shape": [2],
                                              "external": "FILESTORE:"}}}),
        ("resource", {"uid": res, "run_start": uid, "spec": "NPY_SEQ", "root": "/data",
                      "resource_path": "img", "resource_kwargs": {}, "path_semantics": "posix"}),
    ]
    for i in range(n_events):
        docs.append(("datum", {"datum_id": f"{res}/{i}", "resource": res,
                               "datum_kwargs": {"index": i}}))
        docs.append(("event", {"uid": f"{uid}-ev{i}", "descriptor": desc, "time": t0 + 1 + i,
                               "seq_num": i + 1, "data": {"x": float(i), "img": f"{res}/{i}"},
                               "timestamps": {"x": t0 + 1 + i, "img": t0 + 1 + i},
                               "filled": {"img": False}}))
    if stop:
        docs.append(("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": t0 + 2 + n_events,
                              "exit_status": "success"}))
    return docs


def insert(store: Any, docs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, doc in docs:
        store.insert(name, doc)


def replay(store: Any, uid: str) -> list[tuple[str, dict[str, Any]]]:
    return list(store.iter_documents(uid))


def file_documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Parse a run file with suitcase-jsonl's own rules: one [name, doc] JSON array per line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            assert isinstance(item, list) and len(item) == 2, line
            out.append((item[0], item[1]))
    return out


def events_of(docs: list[tuple[str, dict[str, Any]]], descriptor: str) -> list[dict[str, Any]]:
    """Single events of one descriptor from a document list, ordered by (time, seq_num)."""
    events = []
    for name, doc in docs:
        if name == "event" and doc["descriptor"] == descriptor:
            events.append(doc)
        elif name == "event_page" and doc["descriptor"] == descriptor:
            events.extend(unpack_events(doc))
    return sorted(events, key=lambda e: (e["time"], e["seq_num"]))


def assert_store_matches_documents(store: Any, uid: str,
                                   docs: list[tuple[str, dict[str, Any]]]) -> None:
    """Every document of a source file reads back from the store unchanged."""
    assert store.get_run_start(uid) == docs[0][1]
    stops = [doc for name, doc in docs if name == "stop"]
    assert store.get_run_stop(uid) == (stops[-1] if stops else None)
    descriptors = [doc for name, doc in docs if name == "descriptor"]
    got = store.get_descriptors(uid)
    assert sorted(got, key=lambda d: d["uid"]) == sorted(descriptors, key=lambda d: d["uid"])
    for descriptor in descriptors:
        assert list(store.iter_events(descriptor["uid"])) == events_of(docs, descriptor["uid"])
    for name, doc in docs:
        if name == "resource":
            assert store.get_resource(doc["uid"]) == doc
        elif name == "datum":
            assert store.get_datum(doc["datum_id"]) == doc
        elif name == "datum_page":
            for i, datum_id in enumerate(doc["datum_id"]):
                assert store.get_datum(datum_id) == {
                    "datum_id": datum_id, "resource": doc["resource"],
                    "datum_kwargs": {k: v[i] for k, v in doc["datum_kwargs"].items()}}


def run_python(code: str, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, env=env)


# A writer process: inserts runs and prints one JSON acknowledgement per document, *after*
# insert() returned, so everything acknowledged must survive any crash that follows.
WRITER = r"""
import json, sys, time, uuid
from broker_v1.stores.files import FileStore

path, tag, n_runs, n_events, pause = sys.argv[1:6]
n_runs, n_events, pause = int(n_runs), int(n_events), float(pause)
store = FileStore(path=path)

def put(name, doc, **ack):
    store.insert(name, doc)
    sys.stdout.write(json.dumps({"name": name, **ack}) + "\n")
    sys.stdout.flush()

for r in range(n_runs):
    run = f"{tag}-{r}-{uuid.uuid4()}"
    t0 = time.time()
    put("start", {"uid": run, "time": t0, "scan_id": r, "plan_name": tag}, run=run)
    desc = str(uuid.uuid4())
    put("descriptor", {"uid": desc, "run_start": run, "time": t0, "name": "primary",
                       "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []},
                                     "img": {"source": "i", "dtype": "array", "shape": [2],
                                             "external": "FILESTORE:"}}},
        run=run, uid=desc)
    res = str(uuid.uuid4())
    put("resource", {"uid": res, "run_start": run, "spec": "NPY", "root": "/", "resource_path":
                     "x", "resource_kwargs": {}, "path_semantics": "posix"}, run=run, uid=res)
    for i in range(n_events):
        did = f"{res}/{i}"
        put("datum", {"datum_id": did, "resource": res, "datum_kwargs": {"i": i}},
            run=run, uid=did)
        eid = str(uuid.uuid4())
        put("event", {"uid": eid, "descriptor": desc, "time": t0 + i, "seq_num": i + 1,
                      "data": {"x": float(i), "img": did}, "timestamps": {"x": t0, "img": t0}},
            run=run, uid=eid, descriptor=desc, seq_num=i + 1)
        if pause:
            time.sleep(pause)
    put("stop", {"uid": str(uuid.uuid4()), "run_start": run, "time": t0 + n_events + 1,
                 "exit_status": "success"}, run=run)
store.close()
"""


def assert_acknowledged_present(store: Any, acks: list[dict[str, Any]]) -> None:
    """Every acknowledged document is in the store."""
    events: dict[str, set[str]] = {}
    for ack in acks:
        name, run = ack["name"], ack["run"]
        if name == "start":
            assert store.get_run_start(run)["uid"] == run
        elif name == "descriptor":
            assert ack["uid"] in [d["uid"] for d in store.get_descriptors(run)]
        elif name == "resource":
            assert store.get_resource(ack["uid"])["uid"] == ack["uid"]
        elif name == "datum":
            assert store.get_datum(ack["uid"])["datum_id"] == ack["uid"]
        elif name == "event":
            if ack["descriptor"] not in events:
                events[ack["descriptor"]] = {e["uid"] for e in store.iter_events(ack["descriptor"])}
            assert ack["uid"] in events[ack["descriptor"]], ack
        elif name == "stop":
            assert store.get_run_stop(run) is not None, run


def read_acks(text: str) -> list[dict[str, Any]]:
    """Acknowledgements printed in full (a line cut short by a kill acknowledges nothing)."""
    lines = text.split("\n")
    lines.pop()  # the text after the last newline: empty, or an unfinished line
    return [json.loads(line) for line in lines if line.strip()]


# ---------------------------------------------------------------------- the format
def test_run_file_is_suitcase_jsonl(tmp_path):
    """A run written by the store is one [name, doc] JSON array per line, start first, in order."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-a", n_events=2)
    insert(harness.store, docs)
    written = file_documents(harness.store.path / "run-a.jsonl")
    assert written == docs  # single events and datums are written as `event` / `datum` lines
    assert written[0][0] == "start"
    assert harness.raw.docs("run-a") == docs
    harness.close()


def test_pages_are_written_as_pages(tmp_path):
    """Multi-row event and datum pages are written as event_page / datum_page lines."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-p", n_events=4, stop=False)
    for name, doc in docs[:3]:
        harness.store.insert(name, doc)
    datums = [doc for name, doc in docs if name == "datum"]
    page = {"resource": datums[0]["resource"], "datum_id": [d["datum_id"] for d in datums],
            "datum_kwargs": {"index": [d["datum_kwargs"]["index"] for d in datums]}}
    harness.store.insert("datum_page", page)
    events = [doc for name, doc in docs if name == "event"]
    harness.store.insert("event_page", pack_events(events))
    names = [name for name, _ in file_documents(harness.store.path / "run-p.jsonl")]
    assert names == ["start", "descriptor", "resource", "datum_page", "event_page"]
    assert list(harness.store.iter_events("run-p-primary")) == events
    harness.close()


def test_values_round_trip_through_the_file(tmp_path):
    """NaN, infinities, big integers, unicode keys and numpy values survive file and reopen."""
    harness = make_files_harness(tmp_path)
    metadata = {"big": 2**70, "neg big": -(2**64) - 1, "weird key: üß": {"nested ☃": [1, None]},
                "grid": np.arange(4).reshape(2, 2), "f": np.float32(0.5), "nan": math.nan,
                "inf": [math.inf, -math.inf], "text": "line\nbreak \u2028 😀 lone \ud800"}
    docs = compose("run-v", n_events=0, metadata=metadata, stop=False)
    for name, doc in docs[:2]:
        harness.store.insert(name, doc)
    values = [math.nan, math.inf, -math.inf, 2**53 + 1, 2**80, -0.0, 1e-310]
    for i, v in enumerate(values):
        harness.store.insert("event", {
            "uid": f"e{i}", "descriptor": "run-v-primary", "time": T0 + i, "seq_num": i + 1,
            "data": {"x": v, "img": "none"}, "timestamps": {"x": T0, "img": T0}})
    harness.store.insert("stop", {"uid": "s", "run_start": "run-v", "time": T0 + 100})
    text = (harness.store.path / "run-v.jsonl").read_text()
    assert "NaN" in text and "Infinity" in text and str(2**80) in text
    for store in (harness.store, harness.reopen(), harness.reopen(columnar_cache=False)):
        start = store.get_run_start("run-v")
        assert start["big"] == 2**70 and start["neg big"] == -(2**64) - 1
        assert start["weird key: üß"] == {"nested ☃": [1, None]}
        assert start["grid"] == [[0, 1], [2, 3]] and start["f"] == 0.5
        assert math.isnan(start["nan"]) and start["inf"] == [math.inf, -math.inf]
        assert start["text"] == metadata["text"]
        got = [e["data"]["x"] for e in store.iter_events("run-v-primary")]
        assert math.isnan(got[0]) and got[1:] == values[1:]
        assert [type(v) for v in got] == [type(v) for v in values]
        assert math.copysign(1, got[5]) == -1
    harness.close()


# ---------------------------------------------------------------------- real data
REAL_JSONL = ["pack-jsonl", "tutorials"]
REAL_MSGPACK = ["pack-msgpack", "apstools-msgpack", "usaxs-msgpack", "polar-440"]


def copy_real_set(set_name: str, target: Path) -> list[realdata.RealRun]:
    runs = realdata.runs_by_set()[set_name]
    target.mkdir()
    for run in runs:
        shutil.copy(run.source_path, target)
    return runs


@pytest.mark.parametrize("set_name", REAL_JSONL + REAL_MSGPACK)
def test_real_data_directories_open_as_stores(tmp_path, set_name):
    """Directories written by suitcase-jsonl / databroker-pack read back their files exactly."""
    runs = copy_real_set(set_name, tmp_path / "real")
    store = FileStore(path=tmp_path / "real", read_only=True)
    assert store.count_runs() == len(runs)
    assert sorted(s["uid"] for s in store.find_run_starts({})) == sorted(r.uid for r in runs)
    for run in runs:
        assert_store_matches_documents(store, run.uid, run.documents)
    # Reading again through a new store object (index and columnar cache now exist) agrees.
    again = FileStore(path=tmp_path / "real", read_only=True)
    for run in runs:
        assert replay(again, run.uid) == replay(store, run.uid)
    store.close()
    again.close()


def test_real_runs_inserted_by_broker_read_back_through_plain_json(tmp_path):
    """Real runs inserted through the store are written as files plain JSON reads back."""
    harness = make_files_harness(tmp_path)
    runs = realdata.runs_by_set()["tutorials"][:4] + realdata.runs_by_set()["pack-msgpack"][:2]
    for run in runs:
        insert(harness.store, run.documents)
    for run in runs:
        written = file_documents(harness.store.path / f"{run.uid}.jsonl")
        assert written[0] == ("start", run.start)
        for descriptor in [d for n, d in run.documents if n == "descriptor"]:
            assert events_of(written, descriptor["uid"]) == events_of(run.documents,
                                                                       descriptor["uid"])
        assert_store_matches_documents(harness.reopen(), run.uid, run.documents)
    harness.close()


def test_msgpack_runs_are_read_only(tmp_path):
    """Appending to a msgpack run is refused with ReadOnlyStore and the file is untouched."""
    runs = copy_real_set("pack-msgpack", tmp_path / "store")
    store = FileStore(path=tmp_path / "store")
    run = runs[0]
    path = tmp_path / "store" / f"{run.uid}.msgpack"
    before = path.read_bytes()
    descriptor = {"uid": "new-descriptor", "run_start": run.uid, "time": run.start["time"] + 1,
                  "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []}}}
    with pytest.raises(ReadOnlyStore, match="msgpack"):
        store.insert("descriptor", descriptor)
    assert path.read_bytes() == before
    store.insert("start", run.start)  # identical: a no-op, allowed
    store.close()


def test_start_of_a_run_file_not_indexed_yet_is_found_before_writing(tmp_path):
    """A start whose run another program has just put in the folder (here a msgpack run,
    which no .jsonl name collides with), not yet indexed: inserting it again is a no-op and
    a different start with its uid is refused, without a second file for the run."""
    runs = copy_real_set("pack-msgpack", tmp_path / "elsewhere")
    run = runs[0]
    store = FileStore(path=tmp_path / "store")
    assert store.count_runs() == 0  # indexed and refreshed before the file arrives
    shutil.copy(tmp_path / "elsewhere" / f"{run.uid}.msgpack", tmp_path / "store")
    store.insert("start", run.start)
    with pytest.raises(DuplicateDocument, match=run.uid):
        store.insert("start", dict(run.start, plan_name="other"))
    assert sorted(os.listdir(tmp_path / "store")) == [".broker_v1", f"{run.uid}.msgpack"]
    store.close()


def test_missing_msgpack_names_the_install_command(tmp_path, monkeypatch):
    """Without msgpack installed, a store holding .msgpack runs says what to install."""
    copy_real_set("pack-msgpack", tmp_path / "store")
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(MissingDependency, match="pip install msgpack msgpack-numpy"):
        FileStore(path=tmp_path / "store", index_path=":memory:")


# ---------------------------------------------------------------------- torn lines and repair
def make_old(path: Path) -> None:
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_torn_last_line_warns_once_and_repair_truncates(tmp_path):
    """A half-written last line: complete documents read, one warning, repair() cuts it off."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-t", n_events=3, stop=False)
    insert(harness.store, docs)
    harness.close()
    path = harness.directory / "run-t.jsonl"
    good = path.read_bytes()
    torn_line = json.dumps(["event", {"uid": "half"}]).encode()[:20]
    with open(path, "ab") as f:
        f.write(torn_line)
    make_old(path)
    store = harness.reopen()
    with pytest.warns(TornRunFileWarning, match=r"run-t\.jsonl line 10 is incomplete"):
        assert store.get_descriptors("run-t") == [docs[1][1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: no second warning
        assert list(store.iter_events("run-t-primary")) == events_of(docs, "run-t-primary")
        assert store.get_run_stop("run-t") is None
        assert replay(store, "run-t")[0] == docs[0]
    assert store.repair() == {"run-t.jsonl": len(torn_line)}
    assert path.read_bytes() == good
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.insert("stop", {"uid": "stop-t", "run_start": "run-t", "time": T0 + 50})
        assert harness.reopen().get_run_stop("run-t")["uid"] == "stop-t"
    harness.close()


def test_fresh_partial_line_of_an_open_run_is_silent(tmp_path):
    """A partial last line written just now is taken for a write in progress: no warning."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-live", n_events=2, stop=False)
    insert(harness.store, docs)
    with open(harness.directory / "run-live.jsonl", "ab") as f:
        f.write(b'["event", {"uid": "in-prog')
    store = harness.reopen()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(store.iter_events("run-live-primary")) == events_of(docs, "run-live-primary")
        assert store.repair() == {}  # recently changed files are left to their writer
    harness.close()


def test_appending_after_a_torn_tail_is_refused_until_repaired(tmp_path):
    """A writer never appends after a torn tail (it would corrupt a line); repair unblocks it."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-r", n_events=1, stop=False)
    insert(harness.store, docs)
    harness.close()
    path = harness.directory / "run-r.jsonl"
    with open(path, "ab") as f:
        f.write(b'["datum", {"datum_')
    store = harness.reopen()
    stop = {"uid": "stop-r", "run_start": "run-r", "time": T0 + 50}
    with pytest.raises(CorruptRunFile, match="incomplete line"):
        store.insert("stop", stop)
    assert store.repair("run-r") == {"run-r.jsonl": len(b'["datum", {"datum_')}
    store.insert("stop", stop)
    assert file_documents(path)[-1] == ("stop", stop)
    harness.close()


def test_torn_first_line_is_not_a_run_until_repaired(tmp_path):
    """A file holding only part of its start line is no run; repair empties it for a rewrite."""
    harness = make_files_harness(tmp_path)
    start = compose("run-f", n_events=0)[0][1]
    (harness.directory / "run-f.jsonl").write_text(json.dumps(["start", start])[:30])
    store = harness.reopen()
    assert store.count_runs() == 0
    with pytest.raises(CorruptRunFile, match="repair"):
        store.insert("start", start)
    assert store.repair("run-f") == {"run-f.jsonl": 30}
    store.insert("start", start)
    assert harness.reopen().get_run_start("run-f") == start
    harness.close()


def test_corrupt_line_in_the_middle_is_reported(tmp_path):
    """A damaged line that is not the last raises CorruptRunFile naming the file and line."""
    harness = make_files_harness(tmp_path)
    insert(harness.store, compose("run-c", n_events=3))
    harness.close()
    path = harness.directory / "run-c.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[4] = b'["event", {broken'
    path.write_bytes(b"\n".join(lines))
    store = harness.reopen(columnar_cache=False)
    assert store.get_run_start("run-c")["uid"] == "run-c"  # search still works
    with pytest.raises(CorruptRunFile, match=r"run-c\.jsonl line 5") as info:
        list(store.iter_events("run-c-primary"))
    assert info.value.line == 5 and info.value.path.endswith("run-c.jsonl")
    harness.close()


# ---------------------------------------------------------------------- crashes and processes
def kill_writer_once(directory: Path, rng: random.Random, tag: str) -> list[dict[str, Any]]:
    """Start a writer, SIGKILL it after a random number of acknowledgements, return them."""
    target = rng.randint(1, 150)
    acks = []
    with run_python(WRITER, str(directory), tag, "50", "40", "0") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while len(acks) < target:
            line = proc.stdout.readline()
            if not line:
                break
            acks.append(json.loads(line))
        time.sleep(rng.random() * 0.003)  # land anywhere: mid-write, mid-commit, in between
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # through the same buffered reader readline() used
        err = proc.stderr.read()
        proc.wait()
    acks.extend(read_acks(rest))
    assert proc.returncode == -signal.SIGKILL or not err, err
    return acks


def check_after_kills(directory: Path, acks: list[dict[str, Any]]) -> None:
    store = FileStore(path=directory, torn_grace=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TornRunFileWarning)
        assert_acknowledged_present(store, acks)
    store.repair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebuilt = FileStore(path=directory, index_path=":memory:")
        assert_acknowledged_present(rebuilt, acks)
        started = {a["run"] for a in acks if a["name"] == "start"}
        assert started <= {s["uid"] for s in rebuilt.find_run_starts({})}
        assert store.count_runs() == rebuilt.count_runs()
    store.close()


def sigkill_writers(tmp_path: Path, iterations: int) -> None:
    directory = tmp_path / "store"
    rng = random.Random(1234)
    acks: list[dict[str, Any]] = []
    for i in range(iterations):
        acks.extend(kill_writer_once(directory, rng, f"w{i}"))
    assert acks
    check_after_kills(directory, acks)


def _fsynced_inodes(monkeypatch: pytest.MonkeyPatch, fail: set[int] | None = None) -> set[int]:
    """Record the inode of every fsync (os.fsync wrapped); fail those in ``fail``."""
    synced: set[int] = set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        inode = os.fstat(fd).st_ino
        if fail and inode in fail:
            raise OSError(5, "Input/output error")
        real_fsync(fd)
        synced.add(inode)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_deferred_sync_has_every_run_file_synced_when_the_block_ends(tmp_path, monkeypatch):
    """Inside deferred_sync() stops do not wait for their fsync; leaving the block waits for
    the fsync of every stopped run's file (runs still open keep the usual interval)."""
    store = FileStore(path=tmp_path / "runs")
    synced = _fsynced_inodes(monkeypatch)
    runs = sample_runs()
    with store.deferred_sync():
        insert_all(store, runs)
    stopped = [r for r in runs if r.docs[-1][0] == "stop"]
    assert stopped
    run_inodes = {(tmp_path / "runs" / f"{r.uid}.jsonl").stat().st_ino for r in stopped}
    assert run_inodes <= synced
    assert (tmp_path / "runs").stat().st_ino in synced  # the new directory entries too


def test_deferred_sync_reports_a_failed_fsync_when_the_block_ends(tmp_path, monkeypatch):
    """A postponed fsync that fails is not lost: leaving the block raises, naming the file,
    and the documents stay readable."""
    store = FileStore(path=tmp_path / "runs")
    run = sample_runs()[0]
    with pytest.raises(StoreUnavailable, match=rf"{run.uid}\.jsonl \(Input/output error\)"):
        with store.deferred_sync():
            insert_all(store, [SampleRun(run.uid, run.docs[:-1])])
            inode = (tmp_path / "runs" / f"{run.uid}.jsonl").stat().st_ino
            _fsynced_inodes(monkeypatch, fail={inode})
            store.insert("stop", run.docs[-1][1])  # returns at once; its fsync fails later
    assert store.get_run_stop(run.uid) == run.docs[-1][1]


def test_whole_run_copies_in_deferred_sync_share_an_index_transaction(tmp_path, monkeypatch):
    """Inside deferred_sync() whole-run copies are indexed in one transaction kept open across
    runs: this store reads each run at once; the index file (other processes) has them once
    it is committed: before any other write, and when the block ends."""
    import broker_v1.stores.files._index as files_module

    monkeypatch.setattr(files_module, "_BATCH_RUNS", 10**6)
    monkeypatch.setattr(files_module, "_BATCH_SECONDS", 1e9)
    source = FileStore(path=tmp_path / "a")
    runs = [r for r in sample_runs() if r.docs[-1][0] == "stop"]
    insert_all(source, runs)
    store = FileStore(path=tmp_path / "b")
    index = store._db_location

    def committed_runs() -> int:
        conn = sqlite3.connect(index)
        try:
            return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            conn.close()

    copied = []
    with store.deferred_sync():
        for run in runs:
            if store.copy_run_from(source, run.uid) is not None:
                copied.append(run)
        assert len(copied) >= 3
        assert committed_runs() == 0
        for run in copied:
            assert store.get_run_start(run.uid) == run.docs[0][1]
        extra = {"uid": "extra-run", "time": 1.0, "scan_id": 1}
        store.insert("start", extra)  # another write: the copies are committed first
        assert committed_runs() == len(copied) + 1
    assert committed_runs() == len(copied) + 1
    reopened = FileStore(path=tmp_path / "b", read_only=True)
    assert sorted(reopened.find_run_starts({}), key=lambda d: d["uid"]) == sorted(
        [r.docs[0][1] for r in copied] + [extra], key=lambda d: d["uid"])


def test_whole_run_copies_committed_when_deferred_sync_ends(tmp_path, monkeypatch):
    """The index transaction of whole-run copies is committed when the block ends."""
    import broker_v1.stores.files._index as files_module

    monkeypatch.setattr(files_module, "_BATCH_SECONDS", 1e9)
    source = FileStore(path=tmp_path / "a")
    runs = [r for r in sample_runs() if r.docs[-1][0] == "stop"]
    insert_all(source, runs)
    store = FileStore(path=tmp_path / "b")
    with store.deferred_sync():
        copied = [r.uid for r in runs if store.copy_run_from(source, r.uid) is not None]
    conn = sqlite3.connect(store._db_location)
    try:
        indexed = {uid for (uid,) in conn.execute("SELECT uid FROM runs")}
    finally:
        conn.close()
    assert copied and indexed == set(copied)


def test_sigkill_writer_loses_nothing_acknowledged(tmp_path):
    """A writer killed with SIGKILL at random points, 10 times, loses nothing it acknowledged."""
    sigkill_writers(tmp_path, 10)


@pytest.mark.slow
def test_sigkill_writer_loses_nothing_acknowledged_200_times(tmp_path, request):
    """The same, 200 times into one store (select with ``-m slow``)."""
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("long-running profile: run it with -m slow")
    sigkill_writers(tmp_path, 200)


def test_several_writer_processes_at_once(tmp_path):
    """Four processes writing different runs into one store at once lose nothing."""
    directory = tmp_path / "store"
    reader = FileStore(path=directory)
    procs = [run_python(WRITER, str(directory), f"p{i}", "4", "25", "0") for i in range(4)]
    acks = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        acks.extend(read_acks(out))
    assert len(acks) == 4 * 4 * (4 + 2 * 25)
    assert reader.count_runs() == 16  # the already-open store sees every run
    assert_acknowledged_present(reader, acks)
    for i in range(4):
        assert len(list(reader.find_run_starts({"plan_name": f"p{i}"}))) == 4
    rebuilt = FileStore(path=directory, index_path=":memory:")
    assert [s["uid"] for s in rebuilt.find_run_starts({})] == [
        s["uid"] for s in reader.find_run_starts({})]
    reader.close()
    rebuilt.close()


def test_reader_sees_a_consistent_prefix_while_a_writer_writes(tmp_path):
    """While another process writes a run, every read shows a growing, gap-free prefix of it."""
    directory = tmp_path / "store"
    reader = FileStore(path=directory)
    log = tmp_path / "acks.txt"
    with open(log, "w") as out, run_python(WRITER, str(directory), "live", "1", "200", "0.002",
                                          stdout=out) as proc:
        seen, polls, run = poll_while_writing(reader, proc)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert seen == 200 and polls > 1
    assert_acknowledged_present(reader, read_acks(log.read_text()))
    reader.close()


def poll_while_writing(reader: FileStore, proc: subprocess.Popen[str]) -> tuple[int, int, Any]:
    """Read the live run until its stop appears, checking each read is a clean prefix."""
    seen = 0
    polls = 0
    stopped = False
    run = None
    while not stopped:
        starts = list(reader.find_run_starts({"plan_name": "live"}))
        if not starts:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
            continue
        run = starts[0]["uid"]
        stopped = reader.get_run_stop(run) is not None  # checked before reading the events
        descriptors = reader.get_descriptors(run)
        if descriptors:
            events = list(reader.iter_events(descriptors[0]["uid"]))
            seqs = [e["seq_num"] for e in events]
            assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no torn documents
            assert len(seqs) >= seen
            seen = len(seqs)
            for event in events[-1:]:
                assert reader.get_datum(event["data"]["img"])["datum_kwargs"] == {
                    "i": event["seq_num"] - 1}
        polls += 1
    return seen, polls, run


# ---------------------------------------------------------------------- the index
def test_files_copied_in_by_hand_become_visible(tmp_path):
    """Runs copied into the directory, or growing there, appear in an already-open store."""
    harness = make_files_harness(tmp_path)
    store = harness.store
    assert store.count_runs() == 0
    runs = realdata.runs_by_set()["tutorials"]
    for run in runs[:5]:
        shutil.copy(run.source_path, harness.directory)
    assert store.count_runs() == 5
    assert_store_matches_documents(store, runs[0].uid, runs[0].documents)
    # A run written line by line by another program, as suitcase-jsonl does.
    docs = compose("run-h", n_events=2, metadata={"plan_name": "by-hand"})
    harness.raw.put("run-h", *docs[0])
    assert store.get_run_start("run-h") == docs[0][1]
    assert store.get_run_stop("run-h") is None
    for name, doc in docs[1:-1]:
        harness.raw.put("run-h", name, doc)
    assert store.get_descriptors("run-h") == [docs[1][1]]
    assert store.get_datum("run-h-res/1") == docs[5][1]
    harness.raw.put("run-h", *docs[-1])
    assert store.get_run_stop("run-h") == docs[-1][1]
    assert [s["uid"] for s in store.find_run_starts({"plan_name": "by-hand"})] == ["run-h"]
    assert_store_matches_documents(store, "run-h", docs)
    # Removing a file removes the run.
    (harness.directory / f"{runs[0].uid}.jsonl").unlink()
    assert store.count_runs() == 5
    with pytest.raises(RunNotFound):
        store.get_run_start(runs[0].uid)
    harness.close()


def test_search_answers_from_the_index_without_reading_runs(tmp_path):
    """Once indexed, search, starts and stops do not read the run files at all."""
    harness = make_files_harness(tmp_path)
    for i in range(5):
        insert(harness.store, compose(f"run-{i}", t0=T0 + i))
    harness.close()
    for i in range(5):  # scramble the files but keep size and mtime: only the index can answer
        path = harness.directory / f"run-{i}.jsonl"
        st = path.stat()
        path.write_bytes(b"x" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    store = harness.reopen()
    assert [s["uid"] for s in store.find_run_starts({"plan_name": "scan"})] == [
        f"run-{i}" for i in reversed(range(5))]
    assert store.get_run_stop("run-3")["uid"] == "run-3-stop"
    assert store.find_runs_by_uid_prefix("run-2")[0]["uid"] == "run-2"
    harness.close()


def test_scan_id_lookup_searches_the_index_not_every_run(tmp_path):
    """db[scan_id] is answered from the scan_id indexes (SQLite's plan names them and no full
    scan), also for an index written before the second of them existed."""
    import sqlite3

    harness = make_files_harness(tmp_path)
    for i in range(3):
        insert(harness.store, compose(f"run-{i}", t0=T0 + i))
    index = harness.store._db_location  # the real index file SQLite keeps beside the runs
    harness.close()
    with sqlite3.connect(index) as conn:  # as schema 1 first shipped
        conn.execute("DROP INDEX runs_scan_id_odd")
    store = harness.reopen()
    assert store.find_runs_by_scan_id(1)[0]["uid"] == "run-2"
    plan = " | ".join(row[-1] for row in store._index_conn().execute(
        "EXPLAIN QUERY PLAN SELECT start FROM runs WHERE (scan_id IN (?) OR scan_id_odd = 1) "
        "ORDER BY time DESC, uid DESC LIMIT 1", (1,)))
    assert "runs_scan_id " in plan + " " and "runs_scan_id_odd" in plan, plan
    assert "SCAN runs" not in plan, plan
    harness.close()


def test_deleted_index_is_rebuilt(tmp_path):
    """Deleting the index (even under an open store) loses nothing: it is rebuilt from files."""
    harness = make_files_harness(tmp_path)
    for i in range(3):
        insert(harness.store, compose(f"run-{i}", t0=T0 + i))
    before = [replay(harness.store, f"run-{i}") for i in range(3)]
    shutil.rmtree(harness.directory / ".broker_v1")
    assert [replay(harness.store, f"run-{i}") for i in range(3)] == before
    assert harness.store.count_runs() == 3
    shutil.rmtree(harness.directory / ".broker_v1")
    store = harness.reopen()
    assert [replay(store, f"run-{i}") for i in range(3)] == before
    assert store.reindex() == {"runs": 3, "files": 3}
    harness.close()


def test_corrupt_index_is_rebuilt(tmp_path):
    """An index file that is not a database (or is damaged) is replaced, never fatal."""
    harness = make_files_harness(tmp_path)
    for i in range(3):
        insert(harness.store, compose(f"run-{i}", t0=T0 + i))
    before = [replay(harness.store, f"run-{i}") for i in range(3)]
    harness.close()
    index = harness.directory / ".broker_v1" / "index.sqlite"
    for sidecar in ("-wal", "-shm"):
        Path(str(index) + sidecar).unlink(missing_ok=True)
    index.write_bytes(b"this is not an SQLite database" * 100)
    store = harness.reopen()
    assert [replay(store, f"run-{i}") for i in range(3)] == before
    store.close()
    # Damage the pages of a real index while keeping its header.
    data = bytearray(index.read_bytes())
    for i in range(200, len(data), 7):
        data[i] = 0xFF
    for sidecar in ("-wal", "-shm"):
        Path(str(index) + sidecar).unlink(missing_ok=True)
    index.write_bytes(bytes(data))
    store = harness.reopen()
    assert [replay(store, f"run-{i}") for i in range(3)] == before
    assert store.count_runs({"plan_name": "scan"}) == 3
    harness.close()


def test_writer_leaves_a_columnar_cache_that_serves_the_first_read(tmp_path):
    """The cache written at stop matches the file (its first line, size and last 4 KiB), so a
    new store object reads the run from it without parsing the JSON: a byte damaged in the
    middle of the file, where only a JSON read would look, does not show."""
    docs = compose("run-c", n_events=300)
    twin = make_files_harness(tmp_path / "twin")  # the same run elsewhere, for the expected
    insert(twin.store, docs)
    expected = replay(twin.store, "run-c")
    twin.close()
    harness = make_files_harness(tmp_path)
    insert(harness.store, docs)  # and nothing read here: a read would rebuild the cache
    harness.close()
    path = harness.directory / "run-c.jsonl"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    assert data.index(b"\n") < middle < len(data) - 4096
    st = path.stat()
    data[middle] = ord("#")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    store = harness.reopen()
    assert replay(store, "run-c") == expected
    harness.close()


def test_stale_or_damaged_columnar_cache_is_ignored(tmp_path):
    """The columnar cache is checked against the run file and rebuilt when stale or damaged."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-k", n_events=5)
    insert(harness.store, docs)
    cache = harness.directory / ".broker_v1" / "cache" / "run-k.jsonl.cols"
    # Written in the background after the stop; a read in this process waits for it.
    assert list(harness.store.iter_events("run-k-primary")) == events_of(docs, "run-k-primary")
    assert cache.exists()
    extra = {"uid": "late", "descriptor": "run-k-primary", "time": T0 + 0.5, "seq_num": 0,
             "data": {"x": -1.0, "img": "none"}, "timestamps": {"x": T0, "img": T0},
             "filled": {"img": False}}
    harness.raw.put("run-k", "event", extra)
    expected = events_of(docs + [("event", extra)], "run-k-primary")
    assert list(harness.reopen().iter_events("run-k-primary")) == expected
    cache.write_bytes(cache.read_bytes()[:100])
    assert list(harness.reopen().iter_events("run-k-primary")) == expected
    assert list(harness.reopen().iter_events("run-k-primary")) == expected  # rebuilt cache
    harness.close()


def test_search_agrees_with_the_query_matcher(tmp_path):
    """Queries pushed into SQL select exactly what the shared matcher selects, in order."""
    # Start documents with odd values (lists, dicts, bools, floats where numbers or strings
    # are usual) cannot be inserted; they come from files written by hand, as old data can.
    harness = make_files_harness(tmp_path)
    memory = MemoryStore()
    valid = [
        {"plan_name": "scan", "scan_id": 1, "sample": {"name": "gold"}},
        {"plan_name": "scan", "scan_id": 2, "purpose": "good sample alignment"},
        {"plan_name": "sca", "scan_id": -3, "detectors": ["det", "cam"]},
        {"plan_name": "SCAN", "scan_id": 2**60, "note": "my_scan of Über naïve gold"},
        {"plan_name": "count", "nan": math.nan, "operator": "Dmitri", "big": 2**70},
    ]
    odd = [
        {"plan_name": ["scan", "count"], "scan_id": 1.0},
        {"plan_name": {"scan": 1}, "scan_id": "1", "inf": math.inf},
        {"plan_name": 5, "scan_id": True},
        {"plan_name": "count", "scan_id": [1, 2]},
    ]
    starts = []
    for i, md in enumerate(valid + odd):
        uid = f"{'ab' if i % 2 else 'cd'}{i:02d}-run"
        start = {"uid": uid, "time": T0 + (i // 2) * 10 + (0.5 if i == 3 else 0), **md}
        if i == 5:
            start["time"] = int(T0)
        starts.append(start)
        if i < len(valid):
            harness.store.insert("start", start)
            memory.insert("start", start)
        else:
            harness.raw.put(uid, "start", start)
    queries = [
        {}, {"plan_name": "scan"}, {"plan_name": "count"}, {"plan_name": 5},
        {"plan_name": {"$in": ["scan", "SCAN"]}}, {"plan_name": {"$in": [5, "count"]}},
        {"scan_id": 1}, {"scan_id": {"$in": [1, 2]}}, {"scan_id": 2**60}, {"scan_id": "1"},
        {"uid": "ab01-run"}, {"uid": {"$regex": "^ab"}}, {"uid": {"$regex": "^ab0[13]"}},
        {"uid": {"$in": ["ab01-run", "cd02-run", "zz"]}},
        {"time": {"$gte": T0 + 10, "$lt": T0 + 30}}, {"time": {"$gt": int(T0)}},
        {"time": T0}, {"time": {"$lte": T0 + 10.5}},
        {"$text": {"$search": "gold"}}, {"$text": {"$search": "my_scan"}},
        {"$text": {"$search": "über"}}, {"$text": {"$search": "naive"}},
        {"$text": {"$search": '"sample align"'}}, {"$text": {"$search": "scan -gold"}},
        {"$and": [{"plan_name": "scan"}, {"scan_id": {"$gt": 1}}]},
        {"$or": [{"plan_name": "count"}, {"operator": "Dmitri"}]},
        {"detectors": "cam"}, {"sample.name": "gold"}, {"nan": {"$exists": True}},
    ]
    newest_first = sorted(starts, key=lambda s: (s["time"], s["uid"]), reverse=True)
    for query in queries:
        matcher = QueryMatcher(query, store="test")
        expected = [s["uid"] for s in newest_first if matcher(s)]
        got = [s["uid"] for s in harness.store.find_run_starts(query)]
        assert got == expected, query
        assert harness.store.count_runs(query) == len(expected), query
        ascending = harness.store.find_run_starts(query, sort=[("time", 1), ("uid", 1)])
        assert [s["uid"] for s in ascending] == expected[::-1], query
        by_scan = harness.store.find_run_starts(query, sort=[("scan_id", 1)])
        assert sorted(s["uid"] for s in by_scan) == sorted(expected), query
        in_memory = [s["uid"] for s in memory.find_run_starts(query)]
        assert in_memory == [u for u in got if int(u[2:4]) < len(valid)], query
    assert [s["uid"] for s in harness.store.find_runs_by_uid_prefix("ab")] == [
        s["uid"] for s in newest_first if s["uid"].startswith("ab")]
    harness.close()


# ---------------------------------------------------------------------- assets and uids
def test_legacy_resources_go_to_the_open_run_or_the_assets_file(tmp_path):
    """A resource without run_start joins the run being written, else _assets.jsonl."""
    harness = make_files_harness(tmp_path)
    store = harness.store
    legacy = {"uid": "legacy-1", "spec": "AD_HDF5", "root": "/", "resource_path": "a.h5",
              "resource_kwargs": {}}
    store.insert("resource", legacy)
    store.insert("datum", {"datum_id": "legacy-1/0", "resource": "legacy-1",
                           "datum_kwargs": {"point": 0}})
    assert [n for n, _ in file_documents(harness.directory / ASSETS_NAME)] == ["resource", "datum"]
    docs = compose("run-l", n_events=0, stop=False)
    insert(store, docs)
    inner = {**legacy, "uid": "legacy-2"}
    store.insert("resource", inner)
    store.insert("datum", {"datum_id": "legacy-2/0", "resource": "legacy-2",
                           "datum_kwargs": {"point": 0}})
    assert [n for n, _ in file_documents(harness.directory / "run-l.jsonl")][-2:] == [
        "resource", "datum"]
    old = {"_id": "5d3a8b9c0e1f2a3b4c5d6e7f", "spec": "AD_TIFF", "root": "/",
           "resource_path": "t", "resource_kwargs": {}}
    store.insert("resource", old)  # no uid: identified by its _id
    reopened = harness.reopen()
    assert reopened.get_resource("legacy-1") == legacy
    assert reopened.get_resource("legacy-2") == inner
    assert reopened.get_resource(old["_id"])["uid"] == old["_id"]
    assert reopened.get_datum("legacy-1/0")["datum_kwargs"] == {"point": 0}
    assert [d["datum_id"] for d in reopened.iter_datums("legacy-2")] == ["legacy-2/0"]
    assert reopened.count_runs() == 1  # the assets file is not a run
    harness.close()


@pytest.mark.parametrize(
    "uid",
    ["", ".", "..", "../escape", "a/b", "a\\b", "nul\x00byte", "new\nline", ".hidden",
     "_assets", "x" * 300, "\ud800"],
)
def test_unsafe_uids_are_refused(tmp_path, uid):
    """A start uid that cannot safely name a file is refused; nothing is written anywhere."""
    harness = make_files_harness(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*") if ".broker_v1" not in p.parts)
    with pytest.raises(UnsafeUid, match="cannot name a run file"):
        harness.store.insert("start", {"uid": uid, "time": T0})
    after = sorted(p.name for p in tmp_path.rglob("*") if ".broker_v1" not in p.parts)
    assert after == before
    assert harness.store.count_runs() == 0
    harness.close()


def test_unicode_and_odd_but_safe_uids_work(tmp_path):
    """Uids with spaces, colons and non-ASCII letters are safe file names and round-trip."""
    harness = make_files_harness(tmp_path)
    for i, uid in enumerate(["with space", "colon:uid", "ünïcödé-☃", "a..b"]):
        insert(harness.store, compose(uid, t0=T0 + i))
        assert harness.reopen().get_run_start(uid)["uid"] == uid
    harness.close()


def test_start_created_meanwhile_by_another_process(tmp_path, monkeypatch):
    """If another writer created the run file first, the same start is a no-op, another refused."""
    harness = make_files_harness(tmp_path)
    store = harness.store
    start = compose("run-race", n_events=0)[0][1]
    real_get_existing = store._get_existing

    def unaware(name, key):  # as if the other writer's file appeared right after our check
        return None if name == "start" else real_get_existing(name, key)

    harness.raw.put("run-race", "start", start)
    monkeypatch.setattr(store, "_get_existing", unaware)
    store.insert("start", start)
    assert harness.raw.docs("run-race") == [("start", start)]
    with pytest.raises(DuplicateDocument, match="already in"):
        store.insert("start", {**start, "plan_name": "other"})
    assert harness.raw.docs("run-race") == [("start", start)]
    harness.close()


def test_start_with_nan_time_is_refused(tmp_path):
    """A start whose time is NaN cannot be ordered among runs, so it is refused unwritten."""
    harness = make_files_harness(tmp_path)
    with pytest.raises(InvalidDocument, match="time must be a finite number") as info:
        harness.store.insert("start", {"uid": "run-nan", "time": math.nan})
    assert info.value.field == "time"
    assert not (harness.directory / "run-nan.jsonl").exists()
    harness.close()


# ---------------------------------------------------------------------- opening and modes
def test_read_only_open_of_a_missing_directory_is_an_error(tmp_path):
    """A read-only open of a missing directory names the path and creates nothing."""
    missing = tmp_path / "nowhere" / "store"
    with pytest.raises(StoreUnavailable, match=str(missing)):
        FileStore(path=missing, read_only=True)
    assert not (tmp_path / "nowhere").exists()
    store = FileStore(path=missing)  # a writable open creates it
    assert missing.is_dir() and store.count_runs() == 0
    store.close()


def test_read_only_store_refuses_insert_and_repair(tmp_path):
    """A read-only store refuses insert and repair with ReadOnlyStore and changes no file."""
    harness = make_files_harness(tmp_path)
    docs = compose("run-ro", n_events=1, stop=False)
    insert(harness.store, docs)
    harness.close()
    with open(harness.directory / "run-ro.jsonl", "ab") as f:
        f.write(b'["stop", {"ui')
    make_old(harness.directory / "run-ro.jsonl")
    before = (harness.directory / "run-ro.jsonl").read_bytes()
    store = harness.reopen(read_only=True)
    with pytest.raises(ReadOnlyStore, match="read-only"):
        store.insert("stop", {"uid": "s", "run_start": "run-ro", "time": T0 + 9})
    with pytest.raises(ReadOnlyStore, match="repair"):
        store.repair()
    with pytest.warns(TornRunFileWarning):
        assert len(store.get_descriptors("run-ro")) == 1
    assert (harness.directory / "run-ro.jsonl").read_bytes() == before
    harness.close()


def test_config_reopens_the_same_store(tmp_path):
    """config() goes through the registry and reopens the same directory."""
    harness = make_files_harness(tmp_path)
    insert(harness.store, compose("run-cfg"))
    config = harness.store.config()
    assert config == {"backend": "files", "path": str(harness.directory), "read_only": False}
    reopened = store_from_config({**config, "read_only": True})
    assert reopened.describe() == f"files store {harness.directory}"
    assert reopened.get_run_start("run-cfg")["uid"] == "run-cfg"
    reopened.close()
    harness.close()


def test_not_a_run_file_is_skipped_with_a_warning(tmp_path):
    """A .jsonl file that does not begin with a start document is reported and skipped."""
    harness = make_files_harness(tmp_path)
    insert(harness.store, compose("run-ok"))
    (harness.directory / "notes.jsonl").write_text('["descriptor", {"uid": "d"}]\n')
    with pytest.warns(RunFileWarning, match="notes.jsonl does not begin with a start"):
        assert harness.store.count_runs() == 1
    assert harness.store.count_runs() == 1  # reported once
    harness.close()
