"""Benchmark of the v1 read path on the memory store: get_table, iter_events, many runs.

Prints figures against the targets of issue 3; asserts nothing.  With broker_v1 installed (or
``PYTHONPATH=.`` from the repository root) run::

    python benchmarks/bench_tables.py            # full sizes (~15 s, mostly inserts)
    python benchmarks/bench_tables.py --quick    # 10x smaller, for a smoke run

The machine is shared and noisy: figures are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from event_model import compose_run

from broker_v1._run import RunDocs
from broker_v1.replay import iter_events
from broker_v1.stores.memory import MemoryStore
from broker_v1.tables import get_table

T0 = 1_600_000_000.0
TZ = "US/Eastern"


def insert_run(store: MemoryStore, n_events: int, n_fields: int, *, page: int = 10_000) -> str:
    """One run, one 'primary' stream of ``n_fields`` float fields, inserted as event pages."""
    bundle = compose_run(time=T0)
    store.insert("start", bundle.start_doc)
    names = [f"f{i}" for i in range(n_fields)]
    data_keys = {k: {"dtype": "number", "shape": [], "source": f"sim:{k}"} for k in names}
    desc = bundle.compose_descriptor(name="primary", data_keys=data_keys, time=T0)
    store.insert("descriptor", desc.descriptor_doc)
    rng = np.random.default_rng(0)
    for first in range(0, n_events, page):
        n = min(page, n_events - first)
        times = (T0 + 1 + np.arange(first, first + n) * 0.01).tolist()
        values = {k: rng.random(n).tolist() for k in names}
        store.insert(
            "event_page",
            desc.compose_event_page(
                data=values,
                timestamps={k: times for k in names},
                seq_num=list(range(first + 1, first + n + 1)),
                time=times,
                validate=False,
            ),
        )
    store.insert("stop", bundle.compose_stop(time=T0 + 2 + n_events * 0.01))
    return bundle.start_doc["uid"]


def run_docs(store: MemoryStore, uid: str) -> RunDocs:
    return RunDocs(store.get_run_start(uid), store.get_run_stop(uid), store.get_descriptors(uid))


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls (GC collected before each), and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def peak_extra_memory(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes allocated during ``fn()`` above what was allocated before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, result


def floor_from_numpy(columns: dict[str, np.ndarray], times: np.ndarray, seq: np.ndarray) -> Any:
    """The same DataFrame built straight from numpy columns (the pandas part only)."""
    t = pd.to_datetime(times, unit="s", utc=True).tz_convert(TZ).tz_localize(None).as_unit("ns")
    df = pd.DataFrame({"time": t, **columns}, copy=False)
    df.index = pd.Index(seq, name="seq_num")
    return df


def floor_from_lists(store: MemoryStore, descriptor_uid: str, names: list[str]) -> Any:
    """Store pages → np.asarray per column → DataFrame: the naive columnar build."""
    pages = list(store.iter_event_pages(descriptor_uid))
    cols = {k: np.concatenate([np.asarray(p["data"][k]) for p in pages]) for k in names}
    times = np.concatenate([np.asarray(p["time"]) for p in pages])
    seq = np.concatenate([np.asarray(p["seq_num"]) for p in pages])
    return floor_from_numpy(cols, times, seq)


def report(label: str, secs: float, count: int | None = None, unit: str = "", target: str = ""):
    rate = f"{count / secs:12,.0f} {unit}" if count else " " * 13 + " " * len(unit)
    print(f"  {label:<36} {secs * 1e3:8.1f} ms  {rate}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    n_events, n_fields = 100_000 // scale, 10
    n_runs, n_small = 1_000 // scale, 100
    rep = args.repeat

    print(f"pandas {pd.__version__}, numpy {np.__version__}; best of {rep}")
    store = MemoryStore()
    t = time.perf_counter()
    uid = insert_run(store, n_events, n_fields)
    print(f"setup: {n_events:,} events x {n_fields} fields in {time.perf_counter() - t:.1f} s")
    run = run_docs(store, uid)
    descriptor_uid = run.descriptors[0]["uid"]
    names = list(run.descriptors[0]["data_keys"])

    def table(**kw: Any) -> pd.DataFrame:
        return get_table(store, [run], timezone=TZ, **kw)

    print(f"\n== get_table, one run of {n_events:,} events x {n_fields} scalar fields ==")
    secs, df = best_of(table, rep)
    report("get_table, all fields", secs, n_events, "rows/s", "(target >= 2,000,000)")
    assert df.shape == (n_events, n_fields + 1)
    secs, df2 = best_of(lambda: table(fields=names[:2]), rep)
    report("get_table, fields=[2 fields]", secs, n_events, "rows/s", "(target: faster)")
    assert df2.shape == (n_events, 3)

    # Where the time goes: the store's hand-out, and two floors.
    secs, pages = best_of(lambda: list(store.iter_event_pages(descriptor_uid)), rep)
    report("store: iter_event_pages alone", secs, n_events, "rows/s")
    lists = [p["time"] for p in pages] + [c for p in pages for c in p["data"].values()]
    secs, _ = best_of(lambda: [c[:] for c in lists], rep)
    report("  of which time+data lists (no ts/uid)", secs)
    pages = lists = None
    secs, _ = best_of(lambda: floor_from_lists(store, descriptor_uid, names), rep)
    report("floor: pages + np.asarray + DataFrame", secs, n_events, "rows/s")
    cols = {k: df[k].to_numpy().copy() for k in names}
    raw_times = T0 + 1 + np.arange(n_events) * 0.01
    seq = df.index.to_numpy().copy()
    secs, _ = best_of(lambda: floor_from_numpy(cols, raw_times, seq), rep)
    report("floor: DataFrame from numpy columns", secs, n_events, "rows/s")

    df = df2 = cols = None
    gc.collect()
    peak, df = peak_extra_memory(table)
    size = int(df.memory_usage(deep=True, index=True).sum())
    print(
        f"  peak extra memory {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB DataFrame: "
        f"{peak / size:.2f}x  (target < 3x)"
    )
    df = None

    print("\n== iter_events over the same run ==")
    secs, n = best_of(lambda: sum(1 for _ in iter_events(store, [run])), rep)
    report("iter_events, all fields", secs, n, "events/s", "(target >= 300,000)")
    secs, n = best_of(lambda: sum(1 for _ in iter_events(store, [run], fields=names[:2])), rep)
    report("iter_events, fields=[2 fields]", secs, n, "events/s")

    print(f"\n== get_table over {n_runs:,} runs x {n_small} events, one call ==")
    many = MemoryStore()
    t = time.perf_counter()
    uids = [insert_run(many, n_small, n_fields) for _ in range(n_runs)]
    print(f"  setup: {time.perf_counter() - t:.1f} s")
    secs, runs = best_of(lambda: [run_docs(many, u) for u in uids], rep)
    report("RunDocs for every run (Broker's part)", secs)
    secs, df = best_of(lambda: get_table(many, runs, timezone=TZ), rep)
    report("get_table", secs, len(df), "rows/s", "(target < 1000 ms)")


if __name__ == "__main__":
    main()
