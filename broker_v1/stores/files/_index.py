"""The SQLite search index: its schema, opening and recovery, transactions, and rows.

The index is derived from the run files, so any trouble with it (corrupt, of another
schema version, replaced by another process) is answered by rebuilding it from them.
:class:`_Index` owns the connection; the store hands it a label for messages and two
callbacks: "the index is open, bring it up to date" and "this process was forked".  The
pure helpers compute what a run's row holds (also in the checking process of copies).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ...errors import StoreUnavailable
from .._query import searchable_text, text_matches
from .._util import valid_unicode as _sqlable
from ..base import Doc
from ._checkpoint import BACKSTOP_PAGES, _Checkpointer
from ._format import STATE_DIR
from ._text_pending import PENDING_LIMIT, _PendingText, delete_all_markers, delete_marker
from ._write_lock import BUSY_TIMEOUT_MS, begin_write

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
    """SQLite function ``bv1_text(search, text)``: the exact ``$text`` match, as 0 or 1."""
    return int(text_matches(search, text))


#: Inside ``deferred_sync()``, whole-run copies share one index transaction of at most this many
#: runs or seconds: far fewer commits, and the write lock is never held for long.
_BATCH_RUNS = 200
_BATCH_SECONDS = 0.25
_SCAN_ID_ODD_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_scan_id_odd ON runs (scan_id_odd) WHERE scan_id_odd = 1"
)


def _only_stopped_runs_in_stop_uid_index(conn: sqlite3.Connection) -> None:
    """Make ``runs_stop_uid`` partial (``WHERE stop_uid IS NOT NULL``) in an index made
    before it was: a start then writes one page less, a stop deletes no NULL entry.  Lookups
    (``stop_uid = ?``) use either."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'runs_stop_uid'"
    ).fetchone()
    if row is None or "WHERE" in (row[0] or "").upper():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP INDEX IF EXISTS runs_stop_uid")
        conn.execute(
            "CREATE INDEX runs_stop_uid ON runs (stop_uid) WHERE stop_uid IS NOT NULL"
        )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


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
CREATE INDEX runs_stop_uid ON runs (stop_uid) WHERE stop_uid IS NOT NULL;
CREATE INDEX runs_file ON runs (file);
CREATE TABLE members (
    kind TEXT NOT NULL,
    uid TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (kind, uid)
) WITHOUT ROWID;
CREATE INDEX members_file ON members (file)
"""


def _run_row_values(
    start: Doc, stop: Doc | None, *, start_text: str | None = None
) -> tuple[Any, ...]:
    """What the index's runs table (and its full-text table, last) holds of a run, all but
    the file name; pure, so the checking process can compute it ahead.  ``start_text`` is
    the start's JSON text (as its run file line holds it) when the caller already has it."""
    text = json.dumps(start) if start_text is None else start_text
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


#: A descriptor's member row (its size column NULL) and the rows of the files marked open:
#: the caller needs the latter only when there is no member row, but a second lookup of the
#: member to leave them out cost more than reading the few open files.
_DESCRIPTOR_OR_OPEN_FILES = (
    "SELECT file, NULL, NULL, NULL, NULL, NULL, NULL FROM members "
    "WHERE kind = 'descriptor' AND uid = ? "
    "UNION ALL SELECT name, size, mtime_ns, scanned, head_crc, kind, run_uid FROM files "
    "WHERE volatile = 1"
)

#: What a failed index write raises: callers whose write can wait (a later scan of the run
#: file, or any writer's next completion, records what it would have) suppress these.
INDEX_WRITE_ERRORS = (sqlite3.Error, StoreUnavailable)


class _Index:
    """The SQLite index of one store directory: its connection, transactions and rows.

    Parameters
    ----------
    path
        The store directory (the default index lives in its hidden state folder).
    option
        The ``index_path`` the store was given, or None for the default location.
    label
        The store's description, for messages.
    lock
        The store's lock, held around every use of the connection.

    Two callbacks are set by the store before :meth:`connect`: ``on_open(deep=False)``
    brings a freshly opened (or rebuilt, ``deep=True``) index up to date with the files,
    and ``on_fork()`` drops what a forked child inherited of its parent's writes.
    """

    def __init__(
        self, path: Path, option: str | None, label: str, lock: threading.RLock
    ) -> None:
        self.path = path
        self._index_option = option
        self._label = label
        self._lock = lock
        self.on_open: Callable[..., None] = lambda deep=False: None
        self.on_fork: Callable[[], None] = lambda: None
        self._pid = os.getpid()
        self._db: sqlite3.Connection | None = None
        self._db_ident: tuple[int, int] | None = None
        self._checkpointer: _Checkpointer | None = None
        self.dir_mtime: int | None = None
        self.fts = False
        self.json1 = False
        # full-text rows of runs this process started, written in batches
        self._pending_text = _PendingText()
        # the transaction whole-run copies keep open inside deferred_sync()
        self._batch_runs = 0
        self._batch_began = 0.0
        # rows of runs this process stopped, written with its next index transaction
        self._deferred: list[Callable[[sqlite3.Connection], None]] = []

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    @property
    def pid(self) -> int:
        """The process that opened the connection (a forked child reconnects)."""
        return self._pid

    @property
    def location(self) -> str:
        """Where the open index is: a file name, or ``":memory:"``."""
        return self._db_location

    def is_open(self) -> bool:
        """Whether a connection is open."""
        return self._db is not None

    def disconnected(self) -> bool:
        """No connection yet, or one inherited from the parent of a forked process."""
        return self._db is None or os.getpid() != self._pid

    def _index_location(self) -> str:
        if self._index_option is not None:
            return self._index_option
        state = self.path / STATE_DIR
        default = state / INDEX_NAME
        if state.is_dir() and os.access(state, os.W_OK | os.X_OK):
            return str(default)
        if not state.exists() and os.access(self.path, os.W_OK | os.X_OK):
            try:
                state.mkdir()
            except FileExistsError:
                pass
            except OSError:
                return ":memory:"
            return str(default)
        return ":memory:"  # a directory we cannot write to: keep the index in memory

    def connect(self) -> None:
        """Open (creating or rebuilding as needed) the index and bring it up to date."""
        with self._lock:
            location = self._index_location()
            try:
                self._open_db(location)
            except sqlite3.DatabaseError as err:
                if location == ":memory:":
                    raise
                if not _is_corrupt(err):
                    # Not a file SQLite can open (a directory in its place, no permission):
                    # the run files are the truth, so search with an index kept in memory.
                    if self._index_option is not None:
                        raise StoreUnavailable(
                            f"{self.describe()}: cannot open the index {location} ({err})."
                        ) from err
                    warnings.warn(
                        f"{self.describe()}: the index {location} cannot be opened ({err}); "
                        "searching with an index kept in memory instead (rebuilt at every "
                        f"open). Remove or fix {location}.",
                        UserWarning,
                        stacklevel=4,
                    )
                    location = ":memory:"
                else:
                    self.close()
                    self._remove_index(location)
                self._open_db(location)
            self._pid = os.getpid()
            self.on_open()

    def _open_db(self, location: str) -> None:
        conn = sqlite3.connect(
            location, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if location != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                    conn.execute("PRAGMA journal_mode = DELETE")
                else:
                    # Checkpoints run on a thread of their own; SQLite's is the backstop.
                    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
                    self._checkpointer = _Checkpointer(location)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("bv1_text", 2, _udf_text, deterministic=True)
            try:
                conn.execute("SELECT json_extract('{\"a\": 1}', '$.a')").fetchone()
                self.json1 = True
            except sqlite3.OperationalError:
                self.json1 = False
            self._ensure_schema(conn, location)
        except BaseException:
            self.close()
            raise
        if location != ":memory:":
            st = os.stat(location)
            self._db_ident = (st.st_dev, st.st_ino)
        else:
            self._db_ident = None
        self._db_location = location

    def _ensure_schema(self, conn: sqlite3.Connection, location: str) -> None:
        version = None
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = row[0] if row else None
        except sqlite3.OperationalError:
            version = None
        if version != SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("runs_fts", "members", "runs", "files", "meta"):
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                fts = True
                try:
                    conn.execute(
                        "CREATE VIRTUAL TABLE runs_fts USING fts5(words, "
                        "tokenize = 'unicode61 remove_diacritics 2')"
                    )
                except sqlite3.OperationalError:
                    fts = False
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?), ('fts', ?)",
                    (SCHEMA_VERSION, "1" if fts else "0"),
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # keep the original error
                    conn.execute("ROLLBACK")
                raise
        else:
            # Added after schema 1 shipped: lets db[scan_id] use the scan_id index (SQLite
            # answers "scan_id IN (...) OR scan_id_odd = 1" from two indexes, not a scan).
            with contextlib.suppress(sqlite3.OperationalError):  # a read-only index file
                conn.execute(_SCAN_ID_ODD_INDEX)
                _only_stopped_runs_in_stop_uid_index(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'fts'").fetchone()
        self.fts = bool(row and row[0] == "1")
        row = conn.execute("SELECT value FROM meta WHERE key = 'dir_mtime'").fetchone()
        self.dir_mtime = int(row[0]) if row and row[0] is not None else None

    def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            # First, so that the store's connection is the last one and cleans the log up.
            checkpointer.close()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def _remove_index(self, location: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(location + suffix)

    def conn(self) -> sqlite3.Connection:
        if self._db is None or os.getpid() != self._pid:
            if os.getpid() != self._pid:
                # A forked child must not use its parent's connection; leave it unclosed.
                self._db = None
                self._pending_text.forget()
                self._deferred.clear()  # the parent writes them
                self.on_fork()
            self.connect()
        assert self._db is not None
        return self._db

    def _recover(self) -> None:
        """Replace a corrupt index with one rebuilt from the run files."""
        with self._lock:
            location = getattr(self, "_db_location", self._index_location())
            self.close()
            self._pending_text.forget()
            self._deferred.clear()  # the rebuild reads them from the files
            if location == ":memory:":
                self._open_db(location)
                self.dir_mtime = None
                self.on_open(deep=True)
                return
            with self._directory_lock():
                try:
                    st = os.stat(location)
                    replaced = (st.st_dev, st.st_ino) != self._db_ident
                except FileNotFoundError:
                    replaced = True
                if replaced:
                    # Another process rebuilt it (or deleted it) meanwhile: use the current one.
                    try:
                        self._open_db(location)
                        self.conn().execute("SELECT count(*) FROM runs").fetchone()
                    except sqlite3.DatabaseError as err:
                        if not _is_corrupt(err):
                            raise
                        replaced = False
                        self.close()
                if not replaced:
                    self._remove_index(location)
                    self._open_db(location)
                self.dir_mtime = None
                self.on_open(deep=True)

    @contextlib.contextmanager
    def _directory_lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(
        self, sql: str, params: Sequence[Any] = (), *, deferred_matter: bool = True
    ) -> list[Any]:
        """Run a read query, rebuilding a corrupt index once.

        The rows left for the next transaction (:meth:`defer`) are written first, unless
        ``deferred_matter`` is False: for a query whose answer they cannot change.
        """
        with self._lock:
            if self._deferred and deferred_matter:
                self.write_deferred()
            try:
                return self.conn().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as err:
                if not _is_corrupt(err):
                    if isinstance(err, sqlite3.OperationalError):
                        raise self._index_unusable("read", err) from err
                    raise
                self._recover()
                return self.conn().execute(sql, params).fetchall()

    def _index_unusable(self, action: str, err: sqlite3.OperationalError) -> StoreUnavailable:
        """The error for an index that cannot be read or written (disk full, I/O error,
        locked past the timeout)."""
        location = getattr(self, "_db_location", "the index")
        return StoreUnavailable(
            f"{self.describe()}: could not {action} the search index {location} ({err}). "
            "Documents already appended to run files stay there and are indexed once the index "
            "can be written again; inserting the same document again is a no-op."
        )

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """Run ``fn`` in one index transaction; a corrupt index is rebuilt from the files
        instead (which then already holds whatever ``fn`` would have recorded)."""
        with self._lock:
            self.commit_batch()
            conn = self.conn()
            try:
                begin_write(conn)
                try:
                    self._write_deferred_in(conn)
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                self._committed()
                return result
            except sqlite3.DatabaseError as err:
                self._index_write_failed(err)
                return None

    def defer(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Leave ``fn`` for this process's next index transaction (or its next read,
        whichever comes first), instead of a transaction of its own.

        Only for rows a run file already says: until they are written, the index still marks
        that file open (``volatile``), so other processes' refreshes read what it gained.  A
        transaction that fails drops them (with the same effect: the file is read again).
        """
        with self._lock:
            self._deferred.append(fn)

    def write_deferred(self) -> None:
        """Write the deferred rows now, in a transaction of their own; a failure is left to
        the refreshes that read the files again (see :meth:`defer`)."""
        with self._lock:
            if self._deferred and not self.disconnected():
                with contextlib.suppress(*INDEX_WRITE_ERRORS):
                    self.write(lambda conn: None)
            self._deferred.clear()

    def _write_deferred_in(self, conn: sqlite3.Connection) -> None:
        deferred, self._deferred = self._deferred, []
        for fn in deferred:
            fn(conn)

    def _index_write_failed(self, err: sqlite3.DatabaseError) -> None:
        """Rebuild a corrupt index from the files; raise for anything else."""
        if not _is_corrupt(err):
            if isinstance(err, sqlite3.OperationalError):
                raise self._index_unusable("update", err) from err
            raise err
        self._recover()

    def write_batched(self, fn: Callable[[sqlite3.Connection], None], *, batch: bool) -> None:
        """``write`` for whole-run copies: with ``batch`` (inside ``deferred_sync()``) the
        transaction stays open for the next runs and is committed when it is full or old,
        before any other write, and when the block ends.  Its rows are seen at once by this
        store (same connection); other stores see them at the commit.  A run file whose rows
        are rolled back or never committed (a crash) is still in the directory, and the next
        refresh indexes it, as it would a file another program wrote."""
        with self._lock:
            if not batch:
                self.write(fn)
                return
            conn = self.conn()
            try:
                if not conn.in_transaction:
                    begin_write(conn)
                    self._batch_runs, self._batch_began = 0, time.monotonic()
                self._write_deferred_in(conn)
                fn(conn)
            except BaseException as err:
                self._abandon_batch(conn)
                if isinstance(err, sqlite3.DatabaseError):
                    self._index_write_failed(err)
                    return
                raise
            self._batch_runs += 1
            if (self._batch_runs >= _BATCH_RUNS
                    or time.monotonic() - self._batch_began > _BATCH_SECONDS):
                self.commit_batch()

    def commit_batch(self) -> None:
        """Commit the transaction ``write_batched`` left open, if any."""
        with self._lock:
            conn = self._db
            if conn is None or not conn.in_transaction:
                return
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                self._abandon_batch(conn)
                self._index_write_failed(err)
                return
            self._committed()

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _abandon_batch(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        self.dir_mtime = None  # the next refresh scans the directory and indexes those files

    def follow_replacement(self) -> None:
        # If another process replaced the index (after finding it corrupt), follow it.
        if self._db_ident is None:
            return
        try:
            st = os.stat(self._db_location)
            same = (st.st_dev, st.st_ino) == self._db_ident
        except FileNotFoundError:
            same = False
        if not same:
            self.close()
            self.connect()

    def file_rows(self, where: str = "", params: Sequence[Any] = ()) -> dict[str, tuple[Any, ...]]:
        rows = self.read(
            "SELECT name, size, mtime_ns, scanned, head_crc, kind, run_uid FROM files " + where,
            params,
        )
        return {r[0]: r for r in rows}

    def descriptor_file_or_open_files(
        self, uid: str
    ) -> tuple[str | None, dict[str, tuple[Any, ...]]]:
        """The file the index gives descriptor ``uid``, or (when it gives none) the rows of
        the files it marks open, as :meth:`file_rows` would give them: one statement where a
        new descriptor's duplicate check would otherwise read twice."""
        if not _sqlable(uid):
            return None, self.file_rows("WHERE volatile = 1")
        rows = self.read(_DESCRIPTOR_OR_OPEN_FILES, (uid,))
        for row in rows:
            if row[1] is None:  # the member row (a file row's size is never NULL)
                return row[0], {}
        return None, {r[0]: r for r in rows}

    def forget_file(self, conn: sqlite3.Connection, name: str) -> None:
        for (rowid,) in conn.execute("SELECT id FROM runs WHERE file = ?", (name,)).fetchall():
            if self.fts:
                conn.execute("DELETE FROM runs_fts WHERE rowid = ?", (rowid,))
                delete_marker(conn, rowid)
            conn.execute("DELETE FROM runs WHERE id = ?", (rowid,))
        conn.execute("DELETE FROM members WHERE file = ?", (name,))
        conn.execute("DELETE FROM files WHERE name = ?", (name,))

    def set_file_row(
        self,
        conn: sqlite3.Connection,
        name: str,
        st: os.stat_result,
        scanned: int,
        crc: int | None,
        kind: str,
        run_uid: str | None,
        volatile: bool,
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO files (name, size, mtime_ns, scanned, head_crc, kind, "
            "run_uid, volatile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, st.st_size, st.st_mtime_ns, scanned, crc, kind, run_uid, int(volatile)),
        )

    def insert_run_row(
        self,
        conn: sqlite3.Connection,
        name: str,
        start: Doc,
        stop: Doc | None = None,
        row: tuple[Any, ...] | None = None,
        *,
        text_later: bool = False,
    ) -> None:
        """Index a run; ``row`` is ``_run_row_values(start, stop)`` when already computed.

        With ``text_later`` its full-text row is left pending (see ``_text_pending``) and
        written with those of other runs this process starts, in this transaction once
        enough are pending.
        """
        values = _run_row_values(start, stop) if row is None else row
        cur = conn.execute(
            "INSERT INTO runs (uid, file, time, scan_id, scan_id_odd, start, json_ok, text, "
            "stop, stop_uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (values[0], name, *values[1:-1]),
        )
        if not self.fts:
            return
        rowid = cur.lastrowid
        assert rowid is not None
        if not text_later:
            conn.execute("INSERT INTO runs_fts (rowid, words) VALUES (?, ?)", (rowid, values[-1]))
            return
        self._pending_text.add(conn, rowid, values[0], values[-1])
        if len(self._pending_text) >= PENDING_LIMIT:
            self._pending_text.complete(conn)

    def write_pending_text(self) -> None:
        """Write the full-text rows this process left pending (and any other pending ones)
        in one transaction; nothing when this process has none."""
        with self._lock:
            if self.fts and len(self._pending_text) and not self.disconnected():
                self.write(self._pending_text.complete)

    def delete_all_text(self, conn: sqlite3.Connection) -> None:
        """Empty the full-text table and drop every pending marker (all runs rows are being
        deleted in this transaction)."""
        if self.fts:
            conn.execute("DELETE FROM runs_fts")
            delete_all_markers(conn)
        self._pending_text.forget()

    def record_members(
        self, conn: sqlite3.Connection, members: list[tuple[str, str, str]]
    ) -> None:
        members = [m for m in members if _sqlable(m[1])]
        if members:
            conn.executemany(
                "INSERT OR IGNORE INTO members (kind, uid, file) VALUES (?, ?, ?)", members
            )

    def record_stop(
        self,
        conn: sqlite3.Connection,
        run_uid: str | None,
        stop: Doc,
        text: str | None = None,
    ) -> None:
        """Record a run's stop; ``text`` is its JSON text when already computed."""
        uid = stop.get("uid")
        conn.execute(
            "UPDATE runs SET stop = ?, stop_uid = ? WHERE uid = ?",
            (
                json.dumps(stop) if text is None else text,
                uid if isinstance(uid, str) and _sqlable(uid) else None,
                run_uid,
            ),
        )

    def member_file(self, kind: str, uid: str) -> str | None:
        if not _sqlable(uid):
            return None
        rows = self.read("SELECT file FROM members WHERE kind = ? AND uid = ?", (kind, uid))
        return rows[0][0] if rows else None

    def run_row(
        self, uid: str, *, deferred_matter: bool = True
    ) -> tuple[Any, ...] | None:
        """``(file, start text, stop text)`` of a run, or None.  The start's duplicate check
        passes ``deferred_matter=False``: rows left for the next transaction never add a run
        or change its start, and writing them there would cost the stop before it a
        transaction of its own."""
        if not _sqlable(uid):
            return None
        rows = self.read(
            "SELECT file, start, stop FROM runs WHERE uid = ?", (uid,),
            deferred_matter=deferred_matter,
        )
        return rows[0] if rows else None
