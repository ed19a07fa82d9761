"""``broker-v1 serve``: what tiled's client waits for, beside the store called in-process.

Run: python benchmarks/bench_serve.py [--quick | --full] [--runs N] [--events N]
[--against-mongoadapter [--frames N] [--list N] [--server-venv DIR] [--json PATH]]

``--against-mongoadapter`` compares instead with tiled over databroker 2's MongoAdapter on
the same MongoDB runs (``serve_vs_adapter.py`` says how); without it:

Builds a files store of ``--runs`` small runs (written directly, then indexed once, as
``bench_fresh.py`` does) plus one run of ``--events`` events x 10 numbers, starts
``broker-v1 serve DIR`` on a free port (API key from the environment), and reads it with
tiled's client + bluesky-tiled-plugins.  Each figure is the median of up to 5 calls; beside
it, its **floor**: the same answer asked of the store in this process (what the server
itself must at least do); for start-up, a Python process importing tiled's server and
uvicorn, and nothing else.

Figures: start-up (launch until ``/api/v1/`` answers, and until a fresh client's ``c[-1]``
is read: interpreter, tiled's imports and the store's opening included), ``c[-1]``,
``c[uid]``, ``c[uid[:8]]``, ``c[scan_id]``, a search's first page
(``plan_name == 'target'``), the metadata of 1,000 runs (iterating ``c.items()``, pages of
100), and the long run's ``run['primary'].read()`` (table over HTTP as Arrow).
``--quick``: 2,000 runs, 10,000 events; ``--full``: 100,000 runs, 100,000 events.  No
assertions: speed is measured.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

KEY = "benchservekey"
REPEAT = 5


def median_seconds(fn: Callable[[], Any], repeat: int = REPEAT, budget: float = 20.0) -> float:
    """Median of up to ``repeat`` timed calls after one untimed call (fewer when slow)."""
    fn()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < repeat:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - began > budget and len(times) >= 1:
            break
    return statistics.median(times)


def build(directory: Path, n_runs: int, n_events: int) -> str:
    """Small runs written directly and indexed, plus one long run; returns its uid."""
    from bench_fresh import build as build_small
    from workload import run_documents

    from broker_v1.stores.files import FileStore

    build_small(directory, n_runs)
    store = FileStore(path=directory)
    long_uid = ""
    for name, doc in run_documents(10_000_000, n_events=n_events, n_fields=10, pages=True):
        if name == "start":
            doc["plan_name"] = "long"
            long_uid = doc["uid"]
        store.insert(name, doc)
    store.close()
    return long_uid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(directory: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``broker-v1 serve`` on a free port; returns it, its URL and seconds until it answered."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BROKER_V1_SERVE_API_KEY": KEY,
           "PYTHONPATH": str(HERE.parent)}
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "broker_v1", "serve", str(directory),
                                 "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"broker-v1 serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/api/v1/", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return proc, url, time.perf_counter() - t0


FIRST_READ = r"""
import sys, time
t0 = float(sys.argv[3])
from tiled.client import from_uri
c = from_uri(sys.argv[1], api_key=sys.argv[2])
c[-1].start
print(time.time() - t0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2,000 runs, 10,000 events")
    size.add_argument("--full", action="store_true", help="100,000 runs, 100,000 events")
    parser.add_argument("--runs", type=int, help="small runs (overrides the mode)")
    parser.add_argument("--events", type=int, help="events of the long run")
    parser.add_argument("--against-mongoadapter", action="store_true",
                        help="beside tiled over databroker 2's MongoAdapter, on MongoDB "
                             "(needs BROKER_V1_TEST_MONGO_URI; see serve_vs_adapter.py)")
    parser.add_argument("--frames", type=int, help="external frames (--against-mongoadapter)")
    parser.add_argument("--list", type=int, help="runs whose metadata is listed "
                                                  "(--against-mongoadapter)")
    parser.add_argument("--server-venv", type=Path, help="the tiled server venv "
                                                          "(--against-mongoadapter)")
    parser.add_argument("--json", type=Path, help="also write the figures here "
                                                  "(--against-mongoadapter)")
    args = parser.parse_args()
    if args.against_mongoadapter:
        from serve_vs_adapter import main as against_adapter

        sys.exit(against_adapter(args))
    n_runs = args.runs or (100_000 if args.full else 2_000)
    n_events = args.events or (100_000 if args.full else 10_000)

    from tiled.client import from_uri

    from broker_v1.stores.files import FileStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        directory = tmp / "runs"
        t = time.perf_counter()
        long_uid = build(directory, n_runs, n_events)
        print(f"built {n_runs:,} runs + one of {n_events:,} events in "
              f"{time.perf_counter() - t:.0f} s")
        # Start-up twice: the first launch also pays cold disk caches for Python's imports.
        proc, url, _ = start_server(directory, tmp / "server0.log")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        launched = time.time()
        proc, url, answered = start_server(directory, tmp / "server.log")
        try:
            first = float(subprocess.run(
                [sys.executable, "-c", FIRST_READ, url, KEY, str(launched)],
                capture_output=True, text=True, check=True).stdout.strip())
            store = FileStore(path=directory, read_only=True)
            c = from_uri(url, api_key=KEY)
            some_uid = next(iter(store.find_run_starts({"plan_name": "target"}, limit=1)))["uid"]
            scan_id = 7
            # Start-up's floor: a Python process that only imports tiled's server and uvicorn.
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import tiled.server.app, uvicorn"],
                           check=True)
            imports = time.perf_counter() - t
            rows: list[tuple[str, float, float | None]] = [
                ("start-up: /api/v1/ answers", answered, imports),
                ("start-up: fresh client's c[-1]", first, None),
            ]

            def floor_last() -> Any:
                s = next(iter(store.find_run_starts({}, limit=1)))
                return s, store.get_run_stop(s["uid"])

            rows.append(("c[-1]", median_seconds(lambda: c[-1].start), median_seconds(floor_last)))
            rows.append(("c[uid]", median_seconds(lambda: c[some_uid].start), median_seconds(
                lambda: (store.get_run_start(some_uid), store.get_run_stop(some_uid)))))
            rows.append(("c[uid[:8]]", median_seconds(lambda: c[some_uid[:8]].start),
                         median_seconds(lambda: store.find_runs_by_uid_prefix(some_uid[:8]))))
            rows.append(("c[scan_id]", median_seconds(lambda: c[scan_id].start),
                         median_seconds(lambda: store.find_runs_by_scan_id(scan_id))))
            rows.append(("search first page", median_seconds(
                lambda: c.search(_key("plan_name") == "target").values().first().start),
                median_seconds(lambda: next(iter(store.find_run_starts(
                    {"plan_name": "target"}, limit=1))))))
            rows.append(("metadata of 1,000 runs", median_seconds(
                lambda: [r.metadata for _, r in itertools.islice(c.items(), 1000)], repeat=3),
                median_seconds(lambda: store.get_run_stops([s["uid"] for s in
                                                            store.find_run_starts(
                                                                {}, limit=1000)]), repeat=3)))

            def floor_table() -> Any:
                (d,) = store.get_descriptors(long_uid)
                return list(store.iter_event_pages(d["uid"]))

            rows.append((f"read() of {n_events:,} events x 10", median_seconds(
                lambda: c[long_uid]["primary"].read(), repeat=3),
                median_seconds(floor_table, repeat=3)))
            c.context.close()
            store.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        print(f"\nbroker-v1 serve over a files store of {n_runs + 1:,} runs "
              "(median seconds; floor = the store in-process, or for start-up the imports)")
        print(f"{'figure':<34}{'served':>10}{'floor':>10}{'x floor':>9}")
        for label, served, floor in rows:
            ratio = f"{served / floor:8.1f}x" if floor else ""
            floor_text = f"{floor:10.4f}" if floor is not None else f"{'':>10}"
            print(f"{label:<34}{served:10.4f}{floor_text}{ratio}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _key(name: str) -> Any:
    from tiled.queries import Key

    return Key(name)


if __name__ == "__main__":
    main()
