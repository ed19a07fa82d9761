"""Faults: a MongoDB server that goes away mid-read and comes back; a disk that fills up; a
folder the store may not write.  Nothing acknowledged is lost, nothing half-done is shown.

(The file store's SIGKILL-the-writer tests live in ``tests/stores/test_files_layout.py``.)

* **MongoDB**: our own wire-protocol test server (secantusdb, started from the venv that
  ``.ci/mongo_server.py`` uses) on a free port with on-disk storage.  Searches, event pages
  and tables are read in small pages; the server is SIGKILLed between pages; the next read
  raises :class:`StoreUnavailable` naming the server (never a short answer that looks whole);
  the server is restarted on the same port and the *same* store object reads everything again;
  a write refused while it was down is retried safely.  Skipped when no test server is
  installed (``/tmp/secantus-venv`` or ``.ci/secantus-venv``).
* **Disk full**: a real 512 KiB tmpfs when this process may mount one (root in a container),
  and, always, ``ENOSPC`` / ``EACCES`` / ``EIO`` injected at the operating-system boundary of
  the file store (its ``os.write``/``os.open``/``os.fsync``) in this process, including a
  write cut short part-way through a line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
import types
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_corpus import (  # noqa: F401
    REPO,
    _corpus_reporter,
    load_module,
    record,
    snapshot,
    tree_state,
)

from broker_v1 import Broker
from broker_v1.errors import StoreUnavailable
from broker_v1.stores.files import FileStore
from broker_v1.stores.files import _spares as spares_module
from broker_v1.stores.files import _writer as files_module

T0 = 1_700_000_000.0
SERVER_CANDIDATES = [Path("/tmp/secantus-venv"), REPO / ".ci" / "secantus-venv"]


# ---------------------------------------------------------------------- a server of our own
def _ci_helpers() -> types.ModuleType:
    """``.ci/mongo_server.py`` as a module (free_port, ping, _terminate)."""
    return load_module(".ci/mongo_server.py", "bv1_ci_mongo_server")


def _server_binary() -> Path:
    for venv in SERVER_CANDIDATES:
        binary = venv / "bin" / "secantusd-py"
        if binary.exists():
            return binary
    pytest.skip("no MongoDB wire-protocol test server installed (secantusd-py in "
                "/tmp/secantus-venv or .ci/secantus-venv); see .ci/run")
    raise AssertionError  # unreachable


class Server:
    """One secantusd-py process on a fixed port over a storage folder that survives restarts."""

    def __init__(self, binary: Path, storage: Path, log: Path) -> None:
        self.ci = _ci_helpers()
        self.binary, self.storage, self.log = binary, storage, log
        self.port = int(self.ci.free_port())
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", str(self.storage), "--sync-on-commit",
                 "--log-level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd-py exited: {self.log.read_text()[-2000:]}")
            if self.ci.ping("127.0.0.1", self.port):
                return
            time.sleep(0.2)
        raise RuntimeError("secantusd-py did not answer ping within 60 s")

    def kill(self) -> None:
        """SIGKILL the server (its own process group, which only it leads) and reap it."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ci._terminate(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A test server of our own (skips when none is installed), stopped afterwards."""
    binary = _server_binary()
    srv = Server(binary, tmp_path / "mongo-data", tmp_path / "secantusd.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _fill(db: Broker, n_runs: int, n_events: int) -> list[str]:
    """Runs with one primary stream each; the first run has ``n_events`` events."""
    uids = []
    for r in range(n_runs):
        uid = f"fault-{r:03d}-{uuid.uuid4().hex[:8]}"
        db.insert("start", {"uid": uid, "time": T0 + r, "scan_id": r, "plan_name": "scan"})
        db.insert("descriptor", {"uid": uid + "-d", "run_start": uid, "time": T0 + r + 0.1,
                                 "name": "primary",
                                 "data_keys": {"x": {"source": "x", "dtype": "number",
                                                     "shape": []}}})
        count = n_events if r == 0 else 2
        db.insert("event_page", {"uid": [f"{uid}-e{i}" for i in range(count)],
                                 "descriptor": uid + "-d",
                                 "time": [T0 + r + 0.2 + i * 1e-3 for i in range(count)],
                                 "seq_num": list(range(1, count + 1)),
                                 "data": {"x": [float(i) for i in range(count)]},
                                 "timestamps": {"x": [T0] * count}})
        db.insert("stop", {"uid": uid + "-s", "run_start": uid, "time": T0 + r + 0.9,
                           "exit_status": "success"})
        uids.append(uid)
    return uids[::-1]  # newest first


def _unavailable(err: StoreUnavailable, srv: Server) -> None:
    message = str(err)
    assert f"127.0.0.1:{srv.port}" in message and "Could not reach MongoDB" in message, message
    assert isinstance(err, ConnectionError)


def server_goes_away(srv: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     cycles: int) -> None:
    """Kill the server in the middle of paged reads ``cycles`` times; check each outcome."""
    from broker_v1.stores.mongo import MongoStore
    from broker_v1.stores.mongo import _store as mongo_module

    monkeypatch.setattr(mongo_module, "_START_PAGE", 4)  # a search is many queries
    uri = f"{srv.uri}/faults?serverSelectionTimeoutMS=400&connectTimeoutMS=400"
    store = MongoStore(uri=uri, page_size=5)
    db = Broker(store, timezone="UTC")
    uids = _fill(db, n_runs=20, n_events=40)
    table = db[uids[-1]].table()
    assert len(table) == 40
    for cycle in range(cycles):
        # 1. A search that pages through the runs: the server dies after the first header.
        results = iter(db(plan_name="scan"))
        seen = [next(results).start["uid"]]
        srv.kill()
        with pytest.raises(StoreUnavailable) as info:
            for header in results:
                seen.append(header.start["uid"])
        _unavailable(info.value, srv)
        assert seen == uids[: len(seen)] and len(seen) < len(uids)  # a true prefix, then error
        # 2. Event pages, a table and single lookups while it is down.
        with pytest.raises(StoreUnavailable):
            db[uids[-1]].table()
        with pytest.raises(StoreUnavailable):
            db[uids[0]]
        with pytest.raises(StoreUnavailable):
            store.count_runs({"plan_name": "scan"})
        # 3. A write refused while it is down.
        late = f"late-{cycle}-{uuid.uuid4().hex[:6]}"
        with pytest.raises(StoreUnavailable):
            db.insert("start", {"uid": late, "time": T0 + 100 + cycle, "plan_name": "late"})
        # 4. Back again: the same objects read everything, the write is retried safely.
        srv.start()
        assert [h.start["uid"] for h in db(plan_name="scan")] == uids
        assert db[uids[-1]].table().equals(table)
        db.insert("start", {"uid": late, "time": T0 + 100 + cycle, "plan_name": "late"})
        db.insert("start", {"uid": late, "time": T0 + 100 + cycle, "plan_name": "late"})
        assert store.count_runs({"plan_name": "late"}) == cycle + 1
        # 5. Dies between two event pages of one descriptor.
        descriptor = db[uids[-1]].descriptors[0]["uid"]
        pages = store.iter_event_pages(descriptor)
        first = next(pages)
        assert len(first["uid"]) == 5
        srv.kill()
        with pytest.raises(StoreUnavailable) as info:
            list(pages)
        _unavailable(info.value, srv)
        srv.start()
        assert sum(len(p["uid"]) for p in store.iter_event_pages(descriptor)) == 40
        record("faults/mongo server killed mid-read", "mongo", 5)
    store.close()


def test_mongo_server_goes_away_mid_read_and_comes_back(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads in progress when the server dies raise StoreUnavailable (never a short answer);
    after a restart the same store reads everything and a refused write is retried safely."""
    server_goes_away(server, tmp_path, monkeypatch, cycles=1)
    assert server.kills == 2


@pytest.mark.slow
def test_mongo_server_goes_away_ten_times(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, ten kill-and-restart cycles on one store (``-m slow``)."""
    server_goes_away(server, tmp_path, monkeypatch, cycles=10)
    assert server.kills == 20


# ---------------------------------------------------------------------- a disk that fills up
@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs mounted for this test (skips where mounting is not permitted)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "test_disk_full_simulated covers ENOSPC instead")
    try:
        yield mountpoint
    finally:
        # Lazy: detach even if a failed test left a file open on it.
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def _write_until_full(
        store: FileStore) -> tuple[set[tuple[str, str]], set[tuple[str, str]], int]:
    """Record runs until the disk is full; return what was acknowledged, what was refused
    after reaching its run file (the index could not record it), and how many refusals."""
    acked: set[tuple[str, str]] = set()
    in_file: set[tuple[str, str]] = set()
    refused = 0
    for r in range(2000):
        uid = f"full-{r:04d}"
        docs = [
            ("start", {"uid": uid, "time": T0 + r, "plan_name": "scan", "pad": "p" * (r % 97)}),
            ("descriptor", {"uid": uid + "-d", "run_start": uid, "time": T0 + r + 0.1,
                            "data_keys": {"x": {"source": "x", "dtype": "number",
                                                "shape": []}}}),
            *[("event", {"uid": f"{uid}-e{i}", "descriptor": uid + "-d",
                         "time": T0 + r + 0.2 + i, "seq_num": i + 1, "data": {"x": float(i)},
                         "timestamps": {"x": T0}}) for i in range(3)],
            ("stop", {"uid": uid + "-s", "run_start": uid, "time": T0 + r + 9}),
        ]
        for name, doc in docs:
            try:
                store.insert(name, doc)
            except StoreUnavailable as err:
                message = str(err)
                if "search index" in message:  # in the run file, not yet in the index
                    assert "database or disk is full" in message, message
                    in_file.add((name, doc["uid"]))
                else:
                    assert "No space left on device" in message, message
                    assert "Nothing was written" in message, message
                refused += 1
                break
            except Exception as err:  # a later document of a run whose start was refused
                assert "Insert the" in str(err), err
                refused += 1
                break
            acked.add((name, doc["uid"]))
        if refused > 20:
            break
    return acked, in_file, refused


def _everything(store: FileStore) -> set[tuple[str, str]]:
    found = set()
    for start in store.find_run_starts({}):
        for name, doc in store.iter_documents(start["uid"]):
            found.add((name, doc["uid"]))
    return found


def test_disk_full_on_a_real_tmpfs(tiny_tmpfs: Path) -> None:
    """On a real full disk every refused insert says why (and whether its line reached the run
    file); everything acknowledged reads back after reopening, with no torn line anywhere."""
    directory = tiny_tmpfs / "store"
    store = FileStore(path=directory, fsync_interval=0)
    acked, in_file, refused = _write_until_full(store)
    assert refused and len(acked) > 10
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn line would warn
        again = FileStore(path=directory, index_path=":memory:", torn_grace=0)
        found = _everything(again)
        assert acked <= found  # nothing acknowledged is lost
        assert found - acked <= in_file  # and nothing appears that was refused unwritten
        again.close()
    for path in directory.glob("*.jsonl"):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), path
    record("faults/disk full (tmpfs)", "files", refused)


class _FaultyOs(types.ModuleType):
    """The ``os`` module as the file store sees it, with faults injected at chosen calls."""

    def __init__(self) -> None:
        super().__init__("os")
        self.fail_write: int | None = None  # errno for the next os.write
        self.short_write = False  # the next os.write writes half, the one after fails
        self.fail_open: int | None = None
        self.fail_fsync: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if self.short_write:
            self.short_write = False
            return os.write(fd, bytes(data)[: max(1, len(data) // 2)])
        if self.fail_write is not None:
            raise OSError(self.fail_write, os.strerror(self.fail_write))
        return os.write(fd, data)

    def open(self, path: Any, flags: int, *args: Any) -> int:
        if self.fail_open is not None and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(self.fail_open, os.strerror(self.fail_open), str(path))
        return os.open(path, flags, *args)

    def link(self, source: Any, target: Any) -> None:
        # A run file made ahead of its run gets its name by a link: the same refusal.
        if self.fail_open is not None:
            raise OSError(self.fail_open, os.strerror(self.fail_open), str(target))
        os.link(source, target)

    def fsync(self, fd: int) -> None:
        if self.fail_fsync is not None:
            raise OSError(self.fail_fsync, os.strerror(self.fail_fsync))
        os.fsync(fd)


@pytest.fixture
def faulty_os(monkeypatch: pytest.MonkeyPatch) -> _FaultyOs:
    """Inject faults into the file store's os calls (this module's store only, no subprocess)."""
    fake = _FaultyOs()
    monkeypatch.setattr(files_module, "os", fake)
    monkeypatch.setattr(spares_module, "os", fake)
    return fake


def _run_docs(uid: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("start", {"uid": uid, "time": T0, "plan_name": "scan"}),
        ("descriptor", {"uid": uid + "-d", "run_start": uid, "time": T0 + 0.1,
                        "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []}}}),
        *[("event", {"uid": f"{uid}-e{i}", "descriptor": uid + "-d", "time": T0 + 1 + i,
                     "seq_num": i + 1, "data": {"x": float(i)}, "timestamps": {"x": T0}})
          for i in range(n)],
        ("stop", {"uid": uid + "-s", "run_start": uid, "time": T0 + 99}),
    ]


@pytest.mark.parametrize("fault", ["ENOSPC", "EACCES", "EIO", "EDQUOT", "short_then_ENOSPC"])
@pytest.mark.parametrize("where", [0, 1, 3, -1], ids=["start", "descriptor", "event", "stop"])
def test_disk_faults_simulated(tmp_path: Path, faulty_os: _FaultyOs, fault: str,
                               where: int) -> None:
    """A write failing with ENOSPC/EACCES/EIO/EDQUOT (or cut short, then failing) raises a
    clear StoreUnavailable, leaves no partial line, and once the fault clears the same store
    finishes the run; a fresh open reads every acknowledged document."""
    directory = tmp_path / "store"
    store = FileStore(path=directory, fsync_interval=0)
    docs = _run_docs("sim-" + uuid.uuid4().hex[:8], 4)
    target = where % len(docs)
    for name, doc in docs[:target]:
        store.insert(name, doc)
    files_before = {p.name: p.read_bytes() for p in directory.glob("*.jsonl")}
    code = errno.ENOSPC if fault.endswith("ENOSPC") else getattr(errno, fault)
    faulty_os.fail_write = code
    faulty_os.short_write = fault.startswith("short")
    name, doc = docs[target]
    with pytest.raises(StoreUnavailable) as info:
        store.insert(name, doc)
    assert os.strerror(code) in str(info.value) and "Nothing was written" in str(info.value)
    assert f"a {name} document" in str(info.value)
    for path in directory.glob("*.jsonl"):  # nothing half-written, nothing else changed
        assert path.read_bytes() == files_before.get(path.name, b""), path.name
    faulty_os.fail_write = None
    for name, doc in docs[target:]:  # the fault has cleared: the run is finished
        store.insert(name, doc)
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = FileStore(path=directory, index_path=":memory:", torn_grace=0)
        assert _everything(again) == {(n, d["uid"]) for n, d in docs}
        again.close()
    record("faults/disk errors (simulated)", "files")


@pytest.mark.parametrize("fault", ["EACCES", "EROFS", "ENOSPC"])
def test_cannot_create_a_run_file(tmp_path: Path, faulty_os: _FaultyOs, fault: str) -> None:
    """When a new run file cannot even be created, insert raises StoreUnavailable naming the
    file and the reason, and the store keeps serving what it holds."""
    directory = tmp_path / "store"
    store = FileStore(path=directory, fsync_interval=0)
    for name, doc in _run_docs("kept", 2):
        store.insert(name, doc)
    before = snapshot(store)
    faulty_os.fail_open = getattr(errno, fault)
    with pytest.raises(StoreUnavailable) as info:
        store.insert("start", {"uid": "refused", "time": T0 + 5})
    assert "refused.jsonl" in str(info.value) and os.strerror(faulty_os.fail_open) in str(
        info.value)
    faulty_os.fail_open = None
    assert snapshot(store) == before
    store.insert("start", {"uid": "refused", "time": T0 + 5})
    assert store.get_run_start("refused")["uid"] == "refused"
    store.close()
    record("faults/cannot create file (simulated)", "files")


def test_fsync_failure_is_reported(tmp_path: Path, faulty_os: _FaultyOs) -> None:
    """An fsync that fails (EIO: the data may not be on disk) raises StoreUnavailable."""
    directory = tmp_path / "store"
    store = FileStore(path=directory, fsync_interval=0)
    docs = _run_docs("fsync", 1)
    store.insert(*docs[0])
    faulty_os.fail_fsync = errno.EIO
    with pytest.raises(StoreUnavailable, match="Input/output error"):
        store.insert(*docs[1])
    faulty_os.fail_fsync = None
    store.close()
    record("faults/fsync failure (simulated)", "files")


def test_folder_the_user_may_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store folder this user may not write (simulated: tests run as root) cannot be opened
    for writing -- the error says to open it read-only -- and opens read-only, reading all."""
    directory = tmp_path / "store"
    writer = FileStore(path=directory)
    for name, doc in _run_docs("ro", 3):
        writer.insert(name, doc)
    writer.close()
    state = tree_state(tmp_path)
    real_access = os.access

    def no_write(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(files_module.os, "access", no_write)
    with pytest.raises(StoreUnavailable, match="read_only: true"):
        FileStore(path=directory)
    reader = FileStore(path=directory, read_only=True)
    assert len(snapshot(reader)) == 1 + 1 + 3 + 1
    reader.close()
    assert {k: v for k, v in tree_state(tmp_path).items() if ".broker_v1" not in k} == {
        k: v for k, v in state.items() if ".broker_v1" not in k}
    record("faults/permission denied", "files")
