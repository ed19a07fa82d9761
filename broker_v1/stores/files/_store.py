"""The :class:`FileStore` facade (see the package docstring for the store's layout)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import CorruptRunFile, DatumNotFound, ReadOnlyStore, ResourceNotFound
from .._util import datum_page, json_copy
from .._util import valid_unicode as _sqlable
from ..base import Doc, DocumentStore, RunCopy, Sort, not_found_run
from ._format import (
    ASSETS_NAME,
    RunFileWarning,
    TornRunFileWarning,
    _open_directory,
    _truncate_tail,
    _uid_problem,
    _Warnings,
)
from ._import import _CheckingProcess, _Importer
from ._index import _CHUNK, _Index
from ._lookup import _Lookup
from ._rundata import _RunData
from ._runs import _RunCache
from ._scan import _Scanner
from ._search import _prefix_bounds, _Search
from ._syncs import _Syncs
from ._writer import _Writer

__all__ = ["FileStore", "RunFileWarning", "TornRunFileWarning"]


class FileStore(DocumentStore):
    """Runs kept as suitcase-jsonl files in one directory, with an SQLite search index.

    Parameters
    ----------
    path
        The store directory.  Created when missing unless ``read_only``.
    read_only, validate
        See :class:`~broker_v1.stores.base.DocumentStore`.  A read-only store never modifies
        a run file; it still maintains the derived index and columnar cache when the
        directory is writable (and keeps its index in memory otherwise).
    page_size
        Largest number of events handed out in one event page.
    fsync_interval
        Seconds after which written documents are fsynced even before the run's stop
        (``0`` fsyncs every document).  Every document is flushed to the operating system
        as soon as ``insert`` returns, so a killed process loses nothing; fsync guards
        against power loss.
    torn_grace
        Seconds during which an incomplete last line of a run without a stop is taken for a
        write in progress (silently not shown) rather than an interrupted one (warned about).
    index_path
        Where the index lives; default ``<path>/.broker_v1/index.sqlite``; ``":memory:"``
        keeps it in memory (rebuilt at every open).
    columnar_cache
        Keep a binary columnar copy of each completed run's events under
        ``<path>/.broker_v1/cache/`` so reading a run does not parse JSON.  The writer makes
        it at ``stop`` (it holds the events already); other runs get one on first read.
        It is checked against the run file and rebuilt whenever stale or missing.
    cache_runs
        How many parsed runs to keep in memory (least recently used are dropped).
    cache_max_bytes
        Largest run (in bytes of JSON written) for which the writer keeps events in memory
        to write the columnar cache at stop; larger runs get theirs on first read.
    cache_min_bytes
        Smallest run (its file's bytes) whose columnar cache the writer writes at stop.
        Writing one costs the writer more than it saves a reader of a short run (parsing a
        20-event run's JSON takes about 0.1 ms longer than reading its cache; writing the
        cache, 0.3-0.5 ms of CPU); smaller runs get theirs on first read.

    Notes
    -----
    Resources name their run with ``run_start`` and are written into that run's file.  A
    legacy resource without ``run_start`` goes into the run most recently started (and not
    yet stopped) by this process, as suitcase-jsonl would write it; with no such run it
    goes into ``_assets.jsonl``.  Datums go into their resource's file.

    One process writes a given run at a time; different processes may write different runs
    into one directory concurrently.  Duplicate event uids are detected within a run.
    """

    backend = "files"
    supports_writes = True
    supports_text_search = True
    evaluates_queries = True

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        read_only: bool = False,
        validate: str = "compatible",
        page_size: int = 100_000,
        fsync_interval: float = 1.0,
        torn_grace: float = 5.0,
        index_path: str | os.PathLike[str] | None = None,
        columnar_cache: bool = True,
        cache_runs: int = 8,
        cache_max_bytes: int = 256 * 2**20,
        cache_min_bytes: int = 64 * 2**10,
    ) -> None:
        super().__init__(read_only=read_only, validate=validate)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}.")
        self.path = Path(os.fspath(path)).expanduser().absolute()
        self.page_size = int(page_size)
        self.fsync_interval = float(fsync_interval)
        self.torn_grace = float(torn_grace)
        self.columnar_cache = bool(columnar_cache)
        self.cache_runs = max(1, int(cache_runs))
        self.cache_max_bytes = int(cache_max_bytes)
        self.cache_min_bytes = int(cache_min_bytes)
        self._index_option = None if index_path is None else os.fspath(index_path)
        self._lock = threading.RLock()
        # Formatted once: every search names the store (for its errors) before it runs.
        self._label = label = f"files store {self.path}"
        # The components, each given what it needs; the callbacks are bound once all exist.
        self._index = _Index(self.path, self._index_option, label, self._lock)
        self._warnings = _Warnings()
        self._runs = _RunCache(
            self.path,
            self._lock,
            columnar_cache=self.columnar_cache,
            cache_runs=self.cache_runs,
            torn_grace=self.torn_grace,
            warnings=self._warnings,
        )
        self._scan = _Scanner(
            self.path, label, self._lock, self._index, self._warnings, self._runs.forget
        )
        self._search = _Search(self._index, label, self._scan.refresh)
        self._syncs = _Syncs(self.path, label, self._lock)
        self._writer = _Writer(
            self.path,
            label,
            self._lock,
            self._write_lock,
            self._index,
            self._runs,
            self._syncs,
            self._scan.refresh_file,
            self._scan.refresh_open,
            fsync_interval=self.fsync_interval,
            columnar_cache=self.columnar_cache,
            cache_max_bytes=self.cache_max_bytes,
            cache_min_bytes=self.cache_min_bytes,
        )
        self._lookup = _Lookup(
            self.path, self._index, self._runs, self._writer, self._scan.refresh,
            self._scan.refresh_file,
        )
        self._runs.writing = self._writer.writing
        self._runs.settle = self._syncs.settle
        self._index.on_open = self._scan.refresh
        self._index.on_fork = self._writer.forget_after_fork
        self._importer = _Importer(
            self.path,
            label,
            self._lock,
            self._write_lock,
            self._index,
            self._writer,
            self._syncs,
            columnar_cache=self.columnar_cache,
        )
        _open_directory(self.path, self.read_only, self.describe())
        self._index.connect()

    # Views of the components, for tests and diagnostics.
    @property
    def _db_location(self) -> str:
        return self._index.location

    def _index_conn(self) -> sqlite3.Connection:
        self._index.write_deferred()
        return self._index.conn()

    def _index_rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._index.read(sql, params)

    @property
    def _checking_process(self) -> _CheckingProcess | None:
        return self._importer.checking_process

    @property
    def _checked_ahead(self) -> int:
        return self._importer.checked_ahead

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """``files store <path>``."""
        return self._label

    def config(self) -> dict[str, Any]:
        """The ``store:`` section that reopens this store (non-default options included)."""
        out: dict[str, Any] = {
            "backend": "files",
            "path": str(self.path),
            "read_only": self.read_only,
        }
        defaults = {
            "page_size": 100_000,
            "fsync_interval": 1.0,
            "torn_grace": 5.0,
            "columnar_cache": True,
            "cache_runs": 8,
            "cache_max_bytes": 256 * 2**20,
            "cache_min_bytes": 64 * 2**10,
        }
        for key, default in defaults.items():
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        if self.validate != "compatible":
            out["validate"] = self.validate
        if self._index_option is not None:
            out["index_path"] = self._index_option
        return out

    # ------------------------------------------------------------------ for whole-run copies
    def indexed_run(self, run_start_uid: str) -> tuple[str, str, str | None] | None:
        """A run's file name, start and stop (JSON text) as the index holds them.

        What a whole-run copy from this store (:meth:`copy_run_from` of another files
        store) needs to know of a run; the file itself is ``self.path / name``.

        Parameters
        ----------
        run_start_uid
            The run.

        Returns
        -------
        tuple or None
            ``(file name, start JSON, stop JSON or None)``; None for a run not indexed here.
        """
        return self._index.run_row(run_start_uid)

    # ------------------------------------------------------------------ read primitives
    @contextlib.contextmanager
    def _member_run(self, kind: str, uid: Any) -> Iterator[tuple[str, _RunData] | None]:
        """``(file name, parsed run)`` of the run file holding this descriptor or resource,
        with the store's lock held; None when there is none."""
        name = None
        if isinstance(uid, str):
            owners = self._writer.desc_file if kind == "descriptor" else self._writer.res_file
            name = self._lookup.locate(kind, uid, owners)
        if name is None:
            yield None
            return
        with self._lock:
            rd = self._runs.load(name)
            yield None if rd is None else (name, rd)

    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        return self._search.find(query, sort=sort, skip=skip, limit=limit)

    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        """How many runs match ``query`` (``{}`` is answered by the index alone)."""
        if not query:
            self._scan.refresh()
            return int(self._index.read("SELECT count(*) FROM runs")[0][0])
        return super().count_runs(query)

    def find_runs_by_uid_prefix(self, prefix: str, *, limit: int | None = 11) -> list[Doc]:
        """Starts whose uid begins with ``prefix`` (case-sensitive), newest first."""
        self._scan.refresh()
        if not isinstance(prefix, str) or not _sqlable(prefix):
            return [s for s in self.find_run_starts({}) if s["uid"].startswith(prefix)][:limit]
        lo, hi = _prefix_bounds(prefix)
        sql = "SELECT start FROM runs WHERE uid >= ?" + (" AND uid < ?" if hi is not None else "")
        params: list[Any] = [lo] + ([hi] if hi is not None else [])
        sql += " ORDER BY time DESC, uid DESC"
        if limit is not None and (hi is not None or not prefix):
            sql += " LIMIT ?"
            params.append(limit)
        found = [json.loads(text) for (text,) in self._index.read(sql, params)]
        if hi is None and prefix:  # no exact upper bound (a prefix ending in U+10FFFF)
            found = [s for s in found if s["uid"].startswith(prefix)]
        return found[:limit]

    def find_runs_by_scan_id(self, scan_id: int, *, limit: int | None = 1) -> list[Doc]:
        """Starts with this ``scan_id``, most recent first (answered through the index)."""
        return list(self.find_run_starts({"scan_id": scan_id}, limit=limit))

    def get_run_start(self, uid: str) -> Doc:
        """The start document with exactly this uid; missing → :class:`RunNotFound`."""
        if not isinstance(uid, str):
            raise not_found_run(self, uid)
        row = self._index.run_row(uid)
        if row is None:
            self._scan.refresh()
            row = self._index.run_row(uid)
        if row is None:
            raise not_found_run(self, uid)
        return json.loads(row[1])  # type: ignore[no-any-return]

    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        """The run's stop document, or ``None`` while it is open or after a crash."""
        if not isinstance(run_start_uid, str) or self._writer.recording(run_start_uid):
            return None
        row = self._index.run_row(run_start_uid)
        if row is None:
            return None
        if row[2] is None:
            # Not started here (checked above): another process may have written its stop
            # since, even into a file this store appends to too.
            self._scan.refresh_file(row[0])
            row = self._index.run_row(run_start_uid)
            if row is None or row[2] is None:
                return None
        return json.loads(row[2])  # type: ignore[no-any-return]

    def get_run_stops(self, run_start_uids: Sequence[str]) -> dict[str, Doc]:
        """Stops of several runs at once (runs without a stop are absent from the result)."""
        uids = [u for u in run_start_uids if isinstance(u, str) and _sqlable(u)]
        self._scan.refresh()
        # The read path leaves a stop another process wrote a moment ago to that writer's
        # next index transaction; this reads the stop column, so index such stops first.
        self._writer.index_open_runs()
        out: dict[str, Doc] = {}
        for i in range(0, len(uids), _CHUNK):
            chunk = uids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for uid, text in self._index.read(
                f"SELECT uid, stop FROM runs WHERE stop IS NOT NULL AND uid IN ({marks})", chunk
            ):
                out[uid] = json.loads(text)
        return {u: out[u] for u in uids if u in out}

    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        """The run's descriptors in ascending ``time``; ``[]`` when none or unknown run."""
        if not isinstance(run_start_uid, str):
            return []
        row = self._index.run_row(run_start_uid)
        if row is None:
            return []
        rd = self._runs.load(row[0])
        if rd is None:
            return []
        docs = [d for d in rd.descriptors.values() if d.get("run_start") == run_start_uid]
        docs.sort(key=lambda d: d["time"])
        return [json_copy(d) for d in docs]

    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """Event pages of one descriptor, rows ordered by (``time``, ``seq_num``).

        Parameters
        ----------
        descriptor_uid
            The descriptor; an unknown one yields nothing.
        fields
            Data keys to include (others and their timestamps are dropped); None for all.
        """
        with self._member_run("descriptor", descriptor_uid) as found:
            columns = None if found is None else found[1].columns_for(
                descriptor_uid, self.path / found[0])
        if columns is None:
            return
        wanted = None if fields is None else set(fields)
        n = len(columns)
        for start in range(0, n, self.page_size):
            with self._lock:
                page = columns.page(descriptor_uid, start, min(n, start + self.page_size), wanted)
            yield page

    def get_resource(self, uid: str) -> Doc:
        """The resource with this uid (legacy resources: their ``_id``); missing →
        :class:`~broker_v1.errors.ResourceNotFound`."""
        doc = self._lookup.find_resource(uid, thorough=True) if isinstance(uid, str) else None
        if doc is None:
            raise ResourceNotFound(
                f"No resource with uid {uid!r} in {self.describe()} (looked in every run file "
                f"and {ASSETS_NAME}).",
                uid=str(uid),
                store=self.describe(),
            )
        out: Doc = json_copy(doc)
        return out

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """Datum pages of one resource (nothing for an unknown resource)."""
        with self._member_run("resource", resource_uid) as found:
            rd = None if found is None else found[1]
            datums = [] if rd is None else [
                rd.datums[i] for i in rd.datums_by_resource.get(resource_uid, ())]
        damaged = next((d for d in datums if not isinstance(d.get("datum_kwargs"), dict)), None)
        if damaged is not None:
            assert found is not None
            path = self.path / found[0]
            raise CorruptRunFile(
                f"{path} holds datum {damaged.get('datum_id')!r} of resource {resource_uid!r} "
                f"without a 'datum_kwargs' mapping, so the resource's datums cannot be read. "
                f"Repair the file by hand.",
                path=str(path),
            )
        if datums:
            yield datum_page(resource_uid, datums)

    def get_datum(self, datum_id: str) -> Doc:
        """The datum with this id; missing → :class:`~broker_v1.errors.DatumNotFound`."""
        found = isinstance(datum_id, str)
        doc = self._lookup.find_datum(datum_id, thorough=True) if found else None
        if doc is None:
            raise DatumNotFound(
                f"No datum with datum_id {datum_id!r} in {self.describe()}.",
                datum_id=str(datum_id),
                store=self.describe(),
            )
        out: Doc = json_copy(doc)
        return out

    # ------------------------------------------------------------------ maintenance
    def reindex(self) -> dict[str, int]:
        """Rebuild the index from the run files (the files are the truth).

        Returns
        -------
        dict
            ``{"runs": number of runs indexed, "files": run files seen}``.
        """
        with self._write_lock, self._lock:
            self._writer.flush_all()

            def wipe(conn: sqlite3.Connection) -> None:
                for table in ("members", "runs", "files"):
                    conn.execute(f"DELETE FROM {table}")
                self._index.delete_all_text(conn)
                conn.execute("DELETE FROM meta WHERE key = 'dir_mtime'")

            self._index.write(wipe)
            self._index.dir_mtime = None
            self._runs.clear()
            self._scan.refresh(deep=True)
            runs = int(self._index.read("SELECT count(*) FROM runs")[0][0])
            files = int(self._index.read("SELECT count(*) FROM files")[0][0])
            return {"runs": runs, "files": files}

    def repair(self, run_start_uid: str | None = None) -> dict[str, int]:
        """Truncate the incomplete last line that an interrupted writer left in run files.

        Parameters
        ----------
        run_start_uid
            Repair only this run's file; None repairs every ``.jsonl`` file of the store.
            Files changed within the last ``torn_grace`` seconds are left alone when
            repairing everything (another process may be writing them).

        Returns
        -------
        dict
            File name → number of bytes removed, for the files that were repaired.

        Raises
        ------
        ReadOnlyStore
            The store was opened read-only.
        RunNotFound
            ``run_start_uid`` is not a run of this store.
        """
        if self.read_only:
            raise ReadOnlyStore(
                f"{self.describe()} was opened read-only, so repair() was refused; it would "
                "truncate run files. Open it with read_only: false to repair.",
                store=self.describe(),
            )
        with self._write_lock, self._lock:
            if run_start_uid is not None:
                row = self._index.run_row(run_start_uid)
                if row is None:
                    self._scan.refresh(deep=True)
                    row = self._index.run_row(run_start_uid)
                if row is None:
                    candidate = f"{run_start_uid}.jsonl"
                    if _uid_problem(run_start_uid) is None and (self.path / candidate).is_file():
                        names = [candidate]  # e.g. a torn first line: not indexed as a run
                    else:
                        raise not_found_run(self, run_start_uid)
                else:
                    names = [row[0]]
                careful = False
            else:
                names = sorted(
                    e.name for e in os.scandir(self.path)
                    if e.name.endswith(".jsonl") and not e.name.startswith(".")
                )
                careful = True
            repaired: dict[str, int] = {}
            for name in names:
                if not name.endswith(".jsonl"):
                    continue
                if self._writer.writing(name):
                    continue  # this process is writing it: never torn
                removed = _truncate_tail(
                    self.path / name, careful, self.torn_grace, self.describe()
                )
                if removed:
                    repaired[name] = removed
                    self._runs.forget(name)
                    self._warnings.forget(name)
            if repaired:
                self._scan.refresh(deep=True)
            return repaired

    def close(self) -> None:
        """Flush and fsync everything written, close run files and the index."""
        with self._write_lock, self._lock:
            self._writer.cancel_timer()
            self._scan.stop_confirming()
            if os.getpid() == self._index.pid:
                self._writer.flush_all(close=True)
                self._syncs.drain()
                self._writer.discard_spare()
                self._index.commit_batch()
                self._index.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            for state in self._writer.states.values():
                if state.fd is not None:
                    os.close(state.fd)
                    state.fd = None
        except Exception:
            pass

    # ------------------------------------------------------------------ write primitives
    # The insert path checks event and datum duplicates with _get_existing by uid alone; make
    # sure this process knows every event and datum already in the file they will go to.
    def _get_existing(self, name: str, key: str) -> Doc | None:
        return self._lookup.existing(name, key)

    def _insert_event(self, event: Doc) -> None:
        self._writer.prepare("descriptor", event.get("descriptor"))
        super()._insert_event(event)

    def _is_new(self, name: str, doc: Doc) -> bool:
        # Most events are new: asked directly, the lookup says so without the general calls.
        if name == "event":
            uid = doc["uid"]
            if type(uid) is str and self._lookup.event_file(uid) is None:
                return True
        return super()._is_new(name, doc)

    def _insert_event_page(self, page: Doc) -> None:
        self._writer.prepare("descriptor", page.get("descriptor"))
        super()._insert_event_page(page)

    def _insert_datum(self, doc: Doc) -> None:
        self._writer.prepare("resource", doc.get("resource"))
        super()._insert_datum(doc)

    def _insert_datum_page(self, page: Doc) -> None:
        self._writer.prepare("resource", page.get("resource"))
        super()._insert_datum_page(page)

    def _writes_refuse_duplicates(self, name: str) -> bool:
        """A start is written before it is looked up (see ``_Writer.write_new_start``)."""
        return name == "start"

    def _write_new(self, name: str, doc: Doc) -> bool:
        assert name == "start"
        return self._writer.write_new_start(doc)

    def _write_document(self, name: str, doc: Doc) -> None:
        self._writer.write_document(name, doc)

    def _write_event(self, event: Doc) -> None:
        self._writer.write_event(event)

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """A block within which a run's stop does not wait for its fsync.

        Each stop's fsync is handed to a few background threads (they wait on the disk, not on
        Python), so writing the next run overlaps with syncing the last one; the directory is
        synced once at the end.  A killed process loses nothing either way (every document is
        in the operating system when ``insert`` returns); what waits is the guard against
        power loss, and leaving the block waits for all of it.  ``copy_runs`` uses it.

        Raises
        ------
        StoreUnavailable
            When leaving the block, naming the run files whose fsync failed.
        """
        self._syncs.begin()
        try:
            yield
        finally:
            if self._syncs.end():
                self._finish_deferred_syncs()

    def _finish_deferred_syncs(self) -> None:
        self._importer.finish()
        try:
            self._index.commit_batch()
        finally:
            self._syncs.wait()

    # ------------------------------------------------------------------ whole-run copies
    def prepare_copies(self, source: DocumentStore, run_start_uids: Sequence[str]) -> None:
        """Start checking these runs of ``source`` for whole-run copies, ahead of the copy.

        Inside ``deferred_sync()`` only, from a files store, and for a copy of at least
        a couple of hundred runs: the checks run in a second process (see ``_CheckingProcess``).
        """
        if not isinstance(source, FileStore) or self.read_only or not self._syncs.deferred:
            return
        self._importer.prepare(source, run_start_uids)

    def copy_run_from(self, source: DocumentStore, run_start_uid: str) -> RunCopy | None:
        """Copy a stopped run of another files store by its run file, checked and verified.

        The source's ``.jsonl`` file is read once, every document in it goes through the
        insert path's checks (key rules, links within the run, event keys and columns, stop
        after start), the bytes are written to a new run file in one write, indexed in one
        transaction, read back and compared.  Anything that ``insert`` would refuse, change
        (extra event keys, filled datum ids, legacy resource ids) or resolve in other files
        (datums of resources elsewhere, uids already here) returns ``None`` before writing,
        and the caller copies document by document instead.
        """
        if not isinstance(source, FileStore) or self.read_only:
            return None
        return self._importer.copy(source, run_start_uid)
