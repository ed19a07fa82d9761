"""Full-text rows of the runs a process starts are written in batches ("text pending").

A start records a marker in the index's ``meta`` table instead of its FTS5 row; the rows are
written 32 at a time, when the store closes, and before its own ``$text`` search.  These
tests check, on real stores and real processes, that every ``$text`` search finds the runs
whose rows are pending (in the writing store, another store object, another process), that
the rows are written and the markers dropped, and that a killed writer, deleted files,
reindexing and markers an older version left behind keep the index consistent.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker_v1 import Broker
from broker_v1.stores.files import FileStore
from broker_v1.stores.files._format import STATE_DIR
from broker_v1.stores.files._index import INDEX_NAME
from broker_v1.stores.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
BATCH = 32


def start_doc(uid: str, i: int, sample: str) -> dict[str, Any]:
    return {"uid": uid, "time": T0 + i, "scan_id": i, "plan_name": "scan", "sample": sample}


def stop_doc(uid: str, i: int) -> dict[str, Any]:
    return {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + i + 0.5,
            "exit_status": "success"}


def index_file(directory: Path) -> Path:
    return directory / STATE_DIR / INDEX_NAME


def index_state(directory: Path) -> tuple[int, int]:
    """(pending markers, FTS rows), read with sqlite3 beside the stores."""
    with sqlite3.connect(index_file(directory)) as conn:
        markers = conn.execute(
            "SELECT count(*) FROM meta WHERE key >= 'fts_pending:' AND key < 'fts_pending;'"
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM runs_fts").fetchone()[0]
    conn.close()
    return markers, rows


def fts_consistent(directory: Path) -> bool:
    """Every run has a row of exactly its own words in the FTS table, and nothing else is."""
    with sqlite3.connect(index_file(directory)) as conn:
        runs = dict(conn.execute("SELECT id, text FROM runs").fetchall())
        fts = dict(conn.execute("SELECT rowid, words FROM runs_fts").fetchall())
    conn.close()
    return fts == {rowid: " ".join(re.findall(r"\w+", text)) for rowid, text in runs.items()}


def text_hits(store: Any, words: str) -> list[str]:
    return sorted(s["uid"] for s in store.find_run_starts({"$text": {"$search": words}}))


def _python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, timeout=120,
                          capture_output=True, text=True)
    if done.returncode not in (0, -9):
        raise AssertionError(done.stderr)
    return done.stdout


# Another process's answer to a $text search.
TEXT_SEARCH = r"""
import json, sys
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
found = store.find_run_starts({"$text": {"$search": sys.argv[2]}})
print(json.dumps(sorted(s["uid"] for s in found)))
store.close()
"""

# Writes runs (the last one left running), then is killed with their text rows pending.
KILLED_WRITER = r"""
import json, os, signal, sys
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
for name, doc in json.loads(sys.argv[2]):
    store.insert(name, doc)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_running_and_stopped_runs_are_found_by_text_everywhere(tmp_path: Path) -> None:
    """While their rows are pending: another store object and another process find a
    stopped and a running run by text; then the writer itself (which writes the rows)."""
    writer = FileStore(path=tmp_path)
    writer.insert("start", start_doc("done", 1, "zebra finch"))
    writer.insert("stop", stop_doc("done", 1))
    writer.insert("start", start_doc("running", 2, "zebra fish"))
    writer.insert("start", start_doc("other", 3, "lion"))
    assert index_state(tmp_path) == (3, 0)  # the pending path is what finds them below
    with FileStore(path=tmp_path) as reader:
        assert text_hits(reader, "zebra") == ["done", "running"]
        assert text_hits(reader, "finch") == ["done"]
        assert text_hits(reader, "lion") == ["other"]
    assert json.loads(_python(TEXT_SEARCH, str(tmp_path), "zebra")) == ["done", "running"]
    assert json.loads(_python(TEXT_SEARCH, str(tmp_path), "fish")) == ["running"]
    assert index_state(tmp_path) == (3, 0)
    assert text_hits(writer, "zebra") == ["done", "running"]
    assert index_state(tmp_path) == (0, 3)  # this process's search wrote its rows first
    writer.insert("stop", stop_doc("running", 2))
    writer.close()
    assert json.loads(_python(TEXT_SEARCH, str(tmp_path), "zebra")) == ["done", "running"]


def test_rows_are_written_every_32_starts_and_at_close(tmp_path: Path) -> None:
    """31 starts leave 31 markers; the 32nd start's transaction writes the 32 rows; the rest
    are written at close, each run's row holding its own words."""
    store = FileStore(path=tmp_path)
    for i in range(BATCH - 1):
        store.insert("start", start_doc(f"r{i:02d}", i, f"word{i}"))
        store.insert("stop", stop_doc(f"r{i:02d}", i))
    assert index_state(tmp_path) == (BATCH - 1, 0)
    store.insert("start", start_doc("r31", 31, "word31"))
    assert index_state(tmp_path) == (0, BATCH)
    for i in range(BATCH, BATCH + 5):
        store.insert("start", start_doc(f"r{i:02d}", i, f"word{i}"))
    assert index_state(tmp_path) == (5, BATCH)
    store.close()
    assert index_state(tmp_path) == (0, BATCH + 5)
    with sqlite3.connect(index_file(tmp_path)) as conn:
        rows = conn.execute(
            "SELECT r.uid, f.words FROM runs r JOIN runs_fts f ON f.rowid = r.id"
        ).fetchall()
    conn.close()
    assert len(rows) == BATCH + 5
    for uid, words in rows:
        assert f"word{int(uid[1:])}" in words.split()
        assert uid in words.split()
    with FileStore(path=tmp_path) as reader:
        assert text_hits(reader, "word7 word33") == ["r07", "r33"]


def test_runs_of_a_killed_writer_stay_findable_and_the_next_writer_completes_them(
    tmp_path: Path,
) -> None:
    """A writer killed with five rows pending (one run still running): other stores find
    those runs by text; writing on, re-inserting its start and closing work, and the next
    completion writes the rows the dead writer left."""
    docs: list[tuple[str, dict[str, Any]]] = []
    for i in range(5):
        docs.append(("start", start_doc(f"k{i}", i, "heron" if i % 2 else "egret")))
        if i < 4:
            docs.append(("stop", stop_doc(f"k{i}", i)))
    _python(KILLED_WRITER, str(tmp_path), json.dumps(docs))
    assert index_state(tmp_path) == (5, 0)
    assert json.loads(_python(TEXT_SEARCH, str(tmp_path), "heron")) == ["k1", "k3"]
    with FileStore(path=tmp_path) as reader:
        assert text_hits(reader, "egret") == ["k0", "k2", "k4"]
    assert index_state(tmp_path) == (5, 0)  # a store that wrote nothing writes no rows
    with FileStore(path=tmp_path) as writer:
        writer.insert(*docs[-1])  # the running run's start again: a no-op
        writer.insert("stop", stop_doc("k4", 4))
        writer.insert("start", start_doc("n0", 9, "heron"))
        assert text_hits(writer, "heron") == ["k1", "k3", "n0"]
        assert index_state(tmp_path) == (0, 6)
    assert fts_consistent(tmp_path)
    with FileStore(path=tmp_path) as reader:
        assert text_hits(reader, "egret") == ["k0", "k2", "k4"]


def test_deleted_run_files_take_their_markers_with_them(tmp_path: Path) -> None:
    """A pending run whose file is deleted is forgotten with its marker; a run another store
    starts next reuses its rowid, and the first writer, completing both stores' rows, writes
    that run's own words, not the forgotten run's it still remembers."""
    writer = FileStore(path=tmp_path)
    writer.insert("start", start_doc("keep", 1, "otter"))
    writer.insert("start", start_doc("gone", 2, "badger"))
    writer.insert("stop", stop_doc("gone", 2))
    gone_id = writer._index_rows("SELECT id FROM runs WHERE uid = 'gone'")[0][0]
    (tmp_path / "gone.jsonl").unlink()
    other = FileStore(path=tmp_path)
    assert text_hits(other, "badger") == []
    assert index_state(tmp_path) == (1, 0)
    other.insert("start", start_doc("next", 3, "weasel"))
    assert other._index_rows("SELECT id FROM runs WHERE uid = 'next'")[0][0] == gone_id
    assert text_hits(writer, "badger weasel otter") == ["keep", "next"]
    assert index_state(tmp_path) == (0, 2)  # the writer wrote both stores' rows
    assert fts_consistent(tmp_path)
    other.close()
    writer.close()
    assert fts_consistent(tmp_path)
    with FileStore(path=tmp_path) as reader:
        assert text_hits(reader, "weasel") == ["next"]
        assert text_hits(reader, "badger") == []


def test_reindex_drops_markers_and_writes_every_row(tmp_path: Path) -> None:
    """Reindexing, by a store with no rows of its own pending, over the markers of a killed
    writer: every run gets its row again and no marker is left."""
    docs = [("start", start_doc(f"x{i}", i, "kestrel")) for i in range(3)]
    _python(KILLED_WRITER, str(tmp_path), json.dumps(docs))
    assert index_state(tmp_path) == (3, 0)
    with FileStore(path=tmp_path) as store:
        assert store.reindex()["runs"] == 3
        assert index_state(tmp_path) == (0, 3)
        store.insert("start", start_doc("x3", 3, "kestrel"))
        assert text_hits(store, "kestrel") == ["x0", "x1", "x2", "x3"]
    assert index_state(tmp_path) == (0, 4)
    assert fts_consistent(tmp_path)


def test_markers_an_older_version_left_do_not_break_searches_or_completion(
    tmp_path: Path,
) -> None:
    """An older version's forget leaves markers behind: one naming a run now held by
    another uid at its rowid, one naming a run whose row exists already.  Searches still
    answer exactly, and completion writes no duplicate rows."""
    with FileStore(path=tmp_path) as store:
        for i in range(3):
            store.insert("start", start_doc(f"o{i}", i, "puffin" if i == 0 else "gannet"))
    with sqlite3.connect(index_file(tmp_path)) as conn:
        ids = dict(conn.execute("SELECT uid, id FROM runs").fetchall())
        conn.execute("INSERT INTO meta VALUES (?, 'somebody-else')",
                     (f"fts_pending:{ids['o1']:020d}",))
        conn.execute("INSERT INTO meta VALUES (?, 'o2')", (f"fts_pending:{ids['o2']:020d}",))
        conn.execute("INSERT INTO meta VALUES (?, 'o9')", (f"fts_pending:{99:020d}",))
    conn.close()
    with FileStore(path=tmp_path) as store:
        assert text_hits(store, "puffin") == ["o0"]
        assert text_hits(store, "gannet") == ["o1", "o2"]
        store.insert("start", start_doc("o3", 3, "gannet"))
        assert text_hits(store, "gannet") == ["o1", "o2", "o3"]
    assert index_state(tmp_path) == (0, 4)
    assert fts_consistent(tmp_path)


QUERIES = ["zebra", "lion", "zebra lion", "-zebra lion", '"zebra finch"', "finch -zebra",
           "scan", "Zebra", "tiger", "café", "7", "r05"]


@pytest.mark.parametrize("close_first", [False, True])
def test_text_answers_match_the_memory_store_for_pending_and_written_rows(
    tmp_path: Path, close_first: bool
) -> None:
    """``db('...')`` over 40 runs, 32 with written rows and 8 pending (or all written after
    the close), in the writer and in a second store, answers as the memory store does."""
    samples = ["zebra finch", "lion", "zebra lion", "café au lait", "zebra", "tiger finch"]
    writer = FileStore(path=tmp_path)
    reference = MemoryStore()
    for i in range(40):
        docs = [("start", start_doc(f"r{i:02d}", i, samples[i % len(samples)]))]
        if i % 4:
            docs.append(("stop", stop_doc(f"r{i:02d}", i)))
        for name, doc in docs:
            writer.insert(name, doc)
            reference.insert(name, doc)
    if close_first:
        writer.close()
    assert index_state(tmp_path) == ((0, 40) if close_first else (8, 32))
    expected = {q: [h.start["uid"] for h in Broker(reference)(q)] for q in QUERIES}
    assert expected["zebra"] and expected["-zebra lion"]  # the queries select something
    with FileStore(path=tmp_path) as reader:
        assert {q: [h.start["uid"] for h in Broker(reader)(q)] for q in QUERIES} == expected
    if not close_first:
        assert {q: [h.start["uid"] for h in Broker(writer)(q)] for q in QUERIES} == expected
        writer.close()


def test_without_fts5_starts_leave_no_markers(tmp_path: Path) -> None:
    """An index made where FTS5 was missing: runs are indexed as before, with no markers,
    and text searches are answered by the exact matcher."""
    FileStore(path=tmp_path).close()
    with sqlite3.connect(index_file(tmp_path)) as conn:
        conn.execute("DROP TABLE runs_fts")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'fts'")
    conn.close()
    with FileStore(path=tmp_path) as store:
        assert not store._index.fts
        for i in range(BATCH + 1):
            store.insert("start", start_doc(f"n{i:02d}", i, "wren" if i == 5 else "robin"))
        assert store._index_rows("SELECT count(*) FROM meta WHERE key LIKE 'fts_pending:%'") == [
            (0,)]
        assert text_hits(store, "wren") == ["n05"]
