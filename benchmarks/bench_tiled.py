"""Reading a tiled server: broker_v1 beside tiled's client alone and databroker 2's v1 shim.

Run: python benchmarks/bench_tiled.py [--quick | --full] [--layout sql|mongo] [--runs N]
[--events N] [--frames N] [--server-venv DIR] [--shim-venv DIR] [--json PATH]

Starts a tiled server (``tests/tiled_server.py``: config, free port, API key) in the server
venv (``BROKER_V1_TILED_VENV``, else ``.ci/tiled-venv``) and fills it with the runs of
``tiled_bench_fill.py`` (``--runs`` short runs and one run of ``--events`` events x 10
numbers): ``--layout sql`` (default), a SQL catalog filled through bluesky-tiled-plugins'
TiledWriter, plus one run of ``--frames`` external 512x512 uint16 frames in ``.npy`` files;
``--layout mongo``, databroker 2's MongoAdapter over a fresh database of the MongoDB server
``BROKER_V1_TEST_MONGO_URI`` (the wire test server), the same documents (no frames) written
by broker_v1's Mongo store.  Then it makes the same requests three ways, on the same server
and runs:

* **broker_v1**: ``Broker.from_config({'store': {'backend': 'tiled', ...}})``;
* **floor**: tiled's client + bluesky-tiled-plugins alone (``from_uri(...)``), the same
  request written directly: the server's own cost plus the client's;
* **shim**: databroker 2's v1 shim (``from_uri(...).v1``) in its own venv (``--shim-venv``,
  else ``BROKER_V1_SHIM_VENV``, else ``.ci/db2-venv``, holding ``databroker[client,back-compat]
  ==2.0.2``), run as a subprocess that prints JSON.  What the shim raises is printed in place
  of its figure.  Without that venv the shim column says so.

Figures: ``db[-1]``, ``db[uid]``, ``db[scan_id]`` (start and stop read), the first header of a
search, iterating a search of all short runs (start of each read), ``get_table`` of the long
run, ``get_table(fill=True)`` of the image run (the floor: the image array node's ``read()``),
and start-up (a fresh Python process doing ``db[-1]``, interpreter and imports included).
Lookups use a connected client but broker_v1's run cache is emptied before each call, so
every call asks the server (as the floor and the shim do).  Each figure is the median of up
to 5 calls (fewer when a call is slow), broker_v1 and floor alternating call by call; beside
it, the HTTP requests one call made, which is where the time goes.  ``--quick``: 300 runs,
10,000 events, 200 frames (1.5-3.5 minutes on 2 cores, depending on other load); ``--full``:
2,000 runs, 100,000 events, 1,000 frames (about 8 minutes, most of them filling the server).
No assertions: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIGURES = ["db[-1]", "db[uid]", "db[scan_id]", "search_first", "search_all", "get_table",
           "filled_frames", "startup"]
PLAN = "bench_scan"


# ---------------------------------------------------------------- shared by every column
def count_requests(context: Any) -> list[int]:
    """Count the HTTP requests a tiled client context sends (a one-element list)."""
    counter = [0]
    client = context.http_client
    send = client.send

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return send(*args, **kwargs)

    client.send = counted
    return counter


def measure(call: Any, counter: list[int] | None, budget: float, repeat: int = 5
            ) -> dict[str, Any]:
    """Median seconds of up to ``repeat`` calls (stop after ``budget`` s once one is done);
    an exception is returned as text in place of the figure."""
    times: list[float] = []
    requests = None
    spent = time.perf_counter()
    for _ in range(repeat):
        before = counter[0] if counter else 0
        t = time.perf_counter()
        try:
            call()
        except Exception as err:  # noqa: BLE001 - what the reader raised is the result
            return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                    if str(err) else type(err).__name__}
        times.append(time.perf_counter() - t)
        requests = counter[0] - before if counter else None
        if time.perf_counter() - spent > budget:
            break
    return {"s": statistics.median(times), "calls": len(times), "requests": requests}


# ---------------------------------------------------------------- the shim's subprocess
def shim_worker(spec: dict[str, Any]) -> None:
    """Runs in the shim's venv (stdlib + databroker 2 only): print the figures as JSON."""
    from tiled.client import from_uri

    catalog = from_uri(spec["uri"], api_key=spec["api_key"])
    counter = count_requests(catalog.context)
    db = catalog.v1
    budget = spec["budget"]
    out = {}

    def header(h: Any) -> None:
        h.start, h.stop  # noqa: B018

    out["db[-1]"] = measure(lambda: header(db[-1]), counter, budget)
    out["db[uid]"] = measure(lambda: header(db[spec["uid"]]), counter, budget)
    out["db[scan_id]"] = measure(lambda: header(db[spec["scan_id"]]), counter, budget)
    out["search_first"] = measure(lambda: header(next(iter(db(plan_name=PLAN)))), counter,
                                  budget)

    def search_all() -> None:
        n = sum(1 for h in db(plan_name=PLAN) if h.start)
        if n != spec["runs"]:
            raise RuntimeError(f"found {n} runs, not {spec['runs']}")

    out["search_all"] = measure(search_all, counter, budget)

    def table() -> None:
        df = db.get_table(db[spec["long_uid"]])
        if len(df) != spec["events"]:
            raise RuntimeError(f"{len(df)} rows, not {spec['events']}")

    out["get_table"] = measure(table, counter, budget)

    def frames() -> None:
        n = sum(1 for _ in db.get_events(db[spec["image_uid"]], fill=True))
        if n != spec["frames"]:
            raise RuntimeError(f"{n} events, not {spec['frames']}")

    if "image_uid" in spec:
        out["filled_frames"] = measure(frames, counter, budget)
    import databroker

    out["version"] = databroker.__version__
    print(json.dumps(out))


# ---------------------------------------------------------------- this venv's columns
def startup(python: str, code: str, budget: float) -> dict[str, Any]:
    """A fresh process doing the first ``db[-1]``: its wall time (imports included)."""
    def call() -> None:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True,
                              timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode:
            raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return measure(call, None, budget, repeat=3)


def measure_here(uri: str, key: str, info: dict[str, Any], budget: float,
                 layout: str = "sql") -> dict[str, dict[str, Any]]:
    from tiled.client import from_uri
    from tiled.queries import Key

    from broker_v1 import Broker

    db = Broker.from_config({"store": {"backend": "tiled", "uri": uri, "api_key": key}})
    store = db.store
    v1_counter = count_requests(store._conn.catalog().context)
    catalog = from_uri(uri, api_key=key)
    floor_counter = count_requests(catalog.context)

    def cold(call: Any) -> Any:
        def run() -> None:  # every call asks the server: empty broker_v1's run cache
            store._runs.clear()
            store._streams.clear()
            store._external._windows.clear()
            if store._reader is not None:
                store._reader.forget()  # the Mongo layout's run documents
            call()
        return run

    def header(h: Any) -> None:
        h.start, h.stop  # noqa: B018

    def run_md(run: Any) -> None:
        run.metadata["start"], run.metadata.get("stop")  # noqa: B018

    uid, scan_id, long_uid = info["uid"], info["scan_id"], info["long_uid"]
    runs, events = info["runs"], info["events"]
    # The MongoAdapter sorts by the start document's own fields (and fails on start.time).
    newest_first = [("time", -1)] if layout == "mongo" else [("start.time", -1)]

    def v1_all() -> None:
        n = sum(1 for h in db(plan_name=PLAN) if h.start)
        if n != runs:
            raise RuntimeError(f"found {n} runs, not {runs}")

    def floor_all() -> None:
        node = catalog.search(Key("plan_name") == PLAN).sort(*newest_first)
        n = sum(1 for _, run in node.items() if run.metadata["start"])
        if n != runs:
            raise RuntimeError(f"found {n} runs, not {runs}")

    def v1_table() -> None:
        if len(db.get_table(db[long_uid])) != events:
            raise RuntimeError("wrong number of rows")

    def floor_table() -> None:
        stream = catalog[long_uid]["primary"]
        if layout == "mongo":  # the stream's columns as one xarray Dataset
            rows = stream.read().sizes["time"]
        else:
            rows = len(stream.base["internal"].read())
        if rows != events:
            raise RuntimeError("wrong number of rows")

    image_uid, frames = info.get("image_uid"), info.get("frames", 0)

    def v1_frames() -> None:
        column = db.get_table(db[image_uid], fill=True)["img"]
        if len(column) != frames or column.iloc[-1].shape != (512, 512):
            raise RuntimeError("wrong frames")

    def floor_frames() -> None:
        if catalog[image_uid]["primary"].base["img"].read().shape != (frames, 512, 512):
            raise RuntimeError("wrong frames")

    pairs = {
        "db[-1]": (lambda: header(db[-1]), lambda: run_md(catalog[-1])),
        "db[uid]": (lambda: header(db[uid]), lambda: run_md(catalog[uid])),
        "db[scan_id]": (lambda: header(db[scan_id]), lambda: run_md(catalog[scan_id])),
        "search_first": (
            lambda: header(next(iter(db(plan_name=PLAN)))),
            lambda: run_md(catalog.search(Key("plan_name") == PLAN).sort(*newest_first)
                           .values()[0])),
        "search_all": (v1_all, floor_all),
        "get_table": (v1_table, floor_table),
    }
    if image_uid:  # the SQL layout's fill has an external-image run
        pairs["filled_frames"] = (v1_frames, floor_frames)
    out: dict[str, dict[str, Any]] = {}
    for name, (v1_call, floor_call) in pairs.items():
        v1_call(), floor_call()  # warm both (connections, imports)
        v1_times, floor_times = [], []
        # alternate call by call so load from other work weighs on both alike
        for _ in range(5):
            v1_times.append(measure(cold(v1_call), v1_counter, budget, repeat=1))
            floor_times.append(measure(floor_call, floor_counter, budget, repeat=1))
            if sum(r.get("s", budget) for r in v1_times + floor_times) > budget:
                break
        out[name] = {"broker_v1": _merge(v1_times), "floor": _merge(floor_times)}

    py = sys.executable
    v1_code = ("from broker_v1 import Broker; db = Broker.from_config({'store': {'backend': "
               f"'tiled', 'uri': {uri!r}, 'api_key': {key!r}}}}}); h = db[-1]; h.start, h.stop")
    floor_code = ("from tiled.client import from_uri; r = from_uri("
                  f"{uri!r}, api_key={key!r})[-1]; r.metadata['start'], r.metadata['stop']")
    out["startup"] = {"broker_v1": startup(py, v1_code, budget),
                      "floor": startup(py, floor_code, budget)}
    return out


def fill_mongo(uri: str, runs: int, events: int) -> dict[str, Any]:
    """The runs of ``tiled_bench_fill.py`` written into ``uri`` by broker_v1's Mongo store
    (the normalized layout the MongoAdapter serves)."""
    from tiled_bench_fill import long_run, short_run

    from broker_v1.stores.mongo import MongoStore

    t0 = time.time() - 10 * 86400
    with MongoStore(uri=uri) as store:
        uids = [short_run(store.insert, i, t0 + 10.0 * i, i >= runs - 20)
                for i in range(runs)]
        long_uid = long_run(store.insert, events, t0 + 10.0 * runs + 100, runs + 1)
    return {"uids": uids, "long_uid": long_uid}


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    for r in results:
        if "error" in r:
            return r
    return {"s": statistics.median(r["s"] for r in results), "calls": len(results),
            "requests": results[-1]["requests"]}


def run_shim(venv: Path, spec: dict[str, Any], budget: float) -> dict[str, Any]:
    python = venv / "bin" / "python"
    if not python.exists():
        return {"error": f"no shim venv at {venv}"}
    done = subprocess.run([str(python), str(Path(__file__)), "--shim-worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800, cwd=tempfile.gettempdir())
    if done.returncode:
        return {"error": f"shim worker failed: {done.stderr.strip()[-400:]}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    code = ("from tiled.client import from_uri; h = from_uri("
            f"{spec['uri']!r}, api_key={spec['api_key']!r}).v1[-1]; h.start, h.stop")
    out["startup"] = startup(str(python), code, budget)
    return out


# ---------------------------------------------------------------- report
def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "raised"
    return f"{r['s'] * 1000:9.1f} ms" if r["s"] < 10 else f"{r['s']:9.2f} s "


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or "s" not in a or "s" not in b or not b["s"]:
        return "-"
    return f"{a['s'] / b['s']:.2f}"


def report(results: dict[str, Any]) -> str:
    lines = [f"{'figure':14} {'broker_v1':>12} {'floor':>12} {'shim':>12} "
             f"{'v1/floor':>9} {'shim/v1':>8}   HTTP requests v1/floor/shim"]
    shim = results["shim"]
    figures = [name for name in FIGURES if name in results["here"]]
    for name in figures:
        here = results["here"][name]
        v1, floor = here["broker_v1"], here["floor"]
        s = shim.get(name) if "error" not in shim else None
        reqs = "/".join(str(r.get("requests", "-")) if r and "s" in r else "-"
                        for r in (v1, floor, s))
        if name == "startup":
            reqs = ""
        lines.append(f"{name:14} {_cell(v1):>12} {_cell(floor):>12} {_cell(s):>12} "
                     f"{_ratio(v1, floor):>9} {_ratio(s, v1):>8}   {reqs}")
    errors = [(f"{name} ({col})", results["here"][name][col]["error"]) for name in figures
              for col in ("broker_v1", "floor") if "error" in results["here"][name][col]]
    if "error" in shim:
        errors.append(("shim", shim["error"]))
    else:
        errors += [(f"{name} (shim)", shim[name]["error"]) for name in figures
                   if name in shim and "error" in shim[name]]
    for name, err in errors:
        lines.append(f"  raised in {name}: {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="300 runs, 10,000 events (default)")
    mode.add_argument("--full", action="store_true", help="2,000 runs, 100,000 events")
    parser.add_argument("--layout", choices=["sql", "mongo"], default="sql",
                        help="the server's layout (mongo needs BROKER_V1_TEST_MONGO_URI)")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--frames", type=int, help="external frames (200; full 1,000)")
    parser.add_argument("--budget", type=float, help="seconds per figure (default 10; full 30)")
    parser.add_argument("--server-venv", type=Path)
    parser.add_argument("--shim-venv", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--shim-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shim_worker:
        shim_worker(json.loads(args.shim_worker))
        return 0
    runs = args.runs or (2000 if args.full else 300)
    events = args.events or (100_000 if args.full else 10_000)
    frames = args.frames or (1000 if args.full else 200)
    budget = args.budget or (30.0 if args.full else 10.0)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from tiled_server import API_KEY, TiledServer, server_venv

    if args.server_venv:
        os.environ["BROKER_V1_TILED_VENV"] = str(args.server_venv)
    venv = server_venv()
    if venv is None:
        print("no tiled server venv (set BROKER_V1_TILED_VENV or --server-venv)")
        return 2
    shim_venv = (args.shim_venv or Path(os.environ.get("BROKER_V1_SHIM_VENV")
                                        or REPO / ".ci" / "db2-venv")).absolute()
    mongo_base = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if args.layout == "mongo" and not mongo_base:
        print("--layout mongo needs BROKER_V1_TEST_MONGO_URI (a MongoDB server, e.g. the wire "
              "test server started by .ci/mongo_server.py)")
        return 2
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-tiled-") as tmp:
        if args.layout == "mongo":
            db_name = f"bench_tiled_{os.getpid()}"
            server = TiledServer(venv=venv, folder=Path(tmp), layout="mongo",
                                 mongo_uri=f"{mongo_base.rstrip('/')}/{db_name}")
            t = time.monotonic()
            fill = fill_mongo(server.mongo_uri, runs, events)
            fill_s = time.monotonic() - t
            server.start()
            what = "tiled over the Mongo layout (MongoAdapter)"
        else:
            server = TiledServer(venv=venv, folder=Path(tmp))
            server.start()
            t = time.monotonic()
            filled = subprocess.run(
                [str(venv / "bin" / "python"), str(HERE / "tiled_bench_fill.py"), server.uri,
                 API_KEY, str(runs), str(events), str(frames),
                 str(server.folder / "catalog" / "external" / "frames")],
                capture_output=True, text=True, timeout=7200)
            if filled.returncode:
                server.stop()
                raise RuntimeError(f"filling failed:\n{filled.stderr[-3000:]}")
            fill = json.loads(filled.stdout.strip().splitlines()[-1])
            fill_s = time.monotonic() - t
            what = "tiled SQL catalog"
        try:
            middle = runs // 2
            info = {"uri": server.uri, "api_key": API_KEY, "uid": fill["uids"][middle],
                    "scan_id": middle + 1, "long_uid": fill["long_uid"], "runs": runs,
                    "events": events, "budget": budget}
            images = ""
            if "image_uid" in fill:
                info.update(image_uid=fill["image_uid"], frames=frames)
                images = f", one of {frames:,} external 512x512 frames"
            print(f"{what} at {server.uri}: started in "
                  f"{server.timings['start']:.1f} s, filled in {fill_s:.1f} s "
                  f"({runs} runs, one of {events:,} events x 10 numbers{images})", flush=True)
            here = measure_here(server.uri, API_KEY, info, budget, args.layout)
            shim = run_shim(shim_venv, info, budget)
        finally:
            server.stop()
            if args.layout == "mongo":
                import pymongo

                with pymongo.MongoClient(mongo_base) as client:
                    client.drop_database(db_name)
    results = {"layout": args.layout, "runs": runs, "events": events, "here": here,
               "shim": shim,
               "seconds": time.monotonic() - began,
               "date": time.strftime("%Y-%m-%d", time.gmtime())}
    print(report(results))
    print(f"shim: databroker {shim.get('version', '?')}; took {results['seconds']:.0f} s "
          "in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
