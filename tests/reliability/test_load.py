"""Load: writers and readers as real processes on one files store; memory of a big search.

The workers and the checks live in ``benchmarks/bench_load.py`` (one source for the test and
the figures).  Readers check every answer as they go -- no run listed twice, no complete run
missing, newest first, a stopped run's table has exactly its ``num_events`` rows, a running
one a gap-free prefix -- and the end check finds every acknowledged document in a store that
rebuilds its index from the files.  (mongomock lives inside one process, so it cannot take
part; the Mongo store under load is a server's business.)

Memory: iterating every header of a 5,000-run store (100,000 with ``-m slow``, plus a
100,000-event run) holds a bounded page of headers, not all of them; the peak RSS is printed.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from rel_corpus import FIGURES, _corpus_reporter, load_module  # noqa: F401


def _bench() -> types.ModuleType:
    return load_module("benchmarks/bench_load.py", "bv1_bench_load")


def _load(tmp_path: Path, duration: float) -> dict[str, object]:
    figures = _bench().run_load(tmp_path / "store", duration=duration, writers=4, readers=4)
    assert figures["problems"] == [], figures["problems"]
    assert figures["runs_written"] > 0 and figures["tables"] > 0
    FIGURES[f"load {duration:g} s (4 writers, 4 readers, files)"] = {
        k: figures[k] for k in ("runs_written", "documents_per_s", "runs_per_s",
                                "searches_per_s", "tables_per_s")}
    return figures


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    """Four writer and four reader processes for 6 s: every read consistent, every write kept."""
    _load(tmp_path, 6.0)


@pytest.mark.slow
def test_concurrent_writers_and_readers_60_s(tmp_path: Path) -> None:
    """The same for 60 s (``-m slow``)."""
    _load(tmp_path, 60.0)


def _memory(tmp_path: Path, n_runs: int, big_run: int, held_fraction: float) -> None:
    bench = _bench()
    directory = tmp_path / "store"
    big = bench.write_runs_by_hand(directory, n_runs, big_run_events=big_run)
    figures = bench.measure_iteration(directory, n_runs + 1, big)
    assert figures["runs_iterated"] == n_runs + 1
    assert figures["big_run_events"] == big_run
    # Headers stream: the traced peak stays a bounded page, far below holding them all ...
    assert figures["traced_peak_all_mib"] < held_fraction * figures["all_headers_held_mib"], \
        figures
    # ... and does not grow from the first fifth of the store to the end.
    assert figures["traced_peak_all_mib"] <= 1.5 * figures["traced_peak_first_fifth_mib"] + 1, \
        figures
    FIGURES[f"memory, {n_runs:,} runs + a {big_run:,}-event run (files)"] = {
        k: figures[k] for k in ("traced_peak_all_mib", "all_headers_held_mib",
                                "rss_before_mib", "peak_rss_through_headers_mib",
                                "peak_rss_mib")}


def test_iterating_every_header_holds_a_page_not_the_store(tmp_path: Path) -> None:
    """Iterating all 5,000 headers of a store holds one page of them, not all of them."""
    _memory(tmp_path, 5_000, 10_000, held_fraction=0.6)


@pytest.mark.slow
def test_iterating_100k_headers_and_a_100k_event_run(tmp_path: Path) -> None:
    """100,000 runs and a 100,000-event run: header memory stays flat (``-m slow``)."""
    _memory(tmp_path, 100_000, 100_000, held_fraction=0.05)


def test_load_on_mongomock_is_not_meaningful() -> None:
    """mongomock lives inside one process, so several processes cannot share it: no load test."""
    pytest.skip("mongomock is in-process only: concurrent processes cannot share one database")
