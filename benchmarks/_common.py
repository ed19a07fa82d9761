"""Shared helpers for ``run_all.py``: timing with medians, store kits, the machine description.

Nothing here asserts a speed.  Timings are medians of several repeats because the project's
machine has 2 cores shared with other work; every figure records how many repeats it took.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Median seconds per call, the number of repeats behind it, and the last result."""

    seconds: float
    repeats: int
    result: Any = None


def _enough(count: int, repeat: int, elapsed: float, budget: float, per_call: float) -> bool:
    """Stop after ``repeat`` repeats, or once over budget with 3 repeats (1 if calls are long)."""
    if count >= repeat:
        return True
    if elapsed < budget:
        return False
    return count >= 3 or per_call * 3 > budget


def measure(
    fn: Callable[[], Any],
    *,
    repeat: int,
    budget: float,
    warmup: bool = True,
    collect: bool = False,
    batch: bool = True,
) -> Timing:
    """Median wall seconds of one call of ``fn`` over up to ``repeat`` repeats.

    Fast calls (under a millisecond) are timed in batches, so each repeat lasts about 2 ms and
    the clock's resolution does not matter.  Repeats stop early once ``budget`` seconds have
    been spent and at least three were made (or one, for calls longer than a third of the
    budget).  ``warmup`` makes one untimed call first; ``collect`` runs the garbage collector
    before each repeat (for calls that allocate a lot).
    """
    result = None
    estimate = None
    if warmup:
        t = time.perf_counter()
        result = fn()
        estimate = time.perf_counter() - t
    times: list[float] = []
    start = time.perf_counter()
    per_batch = 1
    if batch and estimate is not None and estimate < 1e-3:
        per_batch = min(2000, max(1, math.ceil(2e-3 / max(estimate, 1e-7))))
    while True:
        if collect:
            gc.collect()
        t = time.perf_counter()
        for _ in range(per_batch):
            result = fn()
        times.append((time.perf_counter() - t) / per_batch)
        if _enough(len(times), repeat, time.perf_counter() - start, budget, times[0]):
            break
    return Timing(statistics.median(times), len(times), result)


def paired(
    fn: Callable[[], Any],
    floor: Callable[[], Any],
    *,
    repeat: int,
    budget: float,
    warmup: bool = True,
    collect: bool = True,
    summary: Callable[[Any], Any] | None = None,
) -> tuple[Timing, Timing]:
    """Time ``fn`` and its ``floor`` alternately, so the machine's load weighs on both alike.

    Nothing either call returned is alive when the other runs (so neither starts with the
    other's memory to reuse, or with hundreds of megabytes still held), and the order
    alternates every repeat.  Returns the two timings; ``fn``'s keeps ``summary(result)`` of
    its last call (the result itself when no ``summary`` is given: then keep it small).
    """
    reduce = summary or (lambda out: out)
    result = None
    if warmup:
        floor()
        fn()
    times: list[float] = []
    floor_times: list[float] = []
    start = time.perf_counter()

    def timed(call: Callable[[], Any], into: list[float]) -> Any:
        if collect:
            gc.collect()
        t = time.perf_counter()
        out = call()
        into.append(time.perf_counter() - t)
        return out

    while True:
        result = None
        if len(times) % 2 == 0:
            timed(floor, floor_times)  # the floor's result is dropped at once
            result = reduce(timed(fn, times))
        else:
            result = reduce(timed(fn, times))
            timed(floor, floor_times)
        per_call = times[0] + floor_times[0]
        if _enough(len(times), repeat, time.perf_counter() - start, budget, per_call):
            break
    return (Timing(statistics.median(times), len(times), result),
            Timing(statistics.median(floor_times), len(floor_times)))


# --------------------------------------------------------------------------- store kits
def jsonl_lines(docs: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """The documents as suitcase-jsonl writes them: one ``[name, doc]`` JSON array per line."""
    return [json.dumps([name, doc]) + "\n" for name, doc in docs]


class Kit:
    """How to make, seed, reopen and clean up one kind of store for the benchmarks.

    ``seed`` puts whole runs in place by the fastest path that produces exactly what the
    store's own writer produces (catalogs of 100,000 runs are setup, not what is measured);
    what *is* measured about writing goes through ``Broker.insert``.
    """

    name = "?"
    persistent = True

    def make(self, label: str) -> Any:
        raise NotImplementedError

    def reopen(self, store: Any) -> Any:
        """A new store object on the same data (what a new process would open)."""
        raise NotImplementedError

    def seed(self, store: Any, runs: list[list[tuple[str, dict[str, Any]]]],
             *, lean: bool = False) -> None:
        for docs in runs:
            for name, doc in docs:
                store.insert(name, doc, trusted=True)

    def drop(self, store: Any) -> None:
        """Forget one store made by ``make`` (free its memory, files or database)."""

    def close(self) -> None:
        """Remove everything this kit made."""

    def describe(self) -> str:
        return self.name


class MemoryKit(Kit):
    name = "memory"
    persistent = False

    def describe(self) -> str:
        return "MemoryStore, in the benchmark's process"

    def make(self, label: str) -> Any:
        from broker_v1.stores.memory import MemoryStore

        return MemoryStore()


class FilesKit(Kit):
    """Files stores in a temporary folder.  Lean runs (no events) are written by hand as
    suitcase-jsonl files, as another program would, and picked up by the store's index."""

    name = "files"

    def __init__(self) -> None:
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="broker_v1-bench-files-"))

    def path(self, store: Any) -> Path:
        return Path(store.path) if hasattr(store, "path") else Path(store._bench_path)

    def make(self, label: str) -> Any:
        from broker_v1.stores.files import FileStore

        path = self.root / label
        shutil.rmtree(path, ignore_errors=True)
        store = FileStore(path=path)
        store._bench_path = str(path)
        return store

    def reopen(self, store: Any, **options: Any) -> Any:
        from broker_v1.stores.files import FileStore

        options.setdefault("read_only", True)
        return FileStore(path=store._bench_path, **options)

    def seed(self, store: Any, runs: list[list[tuple[str, dict[str, Any]]]],
             *, lean: bool = False) -> None:
        if not lean:
            super().seed(store, runs)
            return
        directory = Path(store._bench_path)
        for docs in runs:
            uid = docs[0][1]["uid"]
            with open(directory / f"{uid}.jsonl", "w", encoding="utf-8") as f:
                f.write("".join(jsonl_lines(docs)))

    def drop(self, store: Any) -> None:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        shutil.rmtree(store._bench_path, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> str:
        return f"FileStore in a temporary folder on {_filesystem(self.root)}"


class MongoKit(Kit):
    """A fresh database per store on a server (``mongodb://``) or on mongomock.

    Seeding writes the collections directly with ``insert_many``, in the layout MongoStore's
    writer uses (one document per event, unpacked from pages by the store's own
    ``unpack_events``): mongomock has no unique indexes, so going through ``insert`` would
    check every uid with a scan and make seeding quadratic.
    """

    def __init__(self, name: str, base_uri: str) -> None:
        self.name = name
        self.base = base_uri.rstrip("/")
        self.prefix = f"broker_v1_bench_{uuid.uuid4().hex[:8]}"
        self.databases: list[str] = []

    def _uri(self, database: str) -> str:
        if self.base.startswith("mongomock://"):
            return f"{self.base}/{database}"
        # Options (?replicaSet=...) stay after the database name.
        head, sep, query = self.base.partition("?")
        return f"{head.rstrip('/')}/{database}{sep}{query}"

    def make(self, label: str) -> Any:
        from broker_v1.stores.mongo import MongoStore

        database = f"{self.prefix}_{label}"[:60]
        self.databases.append(database)
        store = MongoStore(uri=self._uri(database))
        store.ensure_indexes()
        store._bench_uri = self._uri(database)
        store._bench_db = database
        return store

    def reopen(self, store: Any) -> Any:
        from broker_v1.stores.mongo import MongoStore

        return MongoStore(uri=store._bench_uri)

    def seed(self, store: Any, runs: list[list[tuple[str, dict[str, Any]]]],
             *, lean: bool = False) -> None:
        from broker_v1.documents import unpack_events

        rows: dict[str, list[dict[str, Any]]] = {
            "run_start": [], "event_descriptor": [], "event": [], "run_stop": []}
        where = {"start": "run_start", "descriptor": "event_descriptor", "stop": "run_stop"}
        for docs in runs:
            for name, doc in docs:
                if name == "event_page":
                    rows["event"].extend(unpack_events(doc))
                elif name == "event":
                    rows["event"].append(dict(doc))
                else:
                    rows[where[name]].append(dict(doc))
        for collection, docs in rows.items():
            for i in range(0, len(docs), 10_000):
                store._coll(collection).insert_many(docs[i:i + 10_000], ordered=False)

    def drop(self, store: Any) -> None:
        database = store._bench_db
        try:
            store.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        self._drop(database)

    def _drop(self, database: str) -> None:
        if self.base.startswith("mongomock://"):
            from broker_v1.stores.mongo import make_client

            make_client(self._uri(database)).drop_database(database)
        else:
            import pymongo

            with pymongo.MongoClient(self.base) as client:
                client.drop_database(database)
        if database in self.databases:
            self.databases.remove(database)

    def close(self) -> None:
        for database in list(self.databases):
            try:
                self._drop(database)
            except Exception:  # noqa: BLE001 - best effort at the end
                pass

    def describe(self) -> str:
        if self.base.startswith("mongomock://"):
            import mongomock

            return f"mongomock {mongomock.__version__} (in-process)"
        try:
            import pymongo

            with pymongo.MongoClient(self.base, serverSelectionTimeoutMS=3000) as client:
                info = client.server_info()
            name = (f"SecantusDB {info['secantusVersion']}" if "secantusVersion" in info
                    else "server")
            return (f"MongoDB wire protocol: {name} reporting MongoDB "
                    f"{info.get('version', '?')}, on this machine")
        except Exception as err:  # noqa: BLE001 - description only
            return f"wire-protocol server ({err.__class__.__name__})"


def _filesystem(path: Path) -> str:
    """``ext4 (/dev/vda)``: the file system holding ``path`` (from /proc/mounts)."""
    best = ("", "?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, fstype, device)
    except OSError:
        pass
    return f"{best[1]} ({best[2]})"


def make_kit(store: str, mongo_uri: str | None) -> Kit:
    if store == "memory":
        return MemoryKit()
    if store == "files":
        return FilesKit()
    if store == "mongomock":
        return MongoKit("mongomock", f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    if store == "wire":
        if not mongo_uri:
            raise SystemExit("the wire store needs --mongo-uri or BROKER_V1_TEST_MONGO_URI")
        return MongoKit("wire", mongo_uri)
    raise SystemExit(f"unknown store {store!r}")


# --------------------------------------------------------------------------- the machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, OS, Python and library versions."""
    import mongomock
    import numpy
    import pandas
    import pymongo

    import broker_v1

    try:
        from importlib.metadata import version

        event_model_version = version("event-model")
    except Exception:  # noqa: BLE001 - description only
        event_model_version = "?"
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    if commit is None and os.environ.get("BROKER_V1_BENCH_COMMIT"):
        # A copy of a checkout without its .git (a snapshot taken so that edits made while a
        # long run goes on do not change what it measures) says where it came from.
        commit, dirty = os.environ["BROKER_V1_BENCH_COMMIT"], False
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "broker_v1": broker_v1.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "pymongo": pymongo.__version__,
            "mongomock": mongomock.__version__, "event-model": event_model_version,
        },
        "git_commit": (commit + ("+dirty" if dirty else "")) if commit else None,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Growth exponent between the first and last point: ``log(y1/y0) / log(x1/x0)``."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x and y and y > 0]
    if len(pairs) < 2:
        return None
    (x0, y0), (x1, y1) = pairs[0], pairs[-1]
    return math.log(y1 / y0) / math.log(x1 / x0)


def python_env() -> dict[str, str]:
    """The environment for child processes: this checkout importable, BLAS single-threaded
    (numpy's threads would compete with the store on a 2-core machine)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("COLUMNS", "80")
    return env


def interpreter() -> str:
    return sys.executable
