"""Directory -> index: bringing the SQLite index up to date with the run files.

Cheap when nothing changed: a ``stat`` of the directory and of the runs still open.  When
the directory's mtime moved:

* if our own writers explain the change (each records, in the shared index, the directory
  mtime before and after it created a run file, and that file's rows), nothing is listed:
  their runs are in the index already;
* otherwise (a program that does not use our index wrote, or a file was deleted) the
  directory is listed once, names only, and the difference with the index is applied: new
  files are indexed, vanished ones forgotten.

A directory mtime set in the same clock tick as a listing (or as one of our creations) may
hide a second entry made in that tick, so such a "racy" mtime is confirmed by one more
listing once it is old enough (at most once a second while runs keep arriving); in a big
directory that listing is read a slice per lookup (see ``_stepwise``), compared with the
index's names where this process has not listed it yet.  A rebuild,
or a forced rescan, stats every file.  Runs written by other processes, or copied in by
hand, appear this way in an open store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat as stat_module
import threading
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import CorruptRunFile, StoreUnavailable
from .._util import valid_unicode as _sqlable
from ..base import Doc
from ._format import (
    _NAME_RE,
    _SUFFIXES,
    ASSETS_NAME,
    RunFileWarning,
    _check_pair,
    _read_first_line,
    _read_msgpack,
    _Warnings,
)
from ._index import _CHUNK, _Index, _is_time
from ._links import LinkFollower
from ._rundata import _RunData
from ._stepwise import _IndexedNames, _StepwiseListing

# A directory mtime younger than this may not yet reflect a file created in the same clock
# tick, so it is not trusted to mean "nothing changed" (the "racy timestamp" problem).
_DIR_TRUST_SECONDS = 1.0
# What a first listing costs per name, comparing with the index's names included (0.2-0.3 s
# for 100,000 here): the estimate of a process that has not listed the directory yet.
_FIRST_LISTING_S_PER_NAME = 2e-6
# A racy mtime is confirmed a slice per lookup (see _stepwise) where the last listing held
# more names than this (a listing of 5,000 costs ~3 ms here); in one listing where fewer.
_CONFIRM_STEPWISE_OVER_NAMES = 5_000
#: Run file lines the index records nothing of (the start is recorded from the first line).
_NOT_INDEXED = frozenset((b"event", b"event_page", b"start"))
#: Lines of an open run that only the lookups by uid need indexed (``members`` rows); the
#: read path's refresh leaves them to the writer's stop, which records them anyway.
_MEMBER_LINES = frozenset((b"descriptor", b"resource", b"datum", b"datum_page"))
#: A broker_v1 writer records a stop's rows with its next start, or within its sync interval
#: (1 s by default) when no run follows; the read path leaves a stop younger than this (the
#: file's mtime) to it, and indexes an older one itself (its writer was killed, or does not
#: use our index).
_STOP_LEFT_TO_WRITER_S = 5.0


class _ReadAhead(NamedTuple):
    """How far the read path read an open run file without indexing what it read."""

    row: tuple[Any, ...]  # the files row read against: size, mtime, scanned, head CRC
    ino: int
    size: int  # the file's size and mtime when read
    mtime_ns: int
    offset: int  # the end of the last whole line read
    held_members: bool  # lines read past hold descriptors, resources or datums
    held_stop: bool  # ... or a stop


class _Scanner:
    """Keeps one directory's index up to date with its files.

    Parameters
    ----------
    path
        The store directory.
    label
        The store's description, for messages.
    lock
        The store's lock.
    index
        The index to bring up to date.
    warnings
        Where warnings about unreadable files are given once.
    forget
        ``forget(name)``: drop a vanished file's parsed contents.
    """

    def __init__(
        self,
        path: Path,
        label: str,
        lock: threading.RLock,
        index: _Index,
        warnings: _Warnings,
        forget: Callable[[str], None],
    ) -> None:
        self.path = path
        # A str and os.path joins on the read path: pathlib's joins and conversions cost a
        # polling reader ~10 % of a lookup (stats and opens of the folder and open runs).
        self._dirname = str(path)
        self._label = label
        self._lock = lock
        self._index = index
        self._warnings = warnings
        self._forget = forget
        # When a racy directory mtime must be confirmed by a listing (None: it is trusted),
        # and the dir_mtime value last written to the index's meta table.
        self._recheck_at: float | None = None
        self._stored_mtime: str | None = ""  # "": not known yet
        # The names of the last listing (None: compare the next one with the index).
        self._listed: set[str] | None = None
        # Seconds the last listing took (the link waits are worth more where it is costly).
        self._listing_s = 0.0
        # The confirmation of a racy mtime under way a slice per lookup, if any, and the
        # index's names it reads first where this process has not listed the directory.
        self._confirming: _StepwiseListing | None = None
        self._indexed_names: _IndexedNames | None = None
        # About how many files the index holds, while this process has not listed them.
        self._indexed_estimate: int | None = None
        # Whether only our writers changed the directory since it was last known.
        self._links = LinkFollower(index, self._names_known)
        # Open run files this process found to have gained nothing the read path needs
        # indexed since the index recorded them, by name.  See _nothing_to_index_since.
        self._read_ahead: dict[str, _ReadAhead] = {}

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    def refresh(self, *, deep: bool = False) -> None:
        """Bring the index up to date with the directory (cheap when nothing changed)."""
        with self._lock:
            if self._index.disconnected():
                self._index.conn()  # reconnecting refreshes
                if not deep:
                    return
            try:
                st = os.stat(self._dirname)
            except FileNotFoundError:
                raise StoreUnavailable(
                    f"{self.describe()}: the directory {self.path} no longer exists."
                ) from None
            self._index.follow_replacement()
            mtime, known = st.st_mtime_ns, self._index.dir_mtime
            if deep or known is None:
                self._full_scan(st)
                return
            if mtime != known:
                listing_s = self._listing_s or self._names_known() * _FIRST_LISTING_S_PER_NAME
                if not self._links.explained_soon(known, mtime, listing_s):
                    self._list_diff(st)
                    return
                # Only our writers made entries, and their rows are in the index; the new
                # mtime is racy until a listing confirms it.
                self._index.dir_mtime = mtime
                if self._recheck_at is None:
                    self._recheck_at = time.time() + _DIR_TRUST_SECONDS
            if self._recheck_at is None or time.time() < self._recheck_at:
                self._check_volatile(members=False)
            elif (self._indexed_names is not None
                  or self._names_known() > _CONFIRM_STEPWISE_OVER_NAMES):
                self._confirm_step(st)
            else:
                self._list_diff(st)

    def _confirm_step(self, dir_stat: os.stat_result) -> None:
        """Read the next slice of the listing that confirms a racy mtime (see
        ``_stepwise``), index what it found, and settle the mtime once it is done."""
        started = None
        if self._listed is None:  # compare with the index's names, read a slice at a time
            loader = self._indexed_names
            if loader is None:
                loader = self._indexed_names = _IndexedNames(self._index_names_after)
            if not loader.step():
                self._check_volatile(members=False)
                return
            self._listed, self._indexed_names, started = loader.names, None, loader.started
        listing = self._confirming
        if listing is None or listing.inherited():
            if listing is not None:
                listing.close()
            listing = self._confirming = _StepwiseListing(self._dirname, dir_stat, time.time(),
                                                          started)
        listed = self._listed
        assert listed is not None
        try:
            names = listing.step(listed)
        except OSError:
            self._confirming = None
            self._list_diff(dir_stat)
            return
        self._index_new_names(names)
        listed.update(names)
        if listing.done:
            self._confirming = None
            if dir_stat.st_mtime_ns == listing.dir_stat.st_mtime_ns:
                self._settle(listing.dir_stat, listing.began)
            else:  # changes our writers explained came meanwhile: racy in their turn
                self._recheck_at = time.time() + _DIR_TRUST_SECONDS
        self._check_volatile(members=False)

    def stop_confirming(self) -> None:
        """Drop a confirmation under way (a full listing or scan replaces it; the store
        closes)."""
        listing, self._confirming = self._confirming, None
        self._indexed_names = None
        if listing is not None:
            listing.close()

    def _names_known(self) -> int:
        """How many names the last listing held; before this process's first, about how
        many files the index holds (the largest row id: rows replaced make it more)."""
        if self._listed is not None:
            return len(self._listed)
        if self._indexed_estimate is None:
            rows = self._index.read("SELECT max(rowid) FROM files", deferred_matter=False)
            self._indexed_estimate = rows[0][0] or 0
        return self._indexed_estimate

    def _index_names_after(self, name: str, limit: int) -> list[str]:
        """The first ``limit`` names of files the index holds after ``name``."""
        return [found for (found,) in self._index.read(
            "SELECT name FROM files WHERE name > ? ORDER BY name LIMIT ?", (name, limit),
            deferred_matter=False)]

    def _list_diff(self, dir_stat: os.stat_result) -> None:
        """List the directory (names only) and index what appeared, forget what vanished.

        The listing is compared with the previous one, kept in memory, so only the names
        that changed are looked at.  Files already indexed are not stat-ed here: open runs
        are followed by ``_check_volatile``, and a file replaced under the same name by a
        rebuild or a deep refresh (a lookup that misses does one).
        """
        self.stop_confirming()
        listed_at = time.time()
        began = time.perf_counter()
        names = set(os.listdir(self._dirname))
        previous = self._listed
        if previous is None:  # first listing of this process: compare with the index
            previous = {name for (name,) in self._index.read("SELECT name FROM files")}
        self._listed = names
        self._forget_vanished({n for n in previous - names if n.endswith(_SUFFIXES)})
        self._index_new_names(names - previous)
        self._check_volatile(members=False)
        self._settle(dir_stat, listed_at)
        self._listing_s = time.perf_counter() - began

    def _index_new_names(self, names: Collection[str]) -> None:
        """Index the run files among ``names`` (new to the last listing) that the index does
        not hold as they are now."""
        changed: list[tuple[str, os.stat_result, tuple[Any, ...] | None]] = []
        for name in sorted(names):
            if name.startswith(".") or not name.endswith(_SUFFIXES) or not _sqlable(name):
                continue
            try:
                st = os.stat(os.path.join(self._dirname, name))
            except FileNotFoundError:
                continue
            if stat_module.S_ISREG(st.st_mode):
                changed.append((name, st, None))
        changed = self._not_indexed(changed)
        for i in range(0, len(changed), 200):
            self._index_files(changed[i : i + 200])

    def _not_indexed(
        self, items: list[tuple[str, os.stat_result, tuple[Any, ...] | None]]
    ) -> list[tuple[str, os.stat_result, tuple[Any, ...] | None]]:
        """Of the files a listing found new, those the index does not hold as they are now.

        Read first, without the write lock: while a broker_v1 writer records, a listing
        finds its new runs (hundreds a second), all indexed already, and checking them in a
        transaction held the lock the writer needs for milliseconds.  Files the index marks
        open are left to :meth:`_check_volatile`, which follows.
        """
        known: dict[str, tuple[int, int, int]] = {}
        names = [item[0] for item in items]
        for i in range(0, len(names), _CHUNK):
            chunk = names[i : i + _CHUNK]
            rows = self._index.read(
                "SELECT name, size, mtime_ns, volatile FROM files WHERE name IN "
                f"({', '.join('?' * len(chunk))})",
                chunk,
                deferred_matter=False,  # this process's deferred rows are of open files
            )
            known.update((row[0], row[1:]) for row in rows)
        out = []
        for item in items:
            row = known.get(item[0])
            if row is None or (not row[2] and (row[0], row[1]) != (item[1].st_size,
                                                                  item[1].st_mtime_ns)):
                out.append(item)
        return out

    def _settle(self, dir_stat: os.stat_result, listed_at: float) -> None:
        """Record the directory mtime a listing that began at ``listed_at`` saw: trusted
        (and kept in the index for the next process) when the listing began well after it,
        else to be confirmed by one more listing once it is old enough."""
        mtime = dir_stat.st_mtime_ns
        racy = listed_at - dir_stat.st_mtime <= _DIR_TRUST_SECONDS
        self._index.dir_mtime = mtime
        self._recheck_at = dir_stat.st_mtime + _DIR_TRUST_SECONDS if racy else None
        stored = None if racy else str(mtime)
        if stored != self._stored_mtime:
            self._stored_mtime = stored
            self._index.write(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('dir_mtime', ?)",
                    (stored,),
                )
            )

    def _forget_vanished(self, vanished: set[str]) -> None:
        if not vanished:
            return

        def forget(conn: sqlite3.Connection) -> None:
            for name in vanished:
                self._index.forget_file(conn, name)

        self._index.write(forget)
        for name in vanished:
            self._forget(name)

    def _full_scan(self, dir_stat: os.stat_result) -> None:
        self.stop_confirming()
        listed_at = time.time()
        known = self._index.file_rows()
        seen: set[str] = set()
        self._listed = None  # the next listing diff starts from the index again
        changed: list[tuple[str, os.stat_result, tuple[Any, ...] | None]] = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(_SUFFIXES) or not _sqlable(name):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if not stat_module.S_ISREG(st.st_mode):
                    continue
                seen.add(name)
                row = known.get(name)
                if row is None or row[1] != st.st_size or row[2] != st.st_mtime_ns:
                    changed.append((name, st, row))
        self._forget_vanished(set(known) - seen)
        changed.sort(key=lambda item: item[0])
        for i in range(0, len(changed), 200):
            # Transactions of 200 files: a rebuild never holds the write lock for long.
            self._index_files(changed[i : i + 200])
        self._settle(dir_stat, listed_at)

    def refresh_open(
        self,
        skip: Callable[[str], bool],
        open_files: dict[str, tuple[Any, ...]] | None = None,
    ) -> bool:
        """Index what the open run files, but those ``skip(name)`` names, gained since they
        were last indexed, members (descriptors, resources, datums) included: a writer
        records a run's members with its stop, and a lookup by uid needs them sooner; True
        when any file was re-indexed.  ``open_files``: the index's rows of its open files
        when the caller has just read them."""
        with self._lock:
            return self._check_volatile(skip, open_files, members=True)

    def _check_volatile(
        self,
        skip: Callable[[str], bool] | None = None,
        rows: dict[str, tuple[Any, ...]] | None = None,
        *,
        members: bool,
    ) -> bool:
        """Index what the open run files gained; with ``members`` False (the read path),
        only when that is a stop its writer left unindexed for a while, or the file is not
        the one indexed: new descriptors, resources and datums, and a new stop, then wait
        for the writer's index transaction, or for a lookup that needs them."""
        if rows is None:
            rows = self._index.file_rows("WHERE volatile = 1")
        for name in [n for n in self._read_ahead if n not in rows]:
            del self._read_ahead[name]  # stopped or forgotten since
        changed = []
        for name, row in rows.items():
            if skip is not None and skip(name):
                continue
            try:
                st = os.stat(os.path.join(self._dirname, name))
            except FileNotFoundError:
                self._recheck_at = 0.0  # the directory changed after all: list it next time
                continue
            if (row[1] != st.st_size or row[2] != st.st_mtime_ns) and not (
                self._nothing_to_index_since(name, row, st, members)
            ):
                changed.append((name, st, row))
        if changed:
            self._index_files(changed)
        return bool(changed)

    def _nothing_to_index_since(
        self, name: str, row: tuple[Any, ...], st: os.stat_result, members: bool
    ) -> bool:
        """Whether the open run file ``name`` gained nothing to index since ``row`` (its
        files row) was written: only events, or a line still being written; unless
        ``members``, descriptors, resources, datums and a stop written less than
        :data:`_STOP_LEFT_TO_WRITER_S` ago too.

        Then no index transaction is needed, so a process looking up while a run records
        does not take the index's write lock (which the writer waits for) at every lookup,
        nor at the end of every run (its writer records the stop's rows a moment later, with
        its next start); what was read is remembered, so the next look reads only what
        follows.  An older stop (or a file that is not the one the row describes) leaves the
        file to :meth:`_index_file`, and so does anything read past when ``members`` is
        asked for.  ``get_run_stop`` and ``get_run_stops`` index a stop read past.
        """
        if row[5] != "run" or row[4] is None:
            return False
        read = self._read_ahead.get(name)
        offset: int | None = None
        held_members = held_stop = False
        # abs: a file time far ahead of this clock (another host's) is not taken for fresh.
        stop_fresh = abs(time.time() - st.st_mtime) <= _STOP_LEFT_TO_WRITER_S
        if read is not None and read.row == row[1:5] and read.ino == st.st_ino:
            if members and (read.held_members or read.held_stop):
                return False  # read earlier, not indexed: index it now
            if read.held_stop and not stop_fresh:
                return False  # a stop its writer has not recorded for a while
            if (read.size, read.mtime_ns) == (st.st_size, st.st_mtime_ns):
                return True  # nothing new since the last look
            offset, held_members, held_stop = read.offset, read.held_members, read.held_stop
        try:
            with open(os.path.join(self._dirname, name), "rb") as f:
                if offset is None:
                    head = _read_first_line(f)
                    if head is not None:
                        offset = _resume_offset(row, len(head), zlib.crc32(head), st.st_size)
                    if offset is None:
                        return False  # another file under this name: index it anew
                elif st.st_size < offset:
                    return False  # shorter than what was read: let _index_file decide
                # From the end of the last line read: a file rewritten in place (a repaired
                # tail) may no longer have a line end there.
                f.seek(offset - 1)
                data = f.read(st.st_size - offset + 1)
        except OSError:
            return False
        if data[:1] != b"\n":
            return False
        data = data[1:]
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n"):
            # The lines _scan_members would record; others it skips, as here.
            m = _NAME_RE.match(line)
            if m is None or m.group(1) in _NOT_INDEXED:
                continue
            if members:
                return False
            if m.group(1) in _MEMBER_LINES:
                held_members = True
            elif m.group(1) == b"stop" and stop_fresh:
                held_stop = True
            else:
                return False
        self._read_ahead[name] = _ReadAhead(
            row[1:5], st.st_ino, st.st_size, st.st_mtime_ns, offset + end, held_members,
            held_stop,
        )
        return True

    def _index_files(
        self, items: Sequence[tuple[str, os.stat_result, tuple[Any, ...] | None]]
    ) -> None:
        def index(conn: sqlite3.Connection) -> None:
            for item in items:
                self._index_file(conn, *item)

        self._index.write(index)

    def refresh_file(self, name: str) -> None:
        """Re-index one file if it changed since it was indexed."""
        rows = self._index.file_rows("WHERE name = ?", (name,))
        try:
            st = os.stat(self.path / name)
        except FileNotFoundError:
            return
        row = rows.get(name)
        if row is None or row[1] != st.st_size or row[2] != st.st_mtime_ns:
            self._index.write(lambda conn: self._index_file(conn, name, st, row))

    def _index_file(
        self,
        conn: sqlite3.Connection,
        name: str,
        st: os.stat_result,
        seen_row: tuple[Any, ...] | None,
    ) -> None:
        """(Re)index one file inside the caller's transaction, incrementally when it grew.

        ``seen_row`` was read before the transaction; another process may have indexed the
        file since, so the row is read again here and that one counts.
        """
        del seen_row
        row = conn.execute(
            "SELECT name, size, mtime_ns, scanned, head_crc, kind, run_uid FROM files "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        if row is not None and (row[1], row[2]) == (st.st_size, st.st_mtime_ns):
            return  # already indexed as it is now
        path = self.path / name
        if name.endswith(".msgpack"):
            self._index_msgpack(conn, name, st)
            return
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            self._index.forget_file(conn, name)
            return
        with f:
            head = _read_first_line(f)
            if head is None:  # empty, or the first line is still being written
                if row is not None and row[5] != "pending":
                    self._index.forget_file(conn, name)
                self._index.set_file_row(conn, name, st, 0, None, "pending", None, True)
                return
            crc = zlib.crc32(head)
            resume = _resume_offset(row, len(head), crc, max(st.st_size, len(head)))
            run_uid: str | None = None
            if resume is not None:
                assert row is not None
                offset, kind, run_uid = resume, row[5], row[6]
            else:
                self._index.forget_file(conn, name)
                if name == ASSETS_NAME:
                    kind, offset = "assets", 0
                else:
                    run_uid = self._index_start(conn, name, path, head)
                    if run_uid is None:
                        self._index.set_file_row(
                            conn, name, st, len(head), crc, "ignored", None, False
                        )
                        return
                    kind, offset = "run", len(head)
            f.seek(offset)
            data = f.read()
        scanned, has_stop = self._scan_members(conn, name, path, data, offset, run_uid)
        if kind == "run" and not has_stop:
            has_stop = bool(
                conn.execute(
                    "SELECT stop IS NOT NULL FROM runs WHERE uid = ?", (run_uid,)
                ).fetchone()[0]
            )
        volatile = kind == "assets" or not has_stop
        self._index.set_file_row(conn, name, st, scanned, crc, kind, run_uid, volatile)

    def _index_start(
        self, conn: sqlite3.Connection, name: str, path: Path, head: bytes
    ) -> str | None:
        try:
            item = json.loads(head)
            doc_name, start = _check_pair(item, path, 1)
        except (ValueError, RecursionError, CorruptRunFile):
            self._warnings.warn_once(
                name, 1, f"{path} line 1 is not a [name, document] pair; the file is not shown "
                "as a run. Remove or fix it.", RunFileWarning)
            return None
        uid = start.get("uid")
        if not _indexable_start(doc_name, start):
            self._warnings.warn_once(
                name,
                1,
                f"{path} does not begin with a start document that has a string uid and a "
                "numeric time, so it is not shown as a run. Remove or fix it.",
                RunFileWarning,
            )
            return None
        other = conn.execute("SELECT file FROM runs WHERE uid = ?", (uid,)).fetchone()
        if other is not None and other[0] != name:
            self._warnings.warn_once(
                name,
                1,
                f"{path} holds run {uid}, which {other[0]} in the same store already holds; "
                f"{other[0]} is used. Remove one of the two files.",
                RunFileWarning,
            )
            return None
        self._index.insert_run_row(conn, name, start)
        return uid

    def _scan_members(
        self,
        conn: sqlite3.Connection,
        name: str,
        path: Path,
        data: bytes,
        offset: int,
        run_uid: str | None,
    ) -> tuple[int, bool]:
        """Index descriptors, resources, datums and the stop in complete lines of ``data``."""
        end = data.rfind(b"\n") + 1
        members: list[tuple[str, str, str]] = []
        stop: Doc | None = None
        if end:
            for line in data[:end].split(b"\n"):
                m = _NAME_RE.match(line)
                if m is None:
                    continue
                if m.group(1) in _NOT_INDEXED:
                    continue
                try:
                    doc_name, doc = _check_pair(json.loads(line), path, None)
                except (ValueError, RecursionError, CorruptRunFile):
                    continue  # reported when the run is read
                if doc_name in ("descriptor", "resource"):
                    uid = doc.get("uid")
                    if uid is None and doc_name == "resource" and "_id" in doc:
                        uid = str(doc["_id"])
                    if isinstance(uid, str):
                        members.append((doc_name, uid, name))
                elif doc_name == "datum":
                    if isinstance(doc.get("datum_id"), str):
                        members.append(("datum", doc["datum_id"], name))
                elif doc_name == "datum_page":
                    ids = doc.get("datum_id")
                    if isinstance(ids, list):
                        members.extend(("datum", d, name) for d in ids if isinstance(d, str))
                elif doc_name == "stop" and run_uid is not None:
                    if doc.get("run_start", run_uid) == run_uid:
                        stop = doc
        self._index.record_members(conn, members)
        if stop is not None:
            self._index.record_stop(conn, run_uid, stop)
        return offset + end, stop is not None

    def _index_msgpack(self, conn: sqlite3.Connection, name: str, st: os.stat_result) -> None:
        path = self.path / name
        self._index.forget_file(conn, name)
        try:
            docs, consumed, _ = _read_msgpack(path)
        except CorruptRunFile as err:
            self._warnings.warn_once(name, err.line or 0, f"{err} It is not shown as a run.",
                                     RunFileWarning)
            self._index.set_file_row(conn, name, st, 0, None, "ignored", None, False)
            return
        if not docs:
            self._index.set_file_row(conn, name, st, 0, None, "pending", None, True)
            return
        first = json.dumps(docs[0]).encode()
        crc = zlib.crc32(first)
        doc_name, start = docs[0]
        uid = start.get("uid")
        if not _indexable_start(doc_name, start):
            self._warnings.warn_once(name, 1, f"{path} does not begin with a start document, so "
                                     "it is not shown as a run.", RunFileWarning)
            self._index.set_file_row(conn, name, st, consumed, crc, "ignored", None, False)
            return
        other = conn.execute("SELECT file FROM runs WHERE uid = ?", (uid,)).fetchone()
        if other is not None:
            self._warnings.warn_once(
                name, 1, f"{path} holds run {uid}, which {other[0]} in the same store already "
                f"holds; {other[0]} is used. Remove one of the two files.", RunFileWarning
            )
            self._index.set_file_row(conn, name, st, consumed, crc, "ignored", None, False)
            return
        self._index.insert_run_row(conn, name, start)
        members: list[tuple[str, str, str]] = []
        stop = None
        rd = _RunData(name, "msgpack")
        for doc_name, doc in docs[1:]:
            rd.add_doc(doc_name, doc)
            if doc_name == "stop":
                stop = doc
        members.extend(("descriptor", u, name) for u in rd.descriptors)
        members.extend(("resource", u, name) for u in rd.resources)
        members.extend(("datum", u, name) for u in rd.datums)
        self._index.record_members(conn, members)
        if stop is not None:
            self._index.record_stop(conn, uid, stop)
        self._index.set_file_row(conn, name, st, consumed, crc, "run", uid, stop is None)


def _resume_offset(
    row: tuple[Any, ...] | None, head_len: int, head_crc: int, size: int
) -> int | None:
    """Where indexing a file of ``size`` bytes whose first line (``head_len`` bytes) has
    CRC ``head_crc`` goes on from, given its files ``row``: the row's ``scanned`` offset when
    the row describes this file (a run or assets file with the same first line) and that
    offset lies in it; None when the file must be indexed anew."""
    if (
        row is not None
        and row[4] == head_crc
        and row[5] in ("run", "assets")
        and head_len <= row[3] <= size
    ):
        return int(row[3])
    return None


def _indexable_start(doc_name: str, start: Any) -> bool:
    """A run file's first document can head an index row: a start with a uid SQLite can hold
    and a finite time."""
    uid = start.get("uid")
    return (doc_name == "start" and isinstance(uid, str) and _sqlable(uid)
            and _is_time(start.get("time")))
