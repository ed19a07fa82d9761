"""Benchmark reading a files store while another process writes runs into it.

Run: python benchmarks/bench_fresh.py [--runs 2000 | --full] [--seconds 5]

The store is built fast: ``--runs`` small suitcase-jsonl run files written directly (one
``write`` each, no fsync), then one index build (the first open).  This process (the reader)
then times ``db[-1]``, ``db[uid]`` (a random existing run) and ``db(plan_name=...)`` (first
header) in a loop, four ways:

* ``quiet``: no writer, directory mtime old (the steady state); the search asks for
  ``plan_name="target"`` (every 40th run of the store);
* ``long``: a second process records one long scan through broker_v1, an event every
  millisecond (an analysis process polling a running fly scan); the search asks for it;
* ``foreign``: a second process writes plain JSONL run files (no broker_v1, no index), one
  every ``--foreign-interval`` seconds; the search asks for ``plan_name="foreign"``;
* ``ours``: a second process records RunEngine-shaped runs through broker_v1 as fast as it
  can (its runs reach the reader through the shared index); the search asks for its newest
  run (``plan_name="scan"``).  Its runs are dated decades ahead, so a store reused with
  ``--dir`` holds them before the foreign runs in time order: the foreign search then reads
  past them.

Each line gives the median, p95 and max per call, how many runs the writer added while the
reader looked, and how many index transactions the reader committed meanwhile (each takes
the index's write lock, which the writer waits for).  That those runs are visible at once is
proven by ``tests/stores/test_files_freshness.py``, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_MS = 1.0
T0 = 1_600_000_000.0

OURS = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from workload import runengine_run_documents
from broker_v1 import Broker
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
db = Broker(store, timezone="UTC")
i = 0
print("ready", flush=True)
while True:
    for name, doc in runengine_run_documents(10_000_000 + i):
        db.insert(name, doc)
    i += 1
"""

# One long scan recorded through broker_v1: a start, a descriptor, then an event every
# millisecond (a beamline's fly scan or a slow step scan being polled by an analysis process).
LONG_SCAN = r"""
import sys, time, uuid
from broker_v1.stores.files import FileStore
store = FileStore(path=sys.argv[1])
uid = str(uuid.uuid4())
t0 = time.time()
store.insert("start", {"uid": uid, "time": t0, "scan_id": 1, "plan_name": "long"})
store.insert("descriptor", {"uid": uid + "-d", "run_start": uid, "time": t0, "name": "primary",
                            "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}}})
print("ready", flush=True)
i = 0
while True:
    store.insert("event", {"uid": f"{uid}-{i}", "descriptor": uid + "-d", "time": t0 + i,
                           "seq_num": i + 1, "data": {"x": float(i)}, "timestamps": {"x": t0}})
    i += 1
    time.sleep(0.001)
"""

FOREIGN = r"""
import json, sys, time, uuid
path, interval = sys.argv[1], float(sys.argv[2])
i = 0
print("ready", flush=True)
while True:
    uid = str(uuid.uuid4())
    t = time.time()
    lines = [["start", {"uid": uid, "time": t, "scan_id": i, "plan_name": "foreign"}],
             ["stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t,
                       "exit_status": "success"}]]
    with open(f"{path}/{uid}.jsonl", "w") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))
    i += 1
    time.sleep(interval)
"""


def build(directory: Path, n_runs: int) -> list[str]:
    """Write ``n_runs`` small runs directly, then build the index once (the first open)."""
    directory.mkdir(parents=True)
    uids = []
    for i in range(n_runs):
        uid = str(uuid.uuid4())
        uids.append(uid)
        t = T0 + i
        lines = [
            ["start", {"uid": uid, "time": t, "scan_id": i + 1,
                       "plan_name": "target" if i % 40 == 0 else f"plan{i % 7}"}],
            ["stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t + 1,
                      "exit_status": "success"}],
        ]
        with open(directory / f"{uid}.jsonl", "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
    from broker_v1.stores.files import FileStore

    FileStore(path=directory).close()  # builds the index
    return uids


def loop(db: Any, uids: list[str], seconds: float, plan: str) -> dict[str, list[float]]:
    """Time the three lookups in turn for ``seconds``."""
    times: dict[str, list[float]] = {"db[-1]": [], "db[uid]": [], "search": []}
    clock = time.perf_counter
    end = clock() + seconds
    rng = random.Random(0)
    while clock() < end:
        t = clock()
        db[-1]
        times["db[-1]"].append(clock() - t)
        uid = rng.choice(uids)
        t = clock()
        db[uid]
        times["db[uid]"].append(clock() - t)
        t = clock()
        next(iter(db(plan_name=plan)))
        times["search"].append(clock() - t)
    return times


def report(label: str, times: dict[str, list[float]], added: int,
           commits: int | None = None) -> None:
    parts = []
    for name, ts in times.items():
        ts = sorted(ts)
        parts.append(f"{name} {statistics.median(ts) * 1e3:.3f} / "
                     f"{ts[int(0.95 * (len(ts) - 1))] * 1e3:.3f} / {ts[-1] * 1e3:.1f}")
    print(f"  {label:<8} median / p95 / max ms: " + ", ".join(parts)
          + f"   ({len(times['db[-1]'])} loops, {added} runs added"
          + ("" if commits is None else f", {commits} index transactions of the reader")
          + f"; target <= {TARGET_MS} ms)")


def count_runs(directory: Path) -> int:
    return sum(1 for n in os.listdir(directory) if n.endswith(".jsonl"))


def with_writer(code: str, args: list[str], directory: Path, db: Any, uids: list[str],
                seconds: float, label: str, plan: str) -> None:
    before = count_runs(directory)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # ready
        time.sleep(0.5)  # the writer is under way
        # The index transactions this process commits while it only looks up: each takes the
        # write lock the writer needs too.
        statements: list[str] = []
        connection = db.store._index.conn()
        connection.set_trace_callback(statements.append)
        try:
            times = loop(db, uids, seconds, plan)
        finally:
            connection.set_trace_callback(None)
        commits = sum(s.startswith("BEGIN") for s in statements)
    finally:
        proc.kill()
        proc.wait()
    report(label, times, count_runs(directory) - before, commits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--full", action="store_true", help="100,000 runs")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--foreign-interval", type=float, default=1.0)
    parser.add_argument("--dir", help="build (or reuse) the store here instead of a temp dir")
    args = parser.parse_args()
    n_runs = 100_000 if args.full else args.runs
    from broker_v1 import Broker
    from broker_v1.stores.files import FileStore

    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bv1-fresh-"))
    directory = scratch / f"runs-{n_runs}"
    try:
        if not directory.exists():
            t = time.perf_counter()
            build(directory, n_runs)
            print(f"built {n_runs:,} runs (direct file writes + one index build) in "
                  f"{time.perf_counter() - t:.1f} s")
        old = time.time() - 3600
        os.utime(directory, (old, old))
        uids = [n[:-6] for n in os.listdir(directory) if n.endswith(".jsonl")]
        db = Broker(FileStore(path=directory), timezone="UTC")
        print(f"{len(uids):,} runs; reader in this process, {args.seconds:.0f} s per line")
        report("quiet", loop(db, uids, args.seconds, "target"), 0)
        bench_dir = str(Path(__file__).resolve().parent)
        # "ours" last: the runs that writer records are dated later than any other, so a
        # search for the long scan's or the foreign runs' plan would then read all of them
        # first (thousands of rows: milliseconds that say nothing about freshness).
        with_writer(LONG_SCAN, [str(directory)], directory, db, uids, args.seconds,
                    "long", "long")
        with_writer(FOREIGN, [str(directory), str(args.foreign_interval)], directory, db, uids,
                    args.seconds, "foreign", "foreign")
        with_writer(OURS, [str(directory), bench_dir], directory, db, uids, args.seconds,
                    "ours", "scan")
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
