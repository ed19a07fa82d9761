"""The links our writers record in the index: directory mtime before -> after a run file.

A writer that creates a run file records, in the transaction that writes the run's rows, the
directory mtime it saw just before and just after the creation (``meta`` rows keyed by the
"before" time: :func:`record_link`).  A reader whose directory mtime moved follows these
links from the time it knew to the time it sees (:class:`LinkFollower`); where they lead
there, only our writers changed the directory and their runs are in the index already, so
nothing is listed (see ``_scan``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

# Meta key prefix of the links our writers record: directory mtime before -> after creating
# a run file (both in ns, the "before" zero-padded so keys sort by time).
_LINK_PREFIX = "dir_link:"
# Links older than this are pruned; a reader further behind lists the directory instead.
_LINK_KEEP_NS = 60 * 10**9
# A writer prunes old links at most this often (seconds): pruning at every start cost a
# statement per run, where the links a second adds are a few rows of ``meta``.
LINK_PRUNE_EVERY_S = 1.0
# At most this many links are followed per refresh (a reader further behind lists instead).
_LINK_HOPS = 64


def link_key(mtime_ns: int) -> str:
    """The meta key of the link that starts at directory mtime ``mtime_ns``."""
    return f"{_LINK_PREFIX}{mtime_ns:020d}"


def record_link(
    conn: sqlite3.Connection, before_ns: int, after_ns: int, *, prune: bool = True
) -> None:
    """Record, in the writer's transaction, that creating one of our run files (whose rows
    the same transaction writes) moved the directory mtime from ``before_ns`` to
    ``after_ns``; with ``prune``, links older than ``_LINK_KEEP_NS`` before it are deleted."""
    if before_ns == after_ns or before_ns < 0:
        return
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (link_key(before_ns), str(after_ns)),
    )
    if not prune:
        return
    conn.execute(
        "DELETE FROM meta WHERE key >= ? AND key < ?",
        (_LINK_PREFIX, link_key(max(0, before_ns - _LINK_KEEP_NS))),
    )


# ---------------------------------------------------------------------- the reader's side
# A writer records the link of a run file it creates in the index a fraction of a millisecond
# after creating it.  A change this recent that no link explains yet is looked at again after
# each of a few short waits before the directory is listed (a listing of 100,000 names costs
# 0.15-0.3 s; a writer recording as fast as it could had its link in within 0.4 ms 97 times
# in 100 here).
_LINK_RECENT_NS = 50_000_000
_LINK_WAITS_S = (0.0001, 0.0001, 0.0002, 0.0003, 0.0003)
# Then, in a big directory, waits of a millisecond while the time waited is under this share
# of what the last listing took (at 100,000 runs a listing costs 0.1 s, and a writer slowed
# by a busy machine commits its link a few milliseconds late), up to _LINK_WAIT_MAX_S.
_LINK_WAIT_SHARE_OF_LISTING = 0.1
_LINK_WAIT_MAX_S = 0.02
# Longer while one of our writers is recording (a link starts in the second before the
# change): there a late link, not a program that does not link, is the likely cause.  A
# writer sharing 2 cores with a polling reader committed one link in ~3,000 10-50 ms late.
_LINK_WAIT_SHARE_WHILE_RECORDING = 0.5
_LINK_WAIT_MAX_WHILE_RECORDING_S = 0.05
_RECORDING_WITHIN_NS = 1_000_000_000
# Reading a link costs about what listing a few names does, so a chain of up to this many
# links per name of the last listing is followed rather than listing again: a reader that
# spent 0.1 s listing 100,000 names while a writer created 600 runs a second was otherwise
# too far behind for the fixed limit, and listed again, two or three times a second.
_LINKS_PER_NAME_LISTED = 0.125


class IndexReader(Protocol):
    """What following links needs of the index (``_Index.read``)."""

    def read(self, sql: str, params: Sequence[Any] = (), *,
             deferred_matter: bool = True) -> list[Any]: ...


class LinkFollower:
    """A reader's question to the links: did only our writers change the directory?

    Parameters
    ----------
    index
        The index the links are in.
    names_known
        How many names the reader's last listing held (before its first, about how many
        files the index holds): it sizes the chain followed.
    """

    def __init__(self, index: IndexReader, names_known: Callable[[], int]) -> None:
        self._index = index
        self._names_known = names_known

    def explained_soon(self, known: int, now: int, listing_s: float) -> bool:
        """:meth:`explained`, waiting a little for the link of a change made a moment ago
        (a writer between creating a run file and committing its index rows), longer while
        one of our writers is recording; ``listing_s`` is what listing instead would cost."""
        if self.explained(known, now):
            return True
        if time.time_ns() - now > _LINK_RECENT_NS:
            return False
        share, most = _LINK_WAIT_SHARE_OF_LISTING, _LINK_WAIT_MAX_S
        if self._index.read("SELECT 1 FROM meta WHERE key >= ? AND key < ? LIMIT 1",
                            (link_key(now - _RECORDING_WITHIN_NS), link_key(now)),
                            deferred_matter=False):
            share = max(share, _LINK_WAIT_SHARE_WHILE_RECORDING)
            most = max(most, _LINK_WAIT_MAX_WHILE_RECORDING_S)
        longer = min(listing_s * share, most)
        naps = _LINK_WAITS_S + (0.001,) * max(0, round((longer - sum(_LINK_WAITS_S)) / 0.001))
        for pause in naps:
            time.sleep(pause)
            if self.explained(known, now):
                return True
        return False

    def explained(self, known: int, now: int) -> bool:
        """Whether our writers' links lead from directory mtime ``known`` to ``now``.

        The links that start between the two are read at once (a reader polling every few
        ms follows one per run created meanwhile), up to :data:`_LINK_HOPS` or, in a big
        directory, :data:`_LINKS_PER_NAME_LISTED` per name known; a chain that leaves them
        (a clock set back) is followed one link at a time, :data:`_LINK_HOPS` at most."""
        hops = max(_LINK_HOPS, int(self._names_known() * _LINKS_PER_NAME_LISTED))
        links = dict(self._index.read(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (link_key(known), link_key(now), hops),
        )) if known < now else {}
        key = link_key(known)
        single_reads = _LINK_HOPS
        for _ in range(hops + _LINK_HOPS):
            value = links.get(key)
            if value is None:
                if not single_reads:
                    return False
                single_reads -= 1
                rows = self._index.read("SELECT value FROM meta WHERE key = ?", (key,))
                if not rows:
                    return False
                value = rows[0][0]
            after = int(value)
            if after == now:
                return True
            key = link_key(after)
        return False
