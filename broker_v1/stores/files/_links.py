"""The links our writers record in the index: directory mtime before -> after a run file.

A writer that creates a run file records, in the transaction that writes the run's rows, the
directory mtime it saw just before and just after the creation (``meta`` rows keyed by the
"before" time).  A reader whose directory mtime moved follows these links from the time it
knew to the time it sees; where they lead there, only our writers changed the directory and
their runs are in the index already, so nothing is listed (see ``_scan``).
"""

from __future__ import annotations

import sqlite3

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
