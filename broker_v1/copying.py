"""Copying runs between stores: the machinery behind ``broker-v1 copy`` and ``Broker.export``.

:func:`copy_runs` copies whole runs from one :class:`~broker_v1.stores.base.DocumentStore` to
another through the abstract store interface only, so every pair of backends works (memory,
files, MongoDB, third-party).  It is

* **idempotent**: a run already in the destination with the same start, stop, descriptors and
  event counts is skipped; identical documents are never written twice (the store's insert path
  treats them as no-ops);
* **resumable**: a run left incomplete by an interrupted copy (its start is there, its stop or
  some events are not) is completed on the next copy, without duplicates;
* **safe**: a run whose start, descriptor or stop exists in the destination with *different*
  content is reported as a conflict and never overwritten; a read-only destination is refused
  before anything is written;
* **verified**: after each run, the descriptors, the events per descriptor, the datums per
  resource and the presence of the stop are counted in the destination and compared;
* **whole runs where the destination can**: each run not yet in the destination is first
  offered to ``dst.copy_run_from(src, uid)`` (the files store takes a stopped run of another
  files store as its file, checked as ``insert`` would and read back); any other run, or one
  the store declines, is copied document by document;
* **short-lived on the source**: the source is read in pages of runs selected by key (start
  time, then uid, the stores' sort order), each page a separate short query, so no server
  cursor is held for the length of the copy (databroker's exports died on cursor timeouts).

With ``copy_files=True`` the external files behind each resource are copied under ``new_root``
(their path relative to the resource's ``root`` is kept), verified by SHA-256, and the resource
is written with ``root`` replaced by ``new_root`` (same uid, as databroker 1.2's ``export``).
Which files belong to a resource is asked of the handler registered for its ``spec``
(``handler.get_file_list(datum_kwargs)``).  Limitation: without a handler for a spec, only the
file ``root/resource_path`` itself can be found; a resource whose files cannot be listed
either way is copied unchanged (root not rewritten) and listed in the report, so a missing
handler never silently produces a resource that points at nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .errors import (
    BrokerError,
    CorruptRunFile,
    DatumNotFound,
    DuplicateDocument,
    ReadOnlyStore,
    ResourceNotFound,
    RunNotFound,
    StoreUnavailable,
)
from .stores.base import DocumentStore

__all__ = [
    "CopyProgress",
    "CopyReport",
    "FileCopy",
    "FileProblem",
    "RunResult",
    "copy_runs",
    "export",
    "export_size",
    "handler_registry_of",
    "iter_run_starts",
    "resource_files",
]

Doc = dict[str, Any]

#: Runs fetched from the source per query.  Small enough that a page is read in well under a
#: second on any store, large enough that the per-query cost disappears.
DEFAULT_PAGE = 500

_CHUNK = 1 << 20  # bytes read at a time when copying and hashing files


# --------------------------------------------------------------------------- report types
@dataclass
class RunResult:
    """What happened to one run.

    Attributes
    ----------
    uid
        The run's start uid.
    status
        ``"copied"`` (new in the destination), ``"completed"`` (an incomplete earlier copy was
        finished), ``"skipped"`` (already there, identical), ``"conflict"`` (a different
        document with the same uid is in the destination; nothing of it was overwritten) or
        ``"failed"`` (an error, or the verification found different counts).
    documents
        Documents read from the source for this run (event and datum pages counted by rows).
    message
        Why, for conflicts and failures.
    """

    uid: str
    status: str
    documents: int = 0
    message: str = ""


@dataclass
class FileCopy:
    """One external file copied (or found already present) for ``copy_files``."""

    resource: str
    source: str
    destination: str
    size: int
    sha256: str
    status: str  # "copied" or "present"


@dataclass
class FileProblem:
    """A resource whose files could not be copied, or could not be listed."""

    resource: str
    spec: str
    path: str
    message: str
    #: True when the files could not even be listed (no handler): the resource was copied
    #: unchanged; False when listed files failed to copy: the run was not completed.
    unlisted: bool = False


@dataclass
class CopyProgress:
    """A snapshot handed to a ``progress`` callable after each run."""

    runs_done: int
    runs_total: int | None
    documents: int
    bytes: int
    elapsed: float
    last: RunResult


@dataclass
class CopyReport:
    """The outcome of :func:`copy_runs`.

    ``ok`` is False when any run conflicted or failed or any listed file failed to copy.
    """

    source: str
    destination: str
    runs: list[RunResult] = field(default_factory=list)
    files: list[FileCopy] = field(default_factory=list)
    file_problems: list[FileProblem] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    file_bytes: int = 0
    elapsed: float = 0.0
    interrupted: bool = False

    def _with(self, status: str) -> list[RunResult]:
        return [r for r in self.runs if r.status == status]

    @property
    def copied(self) -> list[str]:
        """Uids of runs copied anew."""
        return [r.uid for r in self._with("copied")]

    @property
    def completed(self) -> list[str]:
        """Uids of runs whose earlier, incomplete copy was finished."""
        return [r.uid for r in self._with("completed")]

    @property
    def skipped(self) -> list[str]:
        """Uids of runs already identical in the destination."""
        return [r.uid for r in self._with("skipped")]

    @property
    def conflicts(self) -> list[RunResult]:
        """Runs that differ in the destination (never overwritten)."""
        return self._with("conflict")

    @property
    def failed(self) -> list[RunResult]:
        """Runs that could not be copied or did not verify."""
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """No conflict, no failure, no file that failed to copy."""
        return not (self.conflicts or self.failed
                    or any(not p.unlisted for p in self.file_problems))

    def file_pairs(self) -> list[tuple[str, str]]:
        """``(old_path, new_path)`` of every external file, as databroker's ``export`` returns."""
        return [(f.source, f.destination) for f in self.files]

    def summary(self) -> str:
        """A few human-readable lines: counts, rate, then each conflict and failure."""
        rate = self.documents / self.elapsed if self.elapsed > 0 else 0.0
        parts = [
            f"{len(self.copied)} copied",
            f"{len(self.completed)} completed",
            f"{len(self.skipped)} already present",
            f"{len(self.conflicts)} conflicts",
            f"{len(self.failed)} failed",
        ]
        lines = [
            f"{'Interrupted after' if self.interrupted else 'Copied'} "
            f"{_plural(len(self.runs), 'run')} from {self.source} to {self.destination}: "
            + ", ".join(parts) + ".",
            f"{self.documents:,} documents, {_human_bytes(self.bytes)} in {self.elapsed:.1f} s "
            f"({rate:,.0f} documents/s).",
        ]
        if self.files or self.file_problems:
            present = sum(1 for f in self.files if f.status == "present")
            lines.append(
                f"External files: {len(self.files) - present} copied "
                f"({_human_bytes(self.file_bytes)}), {present} already present, "
                f"{len(self.file_problems)} problems."
            )
        for r in self.conflicts + self.failed:
            lines.append(f"  {r.status}: run {r.uid}: {r.message}")
        for p in self.file_problems[:20]:
            lines.append(f"  files of resource {p.resource} ({p.spec}): {p.message}")
        if len(self.file_problems) > 20:
            lines.append(f"  ... and {len(self.file_problems) - 20} more file problems.")
        if self.interrupted:
            lines.append("Run the same copy again to resume; nothing will be duplicated.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (the CLI's ``--json``)."""
        return {
            "source": self.source,
            "destination": self.destination,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "copied": self.copied,
            "completed": self.completed,
            "skipped": self.skipped,
            "conflicts": [{"uid": r.uid, "message": r.message} for r in self.conflicts],
            "failed": [{"uid": r.uid, "message": r.message} for r in self.failed],
            "documents": self.documents,
            "bytes": self.bytes,
            "elapsed": self.elapsed,
            "files": [f.__dict__ for f in self.files],
            "file_problems": [p.__dict__ for p in self.file_problems],
        }


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# --------------------------------------------------------------------------- source paging
def iter_run_starts(
    store: DocumentStore, query: Mapping[str, Any] | None = None, *, page_size: int = DEFAULT_PAGE
) -> Iterator[Doc]:
    """Start documents matching ``query``, newest first, fetched page by page by key.

    Each page is a separate ``find_run_starts(..., limit=page_size)`` that continues strictly
    after the last ``(time, uid)`` seen, so no cursor stays open between pages, runs sharing a
    start time are neither skipped nor repeated, and a run inserted meanwhile cannot shift the
    pages (as ``skip`` would).
    """
    base = dict(query or {})
    last: tuple[Any, str] | None = None
    while True:
        if last is None:
            q = base
        else:
            t, uid = last
            # time <= t is what a time index serves; the $or breaks ties at time == t by uid.
            after = [{"time": {"$lte": t}},
                     {"$or": [{"time": {"$lt": t}}, {"uid": {"$lt": uid}}]}]
            q = {"$and": ([base] if base else []) + after}
        page = list(store.find_run_starts(q, limit=page_size))
        yield from page
        if len(page) < page_size:
            return
        last = (page[-1]["time"], page[-1]["uid"])


# --------------------------------------------------------------------------- external files
def _handler_registry(handler_registry: Mapping[str, Any] | None) -> dict[str, Any]:
    if handler_registry is not None:
        return dict(handler_registry)
    # Handlers advertised by installed packages, as databroker discovers them.
    from importlib.metadata import entry_points

    found: dict[str, Any] = {}
    for ep in entry_points(group="databroker.handlers"):
        try:
            found.setdefault(ep.name, ep.load())
        except Exception:  # a broken plugin must not stop a copy; its spec stays unlisted
            continue
    return found


def _resource_base(resource: Mapping[str, Any], root_map: Mapping[str, str]) -> tuple[str, str]:
    """``(base directory, full path)`` of a resource after ``root_map``.

    A resource without ``root`` (legacy absolute ``resource_path``) is taken relative to
    ``/``, as databroker 0.13's ``export`` did.
    """
    root = resource.get("root") or ""
    mapped = root_map.get(root, root) if root else ""
    base = mapped or "/"
    return base, os.path.join(base, resource.get("resource_path", ""))


def resource_files(
    resource: Mapping[str, Any],
    datum_kwargs: Iterable[Mapping[str, Any]],
    *,
    handler_registry: Mapping[str, Any] | None = None,
    root_map: Mapping[str, str] | None = None,
) -> tuple[list[str] | None, str]:
    """The files holding a resource's data, as absolute paths on this machine.

    Parameters
    ----------
    resource
        The resource document.
    datum_kwargs
        The ``datum_kwargs`` of its datums (handlers list one file per frame for some specs).
    handler_registry
        ``{spec: handler class}``; ``None`` uses handlers advertised by installed packages.
    root_map
        ``{old_root: new_root}`` applied to the resource's ``root`` first.

    Returns
    -------
    files, how
        ``files`` is ``None`` when they cannot be determined; ``how`` says how they were found
        or why not.
    """
    registry = _handler_registry(handler_registry)
    base, full = _resource_base(resource, root_map or {})
    spec = str(resource.get("spec"))
    cls = registry.get(spec)
    problem = f"no handler is registered for spec {spec!r}"
    if cls is not None:
        try:
            handler = cls(full, **dict(resource.get("resource_kwargs") or {}))
            try:
                files = list(handler.get_file_list(list(datum_kwargs)))
            finally:
                close = getattr(handler, "close", None)
                if callable(close):
                    close()
            return [os.path.join(base, f) for f in files], f"{cls.__name__}.get_file_list"
        except Exception as err:  # any handler failure: fall back, and say why
            problem = f"the {cls.__name__} handler could not list the files ({err})"
    if os.path.isfile(full):
        return [full], "root/resource_path"
    return None, f"{problem}, and {full} is not a file"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_file(source: str, destination: str) -> tuple[int, str, str]:
    """Copy with SHA-256 verification; ``(size, sha256, "copied" | "present")``.

    The copy is written beside the destination and renamed into place only after its hash
    matches the source's, so an interrupted copy never leaves a truncated file under the
    final name.  An existing destination with the same hash counts as present; with a
    different hash it is an error and is not overwritten.
    """
    if os.path.exists(destination):
        src_hash, dst_hash = _sha256(source), _sha256(destination)
        if src_hash != dst_hash:
            raise FileExistsError(
                f"{destination} already exists with different content (sha256 {dst_hash[:12]} "
                f"vs {src_hash[:12]} of {source}); not overwritten"
            )
        return os.path.getsize(destination), src_hash, "present"
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    partial = f"{destination}.part-{os.getpid()}"
    h = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as fin, open(partial, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        digest = h.hexdigest()
        written = _sha256(partial)
        if written != digest:
            raise OSError(f"checksum mismatch after copying {source} to {destination}")
        import shutil

        shutil.copystat(source, partial)
        os.replace(partial, destination)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return size, digest, "copied"


# --------------------------------------------------------------------------- copying
class _Conflict(Exception):
    pass


class _RunFailed(Exception):
    pass


def _size(doc: Any) -> int:
    # The JSON size is what a files store writes and what "bytes/s" reports.
    return len(json.dumps(doc, default=str))


def _count_rows(pages: Iterable[Mapping[str, Any]], key: str) -> int:
    return sum(len(p[key]) for p in pages)


class _Copier:
    """State shared by the runs of one copy."""

    def __init__(
        self,
        src: DocumentStore,
        dst: DocumentStore,
        report: CopyReport,
        *,
        copy_files: bool,
        new_root: str | None,
        root_map: Mapping[str, str],
        handler_registry: Mapping[str, Any] | None,
        file_rename_hook: Callable[[str, str], Any] | None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.report = report
        self.copy_files = copy_files
        self.new_root = None if new_root is None else os.path.abspath(new_root)
        self.root_map = dict(root_map)
        self._registry_arg = handler_registry
        self._registry: dict[str, Any] | None = None
        self.file_rename_hook = file_rename_hook
        # Resources written (or found identical) in this copy.
        self.resources_done: set[str] = set()
        # Resources copied for the current run: uid -> datums the source holds for it.
        self.run_resources: dict[str, int] = {}
        # Into an empty destination no run can be there already (each source run is visited
        # once), so the per-run lookup is skipped; the insert path still refuses a different
        # document written meanwhile by someone else (DuplicateDocument → conflict).
        self.fresh_destination = dst.count_runs() == 0

    # -- helpers
    def _insert(self, name: str, doc: Doc) -> None:
        try:
            self.dst.insert(name, doc, trusted=True)
        except DuplicateDocument as err:
            raise _Conflict(str(err)) from err
        self.report.bytes += _size(doc)

    def registry(self) -> dict[str, Any]:
        if self._registry is None:
            self._registry = _handler_registry(self._registry_arg)
        return self._registry

    # -- one run
    def copy_run(self, start: Doc) -> RunResult:
        uid = start["uid"]
        existing: Doc | None = None
        if not self.fresh_destination:
            try:
                existing = self.dst.get_run_start(uid)
            except RunNotFound:
                pass
        if existing is not None and existing != start:
            return RunResult(uid, "conflict", 0, f"a different start document with uid {uid} "
                             f"is already in {self.dst.describe()}; not overwritten")
        if existing is None and not self.copy_files:
            whole = self.dst.copy_run_from(self.src, uid)
            if whole is not None:
                # The store wrote the run in one step, read it back and compared it.
                self.report.bytes += whole.bytes
                return RunResult(uid, "copied", whole.documents)
        src_descriptors = self.src.get_descriptors(uid)
        src_stop = self.src.get_run_stop(uid)
        if existing is not None:
            state = self._compare_existing(uid, src_descriptors, src_stop)
            if isinstance(state, RunResult):
                return state
        for attempt in (1, 2):
            try:
                n, counts = self._write_run(start, src_descriptors, src_stop)
                break
            except _Conflict as err:
                return RunResult(uid, "conflict", 0, str(err) + " Nothing was overwritten.")
            except CorruptRunFile as err:
                if attempt == 2 or not self._repair(uid, err):
                    return RunResult(uid, "failed", 0, str(err))
            except _RunFailed as err:
                return RunResult(uid, "failed", 0, str(err))
            except StoreUnavailable:
                raise
            except BrokerError as err:
                return RunResult(uid, "failed", 0, f"{type(err).__name__}: {err}")
        problem = self._verify(uid, counts, src_stop)
        if problem:
            return RunResult(uid, "failed", n, "verification failed: " + problem)
        return RunResult(uid, "copied" if existing is None else "completed", n)

    def _repair(self, uid: str, err: CorruptRunFile) -> bool:
        # A torn last line in the destination run file: an earlier copy was killed while
        # writing it.  That line holds no complete document, so dropping it loses nothing.
        # Never touch the source, nor anything outside the destination's directory.
        repair = getattr(self.dst, "repair", None)
        where = getattr(self.dst, "path", None)
        if not callable(repair) or where is None:
            return False
        if os.path.dirname(os.path.abspath(err.path)) != os.path.abspath(where):
            return False
        try:
            return bool(repair(uid))
        except BrokerError:
            return False

    def _event_counts(self, store: DocumentStore, descriptors: list[Doc]) -> dict[str, int]:
        counter = getattr(store, "count_events", None)
        out = {}
        for d in descriptors:
            if callable(counter):
                out[d["uid"]] = int(counter(d["uid"]))
            else:
                # fields=[] is a projection hint: stores that honour it send uids only.
                out[d["uid"]] = _count_rows(store.iter_event_pages(d["uid"], fields=[]), "uid")
        return out

    def _compare_existing(
        self, uid: str, src_descriptors: list[Doc], src_stop: Doc | None
    ) -> RunResult | None:
        """``skipped``/``conflict`` for a run whose start is already there, else None (resume)."""
        dst_stop = self.dst.get_run_stop(uid)
        if dst_stop is not None and dst_stop != src_stop:
            return RunResult(uid, "conflict", 0, f"run {uid} has a different stop document in "
                             f"{self.dst.describe()}; not overwritten")
        dst_descriptors = self.dst.get_descriptors(uid)
        src_by_uid = {d["uid"]: d for d in src_descriptors}
        for d in dst_descriptors:
            if d["uid"] in src_by_uid and src_by_uid[d["uid"]] != d:
                return RunResult(uid, "conflict", 0, f"descriptor {d['uid']} differs in "
                                 f"{self.dst.describe()}; not overwritten")
        if dst_stop != src_stop or len(dst_descriptors) != len(src_descriptors):
            return None
        if {d["uid"] for d in dst_descriptors} != set(src_by_uid):
            return RunResult(uid, "conflict", 0, f"run {uid} has other descriptors in "
                             f"{self.dst.describe()}; not overwritten")
        if self._event_counts(self.dst, dst_descriptors) != self._event_counts(
                self.src, src_descriptors):
            return None
        return RunResult(uid, "skipped", 0)

    def _write_run(
        self, start: Doc, descriptors: list[Doc], stop: Doc | None
    ) -> tuple[int, dict[str, int]]:
        """Insert every document of a run; ``(documents, events per descriptor)``."""
        self.run_resources = {}
        n = 1
        self._insert("start", start)
        external: dict[str, list[str]] = {}
        for d in descriptors:
            self._insert("descriptor", d)
            n += 1
            external[d["uid"]] = [k for k, v in d["data_keys"].items() if v.get("external")]
        datums_seen: set[str] = set()
        counts = {}
        for d in descriptors:
            keys = external[d["uid"]]
            rows = 0
            for page in self.src.iter_event_pages(d["uid"]):
                if keys:
                    n += self._copy_assets(page, keys, datums_seen)
                self._insert("event_page", page)
                rows += len(page["uid"])
            counts[d["uid"]] = rows
            n += rows
        if stop is not None:
            # Last, so a run with its stop in the destination was copied completely.
            self._insert("stop", stop)
            n += 1
        return n, counts

    def _copy_assets(self, page: Mapping[str, Any], keys: list[str], datums_seen: set[str]
                     ) -> int:
        """Write the resources and datums a page of events refers to; documents written."""
        wanted = []
        for k in keys:
            for v in page["data"].get(k, ()):
                if isinstance(v, str) and v not in datums_seen:
                    wanted.append(v)
        if not wanted:
            return 0
        wanted = list(dict.fromkeys(wanted))
        try:
            datums = self.src.get_datums(wanted)
        except DatumNotFound:
            datums = {}
            for w in wanted:
                try:
                    datums[w] = self.src.get_datum(w)
                except DatumNotFound:
                    datums_seen.add(w)  # an event pointing nowhere still copies, as it reads
        n = 0
        for datum in datums.values():
            if datum["datum_id"] in datums_seen:
                continue
            res_uid = datum["resource"]
            if res_uid not in self.resources_done:
                n += self._copy_resource(res_uid, datums_seen)
            if datum["datum_id"] not in datums_seen:
                # A datum added to a resource already copied (shared by several runs).
                self._insert("datum", datum)
                datums_seen.add(datum["datum_id"])
                n += 1
        return n

    def _copy_resource(self, res_uid: str, datums_seen: set[str]) -> int:
        """Write a resource (its files first, with ``copy_files``) and all its datums."""
        try:
            resource = self.src.get_resource(res_uid)
        except ResourceNotFound:
            self.resources_done.add(res_uid)  # datums pointing nowhere: copied as they are
            return 0
        pages = list(self.src.iter_datum_pages(res_uid))
        if self.copy_files:
            resource = self._copy_resource_files(resource, pages)
        self._insert("resource", resource)
        n = 1
        for page in pages:
            self._insert("datum_page", page)
            datums_seen.update(page["datum_id"])
            n += len(page["datum_id"])
        self.resources_done.add(res_uid)
        self.run_resources[res_uid] = n - 1
        return n

    def _copy_resource_files(self, resource: Doc, pages: list[Doc]) -> Doc:
        """Copy a resource's files under ``new_root``; the resource to write (root rewritten)."""
        assert self.new_root is not None
        kwargs: list[Doc] = []
        for page in pages:
            cols = page["datum_kwargs"]
            for i in range(len(page["datum_id"])):
                kwargs.append({k: col[i] for k, col in cols.items()})
        files, how = resource_files(resource, kwargs, handler_registry=self.registry(),
                                    root_map=self.root_map)
        base, full = _resource_base(resource, self.root_map)
        spec = str(resource.get("spec"))
        if files is None:
            self.report.file_problems.append(FileProblem(
                resource["uid"], spec, full, how + "; copied the resource unchanged (files not "
                "copied, root not rewritten)", unlisted=True))
            return resource
        copies = []
        for path in files:
            rel = os.path.relpath(path, base)
            if rel.startswith(os.pardir):
                self._file_failed(resource, spec, path, f"{path} is outside the resource root "
                                  f"{base}; files must share the resource's root")
            destination = os.path.join(self.new_root, rel)
            try:
                size, digest, status = _copy_file(path, destination)
            except OSError as err:
                self._file_failed(resource, spec, path, str(err))
            copies.append(FileCopy(resource["uid"], path, destination, size, digest, status))
            if self.file_rename_hook is not None:
                try:
                    self.file_rename_hook(path, destination)
                except Exception:  # databroker swallowed hook errors; so do we
                    pass
        for c in copies:
            self.report.files.append(c)
            if c.status == "copied":
                self.report.file_bytes += c.size
        new = dict(resource)
        new["root"] = self.new_root
        if not (resource.get("root") or ""):
            # Legacy absolute resource_path: make it relative to the new root.
            new["resource_path"] = os.path.relpath(full, base)
        return new

    def _file_failed(self, resource: Doc, spec: str, path: str, message: str) -> NoReturn:
        self.report.file_problems.append(FileProblem(resource["uid"], spec, path, message))
        raise _RunFailed(f"external file of resource {resource['uid']} not copied: {message}. "
                         "The run was left incomplete; fix the problem and copy again.")

    def _verify(self, uid: str, src_counts: dict[str, int], stop: Doc | None) -> str:
        """What differs between the copied run and the source's counts ("" when nothing)."""
        dst_descriptors = self.dst.get_descriptors(uid)
        if {d["uid"] for d in dst_descriptors} != set(src_counts):
            return (f"{len(dst_descriptors)} descriptors in the destination, "
                    f"{len(src_counts)} in the source")
        dst_counts = self._event_counts(self.dst, dst_descriptors)
        for d_uid, n in src_counts.items():
            if dst_counts.get(d_uid) != n:
                return (f"descriptor {d_uid} has {dst_counts.get(d_uid)} events in the "
                        f"destination, {n} in the source")
        for res_uid, n in self.run_resources.items():
            try:
                self.dst.get_resource(res_uid)
            except ResourceNotFound:
                return f"resource {res_uid} is missing in the destination"
            held = _count_rows(self.dst.iter_datum_pages(res_uid), "datum_id")
            if held != n:
                return (f"resource {res_uid} has {held} datums in the destination, {n} in the "
                        "source")
        dst_stop = self.dst.get_run_stop(uid)
        if (dst_stop is None) != (stop is None):
            return "the stop document is missing in the destination"
        return ""


def copy_runs(
    src_store: DocumentStore,
    dst_store: DocumentStore,
    query: Mapping[str, Any] | None = None,
    *,
    uids: Iterable[str] | None = None,
    limit: int | None = None,
    copy_files: bool = False,
    new_root: str | os.PathLike[str] | None = None,
    root_map: Mapping[str, str] | None = None,
    handler_registry: Mapping[str, Any] | None = None,
    file_rename_hook: Callable[[str, str], Any] | None = None,
    progress: bool | Callable[[CopyProgress], Any] | None = None,
    page_size: int = DEFAULT_PAGE,
) -> CopyReport:
    """Copy runs from one store to another, newest first; idempotent and resumable.

    Parameters
    ----------
    src_store, dst_store
        Any two stores; the destination must be writable.
    query
        Mongo-dialect filter on start documents (``None``: every run).
    uids
        Copy exactly these runs (by full start uid) instead of a query.
    limit
        Copy at most this many runs (the newest matching).
    copy_files
        Also copy the external files of every resource to ``new_root`` and write the resources
        with ``root`` replaced by ``new_root``.
    new_root
        Where external files go; required with ``copy_files``.
    root_map
        ``{old_root: new_root}`` saying where the source's files really are (the source
        Broker's ``root_map``).
    handler_registry
        ``{spec: handler class}`` used to list a resource's files; default: handlers advertised
        by installed packages (``databroker.handlers`` entry points).
    file_rename_hook
        Called as ``hook(old_path, new_path)`` for every file copied; its errors are ignored
        (databroker's ``copy_files`` contract).
    progress
        ``True``: a progress bar on stderr (runs, documents/s, bytes/s); ``False``: none;
        ``None``: a bar when stderr is a terminal; a callable: called with a
        :class:`CopyProgress` after each run.
    page_size
        Runs fetched from the source per query.

    Returns
    -------
    CopyReport
        Per-run outcomes, files copied, totals.  Conflicts and failures are reported there,
        not raised, so one bad run does not stop a long copy.

    Raises
    ------
    ReadOnlyStore
        The destination is read-only; raised before anything is read or written.
    StoreUnavailable
        A store stopped answering; the report so far is lost but the copy can be resumed.
    ValueError
        ``copy_files`` without ``new_root`` (or the reverse), or both ``query`` and ``uids``.
    """
    if dst_store.read_only or not dst_store.supports_writes:
        raise ReadOnlyStore(
            f"{dst_store.describe()} is read-only, so nothing was copied into it. "
            + ("Open it with read_only: false to copy into it." if dst_store.supports_writes
               else f"The {dst_store.backend} backend cannot write."),
            store=dst_store.describe(),
        )
    if copy_files and new_root is None:
        raise ValueError("copy_files=True needs new_root: the directory the files go to.")
    if new_root is not None and not copy_files:
        raise ValueError("new_root rewrites resource roots only together with copy_files=True "
                         "(the files must be where the new root says).")
    if uids is not None and query:
        raise ValueError("Give either query or uids, not both.")
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}.")
    report = CopyReport(src_store.describe(), dst_store.describe())
    copier = _Copier(
        src_store, dst_store, report, copy_files=copy_files,
        new_root=None if new_root is None else os.fspath(new_root),
        root_map=root_map or {}, handler_registry=handler_registry,
        file_rename_hook=file_rename_hook,
    )
    if uids is not None:
        uid_list = list(dict.fromkeys(uids))
        if limit is not None:
            uid_list = uid_list[:limit]
        total: int | None = len(uid_list)
        # Resolved first, so an unknown uid fails before anything is written.
        starts: Iterator[Doc] = iter([src_store.get_run_start(u) for u in uid_list])
    else:
        total = None if progress is False else src_store.count_runs(query)
        if total is not None and limit is not None:
            total = min(total, limit)
        starts = iter_run_starts(src_store, query, page_size=page_size)
    callback = progress if callable(progress) else None
    bar = None
    if not callable(progress) and progress is not False:
        bar = _open_bar(total, always=progress is True)
    t0 = time.perf_counter()
    last_postfix = 0.0
    if not copy_files:
        starts = _announced(starts, lambda uids: dst_store.prepare_copies(src_store, uids))
    try:
        # Syncs to disk overlap with copying the next runs; leaving the block waits for all
        # of them, so the report is returned only once everything copied is durable.
        with dst_store.deferred_sync():
            for i, start in enumerate(starts):
                if limit is not None and i >= limit:
                    break
                result = copier.copy_run(start)
                report.runs.append(result)
                report.documents += result.documents
                report.elapsed = time.perf_counter() - t0
                if callback is not None:
                    callback(CopyProgress(len(report.runs), total, report.documents,
                                          report.bytes, report.elapsed, result))
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - last_postfix > 0.5:
                        last_postfix = now
                        bar.set_postfix_str(_rates(report), refresh=False)
    except KeyboardInterrupt:
        report.interrupted = True
        report.elapsed = time.perf_counter() - t0
        raise CopyInterrupted(report) from None
    finally:
        if bar is not None:
            bar.set_postfix_str(_rates(report), refresh=False)
            bar.close()
    report.elapsed = time.perf_counter() - t0
    return report


#: Runs announced to the destination (``prepare_copies``) at a time; two such chunks ahead.
ANNOUNCE_CHUNK = 64


def _announced(starts: Iterator[Doc], announce: Callable[[list[str]], Any]) -> Iterator[Doc]:
    """``starts``, each chunk announced two chunks before its turn, so a destination can
    work ahead (the files store checks whole-run copies in a second process)."""
    ahead: deque[Doc] = deque()
    exhausted = False

    def read_chunk() -> None:
        nonlocal exhausted
        chunk = list(itertools.islice(starts, ANNOUNCE_CHUNK))
        if len(chunk) < ANNOUNCE_CHUNK:
            exhausted = True
        if chunk:
            ahead.extend(chunk)
            announce([start["uid"] for start in chunk])

    read_chunk()
    if not exhausted:
        read_chunk()
    while ahead:
        # A chunk's first run is taken: the chunk before it is done, announce the next.
        if not exhausted and len(ahead) == ANNOUNCE_CHUNK:
            read_chunk()
        yield ahead.popleft()


class CopyInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`copy_runs`; ``.report`` holds what was done until then."""

    def __init__(self, report: CopyReport) -> None:
        super().__init__("copy interrupted")
        self.report = report


def _rates(report: CopyReport) -> str:
    if report.elapsed <= 0:
        return ""
    return (f"{report.documents / report.elapsed:,.0f} docs/s, "
            f"{_human_bytes(report.bytes / report.elapsed)}/s")


def _open_bar(total: int | None, *, always: bool) -> Any:
    from tqdm import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal.
    return tqdm(total=total, unit="run", file=sys.stderr, disable=False if always else None,
                mininterval=0.5, dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------- v1 API
def _header_uids(headers: Any) -> list[str]:
    from .header import Header

    if isinstance(headers, Header):
        headers = [headers]
    out = []
    for h in headers:
        if isinstance(h, Header):
            out.append(h.uid)
        elif isinstance(h, Mapping) and "start" in h:
            out.append(h["start"]["uid"])
        else:
            raise TypeError(
                f"export needs Headers (from db[...] or db(...)), got {type(h).__name__}.")
    return out


def handler_registry_of(db: Any) -> dict[str, Any] | None:
    """``{spec: handler class}`` of a Broker's ``db.reg`` (``None`` if it has none)."""
    reg = getattr(db, "reg", None)
    view = getattr(reg, "handler_reg", None)
    return dict(view) if view is not None else None


def export(
    db: Any,
    headers: Any,
    other_db: Any,
    new_root: str | os.PathLike[str] | None = None,
    copy_kwargs: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """``Broker.export``: copy runs into another Broker (databroker 1.2 semantics).

    Every document of every run is copied (all streams, resources and datums with the same
    uids); with ``new_root`` the external files are copied there and the resources written
    with ``root`` replaced.  Runs already in ``other_db`` are skipped (the copy is idempotent).

    Parameters
    ----------
    db
        The source Broker.
    headers
        A Header or an iterable of Headers.
    other_db
        The destination Broker.
    new_root
        Directory for the external files; ``None`` copies documents only.
    copy_kwargs
        ``file_rename_hook`` (called with ``(old, new)`` per file, errors ignored) and
        ``progress`` (see :func:`copy_runs`).  ``verify`` is accepted and ignored: files are
        always verified by SHA-256.

    Returns
    -------
    list of (str, str)
        ``(old_path, new_path)`` of every file copied.

    Raises
    ------
    DuplicateDocument
        A run conflicts with a different document in ``other_db`` (nothing was overwritten).
    BrokerError
        A run failed to copy or verify; the message names it.
    """
    kwargs = dict(copy_kwargs or {})
    kwargs.pop("verify", None)
    allowed = {"file_rename_hook", "progress"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"copy_kwargs accepts {', '.join(sorted(allowed | {'verify'}))}; "
                        f"got {', '.join(sorted(unknown))}.")
    report = copy_runs(
        db.store, other_db.store, uids=_header_uids(headers),
        copy_files=new_root is not None, new_root=new_root,
        root_map=getattr(db, "root_map", None) or {}, handler_registry=handler_registry_of(db),
        file_rename_hook=kwargs.get("file_rename_hook"), progress=kwargs.get("progress", False),
    )
    for r in report.conflicts:
        raise DuplicateDocument(f"export: run {r.uid}: {r.message}", name="start", uid=r.uid,
                                store=other_db.store.describe())
    if report.failed:
        r = report.failed[0]
        raise ExportFailed(f"export: run {r.uid} was not copied: {r.message}")
    return report.file_pairs()


class ExportFailed(BrokerError, RuntimeError):
    """A run could not be exported (the message names it and says why)."""


def export_size(db: Any, headers: Any) -> float:
    """``Broker.export_size``: gigabytes (bytes x 1e-9) of the external files of the runs.

    Files are listed through each resource's handler (``get_file_list``), as in databroker;
    without a handler the file ``root/resource_path`` is counted if it exists, and otherwise
    the resource is skipped with a ``UserWarning`` naming it.  Each file counts once.
    """
    store = db.store
    root_map = getattr(db, "root_map", None) or {}
    registry = _handler_registry(handler_registry_of(db))
    seen_files: set[str] = set()
    total = 0
    for uid in _header_uids(headers):
        resources: set[str] = set()
        for d in store.get_descriptors(uid):
            keys = [k for k, v in d["data_keys"].items() if v.get("external")]
            if not keys:
                continue
            for page in store.iter_event_pages(d["uid"], fields=keys):
                ids = {v for k in keys for v in page["data"].get(k, ()) if isinstance(v, str)}
                for datum_id in ids:
                    try:
                        resources.add(store.get_datum(datum_id)["resource"])
                    except DatumNotFound:
                        continue
        for res_uid in sorted(resources):
            resource = store.get_resource(res_uid)
            kwargs = [{k: col[i] for k, col in p["datum_kwargs"].items()}
                      for p in store.iter_datum_pages(res_uid) for i in range(len(p["datum_id"]))]
            files, how = resource_files(resource, kwargs, handler_registry=registry,
                                        root_map=root_map)
            if files is None:
                warnings.warn(f"export_size: resource {res_uid} of run {uid} not counted: {how}.",
                              UserWarning, stacklevel=2)
                continue
            for path in files:
                if path not in seen_files and os.path.isfile(path):
                    seen_files.add(path)
                    total += os.path.getsize(path)
    return total * 1e-9
