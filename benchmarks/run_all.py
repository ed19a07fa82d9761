"""Every benchmark, every store, one command: figures, floors, scaling, JSON, plots, docs table.

Run from a clone (no install needed; broker_v1 is imported from this checkout)::

    python benchmarks/run_all.py --quick     # small sizes, about 2 minutes on 2 cores
    python benchmarks/run_all.py --full      # issue 11's sizes; long (see benchmarks/README.md)

Stores: ``memory``, ``files``, ``mongomock``, and ``wire`` (a MongoDB wire-protocol server) when
``--mongo-uri`` or ``BROKER_V1_TEST_MONGO_URI`` gives one.  Each store is measured in its own
Python process, one after another, so no store's memory or threads weigh on another's figures.

What it measures (the workload is ``benchmarks/workload.py``'s realistic runs):

* lookups and search (``db[-1]``, ``db[uid]``, ``db[uid[:8]]``, ``db[scan_id]``,
  ``db(plan_name=...)`` first header and every match, cold open + ``db[-1]``) on catalogs that
  grow through 100, 1k, 10k (and 100k with ``--full``) runs;
* ``get_table`` of one run of 1k, 10k, 100k (and 1M) events x 10 fields, with 2 fields, the
  files store's first reads, peak memory, ``get_events``, ``get_table`` over many runs;
* inserts: single documents as the RunEngine sends them (validation on), and bulk pages;
* filling: ``get_table(fill=True)`` over a run of ``.npy`` frames and ``get_images()[i]``;
* the ``broker-v1`` command (files store): ``ls --limit 50`` and ``copy`` files -> files.

Floors are measured in the same process, alternating with the figure they bound: the same
DataFrame built straight from numpy columns, the same JSON lines parsed with ``json.loads``, the
same frames read with ``numpy.load`` (and, for Mongo stores, the same events fetched with
pymongo).  Each figure reports its ratio to its floor (time / floor time: 1.0 is the floor).

Results: a table on stdout; JSON in ``benchmarks/results/<timestamp>.json`` and
``benchmarks/results/latest.json``; plots (if matplotlib is installed).  ``--publish`` (the
default with ``--full``) also writes what the docs show: ``docs/_static/benchmarks.json``,
``docs/_static/benchmarks_table.inc`` and ``docs/_static/bench_*.png``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402
from workload import image_run_documents, run_documents  # noqa: E402

TZ = "US/Eastern"  # the floors convert times to the same zone (bench_tables.floor_from_numpy)
DOCS_STATIC = ROOT / "docs" / "_static"
DEFAULT_RESULTS = HERE / "results"
FIELDS = 10  # scalar fields per event in the table runs (issue 3's run)
PAGE = 10_000  # events per event_page when inserting table runs


# =========================================================================== sizes
@dataclass(frozen=True)
class Sizes:
    """How big everything is in one mode (some stores cap some sizes: ``sizes_for``)."""

    run_sizes: tuple[int, ...]  # catalog sizes the lookups are measured at
    rich_runs: int  # the first rich_runs catalog runs carry rich_events events each
    rich_events: int
    many_runs: int  # get_table over this many rich runs in one call
    table_sizes: tuple[int, ...]  # one run each: events x FIELDS scalar fields
    headline_runs: int  # the catalog size the lookup figures are reported at
    headline_events: int  # the run size the table figures are reported at
    insert_runs: int  # single-document inserts: runs x events x 5 fields
    insert_events: int
    re_runs: int  # RunEngine-shaped runs (26 single documents each) inserted one by one
    frames: int  # the image run: frames of frame_size x frame_size uint16
    frame_size: int
    repeat: int  # repeats per figure (fewer when a figure exceeds its budget)
    budget: float  # seconds per figure before repeats stop early
    latency_budget: float  # seconds per lookup figure


MODES = {
    "tiny": Sizes(run_sizes=(100, 300), rich_runs=100, rich_events=10, many_runs=100,
                  table_sizes=(100, 1_000), headline_runs=300, headline_events=1_000,
                  insert_runs=1, insert_events=200, re_runs=4, frames=4, frame_size=32,
                  repeat=3, budget=0.2, latency_budget=0.02),
    "quick": Sizes(run_sizes=(100, 1_000, 10_000), rich_runs=1_000, rich_events=100,
                   many_runs=1_000, table_sizes=(1_000, 10_000, 100_000),
                   headline_runs=10_000, headline_events=100_000, insert_runs=4,
                   insert_events=2_500, re_runs=400, frames=100, frame_size=512,
                   repeat=5, budget=2.0, latency_budget=0.15),
    "full": Sizes(run_sizes=(100, 1_000, 10_000, 100_000), rich_runs=10_000, rich_events=100,
                  many_runs=1_000, table_sizes=(1_000, 10_000, 100_000, 1_000_000),
                  headline_runs=10_000, headline_events=100_000, insert_runs=20,
                  insert_events=2_500, re_runs=2_000, frames=1_000, frame_size=512,
                  repeat=7, budget=60.0, latency_budget=1.0),
}


def sizes_for(store: str, mode: str) -> tuple[Sizes, list[str]]:
    """The sizes one store is measured at, and notes on every cap applied."""
    sz = MODES[mode]
    notes: list[str] = []
    if store == "mongomock" and mode != "tiny":
        # mongomock is a test double: no real indexes (every query scans), deep copies on
        # every read, and a per-uid lookup on insert (no unique index) that makes inserting
        # into a growing collection quadratic.  Its figures are for comparison with databroker
        # on mongomock, at the sizes where it finishes.
        cap = 10_000 if mode == "quick" else 100_000
        tables = tuple(n for n in sz.table_sizes if n <= cap)
        sz = replace(sz, rich_runs=100, many_runs=100, table_sizes=tables,
                     headline_events=10_000,
                     insert_runs=1 if mode == "quick" else 2,
                     insert_events=min(sz.insert_events, 1_000),
                     re_runs=20 if mode == "quick" else 50)
        notes.append(
            f"mongomock: tables up to {cap:,} events (figures at 10,000), 100 runs with "
            "events in the catalog, get_table over 100 runs, single inserts into "
            f"{sz.insert_runs} run(s) of 1,000 events: mongomock scans every document for "
            "every query and checks uids on insert by scanning; RunEngine-shaped inserts: "
            f"{sz.re_runs} runs")
    if store == "wire" and mode != "tiny":
        sz = replace(sz, insert_runs=min(sz.insert_runs, 2 if mode == "quick" else 4),
                     re_runs=50 if mode == "quick" else 200)
        notes.append("wire: single-document inserts into "
                     f"{sz.insert_runs} runs x {sz.insert_events:,} events and {sz.re_runs} "
                     "RunEngine-shaped runs (one round trip each)")
    assert sz.rich_runs in sz.run_sizes and sz.headline_runs in sz.run_sizes
    assert sz.headline_events in sz.table_sizes
    return sz, notes


# =========================================================================== figures
#: id -> (label, unit, which way is better).  The order is the table's order.
FIGURES: dict[str, tuple[str, str, str]] = {
    "db[-1]": ("``db[-1]``", "ms", "lower"),
    "db[uid]": ("``db[uid]``", "ms", "lower"),
    "db[uid[:8]]": ("``db[uid[:8]]``", "ms", "lower"),
    "db[scan_id]": ("``db[scan_id]``", "ms", "lower"),
    "search_first": ("``db(plan_name=...)``, first header", "ms", "lower"),
    "search_all": ("``db(plan_name=...)``, every match", "ms", "lower"),
    "cold_open": ("cold open + ``db[-1]``", "ms", "lower"),
    "db[-1]@100": ("``db[-1]`` at 100 runs", "ms", "lower"),
    "insert_single": ("insert, single documents, validation on", "docs/s", "higher"),
    "insert_bulk": ("insert, one run as event pages", "docs/s", "higher"),
    "insert_runengine": ("insert, RunEngine-shaped runs (26 single documents), validation on",
                         "docs/s", "higher"),
    "insert_runengine_strict": ("insert, RunEngine-shaped runs, ``validate: strict``",
                                "docs/s", "higher"),
    "validate_start": ("validation of one start (RunEngine-shaped run)", "µs", "lower"),
    "validate_descriptor": ("validation of one descriptor (10 data keys, 3 devices' "
                            "configuration)", "µs", "lower"),
    "validate_event": ("validation of one event", "µs", "lower"),
    "validate_stop": ("validation of one stop", "µs", "lower"),
    "get_table": ("``get_table``, one run, 10 fields", "rows/s", "higher"),
    "get_table_2_fields": ("``get_table``, ``fields=[2 fields]``", "rows/s", "higher"),
    "get_table_first_read": ("``get_table``, first read (new store object)", "rows/s", "higher"),
    "get_table_json_read": ("``get_table``, first read parsing JSON (no cache)", "rows/s",
                            "higher"),
    "get_table_peak_memory": ("``get_table`` peak extra memory / DataFrame size", "x", "lower"),
    "get_events": ("``get_events``, same run", "events/s", "higher"),
    "get_table_many_runs": ("``get_table`` over many runs, one call", "s", "lower"),
    "fill_get_table": ("``get_table(fill=True)``, image run", "s", "lower"),
    "get_images_one": ("``get_images(h, 'img')[i]``, one frame", "ms", "lower"),
    "cli_ls": ("``broker-v1 ls --limit 50`` (whole process)", "s", "lower"),
    "cli_copy": ("``broker-v1 copy`` files -> files", "docs/s", "higher"),
    "floor_dataframe": ("floor: DataFrame from numpy columns", "rows/s", "higher"),
    "floor_dataframe_2": ("floor: DataFrame from 2 numpy columns", "rows/s", "higher"),
    "floor_json_events": ("floor: ``json.loads`` of one line per event", "events/s", "higher"),
    "floor_json_file": ("floor: read + ``json.loads`` of the run file", "rows/s", "higher"),
    "floor_numpy_load": ("floor: ``numpy.load`` of the same frames", "s", "lower"),
    "floor_pymongo_find": ("floor: ``find`` of the same events, client alone", "rows/s",
                           "higher"),
    "floor_pymongo_insert": ("floor: ``insert_many`` of the same events, client alone",
                             "docs/s", "higher"),
}

COMMON_FIGURES = [
    "db[-1]", "db[uid]", "db[uid[:8]]", "db[scan_id]", "search_first", "search_all",
    "db[-1]@100", "insert_single", "insert_bulk", "insert_runengine", "get_table",
    "get_table_2_fields", "get_events", "get_table_many_runs", "fill_get_table",
    "get_images_one", "floor_dataframe", "floor_dataframe_2", "floor_json_events",
    "floor_numpy_load",
]
STORE_FIGURES = {
    "memory": [*COMMON_FIGURES, "get_table_peak_memory", "insert_runengine_strict",
               "validate_start", "validate_descriptor", "validate_event", "validate_stop"],
    "files": [*COMMON_FIGURES, "cold_open", "get_table_peak_memory", "get_table_first_read",
              "get_table_json_read", "floor_json_file", "cli_ls", "cli_copy"],
    "mongomock": [*COMMON_FIGURES, "cold_open", "floor_pymongo_find", "floor_pymongo_insert"],
    "wire": [*COMMON_FIGURES, "cold_open", "floor_pymongo_find", "floor_pymongo_insert"],
}


def expected_figures(store: str) -> list[str]:
    """The figure ids a complete run reports for ``store`` (the smoke test checks them)."""
    return list(STORE_FIGURES[store])


@dataclass(frozen=True)
class Target:
    issue: str
    store: str
    figure: str
    op: str  # "<", "<=", ">=", "reads1" (one frame read), "faster" (than get_table)
    value: float
    at: dict[str, int]  # the figure's params must match for the target to apply
    kind: str = "target"  # or "comparison": databroker 1.2.5's figure quoted in the issue
    on_ratio: bool = False


TARGETS = [
    *(Target("2", "memory", f, "<", 0.2, {"runs": 10_000})
      for f in ("db[-1]", "db[uid]", "db[uid[:8]]", "db[scan_id]")),
    Target("2", "memory", "search_first", "<", 2.0, {"runs": 10_000}),
    Target("2", "memory", "search_all", "<", 50.0, {"runs": 10_000}),
    Target("2", "memory", "insert_single", ">=", 50_000, {}),
    Target("3", "memory", "get_table", ">=", 2_000_000, {"events": 100_000}),
    Target("3", "memory", "get_table", ">=", 28_000, {"events": 100_000}, "comparison"),
    Target("3", "memory", "get_table_2_fields", "faster", 0, {"events": 100_000}),
    Target("3", "memory", "get_table_peak_memory", "<", 3.0, {"events": 100_000}),
    Target("3", "memory", "get_events", ">=", 300_000, {"events": 100_000}),
    Target("3", "memory", "get_table_many_runs", "<", 1.0, {"runs": 1_000, "events_per_run": 100}),
    *(Target("4", s, "fill_get_table", "<=", 1.5, {"frames": 1_000}, on_ratio=True)
      for s in ("memory", "files", "mongomock", "wire")),
    *(Target("4", s, "get_images_one", "reads1", 1, {"frames": 1_000})
      for s in ("memory", "files", "mongomock", "wire")),
    Target("5", "files", "cold_open", "<", 50.0, {"runs": 10_000}),
    Target("5", "files", "db[-1]", "<", 50.0, {"runs": 10_000}, "comparison"),
    Target("5", "files", "search_first", "<", 5.0, {"runs": 10_000}),
    Target("5", "files", "search_all", "<", 100.0, {"runs": 10_000}),
    Target("5", "files", "search_all", "<", 30_000.0, {"runs": 10_000}, "comparison"),
    Target("5", "files", "get_table_first_read", ">=", 500_000, {"events": 100_000}),
    Target("5", "files", "insert_single", ">=", 30_000, {}),
    Target("6", "wire", "db[-1]", "<", 5.0, {"runs": 10_000}),
    Target("6", "wire", "get_table", ">=", 200_000, {"events": 100_000}),
    Target("6", "wire", "insert_bulk", ">=", 20_000, {"events": 100_000}),
    Target("6", "mongomock", "get_table", ">=", 35_000, {}, "comparison"),
    Target("6", "mongomock", "db[-1]@100", "<", 4.0, {"runs": 100}, "comparison"),
    Target("9", "files", "cli_copy", ">=", 50_000, {"runs": 10_000, "events_per_run": 100}),
    Target("9", "files", "cli_ls", "<", 0.3, {"runs": 100_000}),
    Target("18", "memory", "insert_runengine", ">=", 50_000, {"runs": 2_000}),
    Target("18", "memory", "insert_runengine_strict", ">=", 20_000, {"runs": 2_000}),
    Target("18", "files", "insert_runengine", ">=", 20_000, {"runs": 2_000}),
    Target("18", "memory", "validate_descriptor", "<=", 50, {}),
]


class Recorder:
    """Collects one store's figures, scaling series and notes, and writes them as JSON."""

    def __init__(self, store: str, sizes: Sizes, notes: list[str]) -> None:
        self.data: dict[str, Any] = {
            "store": store, "sizes": asdict(sizes), "notes": list(notes), "figures": {},
            "scaling": {"lookups": {"runs": []}, "tables": {"events": []}}, "setup": {},
        }
        self.store = store
        self.t0 = time.perf_counter()

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.store:>9} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def figure(self, fid: str, value: float, *, seconds: float | None = None,
               repeats: int | None = None, params: dict[str, Any] | None = None,
               floor: str | None = None, floor_seconds: float | None = None,
               ratios: dict[str, float] | None = None) -> None:
        label, unit, better = FIGURES[fid]
        ratio = None
        if floor is not None and seconds and floor_seconds:
            ratio = seconds / floor_seconds
        record = {
            "label": label, "value": value, "unit": unit, "better": better,
            "seconds": seconds, "repeats": repeats, "params": params or {},
            "floor": floor, "ratio": ratio, "ratios": dict(ratios or {}),
        }
        if floor is not None and ratio is not None:
            record["ratios"] = {floor: ratio, **record["ratios"]}  # the main floor first
        self.data["figures"][fid] = record

    def setup(self, key: str, value: Any) -> None:
        self.data["setup"][key] = value


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# =========================================================================== the worker
def _broker(store: Any, **kw: Any) -> Any:
    from broker_v1 import Broker

    return Broker(store, timezone=TZ, **kw)


def _chunks(seq: list[Any], n: int) -> list[list[Any]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def phase_catalog(kit: common.Kit, sz: Sizes, rec: Recorder) -> None:
    """Lookups and search as the catalog grows; get_table over many runs; the CLI."""
    store = kit.make("catalog")
    db = _broker(store)
    lookups = rec.data["scaling"]["lookups"]
    uids: list[str] = []
    added = 0
    for size in sz.run_sizes:
        t = time.perf_counter()
        for lo in range(added, size, 1_000):
            hi = min(size, lo + 1_000)
            rich = [list(run_documents(i, n_events=sz.rich_events, pages=True))
                    for i in range(lo, min(hi, sz.rich_runs))]
            lean = [list(run_documents(i, n_events=0))
                    for i in range(max(lo, sz.rich_runs), hi)]
            kit.seed(store, rich)
            kit.seed(store, lean, lean=True)
            uids.extend(run[0][1]["uid"] for run in (*rich, *lean))
        seeded = time.perf_counter() - t
        settle = {}
        if kit.name == "files":
            # The store rescans a folder modified within the last second (its mtime cannot be
            # trusted yet); lookups are measured on a settled folder, and the cost of one
            # lookup right after writing is recorded here.
            t = time.perf_counter()
            db[-1]
            settle["lookup_right_after_writing_s"] = round(time.perf_counter() - t, 4)
            time.sleep(1.2)
        t = time.perf_counter()
        newest = db[-1]
        first = time.perf_counter() - t
        assert newest.uid == uids[-1], (newest.uid, uids[-1])
        rec.setup(f"catalog_{size}", {"seed_s": round(seeded, 3),
                                      "first_lookup_s": round(first, 4), **settle})
        rec.log(f"catalog of {size:,} runs: seeded {size - added:,} runs in {seeded:.1f} s, "
                f"first db[-1] {first * 1e3:.1f} ms"
                + "".join(f", {k} {v * 1e3:.1f} ms" for k, v in settle.items()))
        added = size
        _lookups_at(kit, sz, rec, db, store, uids, size, lookups)
        if size == sz.rich_runs:
            _many_runs(sz, rec, db)
            if kit.name == "files":
                _cli_copy(kit, sz, rec, store)
    if kit.name == "files":
        _cli_ls(sz, rec, store)
    kit.drop(store)


def _lookups_at(kit: common.Kit, sz: Sizes, rec: Recorder, db: Any, store: Any,
                uids: list[str], size: int, series: dict[str, list[Any]]) -> None:
    uid = uids[len(uids) // 2]
    scan_id = db[uid].start["scan_id"]
    matches = sum(1 for _ in db(plan_name="count"))

    def first() -> Any:
        return next(iter(db(plan_name="count")))

    def every() -> int:
        return sum(1 for _ in db(plan_name="count"))

    calls = {
        "db[-1]": lambda: db[-1], "db[uid]": lambda: db[uid],
        "db[uid[:8]]": lambda: db[uid[:8]], "db[scan_id]": lambda: db[scan_id],
        "search_first": first, "search_all": every,
    }
    if kit.persistent:
        def cold() -> Any:
            other = kit.reopen(store)
            try:
                return _broker(other)[-1]
            finally:
                other.close()

        calls["cold_open"] = cold
    series["runs"].append(size)
    for fid, fn in calls.items():
        timing = common.measure(fn, repeat=sz.repeat, budget=sz.latency_budget)
        ms = timing.seconds * 1e3
        series.setdefault(fid, []).append(ms)
        if size == sz.headline_runs:
            params = {"runs": size}
            if fid.startswith("search"):
                params["matches"] = matches
            rec.figure(fid, ms, seconds=timing.seconds, repeats=timing.repeats, params=params)
        if fid == "db[-1]" and size == 100:
            rec.figure("db[-1]@100", ms, seconds=timing.seconds, repeats=timing.repeats,
                       params={"runs": size})
    rec.log(f"  lookups at {size:,} runs: db[-1] {series['db[-1]'][-1]:.3f} ms, "
            f"search first {series['search_first'][-1]:.3f} ms, "
            f"{matches:,} matches {series['search_all'][-1]:.1f} ms")


def _many_runs(sz: Sizes, rec: Recorder, db: Any) -> None:
    headers = list(itertools.islice(db(), sz.many_runs))
    timing = common.measure(lambda: db.get_table(headers), repeat=sz.repeat, budget=sz.budget,
                            collect=True)
    rows = len(timing.result)
    assert rows == sz.many_runs * sz.rich_events, rows
    rec.figure("get_table_many_runs", timing.seconds, seconds=timing.seconds,
               repeats=timing.repeats,
               params={"runs": sz.many_runs, "events_per_run": sz.rich_events,
                       "rows_per_s": round(_rate(rows, timing.seconds))})
    rec.log(f"  get_table over {sz.many_runs:,} runs x {sz.rich_events}: {timing.seconds:.3f} s")


def _cli_copy(kit: common.Kit, sz: Sizes, rec: Recorder, store: Any) -> None:
    from bench_cli import CLI, wall

    src = Path(store._bench_path)
    dst = kit.root / "copy-dst"
    rates, walls, docs = [], [], 0
    start = time.perf_counter()
    while True:
        shutil.rmtree(dst, ignore_errors=True)
        elapsed, proc = wall([*CLI, "copy", str(src), str(dst), "--no-progress", "--json"])
        report = json.loads(proc.stdout)
        assert report["ok"] and len(report["copied"]) == sz.rich_runs, report.get("ok")
        docs = report["documents"]
        rates.append(docs / report["elapsed"])
        walls.append(elapsed)
        if common._enough(len(rates), sz.repeat, time.perf_counter() - start, sz.budget,
                          walls[0]):
            break
    shutil.rmtree(dst, ignore_errors=True)
    rate = statistics.median(rates)
    rec.figure("cli_copy", rate, seconds=docs / rate, repeats=len(rates),
               params={"runs": sz.rich_runs, "events_per_run": sz.rich_events,
                       "documents": docs, "process_wall_s": round(statistics.median(walls), 3)})
    rec.log(f"  broker-v1 copy of {sz.rich_runs:,} runs: {rate:,.0f} docs/s")


def _cli_ls(sz: Sizes, rec: Recorder, store: Any) -> None:
    from bench_cli import CLI, wall

    path = str(store._bench_path)
    wall([*CLI, "ls", path, "--limit", "50"])  # warm-up (and any index refresh)
    times = []
    start = time.perf_counter()
    while True:
        elapsed, proc = wall([*CLI, "ls", path, "--limit", "50"])
        times.append(elapsed)
        if common._enough(len(times), sz.repeat, time.perf_counter() - start, sz.budget,
                          times[0]):
            break
    bare = statistics.median(wall([sys.executable, "-c", "pass"])[0] for _ in range(3))
    rows = len(proc.stdout.splitlines())
    runs = sz.run_sizes[-1]
    rec.figure("cli_ls", statistics.median(times), seconds=statistics.median(times),
               repeats=len(times), params={"runs": runs, "lines": rows,
                                           "bare_interpreter_s": round(bare, 3)})
    rec.log(f"  broker-v1 ls on {runs:,} runs: {statistics.median(times):.3f} s")


def _table_run(index: int, n_events: int) -> list[tuple[str, dict[str, Any]]]:
    """One run of ``n_events`` x FIELDS numbers, events in pages of PAGE events."""
    docs = list(run_documents(index, n_events=n_events, n_fields=FIELDS, pages=True))
    out: list[tuple[str, dict[str, Any]]] = []
    for name, doc in docs:
        if name != "event_page":
            out.append((name, doc))
            continue
        for lo in range(0, n_events, PAGE):
            hi = min(n_events, lo + PAGE)
            out.append(("event_page", {
                "descriptor": doc["descriptor"], "uid": doc["uid"][lo:hi],
                "time": doc["time"][lo:hi], "seq_num": doc["seq_num"][lo:hi],
                "data": {k: v[lo:hi] for k, v in doc["data"].items()},
                "timestamps": {k: v[lo:hi] for k, v in doc["timestamps"].items()},
            }))
    return out


def _columns(docs: list[tuple[str, dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    import numpy as np

    pages = [d for n, d in docs if n == "event_page"]
    return {
        "time": np.concatenate([np.asarray(p["time"], dtype=float) for p in pages]),
        "seq": np.concatenate([np.asarray(p["seq_num"]) for p in pages]),
        "data": {k: np.concatenate([np.asarray(p["data"][k], dtype=float) for p in pages])
                 for k in names},
    }


def _shape(df: Any) -> tuple[int, ...]:
    return tuple(df.shape)


def _dataframe_floor(cols: dict[str, Any], names: list[str]) -> Any:
    """The floor for a table: the same DataFrame built straight from numpy columns."""
    from bench_tables import floor_from_numpy

    def floor(columns: list[str] = names) -> Any:
        return floor_from_numpy({k: cols["data"][k] for k in columns}, cols["time"], cols["seq"])

    return floor


def _insert(db: Any, docs: list[tuple[str, dict[str, Any]]]) -> float:
    t = time.perf_counter()
    for name, doc in docs:
        db.insert(name, doc)
    return time.perf_counter() - t


def phase_tables(kit: common.Kit, sz: Sizes, rec: Recorder) -> None:
    """get_table at every run size against the DataFrame floor; the headline run's figures."""
    store = kit.make("tables")
    db = _broker(store)
    series = rec.data["scaling"]["tables"]
    names = [f"f{i}" for i in range(FIELDS)]
    two = names[1:3]
    for index, n in enumerate(sz.table_sizes):
        docs = _table_run(index, n)
        insert_s = _insert(db, docs)
        uid = docs[0][1]["uid"]
        h = db[uid]
        floor = _dataframe_floor(_columns(docs, names), names)
        # Only the first size is warmed up: later ones run on a warm read path already.
        table, fl = common.paired(partial(db.get_table, h), floor, repeat=sz.repeat,
                                  budget=sz.budget, warmup=index == 0, summary=_shape)
        assert table.result == (n, FIELDS + 1), table.result
        for key, value in (("events", n), ("get_table_s", table.seconds),
                           ("floor_dataframe_s", fl.seconds), ("insert_s", insert_s)):
            series.setdefault(key, []).append(value)
        rec.log(f"table of {n:,} events: insert {_rate(n, insert_s):,.0f} docs/s, get_table "
                f"{_rate(n, table.seconds):,.0f} rows/s ({table.seconds / fl.seconds:.1f}x floor)")
        if n == sz.headline_events:
            _headline_table(kit, sz, rec, db, store, docs, h, n, table, fl, insert_s, floor,
                            two)
        docs = floor = None
        gc.collect()
    kit.drop(store)


def _headline_table(kit: common.Kit, sz: Sizes, rec: Recorder, db: Any, store: Any,
                    docs: list[tuple[str, dict[str, Any]]], h: Any, n: int,
                    table: common.Timing, fl: common.Timing, insert_s: float,
                    floor: Any, two: list[str]) -> None:
    from bench_tables import peak_extra_memory

    from broker_v1.documents import unpack_events

    params = {"events": n, "fields": FIELDS}
    extra: dict[str, float] = {}
    if kit.name in ("mongomock", "wire"):
        descriptor = docs[1][1]["uid"]

        def find() -> list[Any]:
            coll = store._coll("event")
            return list(coll.find({"descriptor": descriptor}, {"_id": 0}).sort("time", 1))

        t_find = common.measure(find, repeat=sz.repeat, budget=sz.budget, collect=True)
        rec.figure("floor_pymongo_find", _rate(n, t_find.seconds), seconds=t_find.seconds,
                   repeats=t_find.repeats, params=params)
        extra["floor_pymongo_find"] = table.seconds / t_find.seconds
    rec.figure("get_table", _rate(n, table.seconds), seconds=table.seconds,
               repeats=table.repeats, params=params, floor="floor_dataframe",
               floor_seconds=fl.seconds, ratios=extra)
    rec.figure("floor_dataframe", _rate(n, fl.seconds), seconds=fl.seconds, repeats=fl.repeats,
               params=params)

    t2, fl2 = common.paired(lambda: db.get_table(h, fields=two), lambda: floor(two),
                            repeat=sz.repeat, budget=sz.budget, summary=_shape)
    rec.figure("get_table_2_fields", _rate(n, t2.seconds), seconds=t2.seconds,
               repeats=t2.repeats, params={**params, "fields": 2}, floor="floor_dataframe_2",
               floor_seconds=fl2.seconds)
    rec.figure("floor_dataframe_2", _rate(n, fl2.seconds), seconds=fl2.seconds,
               repeats=fl2.repeats, params={**params, "fields": 2})

    lines = common.jsonl_lines(("event", ev) for _, page in docs[2:-1]
                               for ev in unpack_events(page))

    def count_events() -> int:
        return sum(1 for _ in db.get_events(h))

    def parse_lines() -> int:
        return len([json.loads(line) for line in lines])

    ev, fl_json = common.paired(count_events, parse_lines, repeat=sz.repeat, budget=sz.budget)
    assert ev.result == n, ev.result
    rec.figure("get_events", _rate(n, ev.seconds), seconds=ev.seconds, repeats=ev.repeats,
               params=params, floor="floor_json_events", floor_seconds=fl_json.seconds)
    rec.figure("floor_json_events", _rate(n, fl_json.seconds), seconds=fl_json.seconds,
               repeats=fl_json.repeats, params=params)
    lines = []
    rec.log(f"  headline run: 2 fields {_rate(n, t2.seconds):,.0f} rows/s, get_events "
            f"{_rate(n, ev.seconds):,.0f} events/s")

    if kit.name in ("memory", "files"):
        gc.collect()
        peak, df = peak_extra_memory(lambda: db.get_table(h))
        size = int(df.memory_usage(deep=True, index=True).sum())
        del df
        rec.figure("get_table_peak_memory", peak / size, repeats=1,
                   params={**params, "peak_mb": round(peak / 1e6, 1),
                           "dataframe_mb": round(size / 1e6, 1)})

    if kit.name == "files":
        uid = h.uid
        path = Path(store._bench_path) / f"{uid}.jsonl"

        def first_read(**options: Any) -> Any:
            other = kit.reopen(store, **options)
            try:
                b = _broker(other)
                return b.get_table(b[uid])
            finally:
                other.close()

        def parse_file() -> int:
            with open(path, encoding="utf-8") as f:
                return len([json.loads(line) for line in f])

        fr, fl_file = common.paired(first_read, parse_file, repeat=sz.repeat, budget=sz.budget,
                                    summary=_shape)
        rec.figure("get_table_first_read", _rate(n, fr.seconds), seconds=fr.seconds,
                   repeats=fr.repeats, params=params, floor="floor_json_file",
                   floor_seconds=fl_file.seconds)
        rec.figure("floor_json_file", _rate(n, fl_file.seconds), seconds=fl_file.seconds,
                   repeats=fl_file.repeats,
                   params={**params, "file_mb": round(path.stat().st_size / 1e6, 1)})
        js, fl_file2 = common.paired(lambda: first_read(columnar_cache=False), parse_file,
                                     repeat=sz.repeat, budget=sz.budget, summary=_shape)
        rec.figure("get_table_json_read", _rate(n, js.seconds), seconds=js.seconds,
                   repeats=js.repeats, params=params, floor="floor_json_file",
                   floor_seconds=fl_file2.seconds)
        rec.log(f"  files: first read {_rate(n, fr.seconds):,.0f} rows/s, parsing JSON "
                f"{_rate(n, js.seconds):,.0f} rows/s")

    # Bulk insert of the headline run: the insert above, plus repeats into fresh stores.
    times = [insert_s]
    start = time.perf_counter()
    while not common._enough(len(times), min(sz.repeat, 3), time.perf_counter() - start,
                             sz.budget, times[0]):
        fresh = kit.make(f"bulk{len(times)}")
        times.append(_insert(_broker(fresh), docs))
        kit.drop(fresh)
    bulk = statistics.median(times)
    floor_name = floor_s = None
    if kit.name in ("mongomock", "wire"):
        floor_name, floor_s = "floor_pymongo_insert", _insert_floor(kit, sz, rec, store, docs)
    rec.figure("insert_bulk", _rate(n, bulk), seconds=bulk, repeats=len(times),
               params={"events": n, "fields": FIELDS, "page": PAGE}, floor=floor_name,
               floor_seconds=floor_s)


def _insert_floor(kit: common.Kit, sz: Sizes, rec: Recorder, store: Any,
                  docs: list[tuple[str, dict[str, Any]]]) -> float:
    """pymongo ``insert_many`` of the same event documents into a collection with the event
    collection's indexes (unique uid; descriptor + time): the server's own cost."""
    import pymongo

    from broker_v1.documents import unpack_events

    rows = [ev for name, page in docs if name == "event_page" for ev in unpack_events(page)]
    scratch = store._coll("event").database["bench_insert_floor"]
    times = []
    start = time.perf_counter()
    while True:
        scratch.drop()
        scratch.create_index([("uid", pymongo.ASCENDING)], unique=True)
        scratch.create_index([("descriptor", pymongo.DESCENDING), ("time", pymongo.ASCENDING)])
        batch = [dict(r) for r in rows]
        t = time.perf_counter()
        for lo in range(0, len(batch), PAGE):
            scratch.insert_many(batch[lo:lo + PAGE], ordered=False)
        times.append(time.perf_counter() - t)
        if common._enough(len(times), min(sz.repeat, 3), time.perf_counter() - start,
                          sz.budget, times[0]):
            break
    scratch.drop()
    secs = statistics.median(times)
    rec.figure("floor_pymongo_insert", _rate(len(rows), secs), seconds=secs,
               repeats=len(times), params={"events": len(rows), "fields": FIELDS})
    return secs


def phase_inserts(kit: common.Kit, sz: Sizes, rec: Recorder) -> None:
    """Single documents as the RunEngine sends them, validation on, into a fresh store."""
    docs = [doc for i in range(sz.insert_runs)
            for doc in run_documents(i, n_events=sz.insert_events, n_fields=5)]
    times = []
    start = time.perf_counter()
    while True:
        store = kit.make(f"insert{len(times)}")
        times.append(_insert(_broker(store), docs))
        kit.drop(store)
        if common._enough(len(times), sz.repeat, time.perf_counter() - start, sz.budget,
                          times[0]):
            break
    secs = statistics.median(times)
    rec.figure("insert_single", _rate(len(docs), secs), seconds=secs, repeats=len(times),
               params={"runs": sz.insert_runs, "events_per_run": sz.insert_events,
                       "fields": 5, "documents": len(docs)})
    rec.log(f"single-document inserts: {_rate(len(docs), secs):,.0f} docs/s")


def phase_runengine(kit: common.Kit, sz: Sizes, rec: Recorder) -> None:
    """Issue 18: RunEngine-shaped runs inserted one document at a time, validation on (and
    ``strict`` on the memory store); on the memory store, each document type's validation."""
    from bench_runengine import timed_inserts, validation_costs, workload

    docs = workload(sz.re_runs)
    variants = [("insert_runengine", "compatible")]
    if kit.name == "memory":
        variants.append(("insert_runengine_strict", "strict"))
    for fid, policy in variants:
        def make(label: str, policy: str = policy) -> Any:
            if kit.name == "memory":
                from broker_v1.stores.memory import MemoryStore

                return MemoryStore(validate=policy)
            return kit.make(label)

        warm = make("re-warm")  # compiles the validators: once per process, not measured
        timed_inserts(_broker(warm).insert, docs[:26])
        kit.drop(warm)
        times: list[float] = []
        stops: list[float] = []
        start = time.perf_counter()
        while True:
            store = make(f"re{len(times)}")
            secs, calls = timed_inserts(_broker(store).insert, docs)
            kit.drop(store)
            times.append(secs)
            stops.extend(calls["stop"])
            if common._enough(len(times), sz.repeat, time.perf_counter() - start, sz.budget,
                              times[0]):
                break
        secs = statistics.median(times)
        rec.figure(fid, _rate(len(docs), secs), seconds=secs, repeats=len(times),
                   params={"runs": sz.re_runs, "documents": len(docs),
                           "stop_latency_ms": round(statistics.median(stops) * 1e3, 3)})
        rec.log(f"RunEngine-shaped inserts ({policy}): {_rate(len(docs), secs):,.0f} docs/s")
    if kit.name == "memory":
        costs = validation_costs(docs, "compatible")
        for name, us in costs.items():
            rec.figure(f"validate_{name}", us, seconds=us / 1e6, repeats=1,
                       params={"policy": "compatible"})
        rec.log("validation per document: " + ", ".join(
            f"{n} {us:.1f} µs" for n, us in costs.items()))


def counting_npy_handler() -> Any:
    """tests/handlers.py's NPY_SEQ handler (as bench_filling.py uses), counting frame reads."""
    sys.path.insert(0, str(ROOT / "tests"))
    from handlers import NpySeqHandler

    class CountingNpySeq(NpySeqHandler):
        reads = 0

        def __call__(self, index: Any) -> Any:
            CountingNpySeq.reads += 1
            return super().__call__(index)

    return CountingNpySeq


def phase_filling(kit: common.Kit, sz: Sizes, rec: Recorder, frames_dir: Path) -> None:
    """get_table(fill=True) over a run of .npy frames against numpy.load of the same files."""
    import numpy as np

    store = kit.make("filling")
    handler = counting_npy_handler()
    db = _broker(store, handlers={"NPY_SEQ": handler}, auto_register=False)
    for name, doc in image_run_documents(str(frames_dir), frames=sz.frames, size=sz.frame_size):
        db.insert(name, doc)
    h = db[-1]
    files = [frames_dir / f"img_{i}.npy" for i in range(sz.frames)]

    def numpy_loop() -> list[Any]:
        return [np.load(f) for f in files]

    filled, fl = common.paired(lambda: db.get_table(h, fill=True), numpy_loop,
                               repeat=sz.repeat, budget=sz.budget, summary=_shape)
    assert filled.result[0] == sz.frames, filled.result
    params = {"frames": sz.frames, "frame_size": sz.frame_size}
    rec.figure("fill_get_table", filled.seconds, seconds=filled.seconds,
               repeats=filled.repeats, floor="floor_numpy_load", floor_seconds=fl.seconds,
               params={**params, "frames_per_s": round(_rate(sz.frames, filled.seconds))})
    rec.figure("floor_numpy_load", fl.seconds, seconds=fl.seconds, repeats=fl.repeats,
               params=params)
    middle = sz.frames // 2
    times, reads = [], []
    for _ in range(max(3, sz.repeat)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = db.get_images(h, "img")
        before = handler.reads
        t = time.perf_counter()
        frame = images[middle]
        times.append(time.perf_counter() - t)
        reads.append(handler.reads - before)
        assert frame.shape == (sz.frame_size, sz.frame_size), frame.shape
    ms = statistics.median(times) * 1e3
    rec.figure("get_images_one", ms, seconds=ms / 1e3, repeats=len(times),
               params={**params, "index": middle, "frames_read": max(reads)})
    rec.log(f"filling {sz.frames} frames: {filled.seconds:.3f} s "
            f"({filled.seconds / fl.seconds:.2f}x numpy.load); get_images[{middle}] {ms:.2f} ms, "
            f"{max(reads)} frame(s) read")
    kit.drop(store)


def worker(args: argparse.Namespace) -> int:
    sz, notes = sizes_for(args.worker, args.mode)
    kit = common.make_kit(args.worker, args.mongo_uri)
    rec = Recorder(args.worker, sz, notes)
    rec.data["description"] = kit.describe()
    rec.log(f"{kit.describe()}; {args.mode} sizes")
    try:
        for phase in (phase_catalog, phase_tables, phase_inserts, phase_runengine):
            phase(kit, sz, rec)
            gc.collect()
        phase_filling(kit, sz, rec, Path(args.frames_dir))
    finally:
        kit.close()
    rec.data["elapsed_s"] = round(time.perf_counter() - rec.t0, 1)
    Path(args.out).write_text(json.dumps(rec.data, indent=1, allow_nan=False))
    return 0


# =========================================================================== analysis
def analyse(results: dict[str, Any]) -> None:
    """Add the scaling verdicts and the target verdicts to ``results`` (in place)."""
    for data in results["stores"].values():
        if "error" in data:
            continue
        verdicts: dict[str, Any] = {}
        lookups = data["scaling"]["lookups"]
        xs = lookups["runs"]
        for fid in ("db[-1]", "db[uid]", "db[uid[:8]]", "db[scan_id]", "search_first",
                    "cold_open", "search_all"):
            if fid not in lookups:
                continue
            s = common.slope(xs[1:] if len(xs) > 2 else xs, lookups[fid][1:] if len(xs) > 2
                             else lookups[fid])
            expect = "linear" if fid == "search_all" else "sub-linear"
            verdicts[f"lookup {fid}"] = _verdict(s, expect, xs)
        tables = data["scaling"]["tables"]
        ev = tables["events"]
        # Fixed per-call costs dominate the smallest run: judge growth from 10k events up.
        keep = [i for i, n in enumerate(ev) if n >= 10_000] or list(range(len(ev)))
        if len(keep) < 2:
            keep = list(range(len(ev)))
        s = common.slope([ev[i] for i in keep], [tables["get_table_s"][i] for i in keep])
        verdicts["get_table"] = _verdict(s, "linear", [ev[i] for i in keep])
        data["verdicts"] = verdicts
    rows = []
    for t in TARGETS:
        data = results["stores"].get(t.store)
        if data is None or "error" in data:
            continue
        fig = data["figures"].get(t.figure)
        rows.append({**asdict(t), "status": _status(t, fig, data), "label": FIGURES[t.figure][0],
                     "measured": _measured(t, fig)})
    results["targets"] = rows


def _verdict(s: float | None, expect: str, xs: list[int]) -> dict[str, Any]:
    """Growth named from the exponent: < 0.75 sub-linear, up to 1.25 linear, else super-linear.

    Lookups are as expected when sub-linear; tables (and a search returning every match, whose
    result grows with the catalog) when not super-linear.
    """
    if s is None:
        return {"slope": None, "growth": "n/a", "expected": expect, "ok": None}
    growth = "sub-linear" if s < 0.75 else "linear" if s <= 1.25 else "super-linear"
    ok = growth == "sub-linear" if expect == "sub-linear" else growth != "super-linear"
    return {"slope": round(s, 3), "growth": growth, "expected": expect, "ok": ok,
            "from": xs[0], "to": xs[-1]}


def _applies(t: Target, fig: dict[str, Any]) -> bool:
    return all(fig["params"].get(k) == v for k, v in t.at.items())


def _status(t: Target, fig: dict[str, Any] | None, data: dict[str, Any]) -> str:
    if fig is None:
        return "not measured"
    if not _applies(t, fig):
        return "other size"
    if t.op == "reads1":
        ok = fig["params"].get("frames_read") == 1
    elif t.op == "faster":
        ok = fig["value"] > data["figures"]["get_table"]["value"]
    else:
        value = fig["ratio"] if t.on_ratio else fig["value"]
        ok = {"<": value < t.value, "<=": value <= t.value, ">=": value >= t.value}[t.op]
    if t.kind == "comparison":
        return "better than databroker" if ok else "not better than databroker"
    return "met" if ok else "MISSED"


def _measured(t: Target, fig: dict[str, Any] | None) -> str:
    if fig is None:
        return "-"
    if t.op == "reads1":
        return f"{fig['params'].get('frames_read')} frame(s) read"
    if t.on_ratio:
        return f"{fig['ratio']:.2f}x floor"
    text = _fmt(fig["value"], fig["unit"])
    for name in ("floor_pymongo_find", "floor_pymongo_insert"):
        if name in fig["ratios"]:
            server = fig["value"] * fig["ratios"][name]
            text += f" (client alone: {_fmt(server, fig['unit'])})"
    return text


def target_text(t: dict[str, Any]) -> str:
    if t["op"] == "reads1":
        return "reads one frame"
    if t["op"] == "faster":
        return "faster than all fields"
    unit = FIGURES[t["figure"]][1]
    what = "x floor" if t["on_ratio"] else unit
    what = what if what != "x" else "x DataFrame size"
    value = f"{t['value']:,.0f}" if t["value"] >= 100 else f"{t['value']:g}"
    at = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in t["at"].items())
    text = f"{t['op']} {value} {what}" + (f" at {at}" if at else "")
    if t["kind"] == "comparison":
        text = f"databroker 1.2.5: {value} {what}" + (f" at {at}" if at else "")
    return text


# =========================================================================== output
def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("ms", "s", "x", "µs"):
        if value >= 100:
            text = f"{value:,.0f}"
        elif value >= 1:
            text = f"{value:.3g}" if value < 10 else f"{value:.1f}"
        else:
            text = f"{value:.2g}" if value < 0.01 else f"{value:.3f}"
        return f"{text} {unit}" if unit != "x" else f"{text}x"
    return f"{value:,.0f} {unit}"


def _short(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{suffix}"
    return f"{n:,}"


def _size_text(fig: dict[str, Any]) -> str:
    p = fig["params"]
    if "frames" in p:
        return f"{_short(p['frames'])} frames"
    if "events_per_run" in p and "runs" in p:
        return f"{_short(p['runs'])} runs x {_short(p['events_per_run'])}"
    if "events" in p:
        return f"{_short(p['events'])} events"
    if "runs" in p:
        return f"{_short(p['runs'])} runs"
    return ""


FLOOR_SHORT = {"floor_pymongo_find": "find", "floor_pymongo_insert": "insert_many",
               "floor_dataframe": "DataFrame", "floor_json_file": "JSON"}


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:,.0f}x"


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """``(label, size, {store: cell})`` for every figure some store reported."""
    stores = [s for s in results["stores"] if "error" not in results["stores"][s]]
    rows = []
    for fid, (label, unit, _) in FIGURES.items():
        figs = {s: results["stores"][s]["figures"].get(fid) for s in stores}
        sizes = [_size_text(f) for f in figs.values() if f is not None]
        if not sizes:
            continue
        usual = max(sizes, key=sizes.count)  # the size most stores ran; others say theirs
        cells: dict[str, str] = {}
        for store, fig in figs.items():
            if fig is None:
                cells[store] = ""
                continue
            cell = _fmt(fig["value"], unit)
            ratios = [_ratio_text(r) + ("" if name == fig["floor"] else f" {FLOOR_SHORT[name]}")
                      for name, r in fig.get("ratios", {}).items()]
            if ratios:
                cell += f" ({', '.join(ratios)})"
            if _size_text(fig) != usual:
                cell += f" at {_size_text(fig)}"
            cells[store] = cell
        rows.append((label, usual, cells))
    return rows


def print_report(results: dict[str, Any]) -> None:
    stores = list(results["stores"])
    meta = results["meta"]
    m = meta["machine"]
    print(f"\nbroker_v1 benchmarks, {meta['mode']} sizes: {m['cpu']}, {m['cores']} cores, "
          f"{m['memory_gib']} GiB, Python {m['python']}, pandas {m['versions']['pandas']}, "
          f"numpy {m['versions']['numpy']}")
    print("(x) = time / floor time, measured alternately in the same process\n")
    ok_stores = [s for s in stores if "error" not in results["stores"][s]]
    rows = figure_rows(results)
    width = max(len(label.replace("``", "")) for label, _, _ in rows)
    swidth = max(len(size) for _, size, _ in rows)
    cols = {s: max(len(s), *(len(c[s]) for _, _, c in rows)) + 2 for s in ok_stores}
    print(f"{'figure':<{width}}  {'size':<{swidth}}" + "".join(f"{s:>{cols[s]}}"
                                                              for s in ok_stores))
    for label, size, cells in rows:
        plain = label.replace("``", "")
        print(f"{plain:<{width}}  {size:<{swidth}}" + "".join(f"{cells[s]:>{cols[s]}}"
                                                             for s in ok_stores))
    for store in stores:
        if "error" in results["stores"][store]:
            print(f"\n{store}: FAILED: {results['stores'][store]['error']}")
    print("\nScaling (growth exponent: time ~ size^slope between the first and last size)")
    for store in ok_stores:
        data = results["stores"][store]
        for name, v in data["verdicts"].items():
            if v["slope"] is None:
                continue
            mark = "ok" if v["ok"] else "NOT " + v["expected"]
            print(f"  {store:<10} {name:<24} {v['from']:>9,} -> {v['to']:>9,}: "
                  f"slope {v['slope']:5.2f}  {v['growth']:<20} ({mark})")
    print("\nTargets from the issues")
    for t in results["targets"]:
        print(f"  #{t['issue']:<2} {t['store']:<10} {t['label'].replace('``', ''):<48} "
              f"{target_text(t):<42} {t['measured']:>18}  {t['status']}")
    for store in ok_stores:
        for note in results["stores"][store]["notes"]:
            print(f"note: {note}")
    print(f"\nelapsed {meta['elapsed_s']:.0f} s", flush=True)


def _rst_cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "n/a"


def _list_table(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}",
           ""]
    for row in [header, *rows]:
        out.append(f"   * - {_rst_cell(row[0])}")
        out.extend(f"     - {_rst_cell(c)}" for c in row[1:])
    out.append("")
    return out


def command_text(meta: dict[str, Any]) -> str:
    argv = ["python", "benchmarks/run_all.py", *meta["argv"]]
    text = shlex.join(argv)
    if meta.get("mongo_uri_from_env"):
        text = "BROKER_V1_TEST_MONGO_URI=<server> " + text
    return text


def write_rst(results: dict[str, Any], path: Path, plots: list[str]) -> None:
    """The include ``docs/performance.rst`` shows: machine, command, figures, scaling, targets."""
    meta = results["meta"]
    m = meta["machine"]
    stores = [s for s in results["stores"] if "error" not in results["stores"][s]]
    lines = [
        ".. Generated by benchmarks/run_all.py from the JSON beside it; do not edit by hand.",
        "",
        f"Measured {meta['finished'][:16].replace('T', ' ')} UTC with",
        "",
        ".. code-block:: sh",
        "",
        f"   {command_text(meta)}",
        "",
        f"on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB of memory, {m['os']}, "
        f"Python {m['python']}, numpy {m['versions']['numpy']}, pandas "
        f"{m['versions']['pandas']}, pymongo {m['versions']['pymongo']}, mongomock "
        f"{m['versions']['mongomock']}; broker_v1 {m['versions']['broker_v1']} at commit "
        f"``{m['git_commit']}``.  The machine is shared: load average "
        f"{m['loadavg_start'][0]:.1f} at the start, {meta['loadavg_end'][0]:.1f} at the end; "
        f"each figure is a median of up to {results['meta']['sizes']['repeat']} repeats.  "
        f"Whole run: {meta['elapsed_s'] / 60:.0f} minutes.",
        "",
    ]
    for again in meta.get("remeasured", []):
        # A store measured again after changes to it (its results replaced in the JSON).
        lines += [
            f"The ``{again['store']}`` figures were measured again "
            f"{again['finished'][:16].replace('T', ' ')} UTC, after changes to that store, "
            f"with ``{shlex.join(['python', 'benchmarks/run_all.py', *again['argv']])}`` at "
            f"commit ``{again['git_commit']}`` on the same machine "
            f"({again['elapsed_s'] / 60:.0f} minutes).",
            "",
        ]
    for store in stores:
        lines.append(f"* ``{store}``: {results['stores'][store]['description']}")
    lines += ["", "Figures", "~~~~~~~", "",
              "In brackets: the time as a multiple of its floor's time, measured alternately "
              "with it in the same process (1.0x is the floor).", ""]
    rows = [[label, size, *[cells[s] for s in stores]]
            for label, size, cells in figure_rows(results)]
    lines += _list_table(["figure", "size", *stores], rows, [34, 14, *[13] * len(stores)])
    lines += ["Targets", "~~~~~~~", "",
              "The speed targets set in the issues, and databroker 1.2.5's figures they quote "
              "for comparison.  A target set for a size this run did not reach is marked "
              "*other size*.", ""]
    trows = [[f"#{t['issue']}", t["store"], t["label"], target_text(t), t["measured"],
              t["status"]] for t in results["targets"]]
    lines += _list_table(["issue", "store", "figure", "target", "measured", "status"], trows,
                         [6, 10, 30, 26, 14, 14])
    lines += ["Scaling", "~~~~~~~", "",
              "Growth exponent between the first and last size (time grows as size to this "
              "power): lookups should grow sub-linearly with the catalog, ``get_table`` "
              "linearly with the run (judged from 10,000 events up, below which fixed costs "
              "dominate).", ""]
    srows = []
    for store in stores:
        for name, v in results["stores"][store]["verdicts"].items():
            if v["slope"] is None:
                continue
            srows.append([store, name.replace("lookup ", ""), f"{v['from']:,} to {v['to']:,}",
                          f"{v['slope']:.2f}", v["growth"], "yes" if v["ok"] else "no"])
    lines += _list_table(["store", "figure", "sizes", "slope", "growth", "as expected"], srows,
                         [12, 22, 22, 10, 20, 12])
    notes = [n for s in stores for n in results["stores"][s]["notes"]]
    if notes:
        lines += ["Sizes capped for some stores:", ""]
        lines += [f"* {n}" for n in notes] + [""]
    for name, alt in plots:
        lines += [f".. image:: /_static/{name}", f"   :alt: {alt}", "   :width: 640px", ""]
    path.write_text("\n".join(lines))


def make_plots(results: dict[str, Any], directory: Path, prefix: str) -> list[tuple[str, str]]:
    """Two PNGs: get_table rows/s vs run size, and lookup latency vs catalog size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; plots skipped "
              "(pip install matplotlib to regenerate them)", file=sys.stderr)
        return []
    stores = [s for s in results["stores"] if "error" not in results["stores"][s]]
    made = []
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for store in stores:
        t = results["stores"][store]["scaling"]["tables"]
        ax.plot(t["events"], [n / s for n, s in zip(t["events"], t["get_table_s"])], "o-",
                label=store)
    ref = results["stores"][stores[0]]["scaling"]["tables"]
    ax.plot(ref["events"], [n / s for n, s in zip(ref["events"], ref["floor_dataframe_s"])],
            "k--", label="floor: DataFrame from numpy")
    ax.set(xscale="log", yscale="log", xlabel="events in the run (10 scalar fields)",
           ylabel="get_table rows/s", title="get_table throughput vs run size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = f"{prefix}get_table.png"
    fig.savefig(directory / name)
    plt.close(fig)
    made.append((name, "get_table rows per second against run size, per store"))

    fig, ax = plt.subplots(figsize=(7, 5.4), dpi=110)
    for i, store in enumerate(stores):
        lk = results["stores"][store]["scaling"]["lookups"]
        color = f"C{i}"
        ax.plot(lk["runs"], lk["db[-1]"], "o-", color=color, label=f"{store}: db[-1]")
        ax.plot(lk["runs"], lk["search_first"], "s--", color=color,
                label=f"{store}: db(plan_name=...) first header")
    ax.set(xscale="log", yscale="log", xlabel="runs in the catalog", ylabel="latency (ms)",
           title="lookup and search latency vs catalog size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    name = f"{prefix}lookups.png"
    fig.savefig(directory / name)
    plt.close(fig)
    made.append((name, "db[-1] and search latency against catalog size, per store"))
    return made


def write_frames(directory: Path, n: int, size: int) -> None:
    import numpy as np

    frame = np.random.default_rng(0).integers(0, 4096, (size, size), "uint16")
    for i in range(n):
        np.save(directory / f"img_{i}.npy", frame)


def _public_argv(argv: list[str]) -> list[str]:
    """The command line as typed, with the server's address (it may hold credentials) hidden."""
    out: list[str] = []
    hide = False
    for a in argv:
        if hide:
            out.append("<server>")
            hide = False
        elif a == "--mongo-uri":
            out.append(a)
            hide = True
        elif a.startswith("--mongo-uri="):
            out.append("--mongo-uri=<server>")
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python benchmarks/run_all.py --quick")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="small sizes, about 2 minutes on 2 cores (the default)")
    size.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="10,000 runs x 100 events, 100k-run catalogs, 1M-event tables, "
                           "1,000 frames")
    size.add_argument("--tiny", action="store_const", dest="mode", const="tiny",
                      help=argparse.SUPPRESS)  # the smoke test's size
    parser.add_argument("--mongo-uri", default=None,
                        help="also measure a MongoDB (wire-protocol) server at this URI, "
                             "e.g. mongodb://127.0.0.1:27017 (default: "
                             "$BROKER_V1_TEST_MONGO_URI); databases are created and dropped")
    parser.add_argument("--stores", default=None,
                        help="comma-separated subset of memory,files,mongomock,wire")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS,
                        help="where <timestamp>.json and latest.json go (default: %(default)s)")
    pub = parser.add_mutually_exclusive_group()
    pub.add_argument("--publish", action="store_true", default=None,
                         help="also write docs/_static/ (JSON, table, plots); default with "
                              "--full")
    pub.add_argument("--no-publish", action="store_false", dest="publish")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="measure nothing: print the report, plots and (with --publish) "
                             "the docs' files again from a results JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.mode = args.mode or "quick"
    from_env = False
    if args.mongo_uri is None and os.environ.get("BROKER_V1_TEST_MONGO_URI"):
        args.mongo_uri = os.environ["BROKER_V1_TEST_MONGO_URI"]
        from_env = True
    if args.worker:
        return worker(args)
    if args.render:
        results = json.loads(args.render.read_text())
        analyse(results)
        print_report(results)
        return publish(results, args, publish_docs=bool(args.publish), failed=False,
                       stamp=None)

    stores = ["memory", "files", "mongomock"] + (["wire"] if args.mongo_uri else [])
    if args.stores:
        wanted = [s.strip() for s in args.stores.split(",") if s.strip()]
        unknown = set(wanted) - {"memory", "files", "mongomock", "wire"}
        if unknown or ("wire" in wanted and not args.mongo_uri):
            parser.error(f"--stores: unknown {sorted(unknown)} or wire without --mongo-uri")
        stores = wanted
    publish_docs = args.publish if args.publish is not None else args.mode == "full"
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "mode": args.mode, "argv": _public_argv(argv if argv is not None else sys.argv[1:]),
            "mongo_uri_from_env": from_env, "stores": stores,
            "started": started.isoformat(timespec="seconds"),
            "machine": common.machine(), "sizes": asdict(MODES[args.mode]),
        },
        "stores": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="broker_v1-bench-"))
    failed = False
    try:
        frames_dir = scratch / "frames"
        frames_dir.mkdir()
        biggest = max(sizes_for(s, args.mode)[0].frames for s in stores)
        write_frames(frames_dir, biggest, MODES[args.mode].frame_size)
        env = common.python_env()
        for store in stores:
            out = scratch / f"{store}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", store,
                   f"--{args.mode}", "--frames-dir", str(frames_dir), "--out", str(out)]
            if store == "wire":
                cmd += ["--mongo-uri", args.mongo_uri]
            done = subprocess.run(cmd, env=env, stdout=sys.stderr)
            if done.returncode == 0 and out.exists():
                results["stores"][store] = json.loads(out.read_text())
            else:
                failed = True
                results["stores"][store] = {
                    "error": f"worker exited with status {done.returncode}; see the log above"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = results["meta"]
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    analyse(results)
    print_report(results)
    return publish(results, args, publish_docs=publish_docs, failed=failed,
                   stamp=started.strftime("%Y%m%dT%H%M%SZ"))


def publish(results: dict[str, Any], args: argparse.Namespace, *, publish_docs: bool,
            failed: bool, stamp: str | None) -> int:
    """Write the JSON results (unless re-rendering), the plots and the docs' files."""
    written: list[Path] = []
    plots: list[tuple[str, str]] = []
    if not args.no_plots:
        plot_dir = DOCS_STATIC if publish_docs else args.results_dir
        plot_dir.mkdir(parents=True, exist_ok=True)
        prefix = "bench_" if publish_docs else f"{stamp or 'rendered'}-"
        plots = make_plots(results, plot_dir, prefix)
        results["meta"]["plots"] = [name for name, _ in plots]
    text = json.dumps(results, indent=1, allow_nan=False)
    if stamp is not None:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        mode = results["meta"]["mode"]
        (args.results_dir / f"{stamp}-{mode}.json").write_text(text)
        (args.results_dir / "latest.json").write_text(text)
        written += [args.results_dir / f"{stamp}-{mode}.json", args.results_dir / "latest.json"]
    if publish_docs:
        if failed:
            print("not publishing to docs/_static: a store failed", file=sys.stderr)
        else:
            DOCS_STATIC.mkdir(parents=True, exist_ok=True)
            (DOCS_STATIC / "benchmarks.json").write_text(text)
            write_rst(results, DOCS_STATIC / "benchmarks_table.inc", plots)
            written += [DOCS_STATIC / "benchmarks.json", DOCS_STATIC / "benchmarks_table.inc"]
            written += [DOCS_STATIC / name for name, _ in plots]
    elif plots:
        written += [args.results_dir / name for name, _ in plots]
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                               for p in written))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
