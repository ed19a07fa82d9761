"""Smoke test of ``benchmarks/run_all.py``: the one benchmark command runs and reports everything.

It runs the command at a tiny size (the hidden ``--tiny`` option) as a real subprocess and
checks the JSON it writes: every store, every figure, with numbers.  Nothing here asserts a
speed; the figures themselves are published in ``docs/performance.rst``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run_all.py"

#: Figures every store reports, whatever else is added later.
EVERY_STORE = [
    "db[-1]", "db[uid]", "db[uid[:8]]", "db[scan_id]", "search_first", "search_all",
    "db[-1]@100", "insert_single", "insert_bulk", "get_table", "get_table_2_fields",
    "get_events", "get_table_many_runs", "fill_get_table", "get_images_one",
    "floor_dataframe", "floor_dataframe_2", "floor_json_events", "floor_numpy_load",
]
#: Figures only some stores have.
PER_STORE = {
    "memory": ["get_table_peak_memory"],
    "files": ["cold_open", "get_table_first_read", "get_table_json_read", "floor_json_file",
              "get_table_peak_memory", "cli_ls", "cli_copy"],
    "mongomock": ["cold_open", "floor_pymongo_find", "floor_pymongo_insert"],
    "wire": ["cold_open", "floor_pymongo_find", "floor_pymongo_insert"],
}


def _stores() -> list[str]:
    stores = ["memory", "files", "mongomock"]
    if os.environ.get("BROKER_V1_TEST_MONGO_URI"):
        stores.append("wire")  # the wire-protocol server CI starts (issue 6)
    return stores


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--results-dir", str(out), "--no-plots",
         "--no-publish"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"run_all.py --tiny failed:\n{done.stdout}\n{done.stderr}"
    latest = json.loads((out / "latest.json").read_text())
    stamped = [p for p in out.glob("*-tiny.json")]
    assert len(stamped) == 1, sorted(p.name for p in out.iterdir())
    assert json.loads(stamped[0].read_text()) == latest
    return latest, done.stdout


def test_every_store_ran(run: tuple[dict[str, Any], str]) -> None:
    results, _ = run
    assert list(results["stores"]) == _stores()
    for store, data in results["stores"].items():
        assert "error" not in data, (store, data)
        assert data["store"] == store


@pytest.mark.parametrize("store", _stores())
def test_every_figure_has_numbers(run: tuple[dict[str, Any], str], store: str) -> None:
    figures = run[0]["stores"][store]["figures"]
    for fid in EVERY_STORE + PER_STORE[store]:
        assert fid in figures, f"{store}: no figure {fid!r}"
    for fid, fig in figures.items():
        assert _number(fig["value"]) and fig["value"] >= 0, (store, fid, fig)
        assert fig["unit"] and fig["label"], (store, fid)
        assert isinstance(fig["repeats"], int) and fig["repeats"] >= 1, (store, fid, fig)
        if fig["floor"] is not None:
            # A figure with a floor reports its ratio to it, and the floor is a figure too.
            assert fig["floor"] in figures, (store, fid, fig["floor"])
            assert _number(fig["ratio"]) and fig["ratio"] > 0, (store, fid, fig)
        for name, ratio in fig["ratios"].items():
            assert name in figures and _number(ratio), (store, fid, name, ratio)
    for fid in ("get_table", "get_events", "fill_get_table"):
        assert figures[fid]["floor"], f"{store}: {fid} has no floor"


@pytest.mark.parametrize("store", _stores())
def test_scaling_series(run: tuple[dict[str, Any], str], store: str) -> None:
    data = run[0]["stores"][store]
    sizes = data["sizes"]
    lookups = data["scaling"]["lookups"]
    assert lookups["runs"] == sizes["run_sizes"]
    for series in ("db[-1]", "db[uid]", "search_first", "search_all"):
        assert len(lookups[series]) == len(lookups["runs"]), series
        assert all(_number(v) for v in lookups[series]), (series, lookups[series])
    tables = data["scaling"]["tables"]
    assert tables["events"] == sizes["table_sizes"]
    for series in ("get_table_s", "floor_dataframe_s", "insert_s"):
        assert len(tables[series]) == len(tables["events"])
        assert all(_number(v) and v > 0 for v in tables[series]), (series, tables[series])
    verdicts = data["verdicts"]
    assert {"lookup db[-1]", "lookup search_first", "get_table"} <= set(verdicts)
    for name, verdict in verdicts.items():
        assert _number(verdict["slope"]), (name, verdict)
        assert verdict["growth"] in ("sub-linear", "linear", "super-linear"), verdict


def test_targets_and_report(run: tuple[dict[str, Any], str]) -> None:
    results, stdout = run
    meta = results["meta"]
    assert meta["mode"] == "tiny" and meta["machine"]["cores"]
    issues = {t["issue"] for t in results["targets"]}
    assert {"2", "3", "4", "5", "9"} <= issues, issues
    for target in results["targets"]:
        assert target["status"] in ("met", "MISSED", "other size", "not measured",
                                    "better than databroker", "not better than databroker")
    for heading in ("figure", "Scaling", "Targets from the issues"):
        assert heading in stdout
    assert "docs/_static" not in stdout.split("wrote", 1)[-1]  # --tiny never publishes


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="bench_instructions.py counts under valgrind, which is not installed")
def test_instruction_counts_are_printed_beside_the_floor() -> None:
    """``bench_instructions.py`` counts a run's instructions for a store and for the floor,
    each the median of two processes, printed with their range (about a minute: four
    processes under callgrind)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_instructions.py"), "--runs", "3",
         "--repeat", "2", "--stores", "memory"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {}
    for line in done.stdout.splitlines()[1:]:
        found = re.match(r"\s+(.+?)\s{2,}([\d,]+)(?:\s+\(([\d,]+) to ([\d,]+)\))?", line)
        assert found, line
        median, low, high = (int((found.group(i) or found.group(2)).replace(",", ""))
                             for i in (2, 3, 4))
        assert low <= median <= high, line
        counts[found.group(1)] = median
    assert set(counts) == {"floor (orjson copy)", "memory (compatible)"}, done.stdout
    # Checking documents costs more than copying them: a count that missed the inserts
    # (the markers around them) would be near zero, below the floor.
    assert 0 < counts["floor (orjson copy)"] < counts["memory (compatible)"], done.stdout
