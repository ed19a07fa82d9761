"""Load and memory figures for the files store.

Run ``python benchmarks/bench_load.py`` (defaults: 4 writers and 4 readers for 60 s; a store of
100,000 runs plus one run of 100,000 events).  ``--quick`` runs 8 s and 5,000 runs.  Prints:

* **load**: writer processes record runs (start, descriptor, events, stop) while reader
  processes search, look runs up and read tables, all against one store directory.  Every
  reader checks every answer (no run listed twice, no complete run missing, newest first, a
  table of a stopped run has exactly its ``num_events`` rows, a running one a gap-free prefix)
  and the main process checks, at the end, that every acknowledged document is there.
  Figures: documents and runs written per second, searches and tables read per second.
* **memory**: in a fresh process, iterating every header of the big store (``for h in db()``)
  with tracemalloc: the traced peak after the first fifth of the headers and after all of them
  (flat: headers are not all held), RSS before and peak RSS through the headers; then reading
  every event of the big run (``header.events()``) and the peak RSS of the whole process; last,
  for comparison, what holding every header at once would cost (``list(db())``).

``tests/reliability/test_load.py`` runs the same code (shorter) and asserts the checks; this
script is where the figures quoted in the docs come from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ---------------------------------------------------------------------- worker processes
# Workers start their clocks together once every one of them has finished importing: a fixed
# head start is not enough on a loaded machine (readers then never got to read).
_GATE = r"""
def wait_at_gate(gate, tag):
    # Say this process is ready (imports done), then wait for the common start.
    open(os.path.join(gate, "ready-" + tag), "w").close()
    go = os.path.join(gate, "go")
    while not os.path.exists(go):
        time.sleep(0.01)
    with open(go) as f:
        return float(f.read().split()[1])  # the deadline
"""

WRITER = r"""
import json, os, sys, time, uuid
from broker_v1.stores.files import FileStore
""" + _GATE + r"""
path, tag, gate = sys.argv[1], sys.argv[2], sys.argv[3]
n_events = int(sys.argv[4])
store = FileStore(path=path)
from broker_v1.documents import validate_document
for name in ("start", "descriptor", "stop"):  # load the schemas before the clock starts
    validate_document(name, {"uid": "x", "time": 1.0, "run_start": "x", "data_keys": {}})
deadline = wait_at_gate(gate, tag)  # everyone starts together, imports done
r = docs = 0
while time.time() < deadline:
    uid = f"{tag}-{r:05d}-{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    store.insert("start", {"uid": uid, "time": t0, "scan_id": r, "plan_name": "load",
                           "writer": tag})
    print(json.dumps({"start": uid}), flush=True)
    desc = uid + "-d"
    store.insert("descriptor", {"uid": desc, "run_start": uid, "time": t0, "name": "primary",
                                "data_keys": {"x": {"source": "x", "dtype": "number",
                                                    "shape": []},
                                              "y": {"source": "y", "dtype": "number",
                                                    "shape": []}}})
    half = n_events // 2
    for i in range(half):  # singles, as a RunEngine emits them ...
        t = time.time()
        store.insert("event", {"uid": f"{uid}-e{i}", "descriptor": desc, "time": t,
                               "seq_num": i + 1, "data": {"x": float(i), "y": float(-i)},
                               "timestamps": {"x": t, "y": t}})
    rest = list(range(half, n_events))  # ... and the rest as one page
    if rest:
        t = time.time()
        store.insert("event_page", {"uid": [f"{uid}-e{i}" for i in rest], "descriptor": desc,
                                    "time": [t] * len(rest), "seq_num": [i + 1 for i in rest],
                                    "data": {"x": [float(i) for i in rest],
                                             "y": [float(-i) for i in rest]},
                                    "timestamps": {"x": [t] * len(rest), "y": [t] * len(rest)}})
    store.insert("stop", {"uid": uid + "-s", "run_start": uid, "time": time.time(),
                          "exit_status": "success", "num_events": {"primary": n_events}})
    docs += n_events + 3
    print(json.dumps({"complete": uid, "events": n_events}), flush=True)
    r += 1
store.close()
print(json.dumps({"done": tag, "runs": r, "docs": docs}), flush=True)
"""

READER = r"""
import json, os, random, sys, time, traceback, warnings
""" + _GATE + r"""
from broker_v1 import Broker
from broker_v1.stores.files import FileStore

path, gate, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
problems = []
searches = tables = lookups = 0
complete = {}  # uid -> number of events, once seen stopped
last_count = 0
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    store = FileStore(path=path)
    db = Broker(store, timezone="UTC")
    import pandas  # noqa: F401  (tables need it: imported before the clock starts)
    deadline = wait_at_gate(gate, "r" + str(seed))
    while time.time() < deadline:
        try:
            starts = list(store.find_run_starts({"plan_name": "load"}))
            searches += 1
            uids = [s["uid"] for s in starts]
            times = [s["time"] for s in starts]
            if len(uids) != len(set(uids)):
                problems.append("a search listed a run twice")
            if times != sorted(times, reverse=True):
                problems.append("a search was not newest first")
            missing = set(complete) - set(uids)
            if missing:
                problems.append(f"complete runs disappeared: {sorted(missing)[:3]}")
            count = store.count_runs({})
            if count < last_count:
                problems.append(f"count_runs went down: {last_count} -> {count}")
            last_count = count
            for uid in rng.sample(uids, min(3, len(uids))):
                stop = store.get_run_stop(uid)  # read before the events
                header = db[uid]
                lookups += 1
                if header.start["uid"] != uid:
                    problems.append(f"db[{uid!r}] gave {header.start['uid']}")
                table = header.table()
                tables += 1
                seqs = list(table.index) if len(table) else []
                if seqs != list(range(1, len(seqs) + 1)):
                    problems.append(f"{uid}: table rows are not a gap-free prefix: {seqs[:10]}")
                if stop is not None:
                    expected = stop["num_events"]["primary"]
                    if len(table) != expected:
                        problems.append(f"{uid}: stopped with {expected} events, table has "
                                        f"{len(table)}")
                    complete[uid] = expected
                if len(table) and list(table["x"]) != [float(i) for i in range(len(table))]:
                    problems.append(f"{uid}: wrong values in the table")
        except Exception:
            problems.append(traceback.format_exc(limit=3))
    store.close()
# A run caught before its first descriptor has no 'primary' stream yet: that warning is right.
problems.extend(f"warning: {w.message}" for w in caught
                if not str(w.message).startswith("No stream named 'primary'"))
print(json.dumps({"searches": searches, "tables": tables, "lookups": lookups,
                  "complete_seen": len(complete),
                  "problems": problems[:20]}))
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _open_gate(gate: Path, procs: list[subprocess.Popen[str]], duration: float,
               patience: float = 300.0) -> float:
    """Wait until every worker is ready (or has exited), then start them all; the start time."""
    give_up = time.time() + patience
    while (len(list(gate.glob("ready-*"))) < len(procs) and time.time() < give_up
           and all(proc.poll() is None for proc in procs)):
        time.sleep(0.02)
    start = time.time()
    (gate / "go.tmp").write_text(f"{start} {start + duration}")
    os.replace(gate / "go.tmp", gate / "go")  # whole, so no worker reads half of it
    return start


def run_load(directory: Path, *, duration: float, writers: int = 4, readers: int = 4,
             events: int = 20) -> dict[str, Any]:
    """Writers and readers as processes on one store for ``duration`` seconds.

    Returns the figures plus ``problems`` (every inconsistency any reader or the final check
    found; empty when the store held up) and ``acknowledged`` (complete runs written).
    """
    from broker_v1.stores.files import FileStore

    FileStore(path=directory).close()  # the directory and its index exist before anyone reads
    gate = Path(tempfile.mkdtemp(prefix="bv1-load-gate-"))
    procs = [_python(WRITER, str(directory), f"w{i}", str(gate), str(events))
             for i in range(writers)]
    procs += [_python(READER, str(directory), str(gate), str(1000 + i))
              for i in range(readers)]
    start = _open_gate(gate, procs, duration)
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration + 300)
        outputs.append((proc.returncode, out, err))
    elapsed = time.time() - start
    shutil.rmtree(gate, ignore_errors=True)
    problems: list[str] = []
    started: set[str] = set()
    finished: dict[str, int] = {}
    docs = 0
    reads = {"searches": 0, "tables": 0, "lookups": 0}
    for i, (code, out, err) in enumerate(outputs):
        if code != 0:
            problems.append(f"process {i} exited {code}: {err[-1500:]}")
            continue
        for line in out.splitlines():
            item = json.loads(line)
            if "start" in item:
                started.add(item["start"])
            elif "complete" in item:
                finished[item["complete"]] = item["events"]
            elif "done" in item:
                docs += item["docs"]
            else:
                for key in reads:
                    reads[key] += item[key]
                problems.extend(item["problems"])
    if started != set(finished):
        problems.append(f"runs started but never finished: {sorted(started - set(finished))[:3]}")
    # Everything acknowledged is there, seen by a fresh store that rebuilds its index.
    check = FileStore(path=directory, index_path=":memory:")
    listed = [s["uid"] for s in check.find_run_starts({"plan_name": "load"})]
    if sorted(listed) != sorted(finished):
        problems.append(f"final search: {len(listed)} runs listed, {len(finished)} written")
    for uid, n in finished.items():
        descriptors = check.get_descriptors(uid)
        got = [e["seq_num"] for d in descriptors for e in check.iter_events(d["uid"])]
        if got != list(range(1, n + 1)) or check.get_run_stop(uid) is None:
            problems.append(f"{uid}: {len(got)} of {n} events after the load")
    check.close()
    return {
        "duration_s": round(elapsed, 2),
        "writers": writers,
        "readers": readers,
        "runs_written": len(finished),
        "documents_written": docs,
        "documents_per_s": round(docs / elapsed, 1),
        "runs_per_s": round(len(finished) / elapsed, 2),
        "searches_per_s": round(reads["searches"] / elapsed, 1),
        "tables_per_s": round(reads["tables"] / elapsed, 1),
        **reads,
        "problems": problems,
    }


# ---------------------------------------------------------------------- memory
def write_runs_by_hand(directory: Path, n_runs: int, *, big_run_events: int = 0) -> str | None:
    """``n_runs`` small suitcase-jsonl runs written directly (fast), plus optionally one run
    of ``big_run_events`` events (written through the store, as pages).  Returns its uid."""
    directory.mkdir(parents=True, exist_ok=True)
    t0 = 1_600_000_000.0
    for i in range(n_runs):
        uid = f"{i:08d}-{uuid.uuid4().hex[:8]}"
        desc = uid + "-d"
        lines = [
            ["start", {"uid": uid, "time": t0 + i, "scan_id": i, "plan_name": f"plan{i % 7}",
                       "sample": {"name": f"s{i % 50}"}, "detectors": ["det"]}],
            ["descriptor", {"uid": desc, "run_start": uid, "time": t0 + i + 0.1,
                            "name": "primary", "data_keys": {"det": {"source": "d",
                                                                     "dtype": "number",
                                                                     "shape": []}}}],
            ["event", {"uid": uid + "-e", "descriptor": desc, "time": t0 + i + 0.2,
                       "seq_num": 1, "data": {"det": 1.0}, "timestamps": {"det": t0}}],
            ["stop", {"uid": uid + "-s", "run_start": uid, "time": t0 + i + 1,
                      "exit_status": "success", "num_events": {"primary": 1}}],
        ]
        with open(directory / f"{uid}.jsonl", "w") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))
    if not big_run_events:
        return None
    from broker_v1.stores.files import FileStore

    store = FileStore(path=directory)
    uid = "big-" + uuid.uuid4().hex[:8]
    store.insert("start", {"uid": uid, "time": t0 + n_runs + 10, "plan_name": "big"})
    store.insert("descriptor", {"uid": uid + "-d", "run_start": uid, "time": t0 + n_runs + 10,
                                "name": "primary",
                                "data_keys": {k: {"source": k, "dtype": "number", "shape": []}
                                              for k in ("a", "b", "c")}})
    chunk = 10_000
    for lo in range(0, big_run_events, chunk):
        rows = range(lo, min(lo + chunk, big_run_events))
        t = [t0 + n_runs + 11 + i * 1e-3 for i in rows]
        store.insert("event_page", {"uid": [f"{uid}-{i}" for i in rows],
                                    "descriptor": uid + "-d", "time": t,
                                    "seq_num": [i + 1 for i in rows],
                                    "data": {k: [float(i) for i in rows] for k in "abc"},
                                    "timestamps": {k: t for k in "abc"}})
    store.insert("stop", {"uid": uid + "-s", "run_start": uid, "time": t0 + n_runs + 10_000})
    store.close()
    return uid


MEASURE = r"""
import json, sys, time, tracemalloc
from broker_v1 import Broker
from broker_v1.stores.files import FileStore

path, n_runs, big = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def status_mib(field):
    # /proc/self/status: VmRSS now, VmHWM the peak of this program (ru_maxrss would also
    # count the parent's memory at fork time, before exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")

def rss_mib():
    return status_mib("VmRSS")

t = time.perf_counter()
store = FileStore(path=path)
db = Broker(store, timezone="UTC")
open_s = time.perf_counter() - t
next(iter(db()))  # imports and first query out of the way
base_rss = rss_mib()
tracemalloc.start()
fifth = max(1, n_runs // 5)
count = 0
peak_fifth = None
t = time.perf_counter()
for header in db():
    count += 1
    header.start["uid"]
    if count == fifth:
        peak_fifth = tracemalloc.get_traced_memory()[1]
iterate_s = time.perf_counter() - t
peak_all = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after_headers_rss = rss_mib()
peak_headers = status_mib("VmHWM")
out = {"runs_iterated": count, "open_s": round(open_s, 2), "iterate_s": round(iterate_s, 2),
       "traced_peak_first_fifth_mib": round(peak_fifth / 2**20, 2),
       "traced_peak_all_mib": round(peak_all / 2**20, 2),
       "rss_before_mib": round(base_rss, 1), "rss_after_headers_mib": round(after_headers_rss, 1),
       "peak_rss_through_headers_mib": round(peak_headers, 1)}
if big != "-":
    events = 0
    header = db[big]
    for event in header.events():
        events += 1
    out["big_run_events"] = events
    out["rss_after_big_run_mib"] = round(rss_mib(), 1)
out["peak_rss_mib"] = round(status_mib("VmHWM"), 1)
# Last, for comparison only (it raises the RSS): what holding every header at once costs.
tracemalloc.start()
held = list(db())
out["all_headers_held_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
tracemalloc.stop()
del held
print(json.dumps(out))
"""


def measure_iteration(directory: Path, n_runs: int, big_uid: str | None) -> dict[str, Any]:
    """Iterate every header (and the big run's events) in a fresh process; return figures."""
    proc = _python(MEASURE, str(directory), str(n_runs), big_uid or "-")
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(err[-3000:])
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s of load, 5,000 runs")
    parser.add_argument("--duration", type=float, help="seconds of load (default 60)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--events", type=int, default=20, help="events per run written")
    parser.add_argument("--runs", type=int, help="runs in the memory store (default 100,000)")
    parser.add_argument("--big-run", type=int, help="events in the big run (default 100,000)")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--keep", help="build stores here and keep them")
    args = parser.parse_args(argv)
    duration = args.duration or (8.0 if args.quick else 60.0)
    n_runs = args.runs or (5_000 if args.quick else 100_000)
    big = args.big_run if args.big_run is not None else (20_000 if args.quick else 100_000)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        if not args.skip_load:
            figures = run_load(root / "load", duration=duration, writers=args.writers,
                               readers=args.readers, events=args.events)
            print("load:", json.dumps(figures, indent=2))
            if figures["problems"]:
                print("PROBLEMS FOUND", file=sys.stderr)
                return 1
        if not args.skip_memory:
            t = time.perf_counter()
            big_uid = write_runs_by_hand(root / "memory", n_runs, big_run_events=big)
            built = time.perf_counter() - t
            figures = measure_iteration(root / "memory", n_runs + (1 if big_uid else 0),
                                        big_uid)
            figures["runs_in_store"] = n_runs + (1 if big_uid else 0)
            figures["write_files_s"] = round(built, 1)
            print("memory:", json.dumps(figures, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
