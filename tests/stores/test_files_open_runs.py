"""Descriptors of a run that is still being written: one index transaction per run.

A files store that writes a run records its descriptors in the index together with the stop
(one transaction at start, one at stop), not one transaction per descriptor.  Until the stop,
the run file holds them, and every lookup by descriptor uid that misses the index reads the
new lines of the runs other processes (or an interrupted writer) left open.  These tests
check that readers in another process see what they always saw while a run records, that a
writer killed before its stop leaves a run that is read and completed as before, and that
duplicates are refused across processes as before.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from files_harness import index_statements

from broker_v1 import Broker
from broker_v1.errors import DuplicateDocument
from broker_v1.stores.files import FileStore
from broker_v1.stores.files._format import STATE_DIR
from broker_v1.stores.files._index import INDEX_NAME

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def run_docs(uid: str, n_events: int = 4) -> list[tuple[str, dict[str, Any]]]:
    """Start, ``baseline`` and ``primary`` descriptors, events of both, stop."""
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": T0, "scan_id": 3, "plan_name": "scan"})]
    for i, stream in enumerate(("baseline", "primary")):
        docs.append(("descriptor", {
            "uid": f"{uid}-{stream}", "run_start": uid, "time": T0 + 0.1 * (i + 1),
            "name": stream, "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}},
        }))
    for i in range(n_events):
        stream = "baseline" if i == 0 else "primary"
        docs.append(("event", {"uid": f"{uid}-e{i}", "descriptor": f"{uid}-{stream}",
                               "time": T0 + 1 + i, "seq_num": i + 1 if i else 1,
                               "data": {"x": float(i)}, "timestamps": {"x": T0 + 1 + i}}))
    docs.append(("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 99,
                          "exit_status": "success"}))
    return docs


def _members(store: FileStore) -> set[tuple[str, str]]:
    return {(k, u) for k, u in store._index_rows("SELECT kind, uid FROM members")}


# What another process sees of the newest run: its descriptors, one of them by uid, and the
# primary stream's values so far (get_table while it runs).
READER = r"""
import json, sys
from broker_v1 import Broker
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
db = Broker(store, timezone="UTC")
h = db[-1]
uid = h.start["uid"]
print(json.dumps({
    "uid": uid,
    "descriptors": sorted(d["uid"] for d in h.descriptors),
    "by_uid": store.get_descriptor(uid + "-primary")["name"],
    "primary": [float(x) for x in db.get_table(h, stream_name="primary")["x"]],
    "pages": sum(len(p["uid"]) for p in store.iter_event_pages(uid + "-baseline")),
}))
store.close()
"""

# Writes all but the stop, then dies without closing the store (a killed RunEngine).
DYING_WRITER = r"""
import json, os, sys
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
for name, doc in json.loads(sys.argv[2]):
    store.insert(name, doc)
os._exit(0)
"""


def _python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code, *args], check=True, env=env,
                          timeout=120, capture_output=True, text=True)
    return done.stdout


def test_descriptors_are_indexed_with_the_stop_in_one_transaction(tmp_path: Path) -> None:
    """Between a run's start and its stop, the writer commits nothing to the index; the stop's
    rows (its descriptors among them) are written in the transaction of the next run's start,
    so recording costs one index transaction per run."""
    docs = run_docs("r1")
    with FileStore(path=tmp_path) as store:
        store.insert(*docs[0])
        with index_statements(store) as statements:
            for name, doc in docs[1:]:
                store.insert(name, doc)
            assert not [s for s in statements if s.split()[0] in ("BEGIN", "INSERT", "UPDATE")]
            statements.clear()
            second = run_docs("r2")
            store.insert(*second[0])
        assert sum(s.startswith("BEGIN") for s in statements) == 1
        # r1's stop rows, then r2's start, in that one transaction.
        written = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE")]
        assert any("r1-primary" in s for s in written)
        assert any(s.startswith("UPDATE runs SET stop") and "'r1'" in s for s in written)
        assert any(s.startswith("INSERT INTO runs") and "'r2'" in s for s in written)
        assert _members(store) == {("descriptor", "r1-baseline"), ("descriptor", "r1-primary")}


def test_a_new_descriptors_duplicate_check_reads_the_index_once(tmp_path: Path) -> None:
    """A descriptor the index does not know is checked against the index and the files it
    marks open in one statement; one it knows is found by that statement too."""
    docs = run_docs("r7")
    with FileStore(path=tmp_path) as store:
        store.insert(*docs[0])
        with index_statements(store) as statements:
            store.insert(*docs[1])
        reads = [s for s in statements if s.startswith("SELECT")]
        assert len(reads) == 1 and "r7-baseline" in reads[0] and "volatile" in reads[0]
        for name, doc in docs[2:]:
            store.insert(name, doc)
    with FileStore(path=tmp_path) as fresh:  # knows nothing of r7 but what the index says
        assert fresh._writer.member_file("descriptor", "r7-primary") == "r7.jsonl"
        assert fresh._writer.member_file("descriptor", "r7-unknown") is None
        # While a run is open (its file marked so), a known descriptor is still found by
        # the one statement, and re-inserting it is a no-op or refused as before.
        fresh.insert(*run_docs("r7b")[0])
        with index_statements(fresh) as statements:
            assert fresh._writer.member_file("descriptor", "r7-primary") == "r7.jsonl"
        assert len([s for s in statements if s.startswith("SELECT")]) == 1
        fresh.insert(*docs[2])  # identical: a no-op
        with pytest.raises(DuplicateDocument, match="r7-primary"):
            fresh.insert("descriptor", dict(docs[2][1], name="other"))


def test_a_reader_commits_nothing_of_a_run_another_store_records(tmp_path: Path) -> None:
    """A store looking up (``db[-1]``, ``db[uid]``, a search) while another records a run reads
    the new lines but writes nothing to the index: neither events, descriptors nor the stop
    take the write lock the writer needs (it records them with its next transaction).  A
    lookup by descriptor uid indexes the run's descriptors at once, and asking for the stop
    indexes it, in one transaction each."""
    docs = run_docs("r8", n_events=6)
    extra = {"uid": "r8-extra", "run_start": "r8", "time": T0 + 50, "name": "extra",
             "data_keys": {"y": {"dtype": "number", "shape": [], "source": "s"}}}
    # A long sync interval: the writer's timer must not record the stop during the test.
    with FileStore(path=tmp_path, fsync_interval=600) as writer, \
            FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        writer.insert(*docs[0])
        assert db[-1].start["uid"] == "r8"
        with index_statements(reader) as statements:
            for name, doc in [*docs[1:-1], ("descriptor", extra)]:
                writer.insert(name, doc)
                assert db[-1].start["uid"] == "r8"
                assert db["r8"].start["uid"] == "r8"
                assert [h.start["uid"] for h in db(plan_name="scan")] == ["r8"]
            assert not [s for s in statements if s.startswith("BEGIN")]
            assert sorted(d["uid"] for d in db[-1].descriptors) == [
                "r8-baseline", "r8-extra", "r8-primary"]
            assert not _members(reader)  # the writer records them with its stop
            assert reader.get_descriptor("r8-extra")["name"] == "extra"
            assert sum(s.startswith("BEGIN") for s in statements) == 1
            assert _members(reader) == {("descriptor", "r8-baseline"),
                                        ("descriptor", "r8-primary"),
                                        ("descriptor", "r8-extra")}
            assert [e["data"]["x"] for e in reader.iter_events("r8-primary")] == [
                1.0, 2.0, 3.0, 4.0, 5.0]
        with index_statements(reader) as statements:
            writer.insert(*docs[-1])
            assert db[-1].start["uid"] == "r8"
            assert [h.start["uid"] for h in db(plan_name="scan")] == ["r8"]
            assert not [s for s in statements if s.startswith("BEGIN")]
            assert _raw_stop_uid(reader, "r8") is None
            assert db["r8"].stop["uid"] == "r8-stop"
            assert db[-1].stop["uid"] == "r8-stop"
            assert sum(s.startswith("BEGIN") for s in statements) == 1


def _raw_stop_uid(store: FileStore, run_uid: str) -> str | None:
    """The stop uid the index holds for a run, read past the store (None: not recorded)."""
    raw = sqlite3.connect(store._index.location)
    try:
        row = raw.execute("SELECT stop_uid FROM runs WHERE uid = ?", (run_uid,)).fetchone()
    finally:
        raw.close()
    return None if row is None else row[0]


def test_get_run_stops_indexes_a_stop_the_read_path_left_to_its_writer(
        tmp_path: Path) -> None:
    """The read path leaves a stop another store wrote a moment ago to that writer; asking
    for several runs' stops (which reads the index's stop column) indexes it first."""
    docs = run_docs("r11")
    with FileStore(path=tmp_path, fsync_interval=600) as writer, \
            FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        writer.insert(*docs[0])
        assert db[-1].start["uid"] == "r11"
        for name, doc in docs[1:]:
            writer.insert(name, doc)
        assert db[-1].start["uid"] == "r11"
        assert _raw_stop_uid(reader, "r11") is None
        assert reader.get_run_stops(["r11"]) == {"r11": docs[-1][1]}
        assert reader.find_run_stop_uids({"exit_status": "success"}) == ["r11"]
        assert _raw_stop_uid(reader, "r11") == "r11-stop"


@pytest.mark.parametrize("shift", [-60, 60], ids=["a-minute-later", "clock-ahead"])
def test_a_stop_left_unindexed_for_seconds_is_indexed_by_the_read_path(
        tmp_path: Path, shift: int) -> None:
    """A stop its writer has not recorded in the index for longer than a writer takes (it
    was killed, or does not use the index) is indexed by the next lookup, so the run stops
    being one the read path checks at every look; so is one whose file time lies far ahead
    of this clock (written on another host)."""
    docs = run_docs("r12")
    with FileStore(path=tmp_path, fsync_interval=600) as writer, \
            FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        writer.insert(*docs[0])
        db[-1]
        for name, doc in docs[1:]:
            writer.insert(name, doc)
        with index_statements(reader) as statements:
            db[-1]
            db[-1]
            assert not [s for s in statements if s.startswith("BEGIN")]
        assert _raw_stop_uid(reader, "r12") is None
        path = tmp_path / "r12.jsonl"
        then = path.stat().st_mtime + shift  # -60: as if the reader looked a minute later
        os.utime(path, (then, then))
        with index_statements(reader) as statements:
            assert db[-1].start["uid"] == "r12"
            assert sum(s.startswith("BEGIN") for s in statements) == 1
        assert _raw_stop_uid(reader, "r12") == "r12-stop"
        assert reader._index_rows("SELECT volatile FROM files WHERE name = 'r12.jsonl'") == [
            (0,)]


def test_a_lookup_by_uid_indexes_descriptors_a_reader_read_past(tmp_path: Path) -> None:
    """Descriptors the read path read past without indexing (it remembers how far it read)
    are indexed when a lookup by uid needs them: the reader's own duplicate check refuses a
    different descriptor of the same uid, and another store finds them."""
    docs = run_docs("r9")
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        writer.insert(*docs[0])
        db[-1]
        for name, doc in docs[1:-1]:
            writer.insert(name, doc)
            db[-1]  # reads the new lines, indexes nothing
        assert not _members(reader)
        reader.insert("start", {"uid": "r10", "time": T0 + 200, "scan_id": 4})
        with pytest.raises(DuplicateDocument, match="r9-primary"):
            reader.insert("descriptor", dict(docs[2][1], run_start="r10", name="other"))
        reader.insert(*docs[2])  # identical: a no-op
        with FileStore(path=tmp_path) as third:
            assert {("descriptor", "r9-baseline"), ("descriptor", "r9-primary")} <= _members(
                third)
        assert [e["data"]["x"] for e in reader.iter_events("r9-primary")] == [1.0, 2.0, 3.0]


def test_a_reader_finds_an_open_runs_datums_without_a_full_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling a running scan in another process: its datums (the writer records them with
    the stop), read past by the reader's lookups, are found by id from the runs still open,
    without the full scan of the folder (a stat of every file) that a lookup missing
    everywhere does; ids that do not name their resource too."""
    from broker_v1.stores.files import _scan as scan_module

    docs = run_docs("r11")
    resource = {"uid": "r11-res", "run_start": "r11", "spec": "NPY_SEQ", "root": "/data",
                "resource_path": "r11.npy", "resource_kwargs": {}, "path_semantics": "posix"}
    datums = [{"datum_id": f"r11-datum-{i}", "resource": "r11-res",
               "datum_kwargs": {"index": i}} for i in range(3)]
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        writer.insert(*docs[0])
        db[-1]
        writer.insert("resource", resource)
        for datum in datums:
            writer.insert("datum", datum)
        db[-1]  # reads past them
        assert ("datum", "r11-datum-2") not in _members(reader)
        scans: list[str] = []
        real_scandir = scan_module.os.scandir

        def counted_scandir(path: Any) -> Any:
            # The folder's listings only: the writer's background thread lists its spare
            # run files (``.broker_v1/spare``) whenever it makes more, which is no scan.
            if Path(path) == tmp_path:
                scans.append(str(path))
            return real_scandir(path)

        monkeypatch.setattr(scan_module.os, "scandir", counted_scandir)
        assert reader.get_datum("r11-datum-2")["datum_kwargs"] == {"index": 2}
        assert reader.get_resource("r11-res")["spec"] == "NPY_SEQ"
        assert [i for p in reader.iter_datum_pages("r11-res") for i in p["datum_id"]] == [
            "r11-datum-0", "r11-datum-1", "r11-datum-2"]
        assert scans == []
        assert ("datum", "r11-datum-2") in _members(reader)


def test_an_open_run_file_replaced_under_its_name_is_indexed_anew(tmp_path: Path) -> None:
    """What a reader remembers of an open run file's events holds for that file only: the
    same name holding another file (another start) is indexed from its first line."""
    docs = run_docs("r9", n_events=3)
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        for name, doc in docs[:-2]:
            writer.insert(name, doc)
        assert db[-1].start["plan_name"] == "scan"
        writer.insert(*docs[-2])  # an event: remembered, not indexed
        assert db[-1].start["plan_name"] == "scan"
        # Longer than the file it replaces, events past the length read: only the first line
        # tells them apart.
        other = [("start", dict(docs[0][1], plan_name="replaced"))] + run_docs("r9", 12)[1:-1]
        (tmp_path / "r9.tmp").write_text("".join(json.dumps(list(d)) + "\n" for d in other))
        assert (tmp_path / "r9.tmp").stat().st_size > (tmp_path / "r9.jsonl").stat().st_size
        os.replace(tmp_path / "r9.tmp", tmp_path / "r9.jsonl")
        assert db[-1].start["plan_name"] == "replaced"


def test_an_open_run_file_rewritten_in_place_is_read_from_its_last_indexed_line(
    tmp_path: Path,
) -> None:
    """A run file whose tail was rewritten in place (as a repair does) after a reader read
    its events: what the reader remembered no longer ends on a line there, so the file is
    indexed from where the index last recorded it, and a descriptor now spanning that
    point is found."""
    docs = run_docs("r10", n_events=6)
    path = tmp_path / "r10.jsonl"
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as reader:
        db = Broker(reader, timezone="UTC")
        for name, doc in docs[:3]:
            writer.insert(name, doc)
        db[-1]  # indexes both descriptors: the index has read the file to here
        indexed = path.stat().st_size
        for name, doc in docs[3:-1]:
            writer.insert(name, doc)
        db[-1]  # only events since: remembered, not indexed
        read_to = path.stat().st_size
        late = {"uid": "r10-late", "run_start": "r10", "time": T0 + 60, "name": "late",
                "data_keys": {"y": {"dtype": "number", "shape": [], "source": "s" * 2000}}}
        with open(path, "r+b") as f:
            f.truncate(indexed)
            f.seek(indexed)
            f.write((json.dumps(["descriptor", late]) + "\n").encode())
        assert indexed < read_to < path.stat().st_size
        db[-1]
        assert ("descriptor", "r10-late") in _members(reader)


def test_a_stop_not_yet_in_the_index_is_read_at_once(tmp_path: Path) -> None:
    """Right after ``insert('stop')`` returns, this store (its reads write the waiting rows
    first), another store on the directory and a raw look at the index after the sync timer
    all see the stop."""
    docs = run_docs("r1")
    with FileStore(path=tmp_path, fsync_interval=0.05) as store, \
            FileStore(path=tmp_path) as other:
        for name, doc in docs:
            store.insert(name, doc)
        assert other.get_run_stop("r1") == docs[-1][1]
        assert store.get_run_stop("r1") == docs[-1][1]
        deadline = time.monotonic() + 10
        while _raw_stop_uid(store, "r1") != "r1-stop" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _raw_stop_uid(store, "r1") == "r1-stop"


def test_the_index_of_a_writer_killed_right_after_a_stop_is_completed(tmp_path: Path) -> None:
    """A process killed after ``insert('stop')`` returned, before the index got the stop's
    rows: the file has the stop (synced), and the next store to open the directory indexes
    it from there."""
    docs = run_docs("r3")
    _python(DYING_WRITER, str(tmp_path), json.dumps(docs))
    raw = sqlite3.connect(tmp_path / STATE_DIR / INDEX_NAME)
    try:
        assert raw.execute("SELECT stop FROM runs WHERE uid = 'r3'").fetchone() == (None,)
    finally:
        raw.close()
    with FileStore(path=tmp_path) as store:
        assert store.get_run_stop("r3") == docs[-1][1]
        assert store.count_runs() == 1
        assert [d["uid"] for d in store.get_descriptors("r3")] == ["r3-baseline", "r3-primary"]
        assert _members(store) >= {("descriptor", "r3-baseline"), ("descriptor", "r3-primary")}


def test_another_process_reads_descriptors_of_a_run_being_written(tmp_path: Path) -> None:
    """``db[-1]`` of a running scan, its descriptors, ``get_descriptor``, ``get_table`` and
    event pages in another process, before the stop; then the completed run."""
    docs = run_docs("r2")
    writer = FileStore(path=tmp_path)
    for name, doc in docs[:-1]:
        writer.insert(name, doc)
    seen = json.loads(_python(READER, str(tmp_path)))
    assert seen == {"uid": "r2", "descriptors": ["r2-baseline", "r2-primary"],
                    "by_uid": "primary", "primary": [1.0, 2.0, 3.0], "pages": 1}
    writer.insert(*docs[-1])
    writer.close()
    assert json.loads(_python(READER, str(tmp_path))) == seen


def test_a_second_store_finds_an_open_runs_descriptor_by_uid_at_once(tmp_path: Path) -> None:
    """A store that has already refreshed (so nothing tells it to rescan) still finds a
    descriptor the writer appended afterwards, and its events."""
    docs = run_docs("r3")
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as reader:
        writer.insert(*docs[0])
        assert Broker(reader)[-1].start["uid"] == "r3"
        for name, doc in docs[1:-1]:
            writer.insert(name, doc)
        assert reader.get_descriptor("r3-primary")["name"] == "primary"
        assert [e["data"]["x"] for e in reader.iter_events("r3-primary")] == [1.0, 2.0, 3.0]


def test_run_of_a_killed_writer_is_read_and_completed(tmp_path: Path) -> None:
    """A writer killed after its descriptors and events, before the stop: another process
    reads the run, appends to it (its events are checked against the descriptors in the
    file) and stops it; the index then holds the descriptors as for any stopped run."""
    docs = run_docs("r4", n_events=6)
    _python(DYING_WRITER, str(tmp_path), json.dumps(docs[:6]))
    with FileStore(path=tmp_path) as store:
        db = Broker(store, timezone="UTC")
        assert not db[-1].stop  # no stop yet
        assert sorted(d["uid"] for d in db[-1].descriptors) == ["r4-baseline", "r4-primary"]
        assert store.get_descriptor("r4-baseline")["name"] == "baseline"
        store.insert(*docs[5])  # identical: a no-op
        for name, doc in docs[6:]:
            store.insert(name, doc)
        assert list(db.get_table(db["r4"])["x"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    with FileStore(path=tmp_path) as fresh:
        assert {("descriptor", "r4-baseline"), ("descriptor", "r4-primary")} <= _members(fresh)
        assert fresh.get_run_stop("r4") == docs[-1][1]
    lines = (tmp_path / "r4.jsonl").read_text().splitlines()
    assert [json.loads(line)[0] for line in lines] == [name for name, _ in docs]


def test_duplicates_of_an_open_runs_descriptor_are_found_across_stores(tmp_path: Path) -> None:
    """Another store given a descriptor of a run being written elsewhere finds it: identical
    is a no-op, different is refused, as when the descriptor was indexed at once."""
    docs = run_docs("r5")
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as other:
        writer.insert(*docs[0])
        assert Broker(other)[-1].start["uid"] == "r5"  # refreshed before the appends below
        for name, doc in docs[1:3]:
            writer.insert(name, doc)
        other.insert("descriptor", dict(docs[2][1]))
        changed = dict(docs[2][1], name="other")
        with pytest.raises(DuplicateDocument, match="r5-primary"):
            other.insert("descriptor", changed)
        other_run = run_docs("r6")
        other.insert(*other_run[0])
        with pytest.raises(DuplicateDocument, match="r5-primary"):
            other.insert("descriptor", dict(changed, run_start="r6"))
    assert (tmp_path / "r5.jsonl").read_bytes().count(b"\n") == 3
