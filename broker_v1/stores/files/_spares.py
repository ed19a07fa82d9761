"""Run files created ahead of their runs, so that a start does not wait for the file system.

Creating a file allocates an inode, and that can be slow: ext4 without a journal skips, one
check each, every inode of the group deleted in the last minutes (seen here: 20 µs on a quiet
disk, 400-900 µs after a few thousand deletions nearby).  So the store's background thread
creates the next run's file early (while a stop waits for its fsync), as an empty file in
``.broker_v1/spare/``, and a start gives it its name with ``os.link`` (which, like
``O_EXCL``, fails when the name exists) and drops the spare name.  The run directory's
mtime moves only at that link, as it did at the create, so the index's directory links stay
exact.

A process killed between the link and the unlink leaves a second name for a run file in the
spare folder; a process killed with a spare unused leaves an empty file there.  The next
writer in that store removes both kinds left by processes that are gone (on POSIX, where a
pid can be asked whether it runs).  Where hard links are refused (some network and FAT file
systems), the first start finds out and the writer creates files directly from then on.
"""

from __future__ import annotations

import contextlib
import errno
import os
from concurrent.futures import Future
from pathlib import Path

from ._format import STATE_DIR
from ._syncs import _Syncs

SPARE_DIR = "spare"
#: What ``os.link`` says where a file system has no hard links (or not across these folders).
_NO_LINKS = frozenset(
    getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK", "ENOSYS")
    if hasattr(errno, name)
)
#: How a run file is opened: appends only, and never inherited by a child process.
RUN_FILE_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it runs
        return False
    return False


class _SpareFiles:
    """The next run file of one writer, created on the store's background thread.

    Parameters
    ----------
    path
        The store directory.
    syncs
        The store's background work (its thread creates the spares).
    """

    def __init__(self, path: Path, syncs: _Syncs) -> None:
        self.folder = os.path.join(path, STATE_DIR, SPARE_DIR)
        self._syncs = syncs
        # Decided at the first start: only where the state folder exists (the default
        # layout; creating it later would move the run directory's mtime unrecorded) and a
        # pid can be asked whether it runs.
        self.enabled: bool | None = None
        self._next: Future[tuple[int, str] | None] | None = None
        self._used: str | None = None  # the spare name of the file just taken, to drop
        self._swept = False

    def take(self, path: str) -> int | None:
        """Give the ready spare the name ``path``: its descriptor (open for appending), or
        None when no spare is ready (the caller creates the file itself).  Call
        :meth:`replenish` later (at the run's stop), whatever this returned.

        Raises
        ------
        FileExistsError
            ``path`` exists; the spare is kept for the next run.
        """
        if self.enabled is None:
            self.enabled = os.name == "posix" and os.path.isdir(os.path.dirname(self.folder))
        ready = self._next
        if not self.enabled or ready is None or not ready.done():
            return None
        made = ready.result()  # _make never raises
        self._next = None
        if made is None:
            self.enabled = False  # the spare folder cannot be written: create directly
            return None
        fd, spare = made
        try:
            os.link(spare, path)
        except FileExistsError:
            self._next = ready
            raise
        except OSError as err:
            if err.errno in _NO_LINKS:
                self.enabled = False  # this file system has no hard links: create directly
            elif err.errno != errno.ENOENT:
                self._next = ready  # the directory refuses new names now (the caller's
                return None  # create says why); the spare waits for the next run
            os.close(fd)  # gone, or of no use
            self._used = spare
            return None
        self._used = spare
        return fd

    def replenish(self) -> None:
        """Queue, as one task of the background thread, dropping the name of the spare last
        used and making the next one (nothing when neither is due).

        Called by a stop just before it waits for its fsync: the background thread's system
        calls then run while the recording thread waits, not while it writes the next
        run's descriptors and events (seen: 35-50 µs more per descriptor call when made
        right after the start).
        """
        used, self._used = self._used, None
        made: Future[tuple[int, str] | None] | None = None
        if self.enabled and self._next is None:
            made = self._next = Future()
        if made is None and used is None:
            return

        def work() -> None:
            if used is not None:
                with contextlib.suppress(OSError):
                    os.unlink(used)  # the run file keeps its own name
            if made is not None:
                made.set_result(self._make())

        self._syncs.soon(work)

    def _make(self) -> tuple[int, str] | None:
        """Create one empty spare run file (on the background thread)."""
        try:
            if not self._swept:
                os.makedirs(self.folder, exist_ok=True)
                self._sweep()
                self._swept = True
            spare = os.path.join(self.folder, f"{os.getpid()}-{os.urandom(8).hex()}.jsonl")
            return os.open(spare, RUN_FILE_FLAGS, 0o644), spare
        except OSError:
            return None

    def _sweep(self) -> None:
        """Remove the spares, used or not, of processes that are gone."""
        for entry in os.scandir(self.folder):
            pid, dash, _ = entry.name.partition("-")
            if dash and pid.isdigit() and int(pid) != os.getpid() and _process_gone(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def discard(self) -> None:
        """Close and remove the unused spare (the store is closing; its background thread
        has finished)."""
        used, self._used = self._used, None
        if used is not None:
            with contextlib.suppress(OSError):
                os.unlink(used)
        ready, self._next = self._next, None
        if ready is None or not ready.done():
            return
        made = ready.result()
        if made is not None:
            fd, spare = made
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(spare)

    def forget_after_fork(self) -> None:
        """In a forked child: the spare is the parent's; make the child's own when needed."""
        ready, self._next = self._next, None
        self._used = None  # the parent drops that name
        if ready is not None and ready.done():
            made = ready.result()
            if made is not None:
                with contextlib.suppress(OSError):
                    os.close(made[0])  # the child's copy of the descriptor only
        self._swept = False
