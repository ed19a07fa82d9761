"""Would a stop's index commit overlap with its file's fsync?  Measured on one folder's disk.

Run: python benchmarks/bench_stop_overlap.py [--folder DIR] [--runs 600]

A files store's stop fsyncs the run file, then commits its index transaction (SQLite, WAL,
``synchronous = NORMAL``: the commit writes the log, it does not fsync).  Running the fsync on
a thread while the stopping thread commits looks like it should hide the commit.  This
measures, alternating run by run on fresh small files in ``DIR`` (default: a temporary folder
under ``TMPDIR``), the median of:

* ``serial``: fsync, then a commit of a few pages (what the store does);
* ``overlap``: the fsync on a worker thread while the commit runs, then wait for it;
* the fsync alone, the commit alone, a no-op handed to the worker thread and back, and a
  16 KiB append to another file alone and while an fsync runs on the worker.

docs/performance.rst records what it measured on the project's machine (ext4: one journal
for the folder, shared by the fsync and SQLite's log).  No assertions: speed is measured, not
asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LINE = b'["event", {"descriptor": "d", "seq_num": 1, "data": {"x": 1.5}}]\n' * 20


def measure(folder: Path, runs: int) -> dict[str, list[float]]:
    """Seconds per run of each variant, alternating."""
    conn = sqlite3.connect(folder / "index.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE runs (uid TEXT PRIMARY KEY, stop TEXT)")
    other = os.open(folder / "other", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pool = ThreadPoolExecutor(1)
    clock = time.perf_counter
    times: dict[str, list[float]] = defaultdict(list)

    def commit(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for j in range(6):  # about the pages of a stop's transaction
            conn.execute("INSERT INTO runs VALUES (?, ?)", (f"r{i}-{j}", "x" * 3000))
        conn.execute("COMMIT")

    try:
        for i in range(runs):
            fd = os.open(folder / f"run-{i}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(fd, LINE)
            kind = i % 4
            t = clock()
            if kind == 0:
                os.fsync(fd)
                t1 = clock()
                commit(i)
                times["serial: fsync, then commit"].append(clock() - t)
                times["  the fsync alone"].append(t1 - t)
                times["  the commit alone"].append(clock() - t1)
            elif kind == 1:
                future = pool.submit(os.fsync, fd)
                commit(i)
                future.result()
                times["overlap: fsync on a thread during the commit"].append(clock() - t)
            elif kind == 2:
                pool.submit(int).result()
                times["a no-op to the worker thread and back"].append(clock() - t)
                t = clock()
                os.write(other, b"x" * 16384)
                times["16 KiB append to another file, alone"].append(clock() - t)
            else:
                future = pool.submit(os.fsync, fd)
                time.sleep(50e-6)  # the fsync has begun
                t = clock()
                os.write(other, b"x" * 16384)
                times["16 KiB append while an fsync runs"].append(clock() - t)
                future.result()
            os.close(fd)
    finally:
        pool.shutdown()
        os.close(other)
        conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=600)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-overlap-", dir=args.folder))
    try:
        times = measure(folder, args.runs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.runs} runs on {folder.parent}, median per run:")
    for name, values in times.items():
        print(f"  {name:48s} {statistics.median(values) * 1e6:7.0f} µs")


if __name__ == "__main__":
    main()
