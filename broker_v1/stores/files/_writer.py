"""Appending documents to run files: starts and stops, fsync, deferred syncs (what is kept
per file while it is written is ``_run_state``).

Every document is one ``os.write`` of a whole line (a partial one is cut off again), so a
killed process loses nothing; fsync (at ``stop``, on a timer, or handed to a few threads
inside ``deferred_sync()``) guards against power loss.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import (
    CorruptRunFile,
    DuplicateDocument,
    InvalidDocument,
    ReadOnlyStore,
    StoreUnavailable,
    UnsafeUid,
)
from .._util import valid_unicode as _sqlable
from ..base import Doc, not_found_run
from ._cache import write_cache_of_writes
from ._format import (
    _EVENT_KEYS_KEPT,
    ASSETS_NAME,
    _dump_line,
    _encode,
    _last_byte,
    _line_of,
    _single_datum,
    _single_event,
    _uid_problem,
)
from ._index import _NAME_INDEXED, INDEX_WRITE_ERRORS, _Index, _run_row_values
from ._links import LINK_PRUNE_EVERY_S, record_link
from ._run_state import _accumulate, _pending_members, _RunState, columns_from_kept_lines
from ._runs import _RunCache
from ._spares import RUN_FILE_FLAGS, _SpareFiles
from ._syncs import _Syncs


class _StartIndexedElsewhere(Exception):
    """Internal: a new run file's start has a uid the index gives another file (raised in
    the start's index transaction, which it rolls back)."""


def _dir_mtime_and_identity(path: Path) -> tuple[int, tuple[int, int] | None]:
    """The directory's mtime in ns and its ``(st_dev, st_ino)``; ``(-1, None)`` when it
    cannot be read (no link is recorded then)."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, None
    return st.st_mtime_ns, (st.st_dev, st.st_ino)


class _Writer:
    """Appends documents to the run files of one store directory, and what that takes.

    It knows, for this process, which file each run, descriptor, resource, event and datum
    went to (``run_file``, ``desc_file``, ``res_file``, ``event_owner``, ``datum_owner``)
    and the state of every file it has open (``states``), and records new members and
    stops in the index as it writes (a run it started gets two index transactions: its
    start, and its stop with its descriptors and datums).

    Parameters
    ----------
    path
        The store directory.
    label
        The store's description, for messages.
    lock, write_lock
        The store's lock, and the insert path's lock (held by the fsync timer).
    index
        The index, which records what is written.
    runs
        The parsed-run cache (to learn the uids already in a file this process appends to).
    syncs
        The deferred fsyncs (a stop inside ``deferred_sync()`` is synced in the background).
    refresh_file
        ``refresh_file(name)``: re-index a file another process may have written.
    refresh_open
        ``refresh_open(skip, open_files)``: re-index the open run files that grew, but
        those ``skip(name)`` names; True when any was re-indexed.  ``open_files``: the
        index's rows of its open files when just read, else None.
    fsync_interval, columnar_cache, cache_max_bytes, cache_min_bytes
        The store's options of the same names.
    """

    def __init__(
        self,
        path: Path,
        label: str,
        lock: threading.RLock,
        write_lock: threading.RLock,
        index: _Index,
        runs: _RunCache,
        syncs: _Syncs,
        refresh_file: Callable[[str], None],
        refresh_open: Callable[
            [Callable[[str], bool], dict[str, tuple[Any, ...]] | None], bool
        ],
        *,
        fsync_interval: float,
        columnar_cache: bool,
        cache_max_bytes: int,
        cache_min_bytes: int,
    ) -> None:
        self.path = path
        self._label = label
        self._lock = lock
        self._write_lock = write_lock
        self._index = index
        self._runs = runs
        self._syncs = syncs
        self._refresh_file = refresh_file
        self._refresh_open = refresh_open
        self.fsync_interval = fsync_interval
        self.columnar_cache = columnar_cache
        self.cache_max_bytes = cache_max_bytes
        self.cache_min_bytes = cache_min_bytes
        self.states: OrderedDict[str, _RunState] = OrderedDict()
        self.event_owner: dict[str, str] = {}
        self.datum_owner: dict[str, str] = {}
        self.desc_file: dict[str, str] = {}
        self.res_file: dict[str, str] = {}
        self.run_file: dict[str, str] = {}
        self.last_started: str | None = None
        self._sync_timer: threading.Timer | None = None
        self._spares = _SpareFiles(path, syncs)
        #: When this writer last pruned the index's old directory links (monotonic seconds).
        self._links_pruned_at: float | None = None

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    def cancel_timer(self) -> None:
        """Stop the fsync timer (the store is closing)."""
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None

    def writing(self, name: str) -> bool:
        """Whether this process has the file open for writing."""
        state = self.states.get(name)
        return state is not None and state.fd is not None

    def forget_after_fork(self) -> None:
        """Drop what a forked child inherited: it must not use its parent's writer state."""
        self.states.clear()
        self.event_owner.clear()
        self.datum_owner.clear()
        self._spares.forget_after_fork()

    def discard_spare(self) -> None:
        """Remove the run file made ahead for the next run (the store is closing)."""
        self._spares.discard()

    def prepare(self, kind: str, uid: Any) -> None:
        if not isinstance(uid, str):
            return
        name = self.member_file(kind, uid)
        if name is None:
            return
        state = self.states.get(name)
        if state is not None and state.uids_loaded:
            return
        self.adopt(name)

    def member_file(self, kind: str, uid: str) -> str | None:
        """The file holding a descriptor or resource: this process's writes, the index, and
        for a descriptor not found there, the runs other processes are still writing (their
        descriptors reach the index with their stop; until then their files hold them)."""
        if kind != "descriptor":
            return self.res_file.get(uid) or self._index.member_file(kind, uid)
        name = self.desc_file.get(uid)
        if name is not None:
            return name
        name, open_files = self._index.descriptor_file_or_open_files(uid)
        if name is None and self._refresh_open(self.writing, open_files):
            name = self._index.member_file(kind, uid)
        return name

    def index_open_runs(self) -> bool:
        """Index what the open runs other processes (or an interrupted writer) write have
        gained since they were last indexed; True when anything was."""
        return self._refresh_open(self.writing, None)

    def adopt(self, name: str) -> _RunState:
        """Register an existing file's uids so duplicates of its documents are detected."""
        state = self.states.get(name)
        if state is None:
            run_uid = None
            if name != ASSETS_NAME:
                rows = self._index.read("SELECT uid FROM runs WHERE file = ?", (name,))
                run_uid = rows[0][0] if rows else None
            state = _RunState(name, run_uid)
            self.states[name] = state
        if not state.uids_loaded:
            rd = self._runs.load(name)
            if rd is not None:
                path = self.path / name
                for uid, _ in rd.event_uids(path):
                    state.event_uids.add(uid)
                    self.event_owner[uid] = name
                for datum_id in rd.datums:
                    state.datum_ids.add(datum_id)
                    self.datum_owner[datum_id] = name
                for uid, doc in rd.descriptors.items():
                    self.desc_file.setdefault(uid, name)
                    state.docs[("descriptor", uid)] = doc
                for uid, doc in rd.resources.items():
                    self.res_file.setdefault(uid, name)
                    state.docs[("resource", uid)] = doc
                if rd.start is not None and isinstance(rd.start.get("uid"), str):
                    self.run_file.setdefault(rd.start["uid"], name)
            state.uids_loaded = True
        self._trim_states()
        return state

    def _trim_states(self) -> None:
        # Forget the uids of runs this process finished long ago: where their documents are
        # is then asked of the index, as for any other process's runs (a recording process
        # would otherwise keep three entries a run for its whole life).
        closed = [n for n, s in self.states.items() if s.fd is None]
        places = {"descriptor": self.desc_file, "resource": self.res_file}
        for name in closed[: max(0, len(closed) - 4)]:
            state = self.states.pop(name)
            for uid in state.event_uids:
                if self.event_owner.get(uid) == name:
                    del self.event_owner[uid]
            for datum_id in state.datum_ids:
                if self.datum_owner.get(datum_id) == name:
                    del self.datum_owner[datum_id]
            for kind, uid in state.docs:
                where = places.get(kind)
                if where is not None and where.get(uid) == name:
                    del where[uid]
            if state.run_uid is not None and self.run_file.get(state.run_uid) == name:
                del self.run_file[state.run_uid]

    def open_start(self, run_uid: str) -> Doc | None:
        """The start of a run this process is writing (its file open here), or None.

        A run file's first line never changes while it is written, so the insert path's
        link checks of that run's descriptors and stop need not read the index for it.
        """
        name = self.run_file.get(run_uid)
        state = None if name is None else self.states.get(name)
        if state is None or state.fd is None:
            return None
        return state.docs.get(("start", run_uid))

    def recording(self, run_uid: str) -> bool:
        """Whether this process started the run and has not written its stop (one process
        writes a run at a time, so it has no stop anywhere)."""
        name = self.run_file.get(run_uid)
        state = None if name is None else self.states.get(name)
        return state is not None and state.started_here

    def run_file_name(self, run_uid: str) -> str | None:
        name = self.run_file.get(run_uid)
        if name is None:
            if not _sqlable(run_uid):
                return None  # no run has a uid SQLite cannot even hold
            rows = self._index.read("SELECT file FROM runs WHERE uid = ?", (run_uid,))
            name = rows[0][0] if rows else None
        return name

    def _writable(self, name: str) -> _RunState:
        """The state of a file, opened for appending."""
        state = self.states.get(name)
        if state is None or not state.uids_loaded:
            state = self.adopt(name)
        if state.fd is not None:
            return state
        path = self.path / name
        if name.endswith(".msgpack"):
            raise ReadOnlyStore(
                f"Run file {path} is in msgpack format, which {self.describe()} reads but never "
                "writes, so nothing was written. Insert the run into a store of .jsonl files.",
                store=self.describe(),
            )
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            raise self.cannot_open(path, err) from err
        size = os.fstat(fd).st_size
        if size:
            if _last_byte(path, size) != b"\n":
                os.close(fd)
                raise CorruptRunFile(
                    f"{path} ends with an incomplete line (a writer was interrupted), so "
                    f"nothing more can be appended to it and nothing was written. Call "
                    "repair() on the store to remove the incomplete tail, then insert again.",
                    path=str(path),
                )
        state.fd = fd
        state.size = size
        state.new_entry = state.new_entry or size == 0
        return state

    def _append(self, state: _RunState, name: str, doc: Doc, line: bytes | None = None) -> None:
        """Write one document (``line``: its ``_dump_line``, when the caller has it)."""
        if line is None:
            line = _dump_line(name, doc)
        assert state.fd is not None
        before = state.size
        written = 0
        try:
            written = os.write(state.fd, line)
            while written < len(line):  # a short write (a signal, a nearly full disk)
                written += os.write(state.fd, memoryview(line)[written:])
        except OSError as err:
            if written and state.name != ASSETS_NAME:
                # All of the document or none of it: cut a partial line off again.
                with contextlib.suppress(OSError):
                    os.ftruncate(state.fd, before)
            raise StoreUnavailable(
                f"{self.describe()}: could not write a {name} document to "
                f"{self.path / state.name} ({err.strerror}). Nothing was written."
            ) from err
        state.size = before + len(line)
        state.lines += 1
        if self.fsync_interval <= 0:
            self._fsync(state, name)
        else:
            state.dirty = True
            self._schedule_sync()
        if state.acc is not None:
            state.acc_bytes += len(line)
            if state.acc_bytes > self.cache_max_bytes:
                state.acc, state.doc_lines = None, []
            elif state.columns_from or name not in ("event", "event_page"):
                state.doc_lines.append(line)  # while short, every line (see _RunState)

    def cannot_open(self, path: Path, err: OSError) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.describe()}: could not open {path} for writing ({err.strerror}). Nothing "
            "was written."
        )

    def _fsync(self, state: _RunState, name: str) -> None:
        assert state.fd is not None
        try:
            os.fsync(state.fd)
        except OSError as err:
            raise StoreUnavailable(
                f"{self.describe()}: a {name} document was written to {self.path / state.name} "
                f"but could not be flushed to disk ({err.strerror}), so it may be lost if the "
                "machine stops. Check the disk, then insert the document again (an identical "
                "re-insert is a no-op)."
            ) from err

    def _append_page(self, name: str, doc: Doc) -> tuple[_RunState, str]:
        """Append an event or datum page to the run file of its descriptor or resource;
        ``(that file's state, its name)``.  A one-row page is written as the single document,
        as suitcase-jsonl writes RunEngine output, so readers that know only "event" and
        "datum" read it too."""
        if name == "event_page":
            parent, ids, single = doc["descriptor"], doc["uid"], "event"
            file = self.member_file("descriptor", parent)
        else:
            parent, ids, single = doc["resource"], doc["datum_id"], "datum"
            file = self.member_file("resource", parent)
        assert file is not None  # the insert path checked the link
        state = self._writable(file)
        if len(ids) == 1:
            to_single = _single_event if single == "event" else _single_datum
            self._append(state, single, to_single(doc))
        else:
            self._append(state, name, doc)
        return state, file

    def write_document(self, name: str, doc: Doc) -> None:
        with self._lock:
            if name == "start":
                self._write_start(doc)
            elif name == "descriptor":
                file = self.run_file_name(doc["run_start"])
                if file is None:  # pragma: no cover - the insert path checked the link
                    raise not_found_run(self, doc["run_start"])  # type: ignore[arg-type]
                state = self._writable(file)
                self._append(state, "descriptor", doc)
                self.desc_file[doc["uid"]] = file
                state.docs[("descriptor", doc["uid"])] = doc
                if state.started_here:
                    # One index transaction per run: the stop records it (see member_file).
                    state.pending_descriptors.append(doc["uid"])
                else:
                    self._flush_state(state, [("descriptor", doc["uid"], file)])
            elif name == "event_page":
                if not doc["uid"]:
                    return  # an empty page holds nothing to keep
                state, file = self._append_page("event_page", doc)
                for uid in doc["uid"]:
                    state.event_uids.add(uid)
                    self.event_owner[uid] = file
                _accumulate(state, doc, single=False)
            elif name == "resource":
                file = self._resource_target(doc)
                state = self._writable(file)
                self._append(state, "resource", doc)
                self.res_file[doc["uid"]] = file
                state.docs[("resource", doc["uid"])] = doc
                self._flush_state(state, [("resource", doc["uid"], file)])
            elif name == "datum_page":
                state, file = self._append_page("datum_page", doc)
                for datum_id in doc["datum_id"]:
                    state.datum_ids.add(datum_id)
                    self.datum_owner[datum_id] = file
                state.pending_datums.extend(doc["datum_id"])
                if len(state.pending_datums) > 10_000:
                    self._flush_state(state, [])
            elif name == "stop":
                self._write_stop(doc)
            else:  # pragma: no cover - the insert path sends nothing else
                raise ValueError(name)

    def write_event(self, event: Doc) -> None:
        # A single event is written as the line it already is (no page round trip), as
        # suitcase-jsonl writes RunEngine output; keys beyond the event's own are dropped,
        # as the page path drops them.
        if not event.keys() <= _EVENT_KEYS_KEPT:
            event = {k: v for k, v in event.items() if k in _EVENT_KEYS_KEPT}
        with self._lock:
            file = self.member_file("descriptor", event["descriptor"])
            assert file is not None
            state = self._writable(file)
            self._append(state, "event", event)
            state.event_uids.add(event["uid"])
            self.event_owner[event["uid"]] = file
            _accumulate(state, event, single=True)

    def write_new_start(self, doc: Doc) -> bool:
        """Write a start whose run is plainly new without looking it up first; False (nothing
        written) where it may not be, and the insert path then checks it as always.

        "Plainly new": a uid that can name a file and a time, no run of this uid written by
        this process, no ``<uid>.msgpack``; then the exclusive create of ``<uid>.jsonl`` and
        the index's unique run uids refuse any other copy (the index transaction rolls back
        and the file just created is removed).  This spares each start a read of the index
        and a ``stat``.
        """
        uid = doc.get("uid")
        if (not isinstance(uid, str) or "time" not in doc or uid in self.run_file
                or self._start_refusal(doc) is not None):
            return False  # the lookup comes first, then the refusal, as always
        if os.path.isfile(os.path.join(self.path, uid + ".msgpack")):
            return False
        with self._lock:
            return self._write_start(doc, new_only=True)

    def _start_refusal(self, doc: Doc) -> InvalidDocument | UnsafeUid | None:
        """Why this start cannot be written (a NaN time, a uid that cannot name a run
        file), or None."""
        uid = doc["uid"]
        if doc["time"] != doc["time"]:
            # The index orders runs by time; SQLite cannot hold a NaN (it becomes NULL).
            return InvalidDocument(
                f"start {uid} has time NaN, so it cannot be placed among the runs of "
                f"{self.describe()}. Give it the time the run started. Nothing was written.",
                name="start",
                uid=uid,
                field="time",
            )
        problem = _uid_problem(uid)
        if problem is not None:
            return UnsafeUid(
                f"Run uid {uid!r} cannot name a run file in {self.describe()}: {problem}. "
                "Nothing was written. Use uids made of letters, digits and '-', such as "
                "str(uuid.uuid4())."
            )
        return None

    def _write_start(self, doc: Doc, *, new_only: bool = False) -> bool:
        """Write a start (see :meth:`write_new_start` for ``new_only``); False only where
        ``new_only`` found the run may exist (nothing written then)."""
        uid = doc["uid"]
        if not new_only:  # write_new_start found no refusal
            refusal = self._start_refusal(doc)
            if refusal is not None:
                raise refusal
        name = uid + ".jsonl"
        where = os.path.join(self.path, name)
        # The directory mtime before and after the file is created: a reader that sees this
        # change in the index's links knows the directory need not be listed for it.
        before, _ = _dir_mtime_and_identity(self.path)
        try:
            fd = self._spares.open_run_file(where)
        except FileExistsError:
            if new_only:
                return False
            fd = -1
        except OSError as err:
            raise self.cannot_open(Path(where), err) from err
        after, dir_identity = _dir_mtime_and_identity(self.path) if fd >= 0 else (before, None)
        if fd < 0:
            path = Path(where)
            if not path.is_file():  # a dangling symbolic link, a directory, ...
                raise CorruptRunFile(
                    f"{path} already exists but is not a regular run file (a dangling symbolic "
                    "link or a directory?), so nothing was written. Move it aside.",
                    path=str(path),
                ) from None
            if path.stat().st_size:
                # Another process may have created this run a moment ago.
                self._refresh_file(name)
                row = self._index.run_row(uid)
                if row is not None and row[0] == name:
                    if json.loads(row[1]) == doc:
                        return True  # the same start: inserting it again is a no-op
                    raise DuplicateDocument(
                        f"A different start document with uid {uid} is already in "
                        f"{self.describe()}. Documents are immutable; write a new one with a "
                        "new uid instead.",
                        name="start",
                        uid=uid,
                        store=self.describe(),
                    ) from None
                raise CorruptRunFile(
                    f"{path} already exists but does not begin with a readable start document "
                    f"for run {uid}, so nothing was written. Call repair({uid!r}) if a writer "
                    "was interrupted while writing it, or move the file aside.",
                    path=str(path),
                ) from None
            try:
                fd = os.open(path, RUN_FILE_FLAGS & ~os.O_EXCL & ~os.O_CREAT)
            except OSError as err:
                raise self.cannot_open(path, err) from err
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = _RunState(name, uid)
        if state.fd is not None and state.fd != fd:
            with contextlib.suppress(OSError):
                os.close(state.fd)  # left by an earlier attempt that could not write
        state.fd, state.size, state.lines = fd, 0, 0
        state.new_entry = state.uids_loaded = True
        state.started_here, state.pending_descriptors = False, []
        state.acc = {} if self.columnar_cache else None
        state.doc_lines, state.acc_bytes = [], 0
        state.columns_from = self.cache_min_bytes
        # One encoding serves the line, its checksum and the index row.
        text = _encode(doc)
        line = _line_of("start", text)
        self._append(state, "start", doc, line)
        state.docs[("start", uid)] = doc
        if state.new_entry and not self._syncs.deferred:
            # The new directory entry is made durable while the run records; its stop waits
            # for this only if it has not finished.  The next run's file is made after it.
            state.dir_sync = self._spares.after_start(
                functools.partial(self._syncs.fsync_directory, dir_identity)
            )
            state.new_entry = False
        else:
            self._spares.after_start(None)
        self.run_file[uid] = name
        self.last_started = name
        st = os.fstat(fd)
        head_crc = zlib.crc32(line)
        row = _run_row_values(doc, None, start_text=text.decode("ascii"))

        def record(conn: sqlite3.Connection) -> None:
            if conn.execute(_NAME_INDEXED, (name, name, name)).fetchone()[0]:
                self._index.forget_file(conn, name)  # rows of an earlier file of this name
            try:
                self._index.insert_run_row(conn, name, doc, row=row, text_later=True)
            except sqlite3.IntegrityError:
                if not new_only:
                    raise
                raise _StartIndexedElsewhere from None
            self._index.set_file_row(conn, name, st, state.size, head_crc, "run", uid, True)
            record_link(conn, before, after, prune=self._link_prune_due())

        try:
            self._index.write(record)
        except _StartIndexedElsewhere:
            self._undo_new_start(state, uid)
            return False
        state.started_here = True
        return True

    def _undo_new_start(self, state: _RunState, uid: str) -> None:
        """Remove the run file a start just created (its uid turned out to be indexed for
        another file) and forget it; the insert path then checks the start as always."""
        assert state.fd is not None
        with contextlib.suppress(OSError):
            os.close(state.fd)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.path, state.name))
        state.fd, state.dir_sync, state.acc, state.doc_lines = None, None, None, []
        self.states.pop(state.name, None)
        self.run_file.pop(uid, None)
        if self.last_started == state.name:
            self.last_started = None

    def _link_prune_due(self) -> bool:
        """Whether this start's transaction prunes old directory links (the first of this
        writer's, then one a second at most)."""
        now = time.monotonic()
        last = self._links_pruned_at
        if last is not None and now - last < LINK_PRUNE_EVERY_S:
            return False
        self._links_pruned_at = now
        return True

    def _resource_target(self, doc: Doc) -> str:
        run = doc.get("run_start")
        if isinstance(run, str):
            name = self.run_file_name(run)
            if name is not None and name.endswith(".jsonl"):
                return name
            return ASSETS_NAME
        last = self.last_started
        if last is not None:
            state = self.states.get(last)
            if state is not None and state.fd is not None:
                return last
        return ASSETS_NAME

    def _write_stop(self, doc: Doc) -> None:
        file = self.run_file_name(doc["run_start"])
        assert file is not None
        state = self._writable(file)
        text = _encode(doc)
        self._append(state, "stop", doc, _line_of("stop", text))
        assert state.fd is not None
        if self._syncs.deferred:
            self._sync_later(state)
            # The block's end syncs the directory (a sync begun at start may still run).
            self._syncs.dir_unsynced = (
                self._syncs.dir_unsynced or state.new_entry or state.dir_sync is not None
            )
            state.new_entry, state.dir_sync = False, None
        else:
            self._fsync(state, "stop")
            self._entry_durable(state)
        state.dirty = False
        st = os.fstat(state.fd)
        members, scanned = _pending_members(state), state.size

        def record(conn: sqlite3.Connection) -> None:
            self._index.record_members(conn, members)
            self._index.record_stop(conn, doc["run_start"], doc, text.decode("ascii"))
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, scanned = max(scanned, ?), "
                "volatile = 0 WHERE name = ?",
                (st.st_size, st.st_mtime_ns, scanned, file),
            )

        if self.fsync_interval > 0:
            # Written with the next run's start (one index transaction per run), or by the
            # sync timer: the file, synced above, already says all of it.
            self._index.defer(record)
            self._schedule_sync()
        else:
            self._index.write(record)
        state.pending_datums.clear()
        state.pending_descriptors.clear()
        state.started_here = False
        if state.acc is not None and state.columns_from and state.size >= self.cache_min_bytes:
            columns_from_kept_lines(state)  # grown past at its last lines, not an event
        acc, doc_lines, lines = state.acc, state.doc_lines, state.lines
        state.acc, state.doc_lines = None, []
        os.close(state.fd)
        state.fd = None
        if self.last_started == file:
            self.last_started = None
        self._trim_states()
        if acc is not None and state.size >= self.cache_min_bytes:
            # Derived data: written after the stop returns, never fsynced.  Queued last: the
            # thread that writes it holds the GIL while it encodes, and a system call made
            # here after waking it (the close) would wait for that.
            self._syncs.cache_soon(file, write_cache_of_writes, self.path / file,
                                   self._runs.cache_path(file), acc, doc_lines, lines, st)

    def _sync_later(self, state: _RunState) -> None:
        assert state.fd is not None
        self._syncs.queue(state.name, os.dup(state.fd))  # the run's own fd closes at stop

    def _entry_durable(self, state: _RunState) -> None:
        """Make sure the directory entry of a file this process created is on disk."""
        if state.dir_sync is not None:
            state.dir_sync.result()  # started at the run's start; usually long finished
            state.dir_sync = None
        elif state.new_entry:
            self._syncs.fsync_directory()
        state.new_entry = False

    def _flush_state(self, state: _RunState, members: list[tuple[str, str, str]]) -> None:
        """Record a file's new members (and buffered datums) and how far it is indexed."""
        rows = members + _pending_members(state)
        name = state.name
        size = state.size
        st = os.fstat(state.fd) if state.fd is not None else os.stat(self.path / name)

        def record(conn: sqlite3.Connection) -> None:
            self._index.record_members(conn, rows)
            if name == ASSETS_NAME:
                # Other processes append to it too, so how far it is scanned is left to the
                # scans (which pick up everyone's lines); our members are recorded above.
                return
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, scanned = max(scanned, ?) "
                "WHERE name = ?",
                (st.st_size, st.st_mtime_ns, size, name),
            )

        self._index.write(record)
        state.pending_datums.clear()
        state.pending_descriptors.clear()

    def _schedule_sync(self) -> None:
        if self._sync_timer is None:
            timer = threading.Timer(self.fsync_interval, self._sync_dirty)
            timer.daemon = True
            self._sync_timer = timer
            timer.start()

    def _sync_dirty(self) -> None:
        with self._write_lock, self._lock:
            self._sync_timer = None
            if os.getpid() != self._index.pid:
                return
            self._index.write_deferred()
            for state in list(self.states.values()):
                if state.fd is None:
                    continue
                if state.dirty:
                    with contextlib.suppress(OSError):
                        os.fsync(state.fd)
                    self._entry_durable(state)
                    state.dirty = False
                if state.pending_datums or state.pending_descriptors:
                    # The index write fails as StoreUnavailable (a full disk, say): the lines
                    # are in the file, past what the index says is scanned, so a later scan
                    # indexes them.
                    with contextlib.suppress(*INDEX_WRITE_ERRORS):
                        self._flush_state(state, [])

    def flush_all(self, close: bool = False) -> None:
        for state in list(self.states.values()):
            if state.fd is None:
                continue
            with contextlib.suppress(OSError):
                os.fsync(state.fd)
            self._entry_durable(state)
            state.dirty = False
            if self._index.is_open():
                # As in _sync_dirty: what the index misses now, a later scan of the file finds.
                with contextlib.suppress(*INDEX_WRITE_ERRORS):
                    self._flush_state(state, [])
            if close:
                os.close(state.fd)
                state.fd = None
                state.started_here = False
                state.acc, state.doc_lines = None, []
        if self._index.is_open():
            self._index.write_deferred()
            # Deferrable: while the rows are pending, searches still find the runs, and any
            # writer's next completion writes them.
            with contextlib.suppress(*INDEX_WRITE_ERRORS):
                self._index.write_pending_text()
        if close:
            self.last_started = None
