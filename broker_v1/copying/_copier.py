"""One run at a time: :class:`_Copier` writes, resumes, compares and verifies a run in the
destination (the state shared by the runs of one copy)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from ..errors import (
    BrokerError,
    CorruptRunFile,
    DatumNotFound,
    DuplicateDocument,
    ResourceNotFound,
    RunNotFound,
    StoreUnavailable,
)
from ..replay import external_keys
from ..stores.base import Doc, DocumentStore
from ._files import _copy_file, _datum_kwargs, _handler_registry, _resource_base, resource_files
from ._frames import SPEC, FrameWriteFailed, FrameWriter
from ._report import CopyReport, FileCopy, FileProblem, RunResult


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
        self.current_run = ""
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
        # fields=[] is a projection hint: stores that honour it send uids only.
        return {d["uid"]: _count_rows(store.iter_event_pages(d["uid"], fields=[]), "uid")
                for d in descriptors}

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
            # Compared as the destination keeps a descriptor (tiled adds to data keys).
            if d["uid"] in src_by_uid and self.dst.stored_form("descriptor",
                                                               src_by_uid[d["uid"]]) != d:
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
        self.current_run = start["uid"]
        n = 1
        self._insert("start", start)
        external: dict[str, list[str]] = {}
        for d in descriptors:
            self._insert("descriptor", d)
            n += 1
            external[d["uid"]] = external_keys(d)
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
        n = self._unresolved([w for w in wanted if w not in datums], page, keys)
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

    def _unresolved(self, ids: list[str], page: Mapping[str, Any], keys: list[str]) -> int:
        """Datum ids without a datum in the source: with ``copy_files``, the data the source
        reads itself is written into files with resources and datums (:mod:`._frames`);
        what remains is counted in the report per field.  Documents written."""
        if not ids:
            return 0
        written: set[str] = set()
        resources = 0
        if self.copy_files:
            assert self.new_root is not None
            before = set(self.run_resources)
            writer = FrameWriter(self.src, self.new_root, self._insert, self._record_file)
            try:
                written = set(writer.write(self.current_run, ids, self.run_resources))
            except FrameWriteFailed as err:
                self._file_failed(err.resource, SPEC, err.path, err.message)
            new = set(self.run_resources) - before
            self.resources_done.update(new)
            resources = len(new)
        left = set(ids) - written
        for k in keys:
            held = sum(1 for v in page["data"].get(k, ()) if isinstance(v, str) and v in left)
            if held:
                where = (self.current_run, k)
                self.report.unresolved[where] = self.report.unresolved.get(where, 0) + held
        return len(written) + resources

    def _record_file(self, copy: FileCopy) -> None:
        self.report.files.append(copy)
        if copy.status == "copied":
            self.report.file_bytes += copy.size

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
        kwargs = _datum_kwargs(pages)
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
        # A destination that keeps no resource documents (tiled's SQL layout turns them into
        # stream resources) is checked by its events above and the files' checksums.
        kept_resources = "resources" not in self.dst.layout_losses
        for res_uid, n in self.run_resources.items() if kept_resources else ():
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
