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

SQLite starts the log over (writes from its beginning again, instead of growing it) only at
a transaction that begins when every frame of the log has been copied.  Under a steady
stream of inserts one checkpoint never achieves that: the writer commits while it copies.
So a background round goes on, right after each of the writer's next commits, copying the
few frames that commit added, until the log has been started over (usually two to four
checkpoints of a few dozen pages).  Without that the writer's backstop did it: a checkpoint
of thousands of pages and two fsyncs on an insert, 8-15 ms every ~235 RunEngine-shaped runs
here (about 50 µs per run).
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
#: The writing connection's own ``wal_autocheckpoint`` (pages), a backstop only: above what
#: ``CHECKPOINT_EVERY`` commits write (about 4,400 pages of RunEngine-shaped runs), so it
#: fires only when background rounds could not start the log over (another process reading
#: an old snapshot for long, or this thread falling behind).
BACKSTOP_PAGES = 10_000
#: A background round's checkpoints at most (one, then one after each of the writer's next
#: commits until the log is started over), and how long one waits for that commit (seconds;
#: a writer that does not commit meanwhile starts the log over at its next transaction).
CATCH_UP_CHECKPOINTS = 20
CATCH_UP_WAIT_S = 0.05


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
        # Set by the writer's next commit while a round waits for it (None otherwise).
        self._next_commit: threading.Event | None = None
        self._closing = False
        #: Background rounds run so far (for tests and benchmarks).
        self.runs = 0

    def committed(self) -> None:
        """Count a commit of the store's connection; every ``every``-th starts a checkpoint
        unless one is still running."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_after_fork()
            self._commits += 1
            if self._next_commit is not None:
                self._next_commit.set()
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
            self._catch_up(self._conn)
            self.runs += 1
        except sqlite3.Error:
            # Best effort: the writing connection's autocheckpoint still bounds the log, and
            # the next round opens a fresh connection.
            self._close_conn()

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Checkpoint until the writer has started the log over (see the module's notes)."""
        copied_before = None
        for _ in range(CATCH_UP_CHECKPOINTS):
            # fetchall: a statement left unfinished would keep a read lock, and with it the
            # log from being started over.
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
            if copied_before is not None and frames < copied_before:
                return  # started over since the last checkpoint
            if busy or frames <= 0 or copied < frames or self._closing:
                return  # no log or an empty one, or a reader holds frames: nothing to do
            copied_before = frames
            waiting = threading.Event()
            with self._lock:
                self._next_commit = waiting
            try:
                if not waiting.wait(CATCH_UP_WAIT_S) or self._closing:
                    return  # no commit: the writer's next transaction starts the log over
            finally:
                with self._lock:
                    self._next_commit = None

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _forget_after_fork(self) -> None:
        # A forked child has neither the thread nor the right to its parent's connection.
        self._pool, self._pending, self._conn = None, None, None
        self._next_commit, self._closing = None, False
        self._commits = 0
        self._pid = os.getpid()

    def close(self) -> None:
        """Wait for a running checkpoint, then close the thread and the connection."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_after_fork()
                return
            pool, self._pool, self._pending = self._pool, None, None
            self._closing = True
            if self._next_commit is not None:
                self._next_commit.set()  # a round waiting for a commit stops now
        if pool is not None:
            pool.shutdown(wait=True)
        self._close_conn()
