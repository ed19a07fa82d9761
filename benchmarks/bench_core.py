"""Core figures: lookups, search and single-document inserts on the memory store.

Run: python benchmarks/bench_core.py [--runs 10000]
Prints one line per figure; no assertions (speed is measured, not asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import run_documents  # noqa: E402

from broker_v1 import Broker  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402


def per_call(func, repeat: int = 2000) -> float:
    """Median seconds per call over ``repeat`` calls in 20 batches."""
    batches = []
    per_batch = max(1, repeat // 20)
    for _ in range(20):
        t = time.perf_counter()
        for _ in range(per_batch):
            func()
        batches.append((time.perf_counter() - t) / per_batch)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()

    db = Broker(MemoryStore(), timezone="UTC")
    t = time.perf_counter()
    docs = [doc for i in range(args.runs) for doc in run_documents(i, n_events=1)]
    for name, doc in docs:
        db.insert(name, doc)
    fill = time.perf_counter() - t
    print(f"store: memory, {args.runs} runs ({len(docs)} documents inserted in {fill:.1f} s)")

    newest = db[-1]
    uid = db[-(args.runs // 2)].uid
    print(f"db[-1]            {per_call(lambda: db[-1]) * 1e3:8.3f} ms")
    print(f"db[uid]           {per_call(lambda: db[uid]) * 1e3:8.3f} ms")
    print(f"db[uid[:8]]       {per_call(lambda: db[uid[:8]]) * 1e3:8.3f} ms")
    scan_id = newest["start"]["scan_id"]
    print(f"db[scan_id]       {per_call(lambda: db[scan_id]) * 1e3:8.3f} ms")

    def first():
        return next(iter(db(plan_name="count")))

    print(f"db(plan_name=) first header   {per_call(first, 200) * 1e3:8.3f} ms")

    def all_matches():
        return sum(1 for _ in db(plan_name="count"))

    n = all_matches()
    print(f"db(plan_name=) all {n} matches {per_call(all_matches, 20) * 1e3:8.3f} ms")

    # Single documents as the RunEngine sends them, validation on: event-heavy runs.
    insert_db = Broker(MemoryStore())
    heavy = [doc for i in range(20) for doc in run_documents(i, n_events=2_500, n_fields=5)]
    t = time.perf_counter()
    for name, doc in heavy:
        insert_db.insert(name, doc)
    elapsed = time.perf_counter() - t
    print(f"insert (single documents, 20 runs x 2,500 events x 5 fields) "
          f"{len(heavy) / elapsed:10,.0f} docs/s")


if __name__ == "__main__":
    main()
