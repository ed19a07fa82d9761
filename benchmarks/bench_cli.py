"""Benchmark the ``broker-v1`` command as users run it: whole processes, interpreter included.

Run ``python benchmarks/bench_cli.py`` (``--quick`` for smaller sizes).  Prints:

* ``broker-v1 ls STORE --limit 50`` on a files store of N runs (default 100,000): wall time of
  the whole process, median of several runs after one warm-up that builds the index, plus
  ``python -c "import broker_v1.cli"`` alone, to show how much of it is start-up;
* ``broker-v1 copy SRC DST`` from a files store of R runs x E events (default 10,000 x 100) to
  an empty files store: documents/s as the copy reports it, and the wall time of the process.

Stores are generated under ``--workdir`` (default: a temporary directory, removed afterwards;
give a directory to keep them between runs, which saves regenerating 100,000 runs).
Issue 9's targets: ``ls`` under 0.3 s; ``copy`` at least 50,000 documents/s.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from workload import run_documents  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
CLI = [sys.executable, "-m", "broker_v1"]


def write_store_by_hand(directory: Path, n_runs: int, n_events: int) -> None:
    """Write suitcase-jsonl run files directly (as another program would), one per run."""
    if directory.is_dir() and len(list(directory.glob("*.jsonl"))) == n_runs:
        return  # kept from an earlier run
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for i in range(n_runs):
        docs = list(run_documents(i, n_events=n_events))
        uid = docs[0][1]["uid"]
        with open(directory / f"{uid}.jsonl", "w", encoding="utf-8") as f:
            f.write("".join(json.dumps([name, doc]) + "\n" for name, doc in docs))


def wall(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time of one process and its result (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed, proc


def bench_ls(workdir: Path, n_runs: int, repeat: int) -> None:
    store = workdir / f"ls-{n_runs}"
    t0 = time.perf_counter()
    write_store_by_hand(store, n_runs, n_events=3)
    print(f"generated {n_runs:,} runs in {time.perf_counter() - t0:.1f} s")
    first, _ = wall([*CLI, "ls", str(store), "--limit", "50"])
    print(f"first `ls` (builds the index): {first:.2f} s")
    times = [wall([*CLI, "ls", str(store), "--limit", "50"])[0] for _ in range(repeat)]
    imports = [wall([sys.executable, "-c", "import broker_v1.cli"])[0] for _ in range(repeat)]
    bare = [wall([sys.executable, "-c", "pass"])[0] for _ in range(repeat)]
    _, proc = wall([*CLI, "ls", str(store), "--limit", "50"])
    assert len(proc.stdout.splitlines()) == 52, proc.stdout  # header + 50 runs + footer
    print(f"`broker-v1 ls STORE --limit 50`, {n_runs:,} runs: median "
          f"{statistics.median(times):.3f} s (min {min(times):.3f}) [target < 0.3 s]")
    print(f"  of which `import broker_v1.cli`: {statistics.median(imports):.3f} s, "
          f"bare interpreter: {statistics.median(bare):.3f} s")


def bench_copy(workdir: Path, n_runs: int, n_events: int) -> None:
    src = workdir / f"copy-src-{n_runs}x{n_events}"
    dst = workdir / "copy-dst"
    t0 = time.perf_counter()
    write_store_by_hand(src, n_runs, n_events=n_events)
    print(f"generated {n_runs:,} runs x {n_events} events in {time.perf_counter() - t0:.1f} s")
    wall([*CLI, "ls", str(src), "--limit", "1"])  # index the source outside the timing
    shutil.rmtree(dst, ignore_errors=True)
    elapsed, proc = wall([*CLI, "copy", str(src), str(dst), "--no-progress", "--json"])
    report = json.loads(proc.stdout)
    assert len(report["copied"]) == n_runs and report["ok"], report
    rate = report["documents"] / report["elapsed"]
    print(f"`broker-v1 copy` files -> files, {n_runs:,} runs x {n_events} events: "
          f"{report['documents']:,} documents in {report['elapsed']:.1f} s = {rate:,.0f} "
          f"documents/s [target >= 50,000]; process wall time {elapsed:.1f} s")
    elapsed, proc = wall([*CLI, "copy", str(src), str(dst), "--no-progress", "--json"])
    report = json.loads(proc.stdout)
    assert len(report["skipped"]) == n_runs, report
    print(f"  second copy (everything already there): {n_runs / report['elapsed']:,.0f} runs/s "
          f"checked; process wall time {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000-run ls, 1,000-run copy")
    parser.add_argument("--workdir", type=Path, help="keep generated stores here")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ls_runs, copy_runs = (10_000, 1_000) if args.quick else (100_000, 10_000)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cli-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        bench_ls(workdir, ls_runs, args.repeat)
        bench_copy(workdir, copy_runs, 100)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
