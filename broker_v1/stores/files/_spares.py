"""Run files created ahead of their runs, so that a start does not wait for the file system.

Creating a file allocates an inode, and that can be slow: ext4 without a journal skips, one
check each, every inode of the group deleted in the last minutes (seen here: 20 µs on a quiet
disk, 400-900 µs after a few thousand deletions nearby); on a network file system it is a
round trip.  So, once a start's create has taken longer than ``SLOW_CREATE_S``, the store's
background thread creates the next run's file early (after each start), as an empty file in
``.broker_v1/spare/``, and a start gives it its name with ``os.link`` (which, like
``O_EXCL``, fails when the name exists) and drops the spare name.  The run directory's
mtime moves only at that link, as it did at the create, so the index's directory links stay
exact.

A process killed between the link and the unlink leaves a second name for a run file in the
spare folder; a process killed with a spare unused leaves an empty file there.  The next
writer in that store removes both kinds left by processes that are gone (on POSIX, where a
pid can be asked whether it runs).  Where hard links are refused (some network and FAT file
systems), the first start finds out and the writer creates files directly from then on.

Where creating is quick, making spares costs more than it saves (the background thread's
work contends with the recording thread's: 70-116 µs per run where a create takes 15 µs), so
every ``PROBE_EVERY`` runs given a spare, one run's file is created directly and timed: if
that was quick, the writer creates files directly until a create is slow again.  Only
creates on the recording thread are timed: on the background thread, the time to get the
GIL back after the call would count too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from ._background import BackgroundTask
from ._format import STATE_DIR
from ._syncs import _Syncs

SPARE_DIR = "spare"
#: A run file's create taking longer than this (seconds) makes the writer make files ahead.
SLOW_CREATE_S = 100e-6
#: While files are made ahead, every this many runs one file is created directly and timed.
PROBE_EVERY = 64
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
        #: Whether files are being made ahead now (creates were slow); see ``_create``.
        self.ahead = False
        self.slow_create_s = SLOW_CREATE_S
        self._taken_since_probe = 0
        self._next: Future[tuple[int, str] | None] | None = None
        self._used: str | None = None  # the spare name of the file just taken, to drop
        self._swept = False
        self._folder_made = False
        # Spare names: this process's pid, a random tag drawn once, and a counter (one random
        # draw per spare was a system call on the background thread at every run).
        self._name_prefix: str | None = None
        self._made = 0

    def open_run_file(self, path: str) -> int:
        """Create the run file ``path`` (open for appending): the ready spare given that
        name, or a file created directly and timed.  Call :meth:`after_start` next.

        Raises
        ------
        OSError
            As ``os.open`` with ``O_EXCL`` (``FileExistsError`` when ``path`` exists; a
            ready spare is then kept for the next run).
        """
        fd = self._take(path)
        return self._create(path) if fd is None else fd

    def _take(self, path: str) -> int | None:
        """Give the ready spare the name ``path``: its descriptor, or None when no spare is
        ready (or this run is the one whose create is timed)."""
        if self.enabled is None:
            self.enabled = os.name == "posix" and os.path.isdir(os.path.dirname(self.folder))
        ready = self._next
        if not self.enabled or ready is None or not ready.done():
            return None
        if self._taken_since_probe >= PROBE_EVERY:
            self._taken_since_probe = 0
            return None  # this run's file is created directly, timed; the spare waits
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
        self._taken_since_probe += 1
        return fd

    def _create(self, path: str) -> int:
        """Create the run file ``path`` directly, noting whether that was slow enough to
        make the next ones ahead."""
        began = time.perf_counter()
        fd = os.open(path, RUN_FILE_FLAGS, 0o644)
        self.ahead = time.perf_counter() - began > self.slow_create_s
        return fd

    def after_start(self, first: Callable[[], None] | None) -> BackgroundTask | None:
        """Queue on the background thread ``first`` (the new run file's directory fsync),
        then dropping the name of the spare just used and making the next one while files
        are made ahead; the task of ``first`` (None without it).

        Made here, the next spare has a whole run to be ready; where creating is slow
        (800 µs after deletions nearby) a spare made at the stop was often not ready at the
        next start.
        """
        first_task = None if first is None else self._syncs.soon(first)
        used, self._used = self._used, None
        made: Future[tuple[int, str] | None] | None = None
        if self.enabled and self.ahead and self._next is None:
            made = self._next = Future()
        # Leftovers of processes that are gone are removed once per writer, spares or not.
        sweep = bool(self.enabled) and not self._swept
        if made is None and used is None and not sweep:
            return first_task

        def work() -> None:  # queued after first: the next run's file is made after it
            if sweep:
                self._sweep_once()
            if used is not None:
                with contextlib.suppress(OSError):
                    os.unlink(used)  # the run file keeps its own name
            if made is not None:
                made.set_result(self._make())

        self._syncs.soon(work)
        return first_task

    def _make(self) -> tuple[int, str] | None:
        """Create one empty spare run file (on the background thread)."""
        try:
            if not self._folder_made:
                os.makedirs(self.folder, exist_ok=True)
                self._folder_made = True
            if self._name_prefix is None:
                self._name_prefix = f"{os.getpid()}-{os.urandom(8).hex()}"
            self._made += 1
            spare = os.path.join(self.folder, f"{self._name_prefix}-{self._made}.jsonl")
            return os.open(spare, RUN_FILE_FLAGS, 0o644), spare
        except OSError:
            return None

    def _sweep_once(self) -> None:
        """Remove the spares, used or not, of processes that are gone (once per writer)."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError):  # e.g. no spare folder: no writer made spares here
            self._sweep()

    def _sweep(self) -> None:
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
        self._name_prefix = None  # the child names its spares with its own pid and tag
        if ready is not None and ready.done():
            made = ready.result()
            if made is not None:
                with contextlib.suppress(OSError):
                    os.close(made[0])  # the child's copy of the descriptor only
        self._swept = False
