"""Recording at RunEngine speed: validated single-document inserts of short, real-shaped runs.

Run: python benchmarks/bench_runengine.py [--runs 2000] [--stores memory,strict,files]

Each run is ``workload.runengine_run_documents``: start, a ``baseline`` descriptor, a
``primary`` descriptor with 10 data keys and three devices' configuration, 20 primary and 2
baseline single events, stop (26 documents).  They are inserted one by one with
``db.insert(name, doc)``, validation on, into a fresh store per repeat, as
``RE.subscribe(db.insert)`` would.  Prints docs/s per store beside a floor (a private copy of
every document, plus for the files store one JSON line per document and an fsync per run), the
time ``insert`` takes per document type, and what validating one document of each type costs.
No assertions: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from workload import runengine_run_documents  # noqa: E402

Docs = list[tuple[str, dict[str, Any]]]
#: Targets of issue 18, printed beside the figures.
TARGETS = {"memory": 50_000.0, "strict": 20_000.0, "files": 20_000.0}
DESCRIPTOR_TARGET_US = 50.0
STOP_TARGET_MS = 5.0  # insert('stop') on the files store, its fsync included


def workload(runs: int) -> Docs:
    """``runs`` RunEngine-shaped runs, documents in emission order."""
    return [doc for i in range(runs) for doc in runengine_run_documents(i)]


def timed_inserts(insert: Callable[[str, dict[str, Any]], None], docs: Docs
                  ) -> tuple[float, dict[str, list[float]]]:
    """Insert every document; the total seconds and the seconds of each call, per name."""
    per_name: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter
    start = clock()
    for name, doc in docs:
        t = clock()
        insert(name, doc)
        per_name[name].append(clock() - t)
    return clock() - start, per_name


def insert_floor(docs: Docs, folder: Path | None) -> float:
    """Seconds for the least any store does: a private copy of each document (an orjson
    round trip); with ``folder``, also one JSON line per document appended to a file per run
    and an fsync when the run stops."""
    import os

    import orjson

    start = time.perf_counter()
    handle = None
    for name, doc in docs:
        line = orjson.dumps([name, doc])
        orjson.loads(line)
        if folder is None:
            continue
        if name == "start":
            handle = open(folder / f"{doc['uid']}.jsonl", "ab")
        assert handle is not None
        handle.write(line + b"\n")
        if name == "stop":
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
    return time.perf_counter() - start


def fsync_floor(folder: Path, *, repeat: int = 50) -> float:
    """Median milliseconds of one fsync of a small file just appended to, on ``folder``'s
    disk: the least a durable stop can cost there."""
    import os

    times = []
    for i in range(repeat):
        with open(folder / f"fsync-{i}.jsonl", "ab") as handle:
            handle.write(b'["stop", {}]\n' * 26)
            handle.flush()
            t = time.perf_counter()
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def make_store(kind: str, folder: Path) -> Any:
    """A fresh store: ``memory``, ``strict`` (memory, strict policy) or ``files``."""
    if kind == "files":
        from broker_v1.stores.files import FileStore

        shutil.rmtree(folder, ignore_errors=True)
        return FileStore(path=folder)
    from broker_v1.stores.memory import MemoryStore

    return MemoryStore(validate="strict" if kind == "strict" else "compatible")


def measure_store(kind: str, docs: Docs, *, repeat: int, scratch: Path) -> dict[str, Any]:
    """Median docs/s over ``repeat`` fresh stores, with the floor measured alternately."""
    from broker_v1 import Broker

    rates, floors, fsyncs, per_name = [], [], [], defaultdict(list)
    warm = make_store(kind, scratch / f"{kind}-warm")  # compiles the validators, once
    timed_inserts(Broker(warm, timezone="UTC").insert, docs[:26])
    warm.close()
    for i in range(repeat):
        folder = scratch / f"{kind}-{i}"
        store = make_store(kind, folder)
        db = Broker(store, timezone="UTC")
        secs, calls = timed_inserts(db.insert, docs)
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
        rates.append(len(docs) / secs)
        for name, times in calls.items():
            per_name[name].extend(times)
        floor_dir = scratch / f"floor-{i}"
        floor_dir.mkdir()
        floors.append(len(docs) / insert_floor(docs, floor_dir if kind == "files" else None))
        if kind == "files":
            fsyncs.append(fsync_floor(floor_dir))
        shutil.rmtree(floor_dir, ignore_errors=True)
    stops = sorted(per_name["stop"])
    return {
        "docs_per_s": statistics.median(rates),
        "floor_docs_per_s": statistics.median(floors),
        "repeats": repeat,
        "insert_us": {n: statistics.median(t) * 1e6 for n, t in sorted(per_name.items())},
        "stop_ms": statistics.median(stops) * 1e3,
        "stop_p95_ms": stops[int(0.95 * (len(stops) - 1))] * 1e3,
        "fsync_ms": statistics.median(fsyncs) if fsyncs else None,
    }


def validation_costs(docs: Docs, policy: str, *, limit: int = 400) -> dict[str, float]:
    """Median microseconds to validate one start, descriptor, event and stop under ``policy``
    as the insert path does: the schema check (``validate_document``) for start, descriptor
    and stop, and for events the checks against the descriptor's keys (plus the schema
    check under ``strict``)."""
    from broker_v1.documents import validate_document

    try:
        from broker_v1.stores._checks import check_event
    except ImportError:  # before stores/_checks.py (to measure older commits): the method
        from broker_v1.stores.memory import MemoryStore

        check_event = MemoryStore()._check_event
    keys = {d["uid"]: frozenset(d["data_keys"]) for n, d in docs if n == "descriptor"}
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, doc in docs:
        if len(by_name[name]) < limit:
            by_name[name].append(doc)

    def event_check(event: dict[str, Any]) -> None:
        if policy == "strict":
            validate_document("event", event, policy)
        check_event(event, lambda _n, d: keys[d["descriptor"]])

    costs = {}
    for name in ("start", "descriptor", "event", "stop"):
        group = by_name[name]
        check = event_check if name == "event" else (
            lambda d, n=name: validate_document(n, d, policy))
        check(group[0])  # compiles the validator: once per process, not measured
        times = []
        for doc in group:
            t = time.perf_counter()
            check(doc)
            times.append(time.perf_counter() - t)
        costs[name] = statistics.median(times) * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="memory,strict,files",
                        help="comma-separated subset of memory, strict (memory store, strict "
                             "policy) and files")
    args = parser.parse_args()
    docs = workload(args.runs)
    print(f"{args.runs:,} RunEngine-shaped runs, {len(docs):,} documents, inserted one by one "
          f"with db.insert, median of {args.repeat}")
    scratch = Path(tempfile.mkdtemp(prefix="broker_v1-bench-re-"))
    try:
        for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
            r = measure_store(kind, docs, repeat=args.repeat, scratch=scratch)
            label = {"memory": "memory (compatible)", "strict": "memory (strict)"}.get(kind, kind)
            print(f"  {label:<20} {r['docs_per_s']:>9,.0f} docs/s   floor "
                  f"{r['floor_docs_per_s']:>9,.0f} docs/s   target >= {TARGETS[kind]:,.0f}")
            print("    insert, median per call: " + ", ".join(
                f"{n} {us:.1f} µs" for n, us in r["insert_us"].items()))
            if r["fsync_ms"] is not None:
                print(f"    insert('stop'): median {r['stop_ms']:.2f} ms, p95 "
                      f"{r['stop_p95_ms']:.2f} ms   target <= {STOP_TARGET_MS:.0f} ms   "
                      f"(one bare fsync on this disk: {r['fsync_ms']:.2f} ms)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for policy in ("compatible", "strict"):
        costs = validation_costs(docs, policy)
        print(f"  validation ({policy}), median per document: " + ", ".join(
            f"{n} {us:.1f} µs" for n, us in costs.items())
            + f"   (descriptor target <= {DESCRIPTOR_TARGET_US:.0f} µs)")


if __name__ == "__main__":
    main()
