"""v2 shim figure: run.primary.read() vs get_table on a 100,000-event x 10-field run (memory).

Run: python benchmarks/bench_v2.py [--events 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import run_documents  # noqa: E402

from broker_v1 import Broker  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402


def best(func, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    db = Broker(MemoryStore(), timezone="UTC")
    for name, doc in run_documents(0, n_events=args.events, n_fields=10, pages=True):
        db.insert(name, doc)
    h = db[-1]
    run = db.v2[-1]
    h.table()
    run.primary.read()  # imports and warm-up outside the measurement
    table = best(lambda: h.table())
    read = best(lambda: run.primary.read())
    dask = best(lambda: run.primary.to_dask())
    n = args.events
    print(f"{n:,} events x 10 fields, memory store, best of 5")
    print(f"get_table             {table * 1e3:8.1f} ms  {n / table:12,.0f} rows/s")
    print(f"run.primary.read()    {read * 1e3:8.1f} ms  {n / read:12,.0f} rows/s  "
          f"({read / table:.2f}x get_table; target <= 1.5x)")
    print(f"run.primary.to_dask() {dask * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
