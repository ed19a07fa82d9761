"""Deferred fsyncs: inside ``deferred_sync()`` a run's stop does not wait for its fsync.

Each fsync is handed to a few background threads (they wait on the disk, not on Python)
and the directory is synced once at the end of the block; leaving the block waits for all
of them and names the files whose fsync failed.

Outside such a block, one background thread takes the work a stop need not wait for: the
directory fsync of a new run file (started when the run starts; the stop waits for it only
if it has not finished) and writing the columnar cache (derived data, never fsynced).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import StoreUnavailable
from ._background import BackgroundTask, BackgroundThread

#: Most stop fsyncs in flight at once inside ``deferred_sync()`` (each holds a descriptor).
_MAX_PENDING_SYNCS = 64


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Syncs:
    """The fsyncs a store has in flight inside ``deferred_sync()``, and directory syncs.

    Parameters
    ----------
    path
        The store directory.
    label
        The store's description, for messages.
    lock
        The store's lock.
    """

    def __init__(self, path: Path, label: str, lock: threading.RLock) -> None:
        self.path = path
        self._label = label
        self._lock = lock
        # deferred_sync(): nesting depth, the syncs in flight (file name, future), and whether
        # the directory holds new entries not yet synced.
        self.deferred = 0
        self._sync_pool: Any = None
        self._pending_syncs: deque[tuple[str, Any]] = deque()
        self.dir_unsynced = False
        # The one background thread (started on first use; a forked child starts its own),
        # and the columnar caches it has yet to write, by run file name.
        self._background = BackgroundThread("broker_v1-bg")
        self._caches: dict[str, BackgroundTask] = {}
        self._caches_pid = os.getpid()
        # The directory, kept open for the fsync of each new run file's entry, and its
        # (st_dev, st_ino) when opened; guarded by its own lock (used from two threads).
        self._dir_lock = threading.Lock()
        self._dir_fd: int | None = None
        self._dir_identity: tuple[int, int] | None = None

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    def begin(self) -> None:
        """Enter a ``deferred_sync()`` block (the outermost one starts the threads)."""
        with self._lock:
            if self.deferred == 0 and self._sync_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._sync_pool = ThreadPoolExecutor(4, thread_name_prefix="broker_v1-fsync")
            self.deferred += 1

    def end(self) -> bool:
        """Leave a ``deferred_sync()`` block; True when it was the outermost one."""
        with self._lock:
            self.deferred -= 1
            return self.deferred == 0

    def queue(self, name: str, fd: int) -> None:
        """fsync and close ``fd`` in the background; at most a few dozen wait at once."""
        assert self._sync_pool is not None
        while len(self._pending_syncs) >= _MAX_PENDING_SYNCS:  # bound the open descriptors
            self._pending_syncs[0][1].result()
            self._pending_syncs.popleft()
        self._pending_syncs.append((name, self._sync_pool.submit(_fsync_and_close, fd)))

    def wait(self) -> None:
        failed = []
        while self._pending_syncs:
            name, future = self._pending_syncs.popleft()
            try:
                future.result()
            except OSError as err:
                failed.append(f"{name} ({err.strerror})")
        pool, self._sync_pool = self._sync_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self.dir_unsynced:
            self.fsync_directory()
            self.dir_unsynced = False
        if failed:
            raise StoreUnavailable(
                f"{self.describe()}: {len(failed)} run file(s) were written but could not be "
                f"flushed to disk: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}. "
                "They may be lost if the machine stops; check the disk, then write them again "
                "(an identical re-insert or copy is a no-op)."
            )

    def soon(self, fn: Callable[..., Any], *args: Any) -> BackgroundTask:
        """Run ``fn(*args)`` on the store's background thread; the task, to wait for it."""
        return self._background.soon(fn, *args)

    def cache_soon(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        """Write ``name``'s columnar cache in the background (``fn`` swallows its errors)."""
        with self._lock:
            if self._caches_pid != os.getpid():
                self._caches.clear()  # a forked child's copy of its parent's queue
                self._caches_pid = os.getpid()
            self._caches[name] = self.soon(fn, *args)

    def settle(self, name: str) -> None:
        """Wait until the columnar cache of ``name`` queued here, if any, is written."""
        with self._lock:
            task = self._caches.pop(name, None)
        if task is not None and self._caches_pid == os.getpid():
            task.result()

    def drain(self) -> None:
        """Finish everything queued on the background thread (the store is closing)."""
        with self._lock:
            self._caches.clear()
        self._background.finish()
        with self._dir_lock:
            self._keep_dir_fd(None, None)

    def fsync_directory(self, identity: tuple[int, int] | None = None) -> None:
        """Make the store directory's entries durable.

        Parameters
        ----------
        identity
            ``(st_dev, st_ino)`` of the directory, as the caller just found it at the store's
            path.  The descriptor of an earlier call is used again only for that same
            directory (not one moved there since), so a run's start costs the background
            thread one system call instead of three (open, fsync, close).
        """
        with self._dir_lock:
            fd = self._dir_fd if identity is not None and identity == self._dir_identity else None
            if fd is None:
                try:
                    fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError:  # pragma: no cover - e.g. Windows
                    return
                if identity is not None:
                    try:
                        st = os.fstat(fd)
                    except OSError:  # pragma: no cover - a descriptor just opened
                        st = None
                    if st is not None and (st.st_dev, st.st_ino) == identity:
                        self._keep_dir_fd(fd, identity)
            try:
                os.fsync(fd)
            except OSError:  # pragma: no cover - some file systems refuse fsync on directories
                pass
            finally:
                if fd != self._dir_fd:
                    os.close(fd)

    def _keep_dir_fd(self, fd: int | None, identity: tuple[int, int] | None) -> None:
        """Keep ``fd`` as the directory's descriptor (closing the one kept before)."""
        if self._dir_fd is not None and self._dir_fd != fd:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
        self._dir_fd, self._dir_identity = fd, identity
