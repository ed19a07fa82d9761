"""Taking the index's write lock while another connection may hold it.

SQLite's own wait for a lock another connection holds (its busy handler) naps a whole
millisecond at the first try, then 2, 5, 10 ms and more, where another process's index
transaction holds the lock a few hundred µs: a reader indexing a run's stop, a writer
recording a start.  So a transaction here asks again after short naps first and leaves the
wait to SQLite only after them.
"""

from __future__ import annotations

import sqlite3
import time

#: How long (ms) a statement waits for a lock another connection holds before failing.
BUSY_TIMEOUT_MS = 60_000
#: SQLite's result code for a lock another connection holds (``sqlite3.SQLITE_BUSY`` exists
#: only from Python 3.11 on).
_SQLITE_BUSY = 5
#: The naps (seconds) between attempts at the write lock before SQLite's wait takes over
#: (about 6 ms in all).
WRITE_LOCK_NAPS_S = (20e-6, 50e-6, 100e-6, 100e-6, 200e-6, 200e-6, 300e-6, 500e-6, 500e-6,
                     1e-3, 1e-3, 2e-3)


def begin_write(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``: take the write lock, napping briefly while another
    connection holds it (:data:`WRITE_LOCK_NAPS_S`), then waiting as SQLite does (up to
    :data:`BUSY_TIMEOUT_MS`, the connection's busy timeout, restored in any case).

    Raises
    ------
    sqlite3.OperationalError
        At once for anything but a held lock; a lock still held after the wait.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        for nap in WRITE_LOCK_NAPS_S:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if not _held_elsewhere(err):
                    raise
            time.sleep(nap)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("BEGIN IMMEDIATE")


def _held_elsewhere(err: sqlite3.OperationalError) -> bool:
    """Whether ``err`` says another connection holds the lock."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:  # Python 3.10's errors carry no code; SQLite's message says it
        return str(err) == "database is locked"
    return bool(code & 0xFF == _SQLITE_BUSY)  # extended codes keep it in the low byte
