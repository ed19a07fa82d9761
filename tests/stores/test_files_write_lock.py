"""Taking the index's write lock while another connection holds it.

SQLite's own wait naps a whole millisecond at the first try (then 2, 5, 10 ms ...), where
another process's index transaction holds the lock a few hundred µs; the index's
transactions nap briefly first (``_write_lock.begin_write``), then wait as SQLite does.  These
tests use a real second connection on a real index file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from broker_v1.stores.files import FileStore
from broker_v1.stores.files._write_lock import BUSY_TIMEOUT_MS, WRITE_LOCK_NAPS_S, begin_write

T0 = 1_700_000_000.0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _hold_write_lock(path: Path, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Another connection takes the write lock, inserts a row, and commits after
    ``seconds``; the event is set once it holds the lock."""
    holding = threading.Event()

    def hold() -> None:
        other = _connect(path)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES ('other')")
        holding.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait()
    return thread, holding


@pytest.fixture
def index_file(tmp_path: Path) -> Path:
    path = tmp_path / "index.sqlite"
    conn = _connect(path)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.close()
    return path


@pytest.mark.parametrize("held_s", [0.002, 0.2], ids=["within the naps", "past the naps"])
def test_the_lock_is_taken_once_the_other_transaction_ends(index_file: Path,
                                                           held_s: float) -> None:
    """Within the naps, the lock is asked for again after each (several attempts, not one
    left to SQLite's millisecond waits); past them, SQLite's wait takes over.  Either way
    the transaction begins after the other one's commit, and the connection's own busy
    timeout is back."""
    conn = _connect(index_file)
    attempts: list[str] = []
    conn.set_trace_callback(attempts.append)
    thread, _ = _hold_write_lock(index_file, held_s)
    begin_write(conn)
    conn.set_trace_callback(None)
    try:
        assert conn.in_transaction
        assert conn.execute("SELECT v FROM t").fetchall() == [("other",)]
        conn.execute("INSERT INTO t VALUES ('mine')")
        conn.execute("COMMIT")
    finally:
        thread.join()
    begins = [s for s in attempts if s.startswith("BEGIN")]
    assert len(begins) >= 2
    if held_s > sum(WRITE_LOCK_NAPS_S):
        assert len(begins) == len(WRITE_LOCK_NAPS_S) + 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    assert sorted(v for (v,) in conn.execute("SELECT v FROM t")) == ["mine", "other"]


def test_an_error_other_than_a_held_lock_is_raised_at_once(index_file: Path) -> None:
    conn = _connect(index_file)
    conn.execute("BEGIN")
    attempts: list[str] = []
    conn.set_trace_callback(attempts.append)
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_write(conn)
    conn.set_trace_callback(None)
    assert [s for s in attempts if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    conn.execute("ROLLBACK")


class _Python310Connection(sqlite3.Connection):
    """A connection whose errors are as Python 3.10's ``sqlite3`` raises them: without
    ``sqlite_errorcode`` (and that module has no ``SQLITE_BUSY`` either)."""

    def execute(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().execute(*args)
        except sqlite3.OperationalError as err:
            raise sqlite3.OperationalError(str(err)) from None


def test_python_310s_errors_tell_a_held_lock_from_other_errors(
        index_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where errors carry no code (Python 3.10), the message tells a held lock: it is waited
    for as always, and any other error is raised at once."""
    monkeypatch.delattr(sqlite3, "SQLITE_BUSY", raising=False)
    conn = sqlite3.connect(index_file, isolation_level=None, check_same_thread=False,
                           factory=_Python310Connection)
    attempts: list[str] = []
    conn.set_trace_callback(attempts.append)
    thread, _ = _hold_write_lock(index_file, 0.002)
    try:
        begin_write(conn)
    finally:
        thread.join()
    assert conn.in_transaction
    assert conn.execute("SELECT v FROM t").fetchall() == [("other",)]
    assert len([s for s in attempts if s.startswith("BEGIN")]) >= 2
    attempts.clear()
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_write(conn)  # already in one
    assert [s for s in attempts if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    conn.execute("ROLLBACK")
    conn.close()


def test_a_store_records_while_another_process_holds_the_index(tmp_path: Path) -> None:
    """A start whose index transaction meets the write lock held (another process indexing)
    is recorded once the lock is free; nothing is lost or doubled."""
    with FileStore(path=tmp_path) as store:
        store.insert("start", {"uid": "r0", "time": T0, "scan_id": 1})
        location = Path(store._index.location)
        holding = threading.Event()

        def hold() -> None:
            other = _connect(location)
            other.execute("BEGIN IMMEDIATE")
            holding.set()
            time.sleep(0.05)
            other.execute("COMMIT")
            other.close()

        thread = threading.Thread(target=hold)
        thread.start()
        holding.wait()
        try:
            store.insert("start", {"uid": "r1", "time": T0 + 1, "scan_id": 2})
        finally:
            thread.join()
        store.insert("stop", {"uid": "r1-stop", "run_start": "r1", "time": T0 + 2,
                              "exit_status": "success"})
    with FileStore(path=tmp_path) as fresh:
        assert [h["uid"] for h in fresh.find_run_starts({})] == ["r1", "r0"]
        assert fresh.get_run_stop("r1")["uid"] == "r1-stop"
