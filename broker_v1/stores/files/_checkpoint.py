"""WAL checkpoints of the index, run on a thread of their own instead of on an insert.

SQLite copies its write-ahead log back into the database file whenever a commit finds the
log past ``wal_autocheckpoint`` pages, and with ``synchronous = NORMAL`` that copy fsyncs
both files.  On the writing connection it lands on whichever insert commits then (every few
dozen runs, often a stop).  The store's connection therefore leaves checkpoints to
:class:`_Checkpointer`: every few commits it runs a PASSIVE checkpoint on its own connection
and thread (it neither waits for nor blocks readers and writers; the GIL is released while
SQLite works), and SQLite's own autocheckpoint stays armed at a larger threshold, so the log
stays bounded even if this thread falls behind.  A checkpoint changes nothing of what the
index holds, and a crash in one is recovered by SQLite itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

#: Commits of the store's connection between two background checkpoints: a RunEngine-shaped
#: run commits one transaction of about 17 pages (its start with the previous run's stop
#: rows), so this is about every 256 runs.
#: Rarer is better on a shared disk: each checkpoint fsyncs twice, and those fsyncs queue
#: with the stops' (measured in benchmarks/bench_runengine.py, 32 to 256 commits).
CHECKPOINT_EVERY = 256
#: The writing connection's own ``wal_autocheckpoint`` (pages), a backstop only.  SQLite can
#: start the log over only when a checkpoint has copied all of it before the next write;
#: under a steady stream of inserts the background one never quite has, so the backstop is
#: what restarts the log then (copying just the last few frames).
BACKSTOP_PAGES = 4000


class _Checkpointer:
    """Checkpoints the WAL of one index file in the background.

    Parameters
    ----------
    location
        The index file (never ``":memory:"``).
    every
        Commits between two checkpoints.
    """

    def __init__(self, location: str, every: int = CHECKPOINT_EVERY) -> None:
        self.location = location
        self.every = every
        self._lock = threading.Lock()
        self._commits = 0
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None
        self._conn: sqlite3.Connection | None = None
        #: Checkpoints run so far (for tests and benchmarks).
        self.runs = 0

    def committed(self) -> None:
        """Count a commit of the store's connection; every ``every``-th starts a checkpoint
        unless one is still running."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_after_fork()
            self._commits += 1
            if self._commits < self.every:
                return
            if self._pending is not None and not self._pending.done():
                return  # the one running covers these commits too
            self._commits = 0
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="broker_v1-checkpoint")
            self._pending = self._pool.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                conn = sqlite3.connect(
                    self.location, timeout=5.0, isolation_level=None, check_same_thread=False
                )
                # The same durability as the writing connection's checkpoints.
                conn.execute("PRAGMA synchronous = NORMAL")
                self._conn = conn
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.runs += 1
        except sqlite3.Error:
            # Best effort: the writing connection's autocheckpoint still bounds the log, and
            # the next round opens a fresh connection.
            self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _forget_after_fork(self) -> None:
        # A forked child has neither the thread nor the right to its parent's connection.
        self._pool, self._pending, self._conn = None, None, None
        self._commits = 0
        self._pid = os.getpid()

    def close(self) -> None:
        """Wait for a running checkpoint, then close the thread and the connection."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_after_fork()
                return
            pool, self._pool, self._pending = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._close_conn()
