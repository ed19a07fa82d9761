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

A process that has not listed the directory yet (one that opened an index already up to
date) compares the listing with the names the index holds instead, and reads those a slice
per lookup first (:class:`_IndexedNames`): reading 100,000 of them at once costs ~0.1 s too.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Container

#: Time one lookup spends reading the directory (seconds), checked every :data:`_BATCH`
#: entries.
STEP_S = 0.0003
#: A confirmation older than this (seconds) is finished at once.
FINISH_AFTER_S = 5.0
_BATCH = 128
#: Names :class:`_IndexedNames` asks the index for at a time.
_NAMES_PER_QUERY = 128


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
    started
        ``time.monotonic()`` when the confirmation began, if before the listing (the names
        of the index were read first): :data:`FINISH_AFTER_S` counts from it.
    """

    def __init__(self, dirname: str, dir_stat: os.stat_result, began: float,
                 started: float | None = None) -> None:
        self.dir_stat = dir_stat
        self.began = began
        self.done = False
        self._pid = os.getpid()
        self._started = time.monotonic() if started is None else started
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


class _IndexedNames:
    """The names of the files the index holds, read a slice per lookup (about
    :data:`STEP_S` of reading each, all the rest once older than :data:`FINISH_AFTER_S`), in
    name order: what a confirmation compares the directory with where this process has not
    listed it.  A name the index gains meanwhile below the slices read is missed here; the
    listing then hands it back as new, and indexing it finds it indexed already.

    Parameters
    ----------
    names_after
        ``names_after(name, limit)``: the index's first ``limit`` file names after ``name``
        (in name order).
    """

    def __init__(self, names_after: Callable[[str, int], list[str]]) -> None:
        self.names: set[str] = set()
        self.started = time.monotonic()
        self._names_after = names_after
        self._last = ""

    def step(self) -> bool:
        """Read the next slice; True once every name is read."""
        deadline = None
        if time.monotonic() - self.started < FINISH_AFTER_S:
            deadline = time.perf_counter() + STEP_S
        while True:
            page = self._names_after(self._last, _NAMES_PER_QUERY)
            self.names.update(page)
            if len(page) < _NAMES_PER_QUERY:
                return True
            self._last = page[-1]
            if deadline is not None and time.perf_counter() >= deadline:
                return False
