"""WAL checkpoints of the files store's index run on a thread of their own.

The writing connection keeps SQLite's autocheckpoint only as a backstop (at
``BACKSTOP_PAGES``); a background connection checkpoints every few commits, so the log stays
small without a checkpoint (and its two fsyncs) landing on an insert.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from broker_v1.stores.files import FileStore
from broker_v1.stores.files._checkpoint import BACKSTOP_PAGES, CHECKPOINT_EVERY, _Checkpointer

T0 = 1_700_000_000.0
PAGE = 4096


def run_docs(uid: str) -> list[tuple[str, dict[str, Any]]]:
    desc = f"{uid}-primary"
    return [
        ("start", {"uid": uid, "time": T0, "scan_id": 1, "plan_name": "count"}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": T0, "name": "primary",
                        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "sim"}}}),
        ("event", {"uid": f"{uid}-e1", "descriptor": desc, "time": T0 + 1, "seq_num": 1,
                   "data": {"x": 1.0}, "timestamps": {"x": T0 + 1}}),
        ("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 2,
                  "exit_status": "success"}),
    ]


def test_background_checkpoints_keep_the_log_small(tmp_path: Path) -> None:
    runs = 300  # three commits each: several background checkpoints
    store = FileStore(path=tmp_path)
    wal = Path(store._index.location + "-wal")
    conn = store._index.conn()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    for i in range(runs):
        for name, doc in run_docs(f"run-{i}"):
            store.insert(name, doc)
    checkpointer = store._index._checkpointer
    assert checkpointer is not None
    assert checkpointer._pending is not None
    checkpointer._pending.result()  # the last one started may still be running
    assert checkpointer.runs >= 1
    # The log stays bounded by the backstop (a frame is a page and a 24-byte header).
    assert wal.stat().st_size <= 32 + (BACKSTOP_PAGES + 64) * (PAGE + 24)
    # Everything is there for another connection, before and after the store closes (the
    # last run's stop rows wait for the store's next transaction, or its close).
    other = sqlite3.connect(store._index.location)
    stopped = "SELECT count(*) FROM runs WHERE stop IS NOT NULL"
    assert other.execute(stopped).fetchone() == (runs - 1,)
    store.close()
    assert other.execute(stopped).fetchone() == (runs,)
    other.close()
    assert not wal.exists()  # the store's connection closed last and removed the log
    with FileStore(path=tmp_path) as again:
        assert again.count_runs() == runs


def test_checkpointer_runs_every_so_many_commits(tmp_path: Path) -> None:
    location = str(tmp_path / "index.sqlite")
    conn = sqlite3.connect(location, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # only the checkpointer copies the log
    conn.execute("CREATE TABLE t (x)")
    checkpointer = _Checkpointer(location, every=CHECKPOINT_EVERY)
    try:
        for i in range(CHECKPOINT_EVERY - 1):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            checkpointer.committed()
        assert checkpointer.runs == 0
        conn.execute("INSERT INTO t VALUES (-1)")
        checkpointer.committed()
        assert checkpointer._pending is not None
        checkpointer._pending.result()
        assert checkpointer.runs == 1
        # Every frame was copied into the database: a reader of the file alone sees the rows.
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, log - done) == (0, 0)
    finally:
        checkpointer.close()
        conn.close()
    assert checkpointer._conn is None and checkpointer._pool is None
    with sqlite3.connect(location) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (CHECKPOINT_EVERY,)
    os.unlink(location)


def log_frames(location: str) -> int:
    """Frames the index's write-ahead log holds now (read by a connection of its own)."""
    with contextlib.closing(sqlite3.connect(location)) as other:
        busy, frames, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
    assert busy == 0
    return int(frames)


def test_a_round_starts_the_log_over_while_runs_keep_coming(tmp_path: Path) -> None:
    """Runs keep coming, as a RunEngine records them: one checkpoint never copies the whole
    log (the writer commits meanwhile), so the round checkpoints again after the writer's
    next commits until the log is started over; the writer's own backstop (thousands of
    pages and two fsyncs on an insert) is not needed."""
    store = FileStore(path=tmp_path)
    store.insert(*run_docs("first")[0])
    checkpointer = store._index._checkpointer
    assert checkpointer is not None
    i = 0
    while checkpointer.runs < 1 and i < 20 * CHECKPOINT_EVERY:
        for name, doc in run_docs(f"run-{i}"):
            store.insert(name, doc)
        time.sleep(0.002)  # a short scan's pace at the fastest
        i += 1
    assert checkpointer.runs == 1
    for name, doc in run_docs("after"):  # its transaction begins after the round
        store.insert(name, doc)
    # Started over: the log holds the last few transactions, not the round's hundreds.
    assert log_frames(store._index.location) < 100
    store.close()
