"""The SQLite search index: its schema, opening and recovery, transactions, and rows.

The index is derived from the run files, so any trouble with it (corrupt, of another
schema version, replaced by another process) is answered by rebuilding it from them.
:class:`_Index` owns the connection; the store hands it a label for messages and two
callbacks: "the index is open, bring it up to date" and "this process was forked".  The
pure helpers compute what a run's row holds (also in the checking process of copies).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from .._query import searchable_text, text_matches
from .._util import valid_unicode as _sqlable
from ..base import Doc

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = "1"


# Largest SQLite parameter list used in one IN (...) clause.
_CHUNK = 500
_T = TypeVar("_T")
_WORD = re.compile(r"\w+", re.UNICODE)


def _json_ok(text: str) -> bool:
    # SQLite's JSON functions (before 3.42) reject NaN/Infinity tokens.
    return "NaN" not in text and "Infinity" not in text


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_time(value: Any) -> bool:
    # A start time the index can order by: a number, not NaN.
    return _is_number(value) and value == value


def _sql_text(text: str) -> str:
    # Lone surrogates become "?": both are non-word characters and the same replacement is
    # made in stored text and searched text, so the $text prefilter stays a superset.
    return text if _sqlable(text) else text.encode("utf-8", "replace").decode("utf-8")


def _is_corrupt(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    text = str(err).lower()
    return "malformed" in text or "not a database" in text


def _udf_text(search: str, text: str) -> int:

    return int(text_matches(search, text))


#: Inside ``deferred_sync()``, whole-run copies share one index transaction of at most this many
#: runs or seconds: far fewer commits, and the write lock is never held for long.
_BATCH_RUNS = 200
_BATCH_SECONDS = 0.25
_SCAN_ID_ODD_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_scan_id_odd ON runs (scan_id_odd) WHERE scan_id_odd = 1"
)


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE files (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    scanned INTEGER NOT NULL,
    head_crc INTEGER,
    kind TEXT NOT NULL,
    run_uid TEXT,
    volatile INTEGER NOT NULL
);
CREATE INDEX files_volatile ON files (volatile);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    file TEXT NOT NULL,
    time REAL NOT NULL,
    scan_id NUMERIC,
    scan_id_odd INTEGER NOT NULL,
    start TEXT NOT NULL,
    json_ok INTEGER NOT NULL,
    stop TEXT,
    stop_uid TEXT,
    text TEXT NOT NULL
);
CREATE INDEX runs_time ON runs (time, uid);
CREATE INDEX runs_scan_id ON runs (scan_id);
CREATE INDEX runs_scan_id_odd ON runs (scan_id_odd) WHERE scan_id_odd = 1;
CREATE INDEX runs_stop_uid ON runs (stop_uid);
CREATE INDEX runs_file ON runs (file);
CREATE TABLE members (
    kind TEXT NOT NULL,
    uid TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (kind, uid)
) WITHOUT ROWID;
CREATE INDEX members_file ON members (file)
"""


def _run_row_values(start: Doc, stop: Doc | None) -> tuple[Any, ...]:
    """What the index's runs table (and its full-text table, last) holds of a run, all but
    the file name; pure, so the planning process can compute it ahead."""
    text = json.dumps(start)
    scan_id = start.get("scan_id")
    odd = 0
    if not _is_number(scan_id):
        odd = 0 if "scan_id" not in start else 1
        scan_id = None
    elif type(scan_id) is int and abs(scan_id) >= 2**63:
        scan_id, odd = None, 1
    words = _sql_text(searchable_text(start))
    stop_uid = None if stop is None else stop.get("uid")
    return (
        start["uid"],
        float(start["time"]),
        scan_id,
        odd,
        text,
        int(_json_ok(text)),
        words,
        None if stop is None else json.dumps(stop),
        stop_uid if isinstance(stop_uid, str) and _sqlable(stop_uid) else None,
        " ".join(_WORD.findall(words)),
    )


#: Whether the index holds any row of a file name (one statement instead of three deletes).
_NAME_INDEXED = (
    "SELECT EXISTS (SELECT 1 FROM files WHERE name = ?) OR EXISTS (SELECT 1 FROM runs "
    "WHERE file = ?) OR EXISTS (SELECT 1 FROM members WHERE file = ?)"
)
