"""Benchmark the files store (and the memory store alongside, for reference).

Run ``python benchmarks/bench_files.py`` (or ``--quick`` for smaller sizes).  Prints:

* opening a directory of N runs written by another program (the index is built), then a cold
  open of the indexed store plus ``find_run_starts({}, limit=1)`` (what ``db[-1]`` asks);
* ``find_run_starts({"plan_name": ...})`` over N runs: the first result and all matches;
* single-document inserts (events of 10 fields, durability rules on) in documents/s;
* ``iter_event_pages`` over one run of E events x 10 fields: first read from disk (through the
  columnar cache the writer made at stop), a second read (in-memory LRU), and a first read
  that parses the JSON (cache disabled).

Wall-clock figures on a shared machine swing with other processes' load, so the insert and
first-read figures are also given per CPU-second of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker_v1.stores.files import FileStore  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402

FIELDS = [f"f{i}" for i in range(10)]


def write_runs_by_hand(directory: Path, n_runs: int, every: int) -> list[tuple[str, dict]]:
    """Write ``n_runs`` small suitcase-jsonl runs directly; every ``every``-th is a match."""
    directory.mkdir(parents=True)
    t0 = 1_600_000_000.0
    docs_all = []
    for i in range(n_runs):
        uid = str(uuid.uuid4())
        start = {"uid": uid, "time": t0 + i, "scan_id": i + 1,
                 "plan_name": "target" if i % every == 0 else f"plan{i % 7}",
                 "detectors": ["det"], "motors": ["motor"], "num_points": 3,
                 "sample": {"name": f"s{i % 50}", "position": i % 13}}
        desc_uid = str(uuid.uuid4())
        descriptor = {"uid": desc_uid, "run_start": uid, "time": t0 + i + 0.1, "name": "primary",
                      "data_keys": {"det": {"source": "d", "dtype": "number", "shape": []}},
                      "configuration": {}, "hints": {}, "object_keys": {"det": ["det"]}}
        lines = [["start", start], ["descriptor", descriptor]]
        for j in range(3):
            lines.append(["event", {"uid": str(uuid.uuid4()), "descriptor": desc_uid,
                                    "time": t0 + i + 0.2 + j, "seq_num": j + 1,
                                    "data": {"det": float(j)}, "timestamps": {"det": t0 + i},
                                    "filled": {}}])
        lines.append(["stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + i + 5,
                               "exit_status": "success", "num_events": {"primary": 3}}])
        with open(directory / f"{uid}.jsonl", "w") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))
        docs_all.extend((name, doc) for name, doc in lines)
    return docs_all


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best.append(time.perf_counter() - t)
    return statistics.median(best), result


def cold_open_in_fresh_process(directory: Path) -> float:
    repo = str(Path(__file__).resolve().parents[1])
    code = (
        f"import sys, time; sys.path.insert(0, {repo!r})\n"
        "from broker_v1.stores.files import FileStore\n"
        f"t = time.perf_counter(); s = FileStore(path={str(directory)!r}, read_only=True)\n"
        "next(s.find_run_starts({}, limit=1)); print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def bench_search(root: Path, n_runs: int) -> None:
    every = 4
    directory = root / "many"
    docs = write_runs_by_hand(directory, n_runs, every)
    expected = len(range(0, n_runs, every))
    print(f"\n== {n_runs:,} runs written by another program ({expected:,} with plan_name 'target')")
    dt, store = timed(lambda: FileStore(path=directory))
    print(f"first open, index built from the files:   {dt * 1e3:9.1f} ms")
    store.close()
    # A directory changed within the last second is rescanned (its mtime cannot be trusted yet).
    time.sleep(1.2)

    def cold():
        s = FileStore(path=directory)
        first = next(s.find_run_starts({}, limit=1))
        s.close()
        return first

    dt, _ = timed(cold, repeat=5)
    print(f"cold open + find_run_starts({{}}, limit=1): {dt * 1e3:9.1f} ms   (new store object)")
    fresh = cold_open_in_fresh_process(directory)
    print(f"same, in a fresh Python process:          {fresh * 1e3:9.1f} ms")
    store = FileStore(path=directory)
    dt, _ = timed(lambda: next(store.find_run_starts({"plan_name": "target"})), repeat=5)
    print(f"plan_name search, first result:           {dt * 1e3:9.1f} ms")
    dt, found = timed(lambda: list(store.find_run_starts({"plan_name": "target"})), repeat=3)
    assert len(found) == expected, len(found)
    print(f"plan_name search, all {expected:,} matches:       {dt * 1e3:9.1f} ms")
    dt, found = timed(lambda: list(store.find_run_starts({"sample.name": "s7"})), repeat=3)
    print(f"nested-field search (not pushed down), {len(found)} matches: {dt * 1e3:6.1f} ms")
    dt, found = timed(lambda: list(store.find_run_starts({"$text": {"$search": "target"}})),
                      repeat=3)
    print(f"$text search, {len(found):,} matches:               {dt * 1e3:9.1f} ms")
    dt, n = timed(lambda: store.count_runs({}), repeat=5)
    print(f"count_runs({{}}) = {n:,}:                    {dt * 1e3:9.1f} ms")
    store.close()

    memory = MemoryStore()
    for name, doc in docs:
        memory.insert(name, doc)
    dt, _ = timed(lambda: next(memory.find_run_starts({}, limit=1)), repeat=5)
    print(f"memory store: find_run_starts limit=1:    {dt * 1e3:9.3f} ms")
    dt, _ = timed(lambda: next(memory.find_run_starts({"plan_name": "target"})), repeat=5)
    print(f"memory store: plan_name first result:     {dt * 1e3:9.3f} ms")
    dt, _ = timed(lambda: list(memory.find_run_starts({"plan_name": "target"})), repeat=3)
    print(f"memory store: plan_name all matches:      {dt * 1e3:9.1f} ms")


def bench_events(root: Path, n_events: int) -> None:
    print(f"\n== one run of {n_events:,} events x {len(FIELDS)} fields")
    directory = root / "events"
    store = FileStore(path=directory)
    start = {"uid": str(uuid.uuid4()), "time": 1_600_000_000.0, "plan_name": "count"}
    descriptor = {"uid": str(uuid.uuid4()), "run_start": start["uid"], "time": start["time"],
                  "name": "primary", "data_keys": {k: {"source": k, "dtype": "number",
                                                       "shape": []} for k in FIELDS}}
    events = [
        {"uid": str(uuid.uuid4()), "descriptor": descriptor["uid"], "time": start["time"] + i,
         "seq_num": i + 1, "data": {k: i * 0.5 + j for j, k in enumerate(FIELDS)},
         "timestamps": {k: start["time"] + i for k in FIELDS}, "filled": {}}
        for i in range(n_events)
    ]
    store.insert("start", start)
    store.insert("descriptor", descriptor)
    t, cpu = time.perf_counter(), time.process_time()
    for event in events:
        store.insert("event", event)
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"single-document inserts (event, 10 fields): {n_events / dt:11,.0f} docs/s"
          f"   ({n_events / dcpu:,.0f} per CPU-second)")
    t = time.perf_counter()
    store.insert("stop", {"uid": str(uuid.uuid4()), "run_start": start["uid"],
                          "time": start["time"] + n_events + 1, "exit_status": "success"})
    print(f"stop (fsync, index, columnar cache):        {(time.perf_counter() - t) * 1e3:11.1f} ms")
    store.close()
    size = (directory / f"{start['uid']}.jsonl").stat().st_size
    print(f"run file size:                              {size / 2**20:11.1f} MiB")

    def read(s):
        rows = 0
        for page in s.iter_event_pages(descriptor["uid"]):
            rows += len(page["seq_num"])
        assert rows == n_events
        return rows

    # A first read is what a new store object does: each of these reads the run from disk.
    cpu = time.process_time()
    dt, _ = timed(lambda: read(FileStore(path=directory, read_only=True)), repeat=3)
    dcpu = (time.process_time() - cpu) / 3
    print(f"iter_event_pages, first read (cache):       {n_events / dt:11,.0f} rows/s"
          f"   ({n_events / dcpu:,.0f} per CPU-second)")
    fresh = FileStore(path=directory, read_only=True)
    read(fresh)
    dt, _ = timed(lambda: read(fresh), repeat=3)
    print(f"iter_event_pages, second read (in memory):  {n_events / dt:11,.0f} rows/s")
    fresh.close()
    nocache = FileStore(path=directory, read_only=True, columnar_cache=False)
    dt, _ = timed(lambda: read(nocache))
    print(f"iter_event_pages, first read parsing JSON:  {n_events / dt:11,.0f} rows/s")
    nocache.close()

    memory = MemoryStore()
    memory.insert("start", start)
    memory.insert("descriptor", descriptor)
    from broker_v1.documents import pack_events

    for i in range(0, n_events, 1000):
        memory.insert("event_page", pack_events(events[i : i + 1000]))
    dt, _ = timed(lambda: read(memory), repeat=3)
    print(f"memory store: iter_event_pages:             {n_events / dt:11,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds)")
    args = parser.parse_args()
    n_runs, n_events = (1_000, 10_000) if args.quick else (10_000, 100_000)
    root = Path(tempfile.mkdtemp(prefix="bench_files_"))
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, directory {root}")
        bench_search(root, n_runs)
        bench_events(root, n_events)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
