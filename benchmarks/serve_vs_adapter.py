"""``broker-v1 serve`` beside tiled over databroker 2's MongoAdapter, on the same MongoDB runs.

Run: python benchmarks/bench_serve.py --against-mongoadapter [--quick | --full] [--runs N]
[--events N] [--frames N] [--list N] [--server-venv DIR]

Needs ``BROKER_V1_TEST_MONGO_URI`` (a MongoDB server: the wire test server of
``.ci/mongo_server.py``) and the tiled server venv (``BROKER_V1_TILED_VENV``, else
``.ci/tiled-venv``: tiled[server] + databroker[server] 2.0.2).  broker_v1's Mongo store writes
into a fresh database ``--runs`` small runs (start, descriptor, stop), one run of ``--events``
events x 10 numbers and one run of ``--frames`` external 512x512 uint16 frames (``.npy``
files, resource spec ``NPY_SEQ``, the test suite's handler).  Two servers read that database:

* **serve**: ``broker-v1 serve`` of a config naming the database and the ``NPY_SEQ`` handler;
* **adapter**: ``tiled serve config`` with ``databroker.mongo_normalized:MongoAdapter`` over
  the same URI and the same handler in its ``handler_registry`` (in the server venv).

Both are read in this process with the same tiled client calls (tiled's ``from_uri`` +
bluesky-tiled-plugins).  The two roots present different specs (``CatalogOfBlueskyRuns`` 3.0
for broker-v1 serve, 1 for the MongoAdapter) and the plugins' client picks its code path per
version (a partial uid, a stream's ``read()``), so the same call may send different requests;
the HTTP requests of one call are printed beside each figure.  Calls alternate between the
two servers so other load on the machine weighs on both alike; each figure is the median of
up to 5 calls (fewer when calls are slow).  The **floor** is the same answer asked of the
Mongo store in this process (for start-up: a process importing tiled's server and uvicorn).

``--quick``: 1,000 runs, 10,000 events, 50 frames; ``--full``: 5,000 runs, 100,000
events, 500 frames; the metadata of every run is listed (``--list`` fewer).  Most of the
time is writing the runs, one document at a time: the wire test server takes 20-150 small
runs (3 documents each) a second depending on other load, so a quick pass takes 1-3 minutes
and a full one 6-10.  Besides the median, the first call of each is printed: a finished
run's table and frames are cached by broker-v1 serve between calls.
No assertions: speed is measured, and each answer is checked for its size.
"""

from __future__ import annotations

import itertools
import json
import os
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
REPO = HERE.parent
KEY = "benchservekey"
SEARCH_PLAN = "count"  # one run in four (workload.PLAN_NAMES)
FRAME_SHAPE = (512, 512)

BROKER_CONFIG = """\
store:
  backend: mongo
  uri: "{uri}"
handlers:
  NPY_SEQ: {{module: handlers, class: NpySeqHandler}}
"""

ADAPTER_CONFIG = """\
authentication: {{single_user_api_key: "{key}", allow_anonymous_access: false}}
trees:
  - path: /
    tree: databroker.mongo_normalized:MongoAdapter.from_uri
    args:
      uri: "{uri}"
      handler_registry: {{NPY_SEQ: "handlers:NpySeqHandler"}}
"""

FIRST_READ = r"""
import sys, time
t0 = float(sys.argv[3])
from tiled.client import from_uri
c = from_uri(sys.argv[1], api_key=sys.argv[2])
c[-1].metadata["start"]
print(time.time() - t0)
"""


# ---------------------------------------------------------------- the runs
def fill(uri: str, n_runs: int, n_events: int, n_frames: int, frames_dir: Path
         ) -> dict[str, Any]:
    """Write the runs with broker_v1's Mongo store; returns the uids the figures ask for."""
    import numpy as np
    from workload import image_run_documents, run_documents

    from broker_v1.stores.mongo import MongoStore

    info: dict[str, Any] = {}
    with MongoStore(uri=uri) as store:
        # Indexes first: what a deployment has, and without them each insert's lookups scan.
        store.ensure_indexes()
        for i in range(n_runs):
            for name, doc in run_documents(i, n_events=0):
                store.insert(name, doc)
                if name == "start" and i == n_runs // 2:
                    info["uid"], info["scan_id"] = doc["uid"], doc["scan_id"]
        for name, doc in run_documents(n_runs, n_events=n_events, n_fields=10, pages=True):
            if name == "start":
                doc["plan_name"] = "long"
                info["long_uid"] = doc["uid"]
            store.insert(name, doc)
        if n_frames:
            frames_dir.mkdir(parents=True, exist_ok=True)
            frame = np.arange(FRAME_SHAPE[0] * FRAME_SHAPE[1], dtype="uint16").reshape(
                FRAME_SHAPE)
            for i in range(n_frames):
                np.save(frames_dir / f"img_{i}.npy", frame + i)
            for name, doc in image_run_documents(str(frames_dir), frames=n_frames,
                                                 size=FRAME_SHAPE[0]):
                if name == "start":
                    info["image_uid"] = doc["uid"]
                store.insert(name, doc)
    return info


# ---------------------------------------------------------------- the servers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process (its own process group) on a free port."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], log: Path):
        self.label, self.command, self.env, self.log = label, command, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> float:
        """Launch; returns seconds until ``/api/v1/`` answered (a launch time is kept)."""
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.launched = time.time()
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command + ["--port", str(port)], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/v1/", timeout=2):
                    return time.perf_counter() - t0
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None


def startup(server: Server) -> tuple[float, float]:
    """Seconds from launch until ``/api/v1/`` answers, and until a fresh client process has
    read ``c[-1]`` (interpreter and imports included); leaves the server running."""
    answered = server.start()
    first = float(subprocess.run(
        [sys.executable, "-c", FIRST_READ, server.url, KEY, str(server.launched)],
        capture_output=True, text=True, check=True).stdout.strip())
    return answered, first


# ---------------------------------------------------------------- measuring
# count_requests: bench_tiled.py's (imported in figures(), where benchmarks/ is on the path).
def alternate(calls: list[tuple[Callable[[], Any], list[int] | None]], budget: float,
              repeat: int = 5) -> list[tuple[float, int | None, float]]:
    """For each call: median seconds, HTTP requests of one call, and seconds of the first
    call (caches cold).  The calls are taken in turn, a first round then up to ``repeat``
    timed rounds, fewer once ``budget`` seconds are spent."""
    first = []
    for call, _ in calls:
        t = time.perf_counter()
        call()
        first.append(time.perf_counter() - t)
    times: list[list[float]] = [[] for _ in calls]
    requests: list[int | None] = [None for _ in calls]
    began = time.perf_counter()
    for _ in range(repeat):
        for k, (call, counter) in enumerate(calls):
            before = counter[0] if counter else 0
            t = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t)
            requests[k] = counter[0] - before if counter else None
        if time.perf_counter() - began > budget:
            break
    return [(statistics.median(ts), n, f) for ts, n, f in zip(times, requests, first)]


def _check(n: int, expected: int, what: str) -> None:
    if n != expected:
        raise RuntimeError(f"{what}: got {n}, expected {expected}")


def figures(serve_url: str, adapter_url: str, mongo_uri: str, info: dict[str, Any],
            n_list: int, budget: float) -> list[tuple[str, tuple[float, int | None],
                                                      tuple[float, int | None], float | None]]:
    """Each figure: (label, serve, adapter, floor)."""
    from bench_tiled import count_requests
    from tiled.client import from_uri
    from tiled.queries import Key

    from broker_v1 import Broker
    from broker_v1.stores.mongo import MongoStore

    clients = [from_uri(serve_url, api_key=KEY), from_uri(adapter_url, api_key=KEY)]
    counters = [count_requests(c.context) for c in clients]
    store = MongoStore(uri=mongo_uri, read_only=True)
    uid, scan_id, long_uid = info["uid"], info["scan_id"], info["long_uid"]
    n_events, n_match = info["events"], info["search_matches"]

    def md(run: Any) -> Any:
        return run.metadata["start"], run.metadata.get("stop")

    def per_client(fn: Callable[[Any], Any]) -> list[tuple[Callable[[], Any], list[int]]]:
        return [(lambda c=c: fn(c), n) for c, n in zip(clients, counters)]

    def search_first(c: Any) -> None:
        node = c.search(Key("plan_name") == SEARCH_PLAN)
        _check(len(node), n_match, "search")
        start = node.values().first().metadata["start"]
        if start["plan_name"] != SEARCH_PLAN:
            raise RuntimeError("the search was not applied")

    def listing(c: Any) -> None:
        _check(sum(1 for _, run in itertools.islice(c.items(), n_list) if md(run)), n_list,
               "listing")

    def table(c: Any) -> None:
        _check(c[long_uid]["primary"].read().sizes["time"], n_events, "table rows")

    def frames(c: Any) -> None:
        img = c[info["image_uid"]]["primary"].read()["img"]
        if img.shape != (info["frames"], *FRAME_SHAPE):
            raise RuntimeError(f"frames: shape {img.shape}")
        img.values.sum()  # the pixels, not a lazy handle

    def floor_last() -> Any:
        s = next(iter(store.find_run_starts({}, limit=1)))
        return s, store.get_run_stop(s["uid"])

    def floor_search() -> Any:
        store.count_runs({"plan_name": SEARCH_PLAN})
        return next(iter(store.find_run_starts({"plan_name": SEARCH_PLAN}, limit=1)))

    def floor_table() -> Any:
        (d,) = store.get_descriptors(long_uid)
        return list(store.iter_event_pages(d["uid"]))

    floors: dict[str, Callable[[], Any]] = {
        "c[-1]": floor_last,
        "c[uid]": lambda: (store.get_run_start(uid), store.get_run_stop(uid)),
        "c[scan_id]": lambda: store.find_runs_by_scan_id(scan_id),
        f"search ({n_match:,} of {info['runs']:,} runs), first": floor_search,
        f"metadata of {n_list:,} runs": lambda: store.get_run_stops(
            [s["uid"] for s in store.find_run_starts({}, limit=n_list)]),
        f"read() of {n_events:,} events x 10": floor_table,
    }
    served: dict[str, Callable[[Any], Any]] = {
        "c[-1]": lambda c: md(c[-1]),
        "c[uid]": lambda c: md(c[uid]),
        "c[scan_id]": lambda c: md(c[scan_id]),
        f"search ({n_match:,} of {info['runs']:,} runs), first": search_first,
        f"metadata of {n_list:,} runs": listing,
        f"read() of {n_events:,} events x 10": table,
    }
    if info.get("image_uid"):
        db = Broker(store, handlers={"NPY_SEQ": _handler()})
        label = f"{info['frames']:,} filled 512x512 frames"
        served[label] = frames
        floors[label] = lambda: db.get_table(db[info["image_uid"]], fill=True)["img"].iloc[-1]
    rows = []
    for label, fn in served.items():
        serve, adapter = alternate(per_client(fn), budget)
        floor = alternate([(floors[label], None)], budget)[0][0]
        rows.append((label, serve, adapter, floor))
        print(f"  {label}: serve {serve[0]:.4f} s, adapter {adapter[0]:.4f} s", flush=True)
    for c in clients:
        c.context.close()
    store.close()
    return rows


def _handler() -> Any:
    sys.path.insert(0, str(REPO / "tests"))
    from handlers import NpySeqHandler

    return NpySeqHandler


# ---------------------------------------------------------------- the whole comparison
def _seconds(s: float | None) -> str:
    if s is None:
        return f"{'':>10}"
    return f"{s * 1000:8.1f}ms" if s < 1 else f"{s:9.2f}s"


def report(rows: list[tuple[str, Any, Any, float | None]], head: str) -> str:
    lines = [head, f"{'figure':<38}{'serve':>10}{'adapter':>10}{'adapter/':>9}{'floor':>10}"
             f"{'serve/':>8}  first call serve/adapter; requests",
             f"{'':<38}{'':>10}{'':>10}{'serve':>9}{'':>10}{'floor':>8}"]
    for label, serve, adapter, floor in rows:
        s, a = serve[0], adapter[0]
        ratio = f"{a / s:8.1f}x" if s else ""
        over = f"{s / floor:7.1f}x" if floor else f"{'':>8}"
        extra = ""
        if serve[1] is not None:
            extra = (f"{_seconds(serve[2]).strip()} / {_seconds(adapter[2]).strip()}; "
                     f"{serve[1]}/{adapter[1]}")
        lines.append(f"{label:<38}{_seconds(s)}{_seconds(a)}{ratio}{_seconds(floor)}"
                     f"{over}  {extra}")
    return "\n".join(lines)


def main(args: Any) -> int:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO / "tests"))
    from tiled_server import has_databroker, server_venv

    base = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if not base:
        print("--against-mongoadapter needs BROKER_V1_TEST_MONGO_URI (a MongoDB server, e.g. "
              "the wire test server: python .ci/mongo_server.py start --venv VENV)")
        return 2
    if args.server_venv:
        os.environ["BROKER_V1_TILED_VENV"] = str(args.server_venv)
    venv = server_venv()
    if venv is None or not has_databroker(venv):
        print("--against-mongoadapter needs the tiled server venv with databroker[server] 2 "
              "(BROKER_V1_TILED_VENV or --server-venv)")
        return 2
    full = args.full
    n_runs = args.runs or (5_000 if full else 1_000)
    n_events = args.events or (100_000 if full else 10_000)
    n_frames = args.frames if args.frames is not None else (500 if full else 50)
    n_list = min(args.list or n_runs, n_runs)
    budget = 30.0 if full else 10.0
    began = time.monotonic()
    db_name = f"bench_serve_{os.getpid()}"
    uri = f"{base.rstrip('/')}/{db_name}"
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-mongo-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            t = time.monotonic()
            info = fill(uri, n_runs, n_events, n_frames, tmp / "frames")
            fill_s = time.monotonic() - t
            info.update(runs=n_runs + 1 + (1 if n_frames else 0), events=n_events,
                        frames=n_frames,
                        search_matches=sum(1 for i in range(n_runs) if i % 4 == 1))
            print(f"wrote {n_runs:,} runs + one of {n_events:,} events x 10 + "
                  f"{n_frames:,} frames into {db_name} in {fill_s:.0f} s", flush=True)
            (tmp / "config").mkdir()
            (tmp / "config" / "benchserve.yml").write_text(BROKER_CONFIG.format(uri=uri))
            (tmp / "adapter.yml").write_text(ADAPTER_CONFIG.format(key=KEY, uri=uri))
            pythonpath = os.pathsep.join([str(REPO / "tests"), str(REPO)])
            serve = Server("broker-v1 serve",
                           [sys.executable, "-m", "broker_v1", "serve", "benchserve"],
                           {**os.environ, "BROKER_V1_SERVE_API_KEY": KEY,
                            "BROKER_V1_CONFIG_PATH": str(tmp / "config"),
                            "PYTHONPATH": pythonpath}, tmp / "serve.log")
            adapter = Server("tiled over the MongoAdapter",
                             [str(venv / "bin" / "tiled"), "serve", "config",
                              str(tmp / "adapter.yml"), "--host", "127.0.0.1"],
                             {**os.environ, "PYTHONPATH": str(REPO / "tests")},
                             tmp / "adapter.log")
            servers = [serve, adapter]
            # A first launch of each warms disk caches for its imports; then the timed one.
            for server in servers:
                server.start()
                server.stop()
            start_rows = []
            answered = {s.label: startup(s) for s in servers}
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import tiled.server.app, uvicorn"],
                           check=True)
            imports = time.perf_counter() - t
            start_rows.append(("start-up: /api/v1/ answers",
                               (answered[serve.label][0], None, None),
                               (answered[adapter.label][0], None, None), imports))
            start_rows.append(("start-up: fresh client's c[-1]",
                               (answered[serve.label][1], None, None),
                               (answered[adapter.label][1], None, None), None))
            rows = start_rows + figures(serve.url, adapter.url, uri, info, n_list, budget)
        finally:
            for server in servers:
                server.stop()
            import pymongo

            with pymongo.MongoClient(base) as client:
                client.drop_database(db_name)
    head = (f"\nbroker-v1 serve (CatalogOfBlueskyRuns 3.0) vs tiled over databroker 2's "
            f"MongoAdapter (CatalogOfBlueskyRuns 1), the same {info['runs']:,} runs on a "
            f"MongoDB server; median seconds; floor = the Mongo store in-process (start-up: "
            f"importing tiled's server and uvicorn); took {time.monotonic() - began:.0f} s")
    print(report(rows, head))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "info": info,
                                         "date": time.strftime("%Y-%m-%d")}, indent=1))
    return 0
