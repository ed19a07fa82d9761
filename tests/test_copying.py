"""Copying runs between stores (``broker_v1.copying``): idempotent, resumable, verified."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import event_model
import pytest
from conftest import insert_all, make_run, sample_runs

from broker_v1 import Broker, DuplicateDocument, ReadOnlyStore
from broker_v1.copying import (
    CopyProgress,
    copy_runs,
    export,
    export_size,
    iter_run_starts,
    resource_files,
)
from broker_v1.stores.base import DocumentStore
from broker_v1.stores.memory import MemoryStore

REPO = Path(__file__).resolve().parent.parent


def documents(store: DocumentStore, uid: str) -> list[tuple[str, dict[str, Any]]]:
    """Every document of one run as the store replays it."""
    return list(store.iter_documents(uid))


def all_uids(store: DocumentStore) -> list[str]:
    """Start uids, newest first."""
    return [s["uid"] for s in store.find_run_starts()]


def assert_same_runs(a: DocumentStore, b: DocumentStore) -> None:
    """Both stores hold the same runs with identical documents."""
    assert all_uids(a) == all_uids(b)
    for uid in all_uids(a):
        assert documents(a, uid) == documents(b, uid), uid


@pytest.fixture
def src() -> MemoryStore:
    """A memory store holding the shared sample runs (external data, a run without stop)."""
    store = MemoryStore()
    insert_all(store, sample_runs())
    return store


def files_store_class() -> Any:
    """FileStore, or a skip when the files store is not in this checkout yet."""
    module = pytest.importorskip("broker_v1.stores.files",
                                 reason="the files store is not available yet")
    return module.FileStore


# --------------------------------------------------------------------------- memory → memory
def test_round_trip_copies_identical_documents(src: MemoryStore) -> None:
    """Every run arrives with identical documents, including resources, datums and no-stop runs."""
    dst = MemoryStore()
    report = copy_runs(src, dst, progress=False)
    assert report.ok
    assert sorted(report.copied) == sorted(all_uids(src))
    assert_same_runs(src, dst)
    assert report.documents == sum(
        len(page["uid"]) if name == "event_page" else 1
        for uid in all_uids(src) for name, page in documents(src, uid)
    )


def test_second_copy_skips_every_run(src: MemoryStore) -> None:
    """Copying again writes nothing: every run is reported as already present."""
    dst = MemoryStore()
    copy_runs(src, dst, progress=False)
    again = copy_runs(src, dst, progress=False)
    assert again.ok
    assert sorted(again.skipped) == sorted(all_uids(src))
    assert again.copied == [] and again.documents == 0
    assert_same_runs(src, dst)


def test_copy_is_newest_first_and_respects_query_and_limit(src: MemoryStore) -> None:
    """A query selects runs, ``limit`` keeps the newest, and runs are copied newest first."""
    dst = MemoryStore()
    report = copy_runs(src, dst, {"plan_name": "scan"}, limit=2, progress=False)
    scans = [s["uid"] for s in src.find_run_starts({"plan_name": "scan"})]
    assert [r.uid for r in report.runs] == scans[:2]
    assert all_uids(dst) == scans[:2]


def test_copy_by_uids(src: MemoryStore) -> None:
    """``uids=`` copies exactly the runs named."""
    dst = MemoryStore()
    wanted = all_uids(src)[1:3]
    report = copy_runs(src, dst, uids=wanted, progress=False)
    assert report.copied == wanted
    assert sorted(all_uids(dst)) == sorted(wanted)


def test_conflicting_start_is_reported_and_not_overwritten(src: MemoryStore) -> None:
    """A different start with the same uid in the destination is a conflict; it stays as it was."""
    victim = all_uids(src)[0]
    dst = MemoryStore()
    impostor = {**src.get_run_start(victim), "plan_name": "impostor"}
    dst.insert("start", impostor)
    report = copy_runs(src, dst, progress=False)
    assert not report.ok
    assert [r.uid for r in report.conflicts] == [victim]
    assert "different start document" in report.conflicts[0].message
    assert dst.get_run_start(victim) == impostor
    assert dst.get_descriptors(victim) == []
    assert sorted(report.copied) == sorted(all_uids(src)[1:])
    assert f"conflict: run {victim}" in report.summary()


def test_conflicting_descriptor_is_reported_and_not_overwritten(src: MemoryStore) -> None:
    """A different descriptor with the same uid in the destination is a conflict."""
    uid = all_uids(src)[0]
    dst = MemoryStore()
    dst.insert("start", src.get_run_start(uid))
    descriptor = src.get_descriptors(uid)[0]
    changed = {**descriptor, "name": "other"}
    dst.insert("descriptor", changed)
    report = copy_runs(src, dst, uids=[uid], progress=False)
    assert [r.uid for r in report.conflicts] == [uid]
    assert dst.get_descriptors(uid) == [changed]


def test_read_only_destination_refused_before_anything_is_read_or_written() -> None:
    """A read-only destination raises ReadOnlyStore before the source is even queried."""

    class Watched(MemoryStore):
        reads = 0

        def _find_run_starts(self, *args: Any, **kwargs: Any) -> Any:
            type(self).reads += 1
            return super()._find_run_starts(*args, **kwargs)

    source = Watched()
    insert_all(source, sample_runs())
    dst = MemoryStore(read_only=True)
    with pytest.raises(ReadOnlyStore, match="read-only, so nothing was copied"):
        copy_runs(source, dst, progress=False)
    assert Watched.reads == 0
    assert dst.count_runs() == 0


def test_argument_mistakes_are_value_errors(src: MemoryStore) -> None:
    """copy_files without new_root, new_root alone, and query with uids are refused."""
    with pytest.raises(ValueError, match="needs new_root"):
        copy_runs(src, MemoryStore(), copy_files=True)
    with pytest.raises(ValueError, match="only together with copy_files"):
        copy_runs(src, MemoryStore(), new_root="/tmp/x")
    with pytest.raises(ValueError, match="either query or uids"):
        copy_runs(src, MemoryStore(), {"plan_name": "scan"}, uids=["x"])


# --------------------------------------------------------------------------- paging
def test_paging_over_identical_start_times_neither_skips_nor_repeats() -> None:
    """Runs sharing one start time are paged by uid: each is seen exactly once, in sort order."""
    store = MemoryStore()
    t = 1_700_000_000.0
    for i in range(23):
        insert_all(store, [make_run(t0=t, scan_id=i, n_events=1, with_baseline=False)])
    for i in range(7):
        insert_all(store, [make_run(t0=t + 10 + i, scan_id=100 + i, n_events=1)])
    expected = all_uids(store)
    for page_size in (1, 4, 5, 23, 30, 100):
        seen = [s["uid"] for s in iter_run_starts(store, page_size=page_size)]
        assert seen == expected, page_size
    dst = MemoryStore()
    report = copy_runs(store, dst, page_size=4, progress=False)
    assert [r.uid for r in report.runs] == expected
    assert_same_runs(store, dst)


def test_paging_keeps_the_query() -> None:
    """Later pages still apply the caller's query."""
    store = MemoryStore()
    t = 1_700_000_000.0
    for i in range(12):
        insert_all(store, [make_run(t0=t + (i // 3), scan_id=i, n_events=1,
                                    plan_name="scan" if i % 2 else "count")])
    expected = [s["uid"] for s in store.find_run_starts({"plan_name": "scan"})]
    seen = [s["uid"] for s in iter_run_starts(store, {"plan_name": "scan"}, page_size=2)]
    assert seen == expected and len(seen) == 6


# --------------------------------------------------------------------------- resume / verify
def test_partial_copy_is_completed_without_duplicates(src: MemoryStore) -> None:
    """A run whose start and some events are already there is completed, not duplicated."""
    uid = next(s["uid"] for s in src.find_run_starts({"scan_id": 4}))
    dst = MemoryStore()
    replay = documents(src, uid)
    for name, doc in replay[: len(replay) // 2]:
        dst.insert(name, doc)
    report = copy_runs(src, dst, uids=[uid], progress=False)
    assert report.completed == [uid]
    assert documents(dst, uid) == replay


def test_progress_callable_sees_every_run(src: MemoryStore) -> None:
    """A progress callable is called once per run with growing totals."""
    seen: list[CopyProgress] = []
    copy_runs(src, MemoryStore(), progress=seen.append)
    assert [p.runs_done for p in seen] == list(range(1, len(all_uids(src)) + 1))
    assert all(p.runs_total == len(seen) for p in seen)
    assert seen[-1].documents > 0 and seen[-1].bytes > 0
    assert [p.documents for p in seen] == sorted(p.documents for p in seen)


def test_verification_catches_a_destination_that_loses_events(src: MemoryStore) -> None:
    """If the destination keeps fewer events than were sent, the run is reported as failed."""

    class Lossy(MemoryStore):
        def _write_document(self, name: str, doc: dict[str, Any]) -> None:
            if name == "event_page" and len(doc["uid"]) > 1:
                keep = {"descriptor": doc["descriptor"]}
                for key in ("uid", "time", "seq_num"):
                    keep[key] = doc[key][:1]
                for key in ("data", "timestamps", "filled"):
                    if key in doc:
                        keep[key] = {k: v[:1] for k, v in doc[key].items()}
                doc = keep
            super()._write_document(name, doc)

    report = copy_runs(src, Lossy(), progress=False)
    assert report.failed and not report.ok
    assert all("verification failed" in r.message for r in report.failed)
    assert "events in the destination" in report.failed[0].message


def test_verification_catches_lost_datums(src: MemoryStore) -> None:
    """If the destination drops datums, the run with external data is reported as failed."""

    class DropsDatums(MemoryStore):
        def _write_document(self, name: str, doc: dict[str, Any]) -> None:
            if name != "datum_page":
                super()._write_document(name, doc)

    report = copy_runs(src, DropsDatums(), progress=False)
    (failed,) = report.failed
    assert "datums in the destination" in failed.message


# --------------------------------------------------------------------------- external files
class FramesHandler:
    """A handler reading one file per frame: ``<path>_<index>.dat``."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path

    def __call__(self, index: int) -> bytes:
        with open(f"{self.path}_{index}.dat", "rb") as f:
            return f.read()

    def get_file_list(self, datum_kwargs: list[dict[str, Any]]) -> list[str]:
        return [f"{self.path}_{kw['index']}.dat" for kw in datum_kwargs]


def external_run(root: Path, *, spec: str, resource_path: str, n: int = 3,
                 t0: float = 1_700_000_000.0) -> list[tuple[str, dict[str, Any]]]:
    """A run whose events reference ``n`` datums of one resource under ``root``."""
    bundle = event_model.compose_run(time=t0, metadata={"plan_name": "count", "scan_id": 9})
    docs: list[tuple[str, dict[str, Any]]] = [("start", bundle.start_doc)]
    desc = bundle.compose_descriptor(
        name="primary", time=t0 + 0.1,
        data_keys={"img": {"source": "cam", "dtype": "array", "shape": [2],
                           "external": "FILESTORE:"}},
        object_keys={"cam": ["img"]})
    docs.append(("descriptor", desc.descriptor_doc))
    resource = bundle.compose_resource(spec=spec, root=str(root), resource_path=resource_path,
                                       resource_kwargs={})
    docs.append(("resource", resource.resource_doc))
    for i in range(n):
        datum = resource.compose_datum(datum_kwargs={"index": i})
        docs.append(("datum", datum))
        docs.append(("event", desc.compose_event(data={"img": datum["datum_id"]},
                                                 timestamps={"img": t0 + 1 + i},
                                                 time=t0 + 1 + i, filled={"img": False})))
    docs.append(("stop", bundle.compose_stop(time=t0 + 10)))
    return docs


def sha(path: Path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_of(docs: list[tuple[str, dict[str, Any]]]) -> MemoryStore:
    """A memory store holding these documents."""
    store = MemoryStore()
    for name, doc in docs:
        store.insert(name, doc)
    return store


def test_copy_files_through_the_handler_rewrites_roots(tmp_path: Path) -> None:
    """Files listed by the handler are copied with checksums and the resource root is rewritten."""
    old = tmp_path / "old"
    (old / "scan").mkdir(parents=True)
    for i in range(3):
        (old / "scan" / f"frames_{i}.dat").write_bytes(os.urandom(1000 + i))
    docs = external_run(old, spec="FRAMES", resource_path="scan/frames")
    src, dst = store_of(docs), MemoryStore()
    new = tmp_path / "new"
    renamed: list[tuple[str, str]] = []
    report = copy_runs(src, dst, copy_files=True, new_root=new, progress=False,
                       handler_registry={"FRAMES": FramesHandler},
                       file_rename_hook=lambda a, b: renamed.append((a, b)))
    assert report.ok, report.summary()
    for i in range(3):
        a, b = old / "scan" / f"frames_{i}.dat", new / "scan" / f"frames_{i}.dat"
        assert sha(a) == sha(b)
        assert (str(a), str(b)) in report.file_pairs()
    assert renamed == report.file_pairs()
    assert report.file_bytes == 3 * 1000 + 3
    uid = docs[0][1]["uid"]
    copied = documents(dst, uid)
    resources = [d for n, d in copied if n == "resource"]
    assert resources[0]["root"] == str(new)
    assert resources[0]["resource_path"] == "scan/frames"
    # Everything else is identical.
    strip = [(n, d) for n, d in documents(src, uid) if n != "resource"]
    assert [(n, d) for n, d in copied if n != "resource"] == strip


def test_copy_files_never_overwrites_a_different_file(tmp_path: Path) -> None:
    """A file already at the destination with other content fails the run and stays as it was."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "data.h5").write_bytes(b"source bytes")
    docs = external_run(old, spec="HDF5_NO_HANDLER", resource_path="data.h5", n=2)
    new = tmp_path / "new"
    new.mkdir()
    (new / "data.h5").write_bytes(b"something else")
    src, dst = store_of(docs), MemoryStore()
    report = copy_runs(src, dst, copy_files=True, new_root=new, progress=False,
                       handler_registry={})
    assert not report.ok
    assert "different content" in report.failed[0].message
    assert (new / "data.h5").read_bytes() == b"something else"
    assert dst.get_run_stop(docs[0][1]["uid"]) is None  # left incomplete, to be resumed


def test_copy_files_falls_back_to_the_resource_file_without_handler(tmp_path: Path) -> None:
    """With no handler, the single file root/resource_path is copied; copying again is a no-op."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "data.h5").write_bytes(b"x" * 2048)
    docs = external_run(old, spec="HDF5_NO_HANDLER", resource_path="data.h5", n=2)
    src, dst = store_of(docs), MemoryStore()
    new = tmp_path / "new"
    report = copy_runs(src, dst, copy_files=True, new_root=new, progress=False,
                       handler_registry={})
    assert report.ok and [f.status for f in report.files] == ["copied"]
    assert (new / "data.h5").read_bytes() == b"x" * 2048
    assert copy_runs(src, dst, copy_files=True, new_root=new, progress=False,
                     handler_registry={}).skipped == [docs[0][1]["uid"]]


def test_unlistable_resource_is_copied_unchanged_and_reported(tmp_path: Path) -> None:
    """No handler and no file: the resource keeps its root and the report says why."""
    docs = external_run(tmp_path / "nowhere", spec="MYSTERY", resource_path="frames")
    src, dst = store_of(docs), MemoryStore()
    report = copy_runs(src, dst, copy_files=True, new_root=tmp_path / "new", progress=False,
                       handler_registry={})
    assert report.ok
    (problem,) = report.file_problems
    assert problem.unlisted and "no handler is registered for spec 'MYSTERY'" in problem.message
    assert_same_runs(src, dst)


def test_missing_source_file_leaves_the_run_to_be_resumed(tmp_path: Path) -> None:
    """A listed file that is missing fails the run; once it exists, copying again completes it."""
    old = tmp_path / "old"
    old.mkdir()
    for i in (0, 2):
        (old / f"f_{i}.dat").write_bytes(b"frame")
    docs = external_run(old, spec="FRAMES", resource_path="f")
    uid = docs[0][1]["uid"]
    src, dst = store_of(docs), MemoryStore()
    kwargs: dict[str, Any] = dict(copy_files=True, new_root=tmp_path / "new", progress=False,
                                  handler_registry={"FRAMES": FramesHandler})
    first = copy_runs(src, dst, **kwargs)
    assert [r.uid for r in first.failed] == [uid]
    assert "f_1.dat" in first.failed[0].message
    (old / "f_1.dat").write_bytes(b"frame")
    second = copy_runs(src, dst, **kwargs)
    assert second.completed == [uid] and second.ok
    assert len(documents(dst, uid)) == len(documents(src, uid))


def test_resource_files_applies_root_map(tmp_path: Path) -> None:
    """The source's root_map says where files really are."""
    (tmp_path / "data.h5").write_bytes(b"1")
    resource = {"uid": "r", "spec": "X", "root": "/beamline/data", "resource_path": "data.h5",
                "resource_kwargs": {}}
    files, how = resource_files(resource, [], handler_registry={},
                                root_map={"/beamline/data": str(tmp_path)})
    assert files == [str(tmp_path / "data.h5")] and how == "root/resource_path"


# --------------------------------------------------------------------------- export API
def test_export_and_export_size(tmp_path: Path) -> None:
    """export copies runs and files and returns (old, new) pairs; export_size is in gigabytes."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "data.h5").write_bytes(b"y" * 5000)
    docs = external_run(old, spec="HDF5_NO_HANDLER", resource_path="data.h5")
    db1, db2 = Broker(store_of(docs)), Broker(MemoryStore())
    assert export_size(db1, db1[-1]) == pytest.approx(5000e-9)
    pairs = export(db1, [db1[-1]], db2, new_root=str(tmp_path / "new"))
    assert pairs == [(str(old / "data.h5"), str(tmp_path / "new" / "data.h5"))]
    assert db2[-1].uid == db1[-1].uid
    assert export(db1, db1[-1], db2) == []  # documents only, already there
    with pytest.raises(TypeError, match="copy_kwargs accepts"):
        export(db1, db1[-1], db2, copy_kwargs={"bogus": 1})


def test_export_raises_on_conflict() -> None:
    """export raises DuplicateDocument when the other Broker holds a different run."""
    run = make_run(t0=1_700_000_000.0)
    db1, db2 = Broker(MemoryStore()), Broker(MemoryStore())
    insert_all(db1, [run])
    db2.insert("start", {**run.start, "plan_name": "other"})
    with pytest.raises(DuplicateDocument, match="export: run"):
        export(db1, db1[-1], db2)


def test_export_size_warns_about_resources_it_cannot_list(tmp_path: Path) -> None:
    """A resource whose files cannot be found is left out of the size with a warning."""
    docs = external_run(tmp_path / "nowhere", spec="MYSTERY", resource_path="frames")
    db = Broker(store_of(docs))
    with pytest.warns(UserWarning, match="not counted"):
        assert export_size(db, db[-1]) == 0.0


def test_broker_methods_delegate_to_copying(tmp_path: Path) -> None:
    """Broker.export / export_size (once wired in broker.py) give the same answers."""
    if not hasattr(Broker, "export"):
        pytest.skip("Broker.export is not wired to broker_v1.copying yet")
    old = tmp_path / "old"
    old.mkdir()
    (old / "data.h5").write_bytes(b"z" * 100)
    docs = external_run(old, spec="HDF5_NO_HANDLER", resource_path="data.h5")
    db1, db2 = Broker(store_of(docs)), Broker(MemoryStore())
    assert db1.export_size([db1[-1]]) == pytest.approx(100e-9)
    assert db1.export([db1[-1]], db2, new_root=str(tmp_path / "n")) == [
        (str(old / "data.h5"), str(tmp_path / "n" / "data.h5"))]


# --------------------------------------------------------------------------- other stores
def test_memory_to_files_to_files_round_trip(src: MemoryStore, tmp_path: Path) -> None:
    """memory → files → files keeps every document identical, and reopened stores agree."""
    FileStore = files_store_class()
    a = FileStore(path=tmp_path / "a")
    assert copy_runs(src, a, progress=False).ok
    b = FileStore(path=tmp_path / "b")
    assert copy_runs(a, b, progress=False).ok
    a.close()
    b.close()
    reopened = FileStore(path=tmp_path / "b", read_only=True)
    assert_same_runs(src, reopened)
    assert copy_runs(src, FileStore(path=tmp_path / "b"), progress=False).skipped


def test_memory_to_files_to_mongomock_to_files_round_trip(src: MemoryStore,
                                                          tmp_path: Path) -> None:
    """memory → files → mongomock → files keeps every document identical."""
    FileStore = files_store_class()
    mongo = pytest.importorskip("broker_v1.stores.mongo",
                                reason="the mongo store is not available yet")
    pytest.importorskip("mongomock")
    a = FileStore(path=tmp_path / "a")
    m = mongo.MongoStore(uri=f"mongomock://localhost/copy-{uuid.uuid4().hex[:8]}")
    b = FileStore(path=tmp_path / "b")
    for s, d in ((src, a), (a, m), (m, b)):
        report = copy_runs(s, d, progress=False)
        assert report.ok, report.summary()
    assert_same_runs(src, m)
    assert_same_runs(src, b)
    assert copy_runs(b, m, progress=False).skipped == all_uids(src)


def test_torn_last_line_in_destination_is_repaired_and_the_run_completed(
        src: MemoryStore, tmp_path: Path) -> None:
    """A destination run file ending mid-line (a killed writer) is repaired, then completed."""
    FileStore = files_store_class()
    uid = next(s["uid"] for s in src.find_run_starts({"scan_id": 4}))
    replay = documents(src, uid)
    dst = FileStore(path=tmp_path / "dst")
    for name, doc in replay[:4]:
        dst.insert(name, doc)
    dst.close()
    path = tmp_path / "dst" / f"{uid}.jsonl"
    with open(path, "ab") as f:
        f.write(b'["event", {"uid": "half-writ')
    dst = FileStore(path=tmp_path / "dst")
    report = copy_runs(src, dst, uids=[uid], progress=False)
    assert report.completed == [uid], report.summary()
    assert documents(dst, uid) == replay
    assert path.read_bytes().endswith(b"\n")


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from broker_v1.stores.files import FileStore
    from broker_v1.copying import copy_runs

    MODE, AT = sys.argv[4], int(sys.argv[3])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, as a power cut or kill -9

    class DiesMidCopy(FileStore):
        calls = 0

        def count(self):
            type(self).calls += 1
            return type(self).calls == AT

        def copy_run_from(self, source, uid):
            if MODE == "documents":
                return None  # document by document only
            return super().copy_run_from(source, uid)

        def _write_document(self, name, doc):
            if MODE == "documents" and self.count():
                die()
            super()._write_document(name, doc)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # Whole-run copies are written by the store's importer: the kills go there.
            store, importer = self, self._importer
            create_run_file, index_imported = importer._create_run_file, importer._index_imported

            def _create_run_file(name, data):
                if MODE == "mid-write" and store.count():
                    with open(store.path / name, "xb") as f:
                        f.write(data[: len(data) // 2])
                    die()
                return create_run_file(name, data)

            def _index_imported(name, data, plan):
                if MODE == "before-index" and store.count():
                    die()
                index_imported(name, data, plan)

            importer._create_run_file = _create_run_file
            importer._index_imported = _index_imported

    copy_runs(FileStore(path=sys.argv[1], read_only=True), DiesMidCopy(path=sys.argv[2]),
              progress=False)
""")



def event_uids_in_files(directory: Path) -> list[str]:
    """Every event uid written in the run files of a files store (duplicates included)."""
    uids: list[str] = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            name, doc = json.loads(line)
            if name == "event":
                uids.append(doc["uid"])
            elif name == "event_page":
                uids.extend(doc["uid"])
    return uids


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("mode,kill_at,completed", [
    ("documents", 2, 1), ("documents", 9, 1), ("documents", 14, 1),
    # whole-run copies between files stores: a torn new file, or a file not yet indexed
    ("mid-write", 2, 1), ("before-index", 2, 0),
    # and after two runs were indexed in a transaction deferred_sync() kept open
    ("before-index", 3, 0),
])
def test_killed_copy_resumes_without_duplicates(src: MemoryStore, tmp_path: Path, mode: str,
                                                kill_at: int, completed: int) -> None:
    """A copy process killed part-way (SIGKILL) is resumed by the next copy, nothing duplicated.

    Killed while copying document by document, while writing a whole run file, and after
    writing it but before indexing it.
    """
    FileStore = files_store_class()
    source = FileStore(path=tmp_path / "src")
    copy_runs(src, source, progress=False)
    source.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "src"), str(tmp_path / "dst"),
         str(kill_at), mode], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = FileStore(path=tmp_path / "dst", read_only=True)
    assert len(all_uids(partial)) < len(all_uids(src))
    partial.close()
    dst = FileStore(path=tmp_path / "dst")
    report = copy_runs(FileStore(path=tmp_path / "src", read_only=True), dst, progress=False)
    assert report.ok, report.summary()
    assert len(report.completed) == completed  # the run being written when it died
    dst.close()
    assert_same_runs(src, FileStore(path=tmp_path / "dst", read_only=True))
    written = event_uids_in_files(tmp_path / "dst")
    assert len(written) == len(set(written))


# --------------------------------------------------------------------------- whole run files
def hand_written_run(directory: Path, *, start_extra: dict[str, Any] | None = None,
                     event_extra: dict[str, Any] | None = None, stop: bool = True,
                     n: int = 4, descriptor_uid: str | None = None,
                     event_first: bool = False) -> tuple[str, bytes]:
    """A suitcase-jsonl style run file written by hand (as another program would)."""
    uid = str(uuid.uuid4())
    desc = descriptor_uid or str(uuid.uuid4())
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": 100.0, "scan_id": 1, **(start_extra or {})}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": 100.5, "name": "primary",
                        "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []}}}),
    ]
    for i in range(n):
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc, "time": 101.0 + i,
                               "seq_num": i + 1, "data": {"x": i * 1.5},
                               "timestamps": {"x": 101.0 + i}, **(event_extra or {})}))
    if event_first:  # an event before its descriptor: readers cope, insert would not
        docs.insert(1, docs.pop(2))
    if stop:
        docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": 200.0,
                              "exit_status": "success", "num_events": {"primary": n}}))
    data = "".join(json.dumps(list(d)) + "\n" for d in docs).encode()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{uid}.jsonl").write_bytes(data)
    return uid, data


def test_files_to_files_copies_stopped_runs_as_their_files(src: MemoryStore,
                                                           tmp_path: Path) -> None:
    """Stopped runs go across byte for byte (the store's own and hand-written ones), indexed,
    with the columnar cache; open runs document by document; everything reads the same."""
    FileStore = files_store_class()
    a = FileStore(path=tmp_path / "a")
    assert copy_runs(src, a, progress=False).ok
    hand_uid, hand_bytes = hand_written_run(tmp_path / "a")
    b = FileStore(path=tmp_path / "b")
    report = copy_runs(a, b, progress=False)
    assert report.ok, report.summary()
    stopped = [u for u in all_uids(a) if a.get_run_stop(u) is not None]
    assert hand_uid in stopped and len(stopped) < len(all_uids(a))  # one run has no stop
    sizes = 0
    for uid in stopped:
        data = (tmp_path / "a" / f"{uid}.jsonl").read_bytes()
        assert (tmp_path / "b" / f"{uid}.jsonl").read_bytes() == data, uid
        sizes += len(data)
    assert report.bytes >= sizes
    stopped_by_store = [u for u in all_uids(src) if src.get_run_stop(u) is not None]
    for uid in stopped_by_store:
        assert (tmp_path / "b" / ".broker_v1" / "cache" / f"{uid}.jsonl.cols").is_file()
    b.close()
    reopened = FileStore(path=tmp_path / "b", read_only=True)
    assert_same_runs(a, reopened)
    assert reopened.get_run_start(hand_uid)["scan_id"] == 1
    again = copy_runs(a, FileStore(path=tmp_path / "b"), progress=False)
    assert again.skipped == all_uids(a)


@pytest.mark.parametrize("link", ["hard link", "stale cache here", "links refused"])
def test_whole_run_copy_brings_the_columnar_cache(tmp_path: Path, link: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The source's columnar cache comes along (a hard link, or a copy where links are
    refused), replacing whatever an earlier store left at that path."""
    FileStore = files_store_class()
    uid, _ = hand_written_run(tmp_path / "a")
    a = FileStore(path=tmp_path / "a")
    a.get_run_stop(uid)
    list(a.iter_event_pages(a.get_descriptors(uid)[0]["uid"]))  # reading builds the cache
    cached = tmp_path / "a" / ".broker_v1" / "cache" / f"{uid}.jsonl.cols"
    assert cached.is_file()
    target = tmp_path / "b" / ".broker_v1" / "cache" / f"{uid}.jsonl.cols"
    if link == "stale cache here":
        target.parent.mkdir(parents=True)
        target.write_bytes(b"left by an earlier store")
    if link == "links refused":
        def refuse(*args: Any, **kwargs: Any) -> None:
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", refuse)
    b = FileStore(path=tmp_path / "b")
    assert copy_runs(a, b, progress=False).copied == [uid]
    assert target.read_bytes() == cached.read_bytes()
    assert (target.stat().st_ino == cached.stat().st_ino) == (link != "links refused")
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", ["dollar key", "extra event key", "no stop", "event first"])
def test_whole_run_copy_gives_way_to_the_document_path(tmp_path: Path, case: str) -> None:
    """A run file that insert would refuse or change is not copied byte for byte: the
    document path refuses it (nothing written) or writes what insert keeps."""
    FileStore = files_store_class()
    kwargs: dict[str, Any] = {
        "dollar key": {"start_extra": {"sample": {"$where": "1"}}},
        "extra event key": {"event_extra": {"note": "kept by nobody"}},
        "no stop": {"stop": False},
        "event first": {"event_first": True},
    }[case]
    uid, data = hand_written_run(tmp_path / "a", **kwargs)
    a = FileStore(path=tmp_path / "a", read_only=True)
    b = FileStore(path=tmp_path / "b")
    report = copy_runs(a, b, progress=False)
    copied = tmp_path / "b" / f"{uid}.jsonl"
    if case == "dollar key":
        assert [r.uid for r in report.failed] == [uid]
        assert "$where" in report.failed[0].message
        assert not copied.exists() and b.count_runs() == 0
        return
    assert report.copied == [uid], report.summary()
    assert copied.read_bytes() != data
    events = [doc for name, doc in documents(b, uid) if name == "event"]
    assert len(events) == 4
    assert all("note" not in e for e in events)
    assert (b.get_run_stop(uid) is None) == (case == "no stop")
    first_lines = [json.loads(line)[0] for line in copied.read_text().splitlines()[:2]]
    assert first_lines == ["start", "descriptor"]


def test_whole_run_copy_never_reuses_a_descriptor_uid_already_here(tmp_path: Path) -> None:
    """A run file whose descriptor uid another run in the destination already has is not
    copied byte for byte (the destination would hold one uid twice): the document path
    refuses it and says why."""
    FileStore = files_store_class()
    first_uid, _ = hand_written_run(tmp_path / "a")
    b = FileStore(path=tmp_path / "b")
    assert copy_runs(FileStore(path=tmp_path / "a", read_only=True), b,
                     progress=False).copied == [first_uid]
    descriptor_uid = b.get_descriptors(first_uid)[0]["uid"]
    second_uid, _ = hand_written_run(tmp_path / "c", descriptor_uid=descriptor_uid)
    report = copy_runs(FileStore(path=tmp_path / "c", read_only=True), b, progress=False)
    assert report.copied == [] and not report.ok, report.summary()
    problems = [r for r in report.failed + report.conflicts if r.uid == second_uid]
    assert problems and descriptor_uid in problems[0].message
    assert not (tmp_path / "b" / f"{second_uid}.jsonl").exists() or (
        b.get_descriptors(second_uid) == [])
    assert b.get_descriptors(first_uid)[0]["run_start"] == first_uid


def test_whole_run_copy_leaves_runs_with_datums_elsewhere_to_the_document_path(
        tmp_path: Path) -> None:
    """Events whose datums live outside their run file (a shared assets file) are copied
    document by document, so the resource and datums come along."""
    FileStore = files_store_class()
    a = FileStore(path=tmp_path / "a")
    run = make_run(t0=500.0, n_events=2)
    docs = run.docs if hasattr(run, "docs") else run
    uid = docs[0][1]["uid"]
    desc = next(d for n, d in docs if n == "descriptor")
    desc = {**desc, "uid": str(uuid.uuid4()), "name": "images",
            "data_keys": {"img": {"source": "cam", "dtype": "array", "shape": [2],
                                  "external": "FILESTORE:"}}}
    resource = {"uid": str(uuid.uuid4()), "spec": "NPY_SEQ", "root": "/data",
                "resource_path": "a.npy", "resource_kwargs": {}, "path_semantics": "posix"}
    for name, doc in docs:
        if name == "stop":
            a.insert("descriptor", desc)
            a.insert("resource", resource)  # no run_start: the shared assets file
            a.insert("datum", {"datum_id": resource["uid"] + "/0", "resource": resource["uid"],
                               "datum_kwargs": {"index": 0}})
            a.insert("event", {"uid": str(uuid.uuid4()), "descriptor": desc["uid"],
                               "time": doc["time"] - 0.1, "seq_num": 1,
                               "data": {"img": resource["uid"] + "/0"},
                               "timestamps": {"img": doc["time"] - 0.1},
                               "filled": {"img": False}})
        a.insert(name, doc)
    b = FileStore(path=tmp_path / "b")
    report = copy_runs(a, b, progress=False)
    assert report.copied == [uid], report.summary()
    assert b.get_resource(resource["uid"])["spec"] == "NPY_SEQ"
    assert b.get_datum(resource["uid"] + "/0")["datum_kwargs"] == {"index": 0}
    assert documents(b, uid) == documents(a, uid)


# --------------------------------------------------------------------------- checked ahead
@pytest.fixture
def checks_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checking process for copies of any length, in small batches."""
    import broker_v1.copying._source as copying_source
    import broker_v1.stores.files._import as files_module

    monkeypatch.setattr(files_module, "_CHECK_AHEAD_MIN_RUNS", 1)
    monkeypatch.setattr(files_module, "_CHECK_AHEAD_BATCH", 3)
    monkeypatch.setattr(copying_source, "ANNOUNCE_CHUNK", 3)


def several_hand_written_runs(directory: Path) -> tuple[list[str], list[str]]:
    """Sound runs, and runs the whole-run path must refuse (their uids)."""
    sound = [hand_written_run(directory, n=3)[0] for _ in range(12)]
    odd = [hand_written_run(directory, event_extra={"note": "x"})[0],
           hand_written_run(directory, event_first=True)[0],
           hand_written_run(directory, start_extra={"sample": {"$where": "1"}})[0]]
    return sound, odd


def test_whole_run_copies_are_checked_ahead_in_a_second_process(
        tmp_path: Path, checks_ahead: None) -> None:
    """With the checking process, sound runs go across byte for byte and every other run
    takes the document path exactly as without it."""
    FileStore = files_store_class()
    sound, odd = several_hand_written_runs(tmp_path / "a")
    a = FileStore(path=tmp_path / "a", read_only=True)
    b = FileStore(path=tmp_path / "b")
    report = copy_runs(a, b, progress=False)
    assert b._checked_ahead >= len(sound)  # the checks came from the other process
    assert sorted(report.copied) == sorted(sound + odd[:2]), report.summary()
    assert [r.uid for r in report.failed] == [odd[2]]
    for uid in sound:
        assert (tmp_path / "b" / f"{uid}.jsonl").read_bytes() == (
            tmp_path / "a" / f"{uid}.jsonl").read_bytes()
    for uid in odd[:2]:
        assert (tmp_path / "b" / f"{uid}.jsonl").read_bytes() != (
            tmp_path / "a" / f"{uid}.jsonl").read_bytes()
    reopened = FileStore(path=tmp_path / "b", read_only=True)
    for uid in sound + odd[1:2]:
        assert documents(reopened, uid) == documents(a, uid), uid
    # The index rows computed ahead equal those the source built by scanning its files.
    columns = "uid, time, scan_id, scan_id_odd, start, json_ok, text, stop, stop_uid, words"
    sql = (f"SELECT {columns} FROM runs JOIN runs_fts ON runs_fts.rowid = runs.id "
           f"WHERE uid IN ({','.join('?' * len(sound))}) ORDER BY uid")
    rows = a._index_rows(sql, sound)
    assert rows == b._index_rows(sql, sound) and len(rows) == len(sound)


def test_copy_goes_on_when_the_checking_process_dies(tmp_path: Path, checks_ahead: None) -> None:
    """The checking process killed mid-copy (SIGKILL): the copy checks the rest itself."""
    FileStore = files_store_class()
    sound, _ = several_hand_written_runs(tmp_path / "a")

    class KillsTheCheckingProcess(FileStore):  # type: ignore[misc, valid-type]
        calls = 0

        def copy_run_from(self, source: Any, uid: str) -> Any:
            type(self).calls += 1
            if type(self).calls == 4 and self._checking_process is not None:
                os.kill(self._checking_process.pid, signal.SIGKILL)
            return super().copy_run_from(source, uid)

    a = FileStore(path=tmp_path / "a", read_only=True)
    b = KillsTheCheckingProcess(path=tmp_path / "b")
    report = copy_runs(a, b, progress=False)
    assert KillsTheCheckingProcess.calls > 4
    assert set(sound) <= set(report.copied), report.summary()
    for uid in sound:
        assert (tmp_path / "b" / f"{uid}.jsonl").read_bytes() == (
            tmp_path / "a" / f"{uid}.jsonl").read_bytes()


def test_checking_process_never_reruns_the_callers_script(tmp_path: Path) -> None:
    """A script without an ``if __name__ == "__main__"`` guard copies once: the checking
    process is a fresh interpreter, not a re-import of the script (multiprocessing's spawn)."""
    FileStore = files_store_class()
    several_hand_written_runs(tmp_path / "a")
    FileStore(path=tmp_path / "a").count_runs()
    script = tmp_path / "copy_script.py"
    script.write_text(textwrap.dedent(f"""
        import broker_v1.copying, broker_v1.stores.files._import as files
        from broker_v1.stores.files import FileStore
        files._CHECK_AHEAD_MIN_RUNS = 1
        with open({str(tmp_path / "ran.txt")!r}, "a") as f:
            f.write("ran\\n")
        dst = FileStore(path={str(tmp_path / "b")!r})
        report = broker_v1.copying.copy_runs(FileStore(path={str(tmp_path / "a")!r}), dst,
                                             progress=False)
        print(dst._checked_ahead, len(report.copied))
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    checked_ahead, copied = map(int, proc.stdout.split())
    assert checked_ahead > 0 and copied == 14
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
