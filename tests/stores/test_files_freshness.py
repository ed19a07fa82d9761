"""Runs written by other processes are visible at once, without listing the directory per
lookup.

Real directories and real subprocesses: a second process that uses broker_v1 (its runs are
found through the shared index and the links its writer records, with no listing), and a
plain JSONL writer that knows nothing of the index (found by one listing of the directory
per change, names only).  Appends to an open foreign run, deleted run files, and a second
entry hidden in the same clock tick (the racy mtime) are covered too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from files_harness import index_statements

from broker_v1 import Broker
from broker_v1.stores.files import FileStore
from broker_v1.stores.files import _links as links_module
from broker_v1.stores.files import _scan as scan_module
from broker_v1.stores.files import _stepwise as stepwise_module

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0

# Writes one run through broker_v1 (the RunEngine process of a beamline).
OUR_WRITER = r"""
import sys
from broker_v1.stores.files import FileStore
path, uid, t = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = FileStore(path=path)
store.insert("start", {"uid": uid, "time": t, "scan_id": 7, "plan_name": "ours"})
store.insert("stop", {"uid": uid + "-stop", "run_start": uid, "time": t + 1,
                      "exit_status": "success"})
store.close()
"""

# Records short runs back to back through broker_v1 (a RunEngine as fast as it goes).
OUR_RECORDER = r"""
import sys
from broker_v1.stores.files import FileStore
path, runs, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
store = FileStore(path=path)
for i in range(runs):
    uid = f"rec-{i}"
    store.insert("start", {"uid": uid, "time": t + i, "scan_id": i, "plan_name": "rec"})
    store.insert("stop", {"uid": uid + "-stop", "run_start": uid, "time": t + i + 0.5,
                          "exit_status": "success"})
store.close()
"""

# Appends [name, doc] lines with nothing but json (a suitcase-jsonl-style writer).
PLAIN_WRITER = r"""
import json, sys
path, lines = sys.argv[1], json.loads(sys.argv[2])
with open(path, "a") as f:
    for name, doc in lines:
        f.write(json.dumps([name, doc]) + "\n")
"""


def _run(code: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env, timeout=120)


def _start(uid: str, t: float, plan: str = "plain") -> dict[str, Any]:
    return {"uid": uid, "time": t, "scan_id": 8, "plan_name": plan}


def _stop(uid: str, t: float) -> dict[str, Any]:
    return {"uid": uid + "-stop", "run_start": uid, "time": t, "exit_status": "success"}


class _Listings:
    """Counts directory listings made by the scanner."""

    def __init__(self) -> None:
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def listdir(self, path: Any) -> list[str]:
        self.count += 1
        return os.listdir(path)

    def scandir(self, path: Any) -> Any:
        self.count += 1
        return os.scandir(path)


@pytest.fixture
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Broker, _Listings, Path]:
    """A store with a few runs, whose directory mtime is old (trusted), open in this
    process; the scanner's listings are counted."""
    directory = tmp_path / "store"
    seed = FileStore(path=directory)
    for i in range(3):
        uid = f"seed-{i}"
        seed.insert("start", _start(uid, T0 + i, "seed"))
        seed.insert("stop", _stop(uid, T0 + i + 0.5))
    seed.close()
    old = time.time() - 3600
    os.utime(directory, (old, old))
    listings = _Listings()
    monkeypatch.setattr(scan_module, "os", listings)
    db = Broker(FileStore(path=directory), timezone="UTC")
    assert db[-1].start["uid"] == "seed-2"
    listings.count = 0
    return db, listings, directory


def test_a_run_written_by_another_broker_v1_process_is_seen_without_listing(reader: Any) -> None:
    db, listings, directory = reader
    _run(OUR_WRITER, str(directory), "ours-1", str(T0 + 100))
    assert db[-1].start["uid"] == "ours-1"
    assert db["ours-1"].stop["exit_status"] == "success"
    assert [h.start["uid"] for h in db(plan_name="ours")] == ["ours-1"]
    assert listings.count == 0  # the writer's link in the index explained the change


def test_a_reader_polling_a_recording_writer_waits_for_its_links_instead_of_listing(
    reader: Any,
) -> None:
    """A lookup can see a new run file a fraction of a millisecond before its writer's
    link is in the index; it waits for the link (briefly) rather than list the folder, so
    polling ``db[-1]`` while broker_v1 records lists almost never (without the wait, 170 of
    3,100 polls listed here; with it, at most one)."""
    db, listings, directory = reader
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runs = 300
    writer = subprocess.Popen([sys.executable, "-c", OUR_RECORDER, str(directory), str(runs),
                               str(T0 + 1000)], env=env)
    try:
        polls = 0
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            if db[-1].start["uid"].startswith("rec-"):  # the writer is under way
                polls += 1
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert db[-1].start["uid"] == f"rec-{runs - 1}"
    assert polls >= 20
    assert listings.count <= max(3, polls // 100), (listings.count, polls)


def test_a_run_written_by_a_plain_jsonl_writer_is_seen_after_one_listing(reader: Any) -> None:
    db, listings, directory = reader
    uid = "plain-1"
    _run(PLAIN_WRITER, str(directory / f"{uid}.jsonl"),
         json.dumps([["start", _start(uid, T0 + 200)], ["stop", _stop(uid, T0 + 201)]]))
    assert db[-1].start["uid"] == uid
    assert db[uid].stop["exit_status"] == "success"
    assert [h.start["uid"] for h in db(plan_name="plain")] == [uid]
    assert listings.count == 1  # one listing for the change, not one per lookup
    for _ in range(5):
        assert db[-1].start["uid"] == uid
    assert listings.count == 1


def test_a_foreign_run_appended_after_being_indexed_is_reread(reader: Any) -> None:
    db, _, directory = reader
    uid, path = "growing", directory / "growing.jsonl"
    _run(PLAIN_WRITER, str(path), json.dumps([["start", _start(uid, T0 + 300)]]))
    assert db[-1].start["uid"] == uid
    assert db[-1].stop == {}
    _run(PLAIN_WRITER, str(path), json.dumps([["stop", _stop(uid, T0 + 301)]]))
    assert db[-1].stop["exit_status"] == "success"
    assert [h.start["uid"] for h in db(**{"stop.exit_status": "success"})][:1] == [uid]


def test_a_deleted_run_file_disappears(reader: Any) -> None:
    db, _, directory = reader
    (directory / "seed-2.jsonl").unlink()
    assert db[-1].start["uid"] == "seed-1"
    assert [h.start["uid"] for h in db(plan_name="seed")] == ["seed-1", "seed-0"]
    with pytest.raises(KeyError):
        db["seed-2"]


def test_an_entry_hidden_in_the_same_clock_tick_is_found_by_the_recheck(
        reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file created in the clock tick of the mtime already seen leaves the directory mtime
    unchanged; the racy mtime is confirmed by one more listing once it is old enough."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 0.3)
    _run(PLAIN_WRITER, str(directory / "first.jsonl"),
         json.dumps([["start", _start("first", T0 + 400)], ["stop", _stop("first", T0 + 401)]]))
    assert db[-1].start["uid"] == "first"  # listed; that mtime is racy
    seen = os.stat(directory)
    _run(PLAIN_WRITER, str(directory / "hidden.jsonl"),
         json.dumps([["start", _start("hidden", T0 + 500)], ["stop", _stop("hidden", T0 + 501)]]))
    os.utime(directory, ns=(seen.st_atime_ns, seen.st_mtime_ns))  # the same tick
    time.sleep(0.4)
    assert db[-1].start["uid"] == "hidden"
    assert listings.count == 2


def _hide(directory: Path, uid: str, t: float) -> None:
    """Write a plain run file in the clock tick of the directory mtime already seen."""
    seen = os.stat(directory)
    _run(PLAIN_WRITER, str(directory / f"{uid}.jsonl"),
         json.dumps([["start", _start(uid, t)], ["stop", _stop(uid, t + 1)]]))
    os.utime(directory, ns=(seen.st_atime_ns, seen.st_mtime_ns))


class _Steps:
    """Counts the slices a stepwise confirmation reads (each still reads the directory)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        step = stepwise_module._StepwiseListing.step

        def counted(listing: Any, known: Any) -> list[str]:
            self.count += 1
            return step(listing, known)

        monkeypatch.setattr(stepwise_module._StepwiseListing, "step", counted)


@pytest.fixture
def stepwise(reader: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Broker, _Listings, Path,
                                                                     _Steps]:
    """``reader`` whose racy mtimes are confirmed a slice of one name per lookup (as in a
    big directory), after a first listing that found the run ``first``, and with an entry
    ``hidden`` made since in the clock tick that listing saw; the confirmation is due."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 0.3)
    monkeypatch.setattr(scan_module, "_CONFIRM_STEPWISE_OVER_NAMES", 0)
    monkeypatch.setattr(stepwise_module, "_BATCH", 1)
    monkeypatch.setattr(stepwise_module, "STEP_S", 0.0)
    _run(PLAIN_WRITER, str(directory / "first.jsonl"),
         json.dumps([["start", _start("first", T0 + 400)], ["stop", _stop("first", T0 + 401)]]))
    assert db[-1].start["uid"] == "first"  # listed; that mtime is racy
    assert listings.count == 1
    _hide(directory, "hidden", T0 + 500)
    time.sleep(0.4)
    return db, listings, directory, _Steps(monkeypatch)


def test_a_big_directory_confirms_a_racy_mtime_a_slice_per_lookup(stepwise: Any) -> None:
    """Where the last listing was big, the listing that confirms a racy mtime is read a
    slice per lookup rather than in one: here one name per slice, so as many slices as the
    directory has entries and one more that finds its end.  The hidden entry is found, and
    nothing is listed whole meanwhile."""
    db, listings, directory, steps = stepwise
    entries = len(os.listdir(directory))
    for _ in range(entries + 5):
        db[-1]
        if db.store._scan._confirming is None:
            break
    assert steps.count == entries + 1
    assert db[-1].start["uid"] == "hidden"
    assert listings.count == 1


def test_a_confirmation_running_long_is_finished_in_one_lookup(
        stepwise: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that polls rarely does not take a lookup per slice for long: a confirmation
    older than ``FINISH_AFTER_S`` reads the rest of the directory at its next lookup."""
    db, listings, directory, steps = stepwise
    monkeypatch.setattr(stepwise_module, "FINISH_AFTER_S", 0.05)
    db[-1]
    assert steps.count == 1 and db.store._scan._confirming is not None
    time.sleep(0.1)
    assert db[-1].start["uid"] == "hidden"
    assert steps.count == 2 and db.store._scan._confirming is None
    assert listings.count == 1


def test_a_change_no_link_explains_lists_at_once_during_a_confirmation(stepwise: Any) -> None:
    """A run file a plain writer adds while a confirmation is read slice by slice is not
    left to it: the unexplained change is listed at once, which confirms everything."""
    db, listings, directory, steps = stepwise
    db[-1]
    assert db.store._scan._confirming is not None
    time.sleep(0.02)  # a clock tick later
    _run(PLAIN_WRITER, str(directory / "later.jsonl"),
         json.dumps([["start", _start("later", T0 + 600)], ["stop", _stop("later", T0 + 601)]]))
    assert db[-1].start["uid"] == "later"
    assert listings.count == 2
    assert db.store._scan._confirming is None
    assert db["hidden"].start["time"] == T0 + 500


class _Pages:
    """Counts the slices of the index's names read before a first confirmation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        step = stepwise_module._IndexedNames.step

        def counted(loader: Any) -> bool:
            self.count += 1
            return step(loader)

        monkeypatch.setattr(stepwise_module._IndexedNames, "step", counted)


@pytest.fixture
def unlisted(reader: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Broker, _Listings, Path,
                                                                     _Pages]:
    """``reader``, which opened an index already up to date and so never listed the
    directory, after a broker_v1 writer's run (explained by its link: racy until confirmed)
    and an entry ``hidden`` made in that clock tick; the confirmation is due, read a slice
    of one name per lookup (as in a big directory)."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 0.3)
    monkeypatch.setattr(scan_module, "_CONFIRM_STEPWISE_OVER_NAMES", 0)
    monkeypatch.setattr(stepwise_module, "_NAMES_PER_QUERY", 1)
    monkeypatch.setattr(stepwise_module, "_BATCH", 1)
    monkeypatch.setattr(stepwise_module, "STEP_S", 0.0)
    assert db.store._scan._listed is None
    _run(OUR_WRITER, str(directory), "ours-1", str(T0 + 100))
    assert db[-1].start["uid"] == "ours-1"
    _hide(directory, "hidden", T0 + 500)
    time.sleep(0.4)
    return db, listings, directory, _Pages(monkeypatch)


def test_a_reader_that_never_listed_confirms_against_the_index_a_slice_per_lookup(
        unlisted: Any) -> None:
    """A reader that has not listed the directory compares the listing that confirms a racy
    mtime with the names the index holds, read a slice per lookup (one name each here),
    then reads the directory a slice per lookup.  Nothing is listed whole, where the reader
    used to list the big directory once (0.2-0.3 s at 100,000 runs)."""
    db, listings, directory, pages = unlisted
    scan = db.store._scan
    indexed = len(db.store._index.read("SELECT name FROM files"))
    for _ in range(2 * indexed + len(os.listdir(directory)) + 10):
        db[-1]
        if scan._confirming is None and scan._indexed_names is None:
            break
    assert pages.count == indexed + 1  # one name per slice, then the empty one that ends them
    assert db[-1].start["uid"] == "hidden"
    assert listings.count == 0


def test_a_first_confirmation_running_long_is_finished_in_one_lookup(
        unlisted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit of a confirmation counts from when it began to read the index's names:
    past it, the next lookup reads the rest of them and the whole listing."""
    db, listings, directory, pages = unlisted
    monkeypatch.setattr(stepwise_module, "FINISH_AFTER_S", 0.05)
    scan = db.store._scan
    db[-1]
    assert pages.count == 1 and scan._indexed_names is not None
    time.sleep(0.1)
    assert db[-1].start["uid"] == "hidden"
    assert pages.count == 2
    assert scan._indexed_names is None and scan._confirming is None
    assert listings.count == 0


def _unexplained_entry(directory: Path) -> tuple[int, int]:
    """Make an entry no link explains (yet); the directory mtime before and after."""
    before = os.stat(directory).st_mtime_ns
    (directory / "notes.txt").write_text("")
    after = os.stat(directory).st_mtime_ns
    assert after != before
    return before, after


def _newest_while_linked_late(db: Broker, before: int, after: int, delay: float) -> str:
    """``db[-1]``'s uid, looked up while another connection records the link ``before`` ->
    ``after`` ``delay`` seconds from now (a writer committing its link late)."""
    from broker_v1.stores.files._links import record_link

    def link_late() -> None:
        time.sleep(delay)
        raw = sqlite3.connect(db.store._index.location, isolation_level=None)
        try:
            record_link(raw, before, after, prune=False)
        finally:
            raw.close()

    writer = threading.Thread(target=link_late)
    writer.start()
    try:
        return str(db[-1].start["uid"])
    finally:
        writer.join()


def test_a_reader_that_never_listed_a_big_directory_waits_for_a_late_link(
        reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before its first listing a reader does not know what one costs; it estimates it from
    how many files the index holds, so in a big directory it waits for a late link as a
    reader that listed would.  A listing is made costly per name here, so that this small
    directory counts as big; the link comes 30 ms after the entry."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 60.0)  # no recheck listing here
    monkeypatch.setattr(scan_module, "_FIRST_LISTING_S_PER_NAME", 1.0)
    monkeypatch.setattr(links_module, "_LINK_WAIT_MAX_S", 5.0)
    assert db.store._scan._listed is None
    before, after = _unexplained_entry(directory)
    assert _newest_while_linked_late(db, before, after, 0.03) == "seed-2"
    assert listings.count == 0


@pytest.mark.parametrize("recording", [True, False])
def test_a_reader_waits_longer_for_a_late_link_while_one_of_our_writers_records(
        reader: Any, monkeypatch: pytest.MonkeyPatch, recording: bool) -> None:
    """While one of our writers records (a link starts in the second before the change), a
    late link is the likely cause of an unexplained change, so the reader waits longer for
    it (here up to 1.5 s: half the estimated listing) before listing; otherwise it waits the
    usual share (20 ms at most) and lists.  The link comes 0.2 s after the entry."""
    from broker_v1.stores.files._links import link_key, record_link

    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 60.0)  # no recheck listing here
    monkeypatch.setattr(scan_module, "_FIRST_LISTING_S_PER_NAME", 1.0)
    monkeypatch.setattr(links_module, "_LINK_WAIT_MAX_WHILE_RECORDING_S", 2.0)
    before, after = _unexplained_entry(directory)
    if recording:  # the run our writer made just before
        db.store._index.write(
            lambda conn: record_link(conn, before - 10**8, before, prune=False))
    else:  # the links of the fixture's runs, recorded a moment ago, go
        db.store._index.write(lambda conn: conn.execute(
            "DELETE FROM meta WHERE key >= ? AND key < ?", (link_key(0), link_key(10**19))))
    assert _newest_while_linked_late(db, before, after, 0.2) == "seed-2"
    assert listings.count == (0 if recording else 1)


def test_a_reader_whose_listings_are_costly_waits_longer_for_a_late_link(
        reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a listing is costly (a big directory), a reader waits for the link of a change
    made a moment ago up to a share of what its last listing took, rather than listing
    again: here the link is committed 30 ms after the entry was made (a writer slowed by a
    busy machine).  The share is raised so that this small directory's listing counts as
    costly."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 60.0)  # no recheck listing here
    monkeypatch.setattr(links_module, "_LINK_WAIT_SHARE_OF_LISTING", 1e6)
    monkeypatch.setattr(links_module, "_LINK_WAIT_MAX_S", 5.0)
    _run(PLAIN_WRITER, str(directory / "first.jsonl"),
         json.dumps([["start", _start("first", T0 + 400)], ["stop", _stop("first", T0 + 401)]]))
    assert db[-1].start["uid"] == "first"
    assert listings.count == 1  # what a listing costs is known now
    time.sleep(0.02)  # a clock tick later
    before, after = _unexplained_entry(directory)
    assert _newest_while_linked_late(db, before, after, 0.03) == "first"
    assert listings.count == 1


def _in_transactions(statements: list[str]) -> list[str]:
    """The statements run between a BEGIN and its COMMIT (but the busy timeout's)."""
    inside, out = False, []
    for statement in statements:
        if statement.startswith("BEGIN"):
            inside = True
        elif statement == "COMMIT":
            inside = False
        elif inside and not statement.startswith("PRAGMA"):
            out.append(statement)
    return out


def test_the_recheck_listing_commits_nothing_for_runs_already_indexed(
        reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing that confirms a racy mtime finds the runs a broker_v1 writer recorded
    since the last listing, all indexed already: it reads their rows and indexes nothing
    (a transaction would hold the write lock the recording writer needs; the only write
    left is the settled folder time, for the next process); a plain file among them is
    indexed."""
    db, listings, directory = reader
    monkeypatch.setattr(scan_module, "_DIR_TRUST_SECONDS", 0.3)
    _run(PLAIN_WRITER, str(directory / "first.jsonl"),
         json.dumps([["start", _start("first", T0 + 400)], ["stop", _stop("first", T0 + 401)]]))
    assert db[-1].start["uid"] == "first"  # listed (compared with the index)
    time.sleep(0.4)
    assert db[-1].start["uid"] == "first"  # listed again: that mtime was racy
    assert listings.count == 2
    _run(OUR_RECORDER, str(directory), "5", str(T0 + 600))
    assert db[-1].start["uid"] == "rec-4"  # explained by links; the mtime is racy
    assert listings.count == 2
    time.sleep(0.4)
    with index_statements(db.store) as statements:
        assert db[-1].start["uid"] == "rec-4"
    assert listings.count == 3  # the recheck: the five runs are new to it
    assert {f"rec-{i}.jsonl" for i in range(5)} <= db.store._scan._listed
    assert all(s.startswith("INSERT OR REPLACE INTO meta (key, value) VALUES ('dir_mtime'")
               for s in _in_transactions(statements))
    _run(PLAIN_WRITER, str(directory / "plain.jsonl"),
         json.dumps([["start", _start("plain", T0 + 800)], ["stop", _stop("plain", T0 + 801)]]))
    assert db[-1].start["uid"] == "plain"
    assert db["rec-1"].stop["exit_status"] == "success"


def test_a_chain_of_links_is_read_in_one_query_and_one_set_back_is_followed(
        tmp_path: Path) -> None:
    """The links between the folder time a reader knows and the one it sees are read at
    once (one per run created meanwhile); a link whose start lies past the time seen (the
    clock was set back) is looked up on its own; a time no chain reaches is not explained."""
    from broker_v1.stores.files._links import record_link

    with FileStore(path=tmp_path) as store:
        def link(before: int, after: int) -> None:
            store._index.write(lambda conn: record_link(conn, before, after, prune=False))

        k = 1_700_000_000 * 10**9
        for i in range(10):
            link(k + i, k + i + 1)
        store._scan._names_known()  # estimated once per process before its first listing
        with index_statements(store) as statements:
            assert store._scan._links.explained(k, k + 10)
        assert len([s for s in statements if s.startswith("SELECT")]) == 1
        assert not store._scan._links.explained(k, k + 11)
        later = k + 10**9
        link(k + 10, later + 50)  # then the clock is set back:
        link(later + 50, later + 5)
        with index_statements(store) as statements:
            assert store._scan._links.explained(k, later + 5)
        assert len([s for s in statements if s.startswith("SELECT")]) == 2
        assert not store._scan._links.explained(k + 3, later + 6)


def _record_chain(store: FileStore, start: int, links: int) -> None:
    """Record in one transaction a chain of ``links`` links, one nanosecond each, from
    directory mtime ``start``."""
    from broker_v1.stores.files._links import record_link

    def add_links(conn: Any) -> None:
        for i in range(links):
            record_link(conn, start + i, start + i + 1, prune=False)

    store._index.write(add_links)


def test_a_reader_follows_a_longer_chain_of_links_in_a_bigger_directory(
        tmp_path: Path) -> None:
    """A reader reads a chain of up to 64 links at once (and 64 more one by one), or one per
    eight names of its last listing where that is more (following a link costs about what
    listing a few names does): after a listing of 2,000 names, 150 links are followed in
    one read where a reader that listed a small directory would list again."""
    with FileStore(path=tmp_path) as store:
        k = 1_700_000_000 * 10**9
        _record_chain(store, k, 150)
        assert not store._scan._links.explained(k, k + 150)  # a small directory: 128 at most
        for i in range(2000):
            (tmp_path / f"notes-{i}.txt").touch()
        store._scan.refresh()  # an unexplained change: listed
        assert len(store._scan._listed) >= 2000
        with index_statements(store) as statements:
            assert store._scan._links.explained(k, k + 150)
        assert len([s for s in statements if s.startswith("SELECT")]) == 1
        assert not store._scan._links.explained(k, k + 151)


def test_a_reader_that_never_listed_follows_a_chain_as_long_as_the_index_is_big(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before its first listing a reader sizes the chain of links it follows by the files
    the index holds (one query, once): a reader opening a big store that our writers added
    many runs to since it was last settled follows their links rather than list it.  Links
    per name are raised so that this small store's three files count for 150 links."""
    seed = FileStore(path=tmp_path)
    for i in range(3):
        seed.insert("start", _start(f"seed-{i}", T0 + i, "seed"))
    seed.close()
    monkeypatch.setattr(links_module, "_LINKS_PER_NAME_LISTED", 50.0)
    with FileStore(path=tmp_path) as store:
        k = 1_700_000_000 * 10**9
        _record_chain(store, k, 150)
        assert store._scan._listed is None
        assert store._scan._links.explained(k, k + 150)
        assert not store._scan._links.explained(k, k + 151)


def test_links_are_recorded_per_created_file_and_old_ones_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run file a store creates leaves one link (folder mtime before -> after) in the
    index; links older than a minute are pruned by a start, at most once per
    ``LINK_PRUNE_EVERY_S`` per writer (the first start prunes)."""
    from broker_v1.stores.files import _writer as writer_module

    monkeypatch.setattr(writer_module, "LINK_PRUNE_EVERY_S", 0.3)
    store = FileStore(path=tmp_path / "s")

    def link_keys() -> list[str]:
        rows = store._index_rows("SELECT key FROM meta WHERE key LIKE 'dir_link:%'")
        return [key for (key,) in rows]

    def create_run(uid: str, t: float) -> None:
        old = time.time() - 3600
        os.utime(tmp_path / "s", (old, old))  # so the creation surely moves the mtime
        store.insert("start", _start(uid, t, "ours"))
        store.insert("stop", _stop(uid, t + 1))

    create_run("r1", T0)
    links = store._index_rows("SELECT key, value FROM meta WHERE key LIKE 'dir_link:%'")
    assert len(links) == 1
    (key, after), = links
    assert int(after) > int(key.split(":")[1])

    def add_old(conn: Any) -> None:
        links_module.record_link(conn, 5, 6)  # long before any real mtime

    store._index.write(add_old)
    create_run("r2", T0 + 2)  # within the interval of r1's pruning: kept
    assert links_module.link_key(5) in link_keys() and len(link_keys()) == 3
    time.sleep(0.35)
    create_run("r3", T0 + 4)
    keys = link_keys()
    assert links_module.link_key(5) not in keys and len(keys) == 3
    store.close()


def test_quick_starts_prune_links_once(tmp_path: Path) -> None:
    """Runs started in quick succession record a link each but prune old links once (the
    pruning statement was one of the dozen of every start's index transaction)."""
    store = FileStore(path=tmp_path / "s")
    with index_statements(store) as statements:
        for i in range(8):
            old = time.time() - 3600
            os.utime(tmp_path / "s", (old, old))  # so every create moves the mtime
            store.insert("start", _start(f"q{i}", T0 + 2 * i, "ours"))
            store.insert("stop", _stop(f"q{i}", T0 + 2 * i + 1))
    links = [s for s in statements if s.startswith("INSERT OR REPLACE INTO meta")
             and "dir_link:" in s]
    prunes = [s for s in statements if s.startswith("DELETE FROM meta") and "dir_link:" in s]
    assert len(links) == 8
    assert len(prunes) == 1
    store.close()
