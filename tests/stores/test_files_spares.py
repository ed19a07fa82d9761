"""Run files made ahead of their runs (``stores/files/_spares.py``).

The store's background thread creates the next run's file as an empty spare in
``.broker_v1/spare/``; a start links it to ``<uid>.jsonl`` (failing, as ``O_EXCL`` did, when
the name exists) and drops the spare's name.  These tests check the file a run gets is that
spare, that nothing is left behind (at close, or by processes that are gone), and that a
spare that cannot be used never costs a run.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from files_harness import count_run_docs

from broker_v1.stores.files import FileStore
from broker_v1.stores.files._spares import PROBE_EVERY

pytestmark = pytest.mark.skipif(os.name != "posix", reason="spare run files are POSIX-only")



def run_docs(uid: str, n_events: int = 2) -> list[tuple[str, dict[str, Any]]]:
    return count_run_docs(uid, n_events)


def store_making_spares(directory: Path) -> FileStore:
    """A files store whose writer takes every create for a slow one, so it makes run files
    ahead from its first run on (as it does on a disk where creating a file is slow)."""
    store = FileStore(path=directory)
    store._writer._spares.slow_create_s = 0.0
    return store


def record(store: FileStore, uid: str) -> None:
    for name, doc in run_docs(uid):
        store.insert(name, doc)


def spare_folder(directory: Path) -> Path:
    return directory / ".broker_v1" / "spare"


def wait_for_spares(directory: Path, count: int = 1) -> list[Path]:
    """The spare files once ``count`` exist (the background thread makes them)."""
    deadline = time.monotonic() + 10
    while True:
        folder = spare_folder(directory)
        found = sorted(folder.iterdir()) if folder.is_dir() else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.005)


def spare_ready(store: FileStore) -> None:
    """Wait until the spare being made is handed over (its file appears a moment before)."""
    made = store._writer._spares._next
    if made is not None:
        made.result(timeout=10)


def store_with_a_spare(directory: Path, first_run: str) -> tuple[FileStore, Path]:
    """A store making spares that has recorded ``first_run``, and the spare made after its
    start, once it is ready for the next run."""
    store = store_making_spares(directory)
    record(store, first_run)  # a slow create: a spare is made after the start
    spares = wait_for_spares(directory)
    spare_ready(store)
    assert len(spares) == 1
    return store, spares[0]


def check_run(store: FileStore, uid: str) -> None:
    assert store.get_run_start(uid)["uid"] == uid
    assert store.get_run_stop(uid)["uid"] == f"{uid}-stop"
    events = [e for d in store.get_descriptors(uid) for e in store.iter_events(d["uid"])]
    assert [e["data"]["x"] for e in events] == [0.0, 1.0]


def test_a_run_gets_the_file_made_ahead_for_it(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store, spare = store_with_a_spare(directory, "first")
    assert spare.stat().st_size == 0
    spare_inode = spare.stat().st_ino
    record(store, "second")
    # The background thread drops the spare's own name, then makes the next spare.
    spare_ready(store)
    run_file = directory / "second.jsonl"
    assert run_file.stat().st_ino == spare_inode
    assert run_file.stat().st_nlink == 1  # the spare's own name is gone
    assert not spare.exists()
    # The same permissions as a file created directly (the first run's was).
    assert run_file.stat().st_mode == (directory / "first.jsonl").stat().st_mode
    check_run(store, "second")
    store.close()
    reopened = FileStore(path=directory)
    check_run(reopened, "first")
    check_run(reopened, "second")
    reopened.close()


def test_closing_the_store_removes_its_unused_spare(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = store_making_spares(directory)
    record(store, "one")
    assert wait_for_spares(directory)
    store.close()
    assert list(spare_folder(directory).iterdir()) == []


def test_spares_left_by_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    """A killed writer's unused spare and a second name it left for a run file are swept by
    the next writer (one making no spares of its own too); a running process's spare and the
    run file itself are kept."""
    directory = tmp_path / "store"
    store = store_making_spares(directory)
    record(store, "kept")
    store.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    folder = spare_folder(directory)
    (folder / f"{dead_pid}-unused.jsonl").write_bytes(b"")
    os.link(directory / "kept.jsonl", folder / f"{dead_pid}-linked.jsonl")
    alive = folder / "1-of-a-running-process.jsonl"  # pid 1 always runs
    alive.write_bytes(b"")
    assert (directory / "kept.jsonl").stat().st_nlink == 2

    store = FileStore(path=directory)
    store._writer._spares.slow_create_s = 10.0  # every create quick: no spares made
    record(store, "next")
    leftovers = [folder / f"{dead_pid}-unused.jsonl", folder / f"{dead_pid}-linked.jsonl"]
    deadline = time.monotonic() + 10
    # The sweep runs in the background and unlinks in listing order: wait for both.
    while any(p.exists() for p in leftovers) and time.monotonic() < deadline:
        time.sleep(0.005)
    names = {p.name for p in folder.iterdir()}
    assert f"{dead_pid}-unused.jsonl" not in names
    assert f"{dead_pid}-linked.jsonl" not in names
    assert alive.name in names
    assert (directory / "kept.jsonl").stat().st_nlink == 1
    check_run(store, "kept")
    check_run(store, "next")
    store.close()


def test_a_spare_removed_under_the_store_costs_no_run(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store, _ = store_with_a_spare(directory, "a")
    for spare in spare_folder(directory).iterdir():
        spare.unlink()  # e.g. someone cleaned the hidden folder
    record(store, "b")  # created directly
    assert wait_for_spares(directory)  # and spares are made again
    record(store, "c")
    spare_ready(store)  # the spare names used are dropped before the next spare is made
    for uid in "abc":
        check_run(store, uid)
        assert (directory / f"{uid}.jsonl").stat().st_nlink == 1
    store.close()


def test_a_start_already_stored_keeps_the_spare_for_the_next_run(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store, spare = store_with_a_spare(directory, "a")
    inode = spare.stat().st_ino
    store.insert(*run_docs("a")[0])  # the same start again: a no-op
    assert spare.exists()
    record(store, "b")
    assert (directory / "b.jsonl").stat().st_ino == inode
    check_run(store, "b")
    store.close()


def _child_records(directory: str) -> None:
    store = store_making_spares(directory)
    record(store, "child")
    store.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs the fork start method")
def test_a_forked_child_never_uses_its_parents_spare(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = store_making_spares(directory)
    record(store, "parent-1")
    assert wait_for_spares(directory)
    child = multiprocessing.get_context("fork").Process(
        target=_child_records, args=(str(directory),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    record(store, "parent-2")
    spare_ready(store)
    inodes = {(directory / f"{uid}.jsonl").stat().st_ino
              for uid in ("parent-1", "child", "parent-2")}
    assert len(inodes) == 3
    for uid in ("parent-1", "child", "parent-2"):
        assert (directory / f"{uid}.jsonl").stat().st_nlink == 1
        check_run(store, uid)
    store.close()


def test_where_creating_files_is_quick_no_spares_are_made(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = FileStore(path=directory)
    store._writer._spares.slow_create_s = 10.0  # every create is quicker than this
    for uid in "abcde":
        record(store, uid)
    assert not spare_folder(directory).exists()
    for uid in "abcde":
        check_run(store, uid)
    store.close()


def test_spares_stop_when_a_timed_create_is_quick_and_resume_after_a_slow_one(
        tmp_path: Path) -> None:
    """While files are made ahead, every ``PROBE_EVERY`` runs one file is created directly and
    timed; a quick one stops the spares (the one made is still used), the next slow create
    starts them again."""
    directory = tmp_path / "store"
    store = store_making_spares(directory)
    spares = store._writer._spares
    inodes = []

    def record_and_note(uid: str) -> None:
        record(store, uid)
        spare_ready(store)
        inodes.append((directory / f"{uid}.jsonl").stat().st_ino)

    record_and_note("slow")  # a slow create: a spare is made after its start
    assert spares.ahead
    for i in range(PROBE_EVERY):
        record_and_note(f"ahead{i}")
    assert spares.ahead  # every create slow so far; the next run is the probe
    made = wait_for_spares(directory)
    assert len(made) == 1
    spare_inode = made[0].stat().st_ino
    spares.slow_create_s = 10.0  # from now on every create is quick
    record_and_note("probe")
    assert not spares.ahead
    assert inodes[-1] != spare_inode and made[0].exists()  # the spare waits for the next run
    record_and_note("from-the-last-spare")
    assert inodes[-1] == spare_inode
    assert list(spare_folder(directory).iterdir()) == []
    record_and_note("direct")
    assert store._writer._spares._next is None
    assert list(spare_folder(directory).iterdir()) == []
    spares.slow_create_s = 0.0  # the disk is slow again
    record_and_note("slow-again")
    assert spares.ahead
    made = wait_for_spares(directory)
    assert len(made) == 1
    inode = made[0].stat().st_ino
    record_and_note("from-a-spare")
    spare_ready(store)
    assert inodes[-1] == inode
    assert len(set(inodes)) == len(inodes)
    for uid in ["slow", *(f"ahead{i}" for i in range(PROBE_EVERY)), "probe",
                "from-the-last-spare", "direct", "slow-again", "from-a-spare"]:
        check_run(store, uid)
        assert (directory / f"{uid}.jsonl").stat().st_nlink == 1
    store.close()
    assert list(spare_folder(directory).iterdir()) == []


def test_spare_names_carry_the_pid_a_tag_and_a_count(tmp_path: Path) -> None:
    """Spares are named ``<pid>-<tag>-<n>.jsonl``: the pid for the sweep, a random tag
    drawn once per process (again in a forked child) and a count, so making one draws no
    randomness; names never repeat."""
    directory = tmp_path / "store"
    store = store_making_spares(directory)
    spares = store._writer._spares
    made = [spares._make() for _ in range(3)]
    names = [Path(m[1]).name for m in made if m is not None]
    assert len(set(names)) == 3
    pid, tag, _ = names[0].split("-")
    assert pid == str(os.getpid())
    assert [n.split("-")[:2] for n in names] == [[pid, tag]] * 3
    assert [n.split("-")[2] for n in names] == ["1.jsonl", "2.jsonl", "3.jsonl"]
    spares.forget_after_fork()  # as a forked child does: a tag of its own
    child = spares._make()
    assert child is not None and Path(child[1]).name.split("-")[1] != tag
    for fd, path in [*made, child]:  # type: ignore[misc]
        os.close(fd)
        os.unlink(path)
    store.close()
