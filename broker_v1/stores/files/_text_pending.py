"""Full-text rows written in batches: the runs this process starts wait as "text pending".

Writing a run's FTS5 row costs about as much as the rest of its start transaction (FTS5
flushes a new segment at every commit).  So a start records a marker instead, in the
index's ``meta`` table and the same transaction as the run's row: key
``fts_pending:<rowid>``, value the run's uid.  Markers are the truth every process sees (a
``$text`` search admits the runs they name); this process keeps the words of its own runs
in memory only to spare recomputing them.  :meth:`_PendingText.complete` writes the FTS rows
of *every* marker it finds (its own, and those a killed or still running writer left) and
deletes the markers, inside a transaction of the caller.

Runs rows and their markers are written and deleted together.  A marker whose run row is
gone (one an older version's ``forget_file`` left) is dropped; one whose rowid now holds
another run (the same) makes completion write that run's row again, from that row's own
words: cached words serve only the uid they were cached for, and the row is replaced, so
it is never duplicated.  The marker's value, the run's uid, is for people reading the index.
"""

from __future__ import annotations

import re
import sqlite3

#: Meta key prefix of the markers; ``PENDING_END`` is the first key after all of them.
PENDING_PREFIX = "fts_pending:"
PENDING_END = "fts_pending;"
#: The FTS rows are written once this many runs started here are pending.
PENDING_LIMIT = 32

_WORD = re.compile(r"\w+", re.UNICODE)

#: The rowids of all runs whose FTS row is pending (a superset filter for ``$text``).
PENDING_ROWIDS_SQL = (
    f"SELECT CAST(substr(key, {len(PENDING_PREFIX) + 1}) AS INTEGER) FROM meta "
    f"WHERE key >= '{PENDING_PREFIX}' AND key < '{PENDING_END}'"
)


def pending_key(rowid: int) -> str:
    """The meta key of the marker of the run with this rowid."""
    return f"{PENDING_PREFIX}{rowid:020d}"


def fts_words(text: str) -> str:
    """What the FTS table holds of a run whose index row has ``text`` as its words."""
    return " ".join(_WORD.findall(text))


def delete_marker(conn: sqlite3.Connection, rowid: int) -> None:
    """Drop the marker of a run whose rows are being deleted."""
    conn.execute("DELETE FROM meta WHERE key = ?", (pending_key(rowid),))


def delete_all_markers(conn: sqlite3.Connection) -> None:
    """Drop every marker (the runs table is being emptied)."""
    conn.execute("DELETE FROM meta WHERE key >= ? AND key < ?", (PENDING_PREFIX, PENDING_END))


class _PendingText:
    """The FTS rows of runs this process started that are not written yet.

    Not thread-safe on its own: the index calls it under its lock.
    """

    def __init__(self) -> None:
        # rowid -> (uid, FTS words); a cache of what the markers name
        self._words: dict[int, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._words)

    def forget(self) -> None:
        """Drop the cached words (after a fork, or when the index is rebuilt or wiped):
        the markers still say what is pending, and any completion recomputes the words."""
        self._words.clear()

    def add(self, conn: sqlite3.Connection, rowid: int, uid: str, words: str) -> None:
        """Mark the run just inserted as text pending, in the caller's transaction."""
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (pending_key(rowid), uid)
        )
        # Cached before the commit: if it rolls back, no marker names it and completing
        # skips it.
        self._words[rowid] = (uid, words)

    def complete(self, conn: sqlite3.Connection) -> int:
        """Write the FTS rows of every pending run and delete the markers, in the caller's
        transaction; returns how many rows were written."""
        rows = conn.execute(
            "SELECT r.id, r.uid, r.text FROM meta m JOIN runs r "
            f"ON r.id = CAST(substr(m.key, {len(PENDING_PREFIX) + 1}) AS INTEGER) "
            "WHERE m.key >= ? AND m.key < ?",
            (PENDING_PREFIX, PENDING_END),
        ).fetchall()
        fts_rows = []
        for rowid, uid, text in rows:
            cached = self._words.get(rowid)
            words = cached[1] if cached is not None and cached[0] == uid else fts_words(text)
            fts_rows.append((rowid, words))
        # OR REPLACE: an older version may have re-indexed the run with its row meanwhile.
        conn.executemany("INSERT OR REPLACE INTO runs_fts (rowid, words) VALUES (?, ?)", fts_rows)
        delete_all_markers(conn)
        # Cleared before the commit: if it rolls back, the markers remain and the next
        # completion recomputes the words.
        self._words.clear()
        return len(fts_rows)
