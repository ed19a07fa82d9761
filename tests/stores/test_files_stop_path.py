"""The files store's stop path: one file fsync waited for, the rest done off the stop.

A new run file's directory entry is fsynced on a background thread from the run's start (the
stop waits for it only if it is still running), and the columnar cache is written after the
stop returns, never fsynced.  What a stop guarantees is unchanged: when ``insert('stop')``
returns, the run file and its directory entry are on disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from files_harness import count_run_docs

from broker_v1.stores.files import FileStore
from broker_v1.stores.files import _syncs as syncs_module
from broker_v1.stores.files import _writer as writer_module


def run_docs(uid: str, n_events: int = 3) -> list[tuple[str, dict[str, Any]]]:
    return count_run_docs(uid, n_events)


class _Recorder:
    """Counts fsyncs per thread; the directory fsync can be made slow."""

    def __init__(self) -> None:
        self.file_fsyncs: list[str] = []
        self.dir_started = threading.Event()
        self.dir_done = threading.Event()
        self.dir_threads: list[str] = []
        self.dir_delay = 0.0


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    rec = _Recorder()
    real_fsync = os.fsync
    real_dir = syncs_module._Syncs.fsync_directory

    class _Os:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def fsync(self, fd: int) -> None:
            rec.file_fsyncs.append(threading.current_thread().name)
            real_fsync(fd)

    def fsync_directory(self: Any, identity: tuple[int, int] | None = None) -> None:
        rec.dir_threads.append(threading.current_thread().name)
        rec.dir_started.set()
        time.sleep(rec.dir_delay)
        real_dir(self, identity)
        rec.dir_done.set()

    monkeypatch.setattr(writer_module, "os", _Os())
    monkeypatch.setattr(syncs_module._Syncs, "fsync_directory", fsync_directory)
    return rec


def test_stop_waits_for_one_file_fsync_and_the_directory_entry(tmp_path: Path,
                                                               recorder: _Recorder) -> None:
    """The inserting thread fsyncs the run file once, at stop; the directory entry's fsync
    runs on the background thread from the start, and the stop returns only after it."""
    store = FileStore(path=tmp_path / "s")  # default fsync_interval: no fsync per document
    recorder.dir_delay = 0.3
    docs = run_docs("run-a")
    store.insert("start", docs[0][1])
    assert recorder.dir_started.wait(5)
    assert recorder.dir_threads == ["broker_v1-bg"]
    for name, doc in docs[1:-1]:
        store.insert(name, doc)
    assert recorder.file_fsyncs == []
    store.insert("stop", docs[-1][1])
    assert recorder.dir_done.is_set()  # the stop waited for the directory entry
    assert recorder.file_fsyncs == [threading.current_thread().name]
    assert recorder.dir_threads == ["broker_v1-bg"]  # not synced a second time
    store.close()


def _fds_open_on(directory: Path) -> list[int]:
    """This process's descriptors open on ``directory`` (Linux: read from /proc)."""
    fds = []
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            if os.path.samefile(os.readlink(entry), directory):
                fds.append(int(entry.name))
    return fds


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc/self/fd "
                    "to see which descriptors are open")
def test_directory_fsyncs_keep_one_descriptor_for_the_directory_at_the_path(
    tmp_path: Path,
) -> None:
    """Run starts fsync the directory through one descriptor kept open, only while the
    directory at the store's path is the one it was opened on; close() closes it."""
    directory = tmp_path / "s"
    store = FileStore(path=directory)
    for i in range(3):
        for name, doc in run_docs(f"run-{i}"):
            store.insert(name, doc)
    kept = _fds_open_on(directory)
    assert len(kept) == 1  # not one per run
    syncs = store._syncs
    moved = tmp_path / "moved"
    directory.rename(moved)
    directory.mkdir()
    st = directory.stat()
    syncs.fsync_directory((st.st_dev, st.st_ino))
    assert _fds_open_on(moved) == []  # the old directory's descriptor was closed
    assert len(_fds_open_on(directory)) == 1
    syncs.fsync_directory()  # without the identity: opened and closed again
    assert len(_fds_open_on(directory)) == 1
    directory.rmdir()
    moved.rename(directory)
    store.close()
    assert _fds_open_on(directory) == []


def test_columnar_cache_is_written_after_the_stop_and_read_back(tmp_path: Path) -> None:
    """The cache is written in the background; a read in this process right after the stop
    waits for it and uses it, and another process's reader finds it after close()."""
    store = FileStore(path=tmp_path / "s", cache_min_bytes=0)  # a cache for a short run too
    for name, doc in run_docs("run-b", 5):
        store.insert(name, doc)
    cache = tmp_path / "s" / ".broker_v1" / "cache" / "run-b.jsonl.cols"
    events = list(store.iter_events("run-b-primary"))
    assert [e["data"]["x"] for e in events] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert cache.is_file()
    store.close()
    other = FileStore(path=tmp_path / "s", read_only=True)
    assert list(other.iter_events("run-b-primary")) == events
    other.close()


def test_close_finishes_background_work(tmp_path: Path) -> None:
    """close() returns only when every queued cache is written."""
    store = FileStore(path=tmp_path / "s", cache_min_bytes=0)
    for i in range(5):
        for name, doc in run_docs(f"run-{i}"):
            store.insert(name, doc)
    store.close()
    caches = sorted(p.name for p in (tmp_path / "s" / ".broker_v1" / "cache").iterdir())
    assert caches == [f"run-{i}.jsonl.cols" for i in range(5)]


def test_writer_caches_runs_from_cache_min_bytes_and_readers_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer queues the cache only of a run of at least ``cache_min_bytes``; a shorter
    run gets its cache on first read, as a run another program wrote; both read the same as
    without a cache."""
    queued: list[str] = []
    real = syncs_module._Syncs.cache_soon

    def cache_soon(self: Any, name: str, *args: Any) -> None:
        queued.append(name)
        real(self, name, *args)

    monkeypatch.setattr(syncs_module._Syncs, "cache_soon", cache_soon)
    store = FileStore(path=tmp_path / "s", cache_min_bytes=10_000)
    for name, doc in run_docs("short", 3) + run_docs("long", 120):
        store.insert(name, doc)
    assert (tmp_path / "s" / "short.jsonl").stat().st_size < 10_000
    assert (tmp_path / "s" / "long.jsonl").stat().st_size >= 10_000
    assert queued == ["long.jsonl"]
    store.close()
    cache = tmp_path / "s" / ".broker_v1" / "cache"
    assert sorted(p.name for p in cache.iterdir()) == ["long.jsonl.cols"]
    plain = FileStore(path=tmp_path / "s", read_only=True, columnar_cache=False)
    expected = {u: list(plain.iter_events(f"{u}-primary")) for u in ("short", "long")}
    plain.close()
    reader = FileStore(path=tmp_path / "s")
    assert {u: list(reader.iter_events(f"{u}-primary")) for u in expected} == expected
    reader.close()
    assert sorted(p.name for p in cache.iterdir()) == ["long.jsonl.cols", "short.jsonl.cols"]
    assert [e["data"]["x"] for e in expected["long"]] == [float(i) for i in range(120)]


@pytest.mark.parametrize(("n_events", "min_bytes"), [
    (5, 6_000),  # stays short
    (150, 6_000),  # grows past mid-run
    (42, 6_000),  # at its last event (6,042 bytes before the stop)
    (42, 6_100),  # at its stop line (6,133 bytes in all)
    (150, 0),  # columns from the first event
])
def test_a_run_growing_past_cache_min_bytes_gets_the_cache_a_reader_builds(
    tmp_path: Path, n_events: int, min_bytes: int
) -> None:
    """While a run is shorter than ``cache_min_bytes`` its writer keeps only its lines (every
    one), and makes the columns from them once it grows past (mid-run, at its last event,
    or at its stop): the cache written at stop is byte for byte the one a reader builds from
    the file; a run that stays short gets none from its writer."""
    folder = tmp_path / "s"
    store = FileStore(path=folder, cache_min_bytes=min_bytes)
    for name, doc in run_docs("run", n_events):
        store.insert(name, doc)
    store.close()
    size = (folder / "run.jsonl").stat().st_size
    cache = folder / ".broker_v1" / "cache" / "run.jsonl.cols"
    if size < min_bytes:
        assert not cache.exists()
        return
    written = cache.read_bytes()
    cache.unlink()
    with FileStore(path=folder, cache_min_bytes=0) as reader:
        events = list(reader.iter_events("run-primary"))
    assert [e["data"]["x"] for e in events] == [float(i) for i in range(n_events)]
    assert cache.read_bytes() == written
