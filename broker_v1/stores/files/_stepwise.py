"""Confirming a racy directory mtime of a big directory a slice per lookup.

A directory mtime our writers' links explain is still "racy" (see ``_scan``): a program that
does not use our index may have made an entry in the same clock tick.  One more listing,
once the mtime is old enough, confirms it.  At 100,000 run files that listing costs a lookup
0.1-0.2 s, and a reader polling while runs arrive paid it once a second.  Where the last
listing was big, the confirmation instead reads the directory a slice per lookup (about
:data:`STEP_S` of reading each) through one ``os.scandir`` kept open between lookups, and
hands back the names the last listing did not hold.

Every entry that exists for the whole listing is read exactly once (POSIX ``readdir``), so
the confirmation covers whatever was made before it began; entries made later are
explained by links or confirmed in turn.  A confirmation running longer than
:data:`FINISH_AFTER_S` is finished in one lookup, so a reader that polls rarely still finds
a hidden entry within seconds.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Container

#: Time one lookup spends reading the directory (seconds), checked every :data:`_BATCH`
#: entries.
STEP_S = 0.0003
#: A confirmation older than this (seconds) is finished at once.
FINISH_AFTER_S = 5.0
_BATCH = 128


class _StepwiseListing:
    """One listing of a directory, read a slice at a time.

    Parameters
    ----------
    dirname
        The directory.
    dir_stat
        Its ``os.stat`` when the listing began.
    began
        ``time.time()`` when it began.
    """

    def __init__(self, dirname: str, dir_stat: os.stat_result, began: float) -> None:
        self.dir_stat = dir_stat
        self.began = began
        self.done = False
        self._pid = os.getpid()
        self._started = time.monotonic()
        self._entries = os.scandir(dirname)

    def inherited(self) -> bool:
        """Whether this process inherited the listing from its parent (a fork): reading on
        would move the parent's position in the directory too."""
        return os.getpid() != self._pid

    def step(self, known: Container[str]) -> list[str]:
        """The names not in ``known`` among the next slice of the directory (all the rest
        once the listing is older than :data:`FINISH_AFTER_S`); :attr:`done` when none is
        left.

        Raises
        ------
        OSError
            The directory could not be read (the listing is closed).
        """
        deadline = None
        if time.monotonic() - self._started < FINISH_AFTER_S:
            deadline = time.perf_counter() + STEP_S
        found: list[str] = []
        try:
            while True:
                names = [entry.name for entry in itertools.islice(self._entries, _BATCH)]
                found.extend(name for name in names if name not in known)
                if len(names) < _BATCH:
                    self.done = True
                    break
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        except OSError:
            self.close()
            raise
        if self.done:
            self.close()
        return found

    def close(self) -> None:
        """Release the directory (a forked child releases only its own copy)."""
        self._entries.close()

    def __del__(self) -> None:
        # A store dropped without close() mid-listing: release the directory quietly.
        entries = getattr(self, "_entries", None)
        if entries is not None:
            entries.close()
