"""Whole-run copies between files stores, and the checking process behind them.

A stopped run is copied by its file: the bytes are checked as ``insert`` would check every
document (:func:`_check_run_file`, :class:`_CheckedRun`), written in one go, indexed in one
transaction and read back.  For long copies the checks run ahead in a second process
(:class:`_CheckingProcess`, :func:`_checking_process_main`, started as ``python -m
broker_v1.stores.files._check_ahead``); they use the insert path's checks from
:mod:`broker_v1.stores._checks` directly, so that process builds no store.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import operator
import os
import shutil
import sqlite3
import sys
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ...errors import InvalidDocument, StoreUnavailable
from .. import _checks
from .._util import DocumentValueError, loads_json, sanitize
from ..base import Doc, RunCopy
from ._cache import CACHE_DIR
from ._format import _EVENT_KEYS_KEPT, STATE_DIR, _uid_problem
from ._index import _NAME_INDEXED, _Index, _run_row_values
from ._syncs import _Syncs
from ._writer import _Writer

#: Whole-run copies checked ahead in a second process: only for copies at least this long
#: (starting the process costs about half a second), in batches of this many runs.
_CHECK_AHEAD_MIN_RUNS = 200
_CHECK_AHEAD_BATCH = 64


#: What ``_CheckingProcess.take`` returns for a run it was not asked to check.
_NOT_CHECKED: Any = object()


class _CheckingProcess:
    """A second process that checks run files for whole-run copies ahead of the copy.

    A copy uses one core; the checks (parsing and checking every document, about half of a
    whole-run copy's time) run here on the other, a batch or two ahead, while this process
    writes and indexes.  The checks are the very same (:func:`_check_run_file`); only what
    reads this store (uids already here) stays in this process.  A result is the bytes that
    were checked, so what is written is exactly what was checked.  No helper threads: the
    pipe is read when a result is needed, and at most two batches are in flight, so neither
    side can block the other.  If the process dies, the copy goes on without it.
    """

    def __init__(self) -> None:
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        # A fresh interpreter running one module of ours: never a fork of a process with
        # threads, and never a re-run of the caller's script (as multiprocessing's spawn
        # does with scripts that lack an ``if __name__ == "__main__"`` guard).
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "broker_v1.stores.files._check_ahead", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._in_flight: deque[list[str]] = deque()
        self._results: dict[str, Any] = {}
        self.alive = True

    @property
    def pid(self) -> int:
        return self._process.pid

    def room(self) -> bool:
        return self.alive and len(self._in_flight) < 2

    def submit(self, batch: list[tuple[str, str, str]]) -> None:
        """Ask for the checks of ``(uid, run file path, start JSON)`` triples."""
        try:
            self._conn.send(batch)
        except (OSError, EOFError, ValueError):
            self._die()
            return
        self._in_flight.append([uid for uid, _, _ in batch])

    def take(self, uid: str) -> Any:
        """``(data, plan)``, ``None`` (the checks refused the run) or ``_NOT_CHECKED``."""
        while uid not in self._results and self._in_flight and self.alive:
            try:
                answers = self._conn.recv()
            except (OSError, EOFError, ValueError):
                self._die()
                break
            self._results.update(zip(self._in_flight.popleft(), answers))
            while len(self._results) > 4 * _CHECK_AHEAD_BATCH:  # runs the copy did not ask for
                del self._results[next(iter(self._results))]
        return self._results.pop(uid, _NOT_CHECKED)

    def _die(self) -> None:
        self.alive = False
        self._in_flight.clear()

    def close(self) -> None:
        self._die()
        self._results.clear()
        with contextlib.suppress(OSError):
            self._conn.close()
        self._process.terminate()  # results still in flight are not needed
        try:
            self._process.wait(5)
        except Exception:  # noqa: BLE001 - it was terminated; do not hang the copy on it
            self._process.kill()


def _checking_process_main(conn: Any) -> None:
    """The checking process: check each batch of run files and send back the results."""
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        answers: list[Any] = []
        for uid, path, start_json in batch:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                plan = _check_run_file(data, json.loads(start_json), uid)
                answers.append(None if plan is None else (data, plan))
            except Exception:  # noqa: BLE001 - this run goes the document path instead
                answers.append(None)
        conn.send(answers)


def _check_run_file(data: bytes, start: Doc, uid: str) -> _CheckedRun | None:
    """Check a run file's documents as ``insert(trusted=True)`` would; ``None`` if any would
    not pass unchanged or would need documents outside the file.  Pure: the insert path's
    checks come from :mod:`broker_v1.stores._checks` and nothing of any store is read, so
    this may run in the checking process of :class:`_CheckingProcess`."""
    if not data.endswith(b"\n") or b"\n\n" in data or b"\r" in data:
        return None
    try:
        items = loads_json(b"[" + data[:-1].replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError):
        return None
    if len(items) < 2 or items[0] != ["start", start] or items[-1][0] != "stop":
        return None
    # Whole-list passes (C loops) wherever they can replace a Python loop per document.
    if set(map(type, items)) != {list} or set(map(len, items)) != {2}:
        return None
    names = list(map(_first, items))
    docs = list(map(_second, items))
    if set(map(type, docs)) != {dict}:
        return None
    is_event = list(map(_EVENT.__eq__, names))
    plan = _CheckedRun(uid)
    try:
        for position in itertools.compress(range(len(docs)), map(operator.not_, is_event)):
            doc_name, doc = names[position], docs[position]
            sanitize(doc)  # the key and nesting rules every store applies
            if not plan.add(doc_name, doc):
                return None
            if doc_name == "descriptor":
                plan.descriptor_at[doc["uid"]] = position
        if True in is_event:  # single events: checked together, as pages
            plan.single_events = list(itertools.compress(docs, is_event))
            plan.event_at = list(itertools.compress(range(len(docs)), is_event))
            if not plan.check_single_events():
                return None
    except (InvalidDocument, DocumentValueError, KeyError, TypeError, AttributeError):
        return None
    if plan.external_refs - plan.datum_ids:
        return None  # datums of resources in other files: the document path brings them
    plan.row = _run_row_values(plan.start, plan.stop)
    plan.head_crc = zlib.crc32(data[: data.index(b"\n") + 1])
    return plan.slim()


class _CheckedRun:
    """What a run file holds, gathered while its documents are checked for an import."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.name = uid + ".jsonl"
        self.start: Doc = {}
        self.stop: Doc = {}
        self.documents = 0
        self.keys: dict[str, frozenset[str]] = {}
        self.external: dict[str, list[str]] = {}
        self.event_uids: set[str] = set()
        self.resources: set[str] = set()
        self.datum_ids: set[str] = set()
        self.external_refs: set[str] = set()
        self.members: list[tuple[str, str, str]] = []
        self.row: tuple[Any, ...] | None = None  # _run_row_values, computed with the checks
        self.head_crc = 0
        self.single_events: list[Doc] = []
        self.event_at: list[int] = []  # where each single event is in the file
        self.descriptor_at: dict[str, int] = {}

    def add(self, name: str, doc: Doc) -> bool:
        """Check one document (not a single event) as ``insert`` would; False if it needs
        the general path."""
        if self.stop or not _finite_time(doc, required=name in ("start", "descriptor", "stop")):
            return False  # nothing may follow the stop
        if name == "start":
            if self.start:
                return False
            self.start = doc
        elif name == "descriptor":
            uid = doc["uid"]
            if doc["run_start"] != self.uid or not isinstance(uid, str) or uid in self.keys:
                return False
            self.keys[uid] = frozenset(doc["data_keys"])
            self.external[uid] = [k for k, v in doc["data_keys"].items() if v.get("external")]
            self.members.append(("descriptor", uid, self.name))
        elif name == "event_page":
            return self._add_page(doc)
        elif name == "resource":
            uid = doc["uid"]
            if ("_id" in doc or doc.get("run_start", self.uid) != self.uid
                    or not isinstance(uid, str) or uid in self.resources):
                return False
            self.resources.add(uid)
            self.members.append(("resource", uid, self.name))
        elif name in ("datum", "datum_page"):
            page = name == "datum_page"
            _checks.check_datum_shape(name, doc, page=page)
            ids = doc["datum_id"] if page else [doc["datum_id"]]
            if doc["resource"] not in self.resources or not ids:
                return False
            before = len(self.datum_ids)
            self.datum_ids.update(ids)
            if len(self.datum_ids) != before + len(ids):
                return False  # a datum id seen before, or twice within the page
            self.members.extend(("datum", d, self.name) for d in ids)
            self.documents += len(ids)
            return True
        elif name == "stop":
            if doc["run_start"] != self.uid or doc["time"] < self.start["time"]:
                return False
            if not isinstance(doc["uid"], str):
                return False
            self.stop = doc
        else:
            return False
        self.documents += 1
        return True

    def _add_page(self, doc: Doc) -> bool:
        keys = self.keys.get(doc.get("descriptor"))  # type: ignore[arg-type]
        if keys is None:
            return False
        _checks.check_event_page(doc, lambda _name, _doc: keys)
        return self._add_rows(doc)

    def slim(self) -> _CheckedRun:
        """Drop what only the checks needed (a smaller result to send between processes)."""
        self.single_events, self.event_at, self.descriptor_at = [], [], {}
        self.event_uids, self.datum_ids, self.external_refs = set(), set(), set()
        self.keys, self.external = {}, {}
        return self

    def check_single_events(self) -> bool:
        """Check the single events, as the pages of their descriptors, as ``insert`` would;
        False if any would not pass unchanged.  Column by column, mostly in C."""
        events = self.single_events
        if not all(_EVENT_REQUIRED <= keys <= _EVENT_KEYS_KEPT
                   for keys in set(map(frozenset, events))):
            return False  # missing fields, or extra keys insert would drop
        if any(map(bool, map(_get_filled, events))):
            return False  # filled flags: the general path handles them
        descriptors = list(map(_get_descriptor, events))
        for descriptor in dict.fromkeys(descriptors):
            keys = self.keys.get(descriptor)
            if keys is None or self.event_at[descriptors.index(descriptor)] < self.descriptor_at[
                    descriptor]:
                return False  # no such descriptor, or an event before it
            if len(self.keys) == 1:
                group = events
            else:
                group = list(itertools.compress(
                    events, map(operator.eq, descriptors, itertools.repeat(descriptor))))
            data = list(map(_get_data, group))
            timestamps = list(map(_get_timestamps, group))
            if set(map(type, data)) != {dict} or set(map(type, timestamps)) != {dict}:
                return False
            if set(map(frozenset, data)) != {keys} or set(map(frozenset, timestamps)) != {keys}:
                return False
            page = {
                "descriptor": descriptor,
                "uid": [e["uid"] for e in group],
                "time": [e["time"] for e in group],
                "seq_num": [e["seq_num"] for e in group],
                "data": {k: list(map(operator.itemgetter(k), data)) for k in keys},
                "timestamps": {k: list(map(operator.itemgetter(k), timestamps)) for k in keys},
            }
            for part in ("data", "timestamps"):
                for column in page[part].values():
                    if not set(map(type, column)) <= _PLAIN_TYPES:
                        sanitize(column)  # nested values: the key and nesting rules
            _checks.check_event_page(page, lambda _name, _doc: keys)  # noqa: B023
            if not self._add_rows(page):
                return False
        return True

    def _add_rows(self, doc: Doc) -> bool:
        uids = doc["uid"]
        filled = [v for col in (doc.get("filled") or {}).values() for v in col]
        refs = [v for k in self.external[doc["descriptor"]] for v in doc["data"][k]]
        if not uids or any(isinstance(v, str) for v in filled):
            return False  # empty, or filled datum ids that insert would move into data
        before = len(self.event_uids)
        self.event_uids.update(uids)
        if len(self.event_uids) != before + len(uids):
            return False  # an event uid seen twice
        self.external_refs.update(r for r in refs if isinstance(r, str))
        self.documents += len(uids)
        return True


def _finite_time(doc: Doc, *, required: bool) -> bool:
    t = doc.get("time")
    if t is None:
        return not required
    if isinstance(t, list):
        return True  # a page's times are checked with its columns
    return type(t) in (int, float) and math.isfinite(t)


_EVENT_REQUIRED = _EVENT_KEYS_KEPT - {"filled"}
_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))
_EVENT = "event"


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_get_descriptor = operator.itemgetter("descriptor")
_get_data = operator.itemgetter("data")
_get_timestamps = operator.itemgetter("timestamps")
_get_filled = operator.methodcaller("get", "filled")


class _RunFiles(Protocol):
    """What a whole-run copy reads of its source: a files store's directory and index."""

    path: Path

    def indexed_run(self, run_start_uid: str) -> tuple[str, str, str | None] | None:
        """``(file name, start JSON, stop JSON or None)`` of a run, or None."""


class _Importer:
    """Whole-run copies into one store directory, checked (ahead, when worth it) and verified.

    Parameters
    ----------
    path
        The store directory copies are written into.
    label
        The store's description, for messages.
    lock, write_lock
        The store's lock and the insert path's lock (held while a copy is indexed).
    index
        The index the copies are recorded in.
    writer
        The store's writer (which learns where each copied run is).
    syncs
        The deferred fsyncs (inside ``deferred_sync()`` a copy is synced in the background).
    columnar_cache
        Whether copies get the source's columnar cache.
    """

    def __init__(
        self,
        path: Path,
        label: str,
        lock: threading.RLock,
        write_lock: threading.RLock,
        index: _Index,
        writer: _Writer,
        syncs: _Syncs,
        *,
        columnar_cache: bool,
    ) -> None:
        self.path = path
        self._dirname = str(path)  # for the hot paths, where pathlib's cost shows
        self._label = label
        self._lock = lock
        self._write_lock = write_lock
        self._index = index
        self._writer = writer
        self._syncs = syncs
        self.columnar_cache = columnar_cache
        # Whole-run copies checked ahead in a second process, for long copies.
        self.checking_process: _CheckingProcess | None = None
        self._checking_failed = False
        self._hinted = 0  # runs announced by prepare_copies() in this deferred_sync() block
        self.checked_ahead = 0  # whole-run copies whose checks came from the checking process

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    def finish(self) -> None:
        """End of a ``deferred_sync()`` block: stop the checking process, if any."""
        process, self.checking_process = self.checking_process, None
        self._hinted = 0
        if process is not None:
            process.close()

    def prepare(self, source: _RunFiles, run_start_uids: Sequence[str]) -> None:
        """Have the checking process check these runs of ``source`` (see ``prepare_copies``)."""
        self._hinted += len(run_start_uids)
        if self.checking_process is None:
            if self._checking_failed or self._hinted < _CHECK_AHEAD_MIN_RUNS:
                return  # a short copy: not worth starting a process
            if os.name != "posix":
                return  # the checking process needs socket pairs passed as descriptors
            try:
                self.checking_process = _CheckingProcess()
            except (OSError, RuntimeError, ValueError):
                self._checking_failed = True  # e.g. no process may be started here
                return
        batch: list[tuple[str, str, str]] = []
        for uid in run_start_uids:
            row = source.indexed_run(uid) if isinstance(uid, str) else None
            name = f"{uid}.jsonl"
            if row is None or row[2] is None or row[0] != name or self._index.run_row(uid):
                continue  # open, missing, not a run file of its own, or here already
            batch.append((uid, os.path.join(str(source.path), name), row[1]))
        for i in range(0, len(batch), _CHECK_AHEAD_BATCH):
            if not self.checking_process.room():
                break  # the rest is checked here when its turn comes
            self.checking_process.submit(batch[i : i + _CHECK_AHEAD_BATCH])

    def copy(self, source: _RunFiles, run_start_uid: str) -> RunCopy | None:
        """Copy one stopped run of ``source`` by its file (see ``copy_run_from``)."""
        if (_uid_problem(run_start_uid) is not None
                or self._index.run_row(run_start_uid) is not None):
            return None
        row = source.indexed_run(run_start_uid)
        if row is None or row[2] is None or not str(row[0]).endswith(".jsonl"):
            return None
        name = run_start_uid + ".jsonl"
        if row[0] != name or os.path.lexists(os.path.join(self._dirname, name)):
            return None
        process = self.checking_process
        ahead = _NOT_CHECKED if process is None else process.take(run_start_uid)
        if ahead is None:
            self.checked_ahead += 1
            return None  # checked ahead, and refused: the document path says why
        if ahead is _NOT_CHECKED:
            try:
                with open(os.path.join(str(source.path), name), "rb") as f:
                    data = f.read()
            except OSError:
                return None
            plan = self._check_run(data, json.loads(row[1]), run_start_uid)
        else:
            data, plan = ahead
            self.checked_ahead += 1
            if not self._clear_here(plan):
                plan = None
        if plan is None:
            return None
        fd = self._create_run_file(name, data)
        if fd is None:
            return None
        with self._write_lock, self._lock:
            self._keep_run_file(name, fd)
            self._index_imported(name, data, plan)
        if self.columnar_cache:
            self._link_cache(source, name)
        return RunCopy(plan.documents, len(data))

    def _link_cache(self, source: _RunFiles, name: str) -> None:
        """Give a whole-run copy the source's columnar cache, if it has one (best effort).

        Same name, same bytes: the source's cache is valid here as it is.  Caches are
        replaced, never changed in place, so a hard link is a safe copy.
        """
        cached = os.path.join(str(source.path), STATE_DIR, CACHE_DIR, name + ".cols")
        target = os.path.join(self._dirname, STATE_DIR, CACHE_DIR, name + ".cols")
        with contextlib.suppress(OSError):
            for _attempt in (1, 2):
                try:
                    os.link(cached, target)
                    return
                except FileNotFoundError:
                    if not os.path.exists(cached):
                        return  # the source has none
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                except FileExistsError:
                    os.unlink(target)  # left by an earlier store at this path
                except OSError:  # another file system, or links not allowed
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    tmp = os.path.join(os.path.dirname(target), f".{name}.{os.getpid()}.tmp")
                    with open(cached, "rb") as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(tmp, target)
                    return

    def _check_run(self, data: bytes, start: Doc, uid: str) -> _CheckedRun | None:
        """Check a run file's documents as ``insert`` would; ``None`` if any would not pass
        unchanged, or would need documents outside the file or already here."""
        plan = _check_run_file(data, start, uid)
        return plan if plan is not None and self._clear_here(plan) else None

    def _clear_here(self, plan: _CheckedRun) -> bool:
        """True when none of the run's uids is in this store already."""
        if self._any_member(plan.members):
            return False
        # A run another process is writing has its descriptors indexed with its stop.
        if self._writer.index_open_runs() and self._any_member(plan.members):
            return False
        return not self._index.read("SELECT 1 FROM runs WHERE stop_uid = ?", (plan.stop["uid"],))

    def _any_member(self, members: list[tuple[str, str, str]]) -> bool:
        by_kind: dict[str, list[str]] = {}
        for kind, uid, _file in members:
            by_kind.setdefault(kind, []).append(uid)
        for kind, uids in by_kind.items():
            for i in range(0, len(uids), 500):
                chunk = uids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                # kind first: the primary key's order, so this is a lookup, not a scan
                sql = f"SELECT 1 FROM members WHERE kind = ? AND uid IN ({marks}) LIMIT 1"
                if self._index.read(sql, [kind, *chunk]):
                    return True
        return False

    def _create_run_file(self, name: str, data: bytes) -> int | None:
        """Create the run file holding exactly ``data`` (read back and compared); its fd.

        ``None`` when the file appeared meanwhile (nothing written).  On any failure the new
        file is removed again, so the run is either all there or not at all.
        """
        path = os.path.join(self._dirname, name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return None
        except OSError as err:
            raise self._writer.cannot_open(Path(path), err) from err
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if os.pread(fd, len(data) + 1, 0) != data:
                raise OSError(errno.EIO, "the run file read back differs from what was written")
        except OSError as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreUnavailable(
                f"{self.describe()}: could not write run file {path} ({err.strerror}). "
                "Nothing of the run was kept; check the disk and copy again."
            ) from err
        return fd

    def _keep_run_file(self, name: str, fd: int) -> None:
        """Sync a created run file now, or (in ``deferred_sync()``) in the background."""
        if self._syncs.deferred:
            self._syncs.queue(name, fd)
            self._syncs.dir_unsynced = True
            return
        try:
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(self.path / name)
            raise StoreUnavailable(
                f"{self.describe()}: could not flush run file {self.path / name} to disk "
                f"({err.strerror}). Nothing of the run was kept; check the disk and copy again."
            ) from err
        finally:
            os.close(fd)
        self._syncs.fsync_directory()

    def _index_imported(self, name: str, data: bytes, plan: _CheckedRun) -> None:
        st = os.stat(os.path.join(self._dirname, name))
        head_crc = plan.head_crc

        def record(conn: sqlite3.Connection) -> None:
            # Rows of a file this name once held, if it vanished since the last refresh.
            if conn.execute(_NAME_INDEXED, (name, name, name)).fetchone()[0]:
                self._index.forget_file(conn, name)
            self._index.insert_run_row(conn, name, plan.start, plan.stop, plan.row)
            self._index.record_members(conn, plan.members)
            self._index.set_file_row(conn, name, st, len(data), head_crc, "run", plan.uid, False)

        self._index.write_batched(record, batch=bool(self._syncs.deferred))
        self._writer.run_file[plan.uid] = name
