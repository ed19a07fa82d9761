"""Shared helpers of the reliability suite: the bad-input tally, store factories, snapshots.

Not a ``conftest.py`` on purpose: a second ``conftest`` module would replace ``tests/conftest.py``
in ``sys.modules`` (this folder has no ``__init__.py``), and every ``from conftest import ...``
collected after it would break.  Test modules import this one by its own name instead.

The tally
---------
Every test that feeds a store a bad input calls :func:`record` once the store has rejected it
cleanly (the specific exception, the message naming the document and field, nothing changed)
or, where the value is legal, once it has round-tripped.  A reporter registered on first use
prints the totals at the end of the session::

    broker_v1 reliability: 1234 bad inputs tried, all rejected cleanly, nothing lost
      documents: 900  (memory 300, files 300, mongomock 300)
      ...

Set ``BROKER_V1_CORPUS_REPORT=/some/file.json`` to also write the counts as JSON.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import _FACTORIES, STORE_KINDS, Harness  # noqa: E402

__all__ = [
    "FIGURES",
    "REPO",
    "STORE_KINDS",
    "TESTS",
    "dump",
    "fresh_store",
    "record",
    "require_kind",
    "snapshot",
    "tree_state",
]

#: (category, store kind) -> number of bad inputs handled cleanly.
COUNTS: Counter[tuple[str, str]] = Counter()
#: Figures measured by the load and memory tests, printed after the tally.
FIGURES: dict[str, Any] = {}
_PLUGIN_NAME = "broker_v1_reliability_corpus"


def load_module(relative_path: str, name: str) -> types.ModuleType:
    """A script of the repository (``.ci/...``, ``benchmarks/...``) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(category: str, kind: str = "-", n: int = 1) -> None:
    """Count ``n`` bad inputs of ``category`` that ``kind`` of store handled cleanly."""
    COUNTS[(category, kind)] += n


class _Reporter:
    """Prints the tally after the test summary (registered by :func:`install_reporter`)."""

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: Any) -> None:
        if FIGURES:
            terminalreporter.write_sep("=", "broker_v1 reliability figures")
            for name, value in FIGURES.items():
                terminalreporter.write_line(f"{name}: {value}")
        if not COUNTS:
            return
        failed = [
            r for r in terminalreporter.stats.get("failed", [])
            if "tests/reliability/" in getattr(r, "nodeid", "")
        ]
        total = sum(COUNTS.values())
        by_category: dict[str, Counter[str]] = {}
        for (category, kind), n in COUNTS.items():
            by_category.setdefault(category, Counter())[kind] += n
        verdict = (
            "all rejected cleanly, nothing lost" if not failed
            else f"{len(failed)} reliability test(s) FAILED: see above"
        )
        terminalreporter.write_sep("=", "broker_v1 reliability corpus")
        terminalreporter.write_line(f"{total} bad inputs tried, {verdict}")
        for category in sorted(by_category):
            kinds = by_category[category]
            detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            terminalreporter.write_line(f"  {category}: {sum(kinds.values())}  ({detail})")
        target = os.environ.get("BROKER_V1_CORPUS_REPORT")
        if target:
            Path(target).write_text(json.dumps({
                "figures": FIGURES,
                "total": total,
                "failed_tests": len(failed),
                "by_category": {c: dict(k) for c, k in by_category.items()},
            }, indent=2))


def install_reporter(config: Any) -> None:
    """Register the tally reporter once per session."""
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(_Reporter(), _PLUGIN_NAME)


@pytest.fixture(autouse=True, scope="module")
def _corpus_reporter(request: pytest.FixtureRequest) -> None:
    """Every reliability module imports this fixture so the tally is printed at the end."""
    install_reporter(request.config)


# ---------------------------------------------------------------------- stores
def require_kind(kind: str) -> None:
    """Skip (with the factory's reason) when ``kind`` of store is unavailable here."""
    probe = Path(tempfile.mkdtemp(prefix="bv1-probe-"))
    try:
        harness = _FACTORIES[kind](probe)
        harness.store.close()
        harness.cleanup()
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@contextlib.contextmanager
def fresh_store(kind: str) -> Iterator[Harness]:
    """A new empty store of ``kind`` in its own temporary folder (for hypothesis examples)."""
    folder = Path(tempfile.mkdtemp(prefix="bv1-rel-"))
    harness = _FACTORIES[kind](folder)
    try:
        yield harness
    finally:
        harness.store.close()
        harness.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def snapshot(store: Any) -> list[tuple[str, dict[str, Any]]]:
    """Everything a store holds, through its public reads: every run replayed in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for start in store.find_run_starts({}):
        out.extend(store.iter_documents(start["uid"]))
    return out


def dump(value: Any) -> str:
    """A canonical text form where NaN equals NaN, for before/after comparisons."""
    return json.dumps(value, sort_keys=True, allow_nan=True, default=repr)


def same(a: Any, b: Any) -> bool:
    """Equality of JSON-like values with NaN equal to NaN and exact types for numbers."""
    if type(a) is float and type(b) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if _is_int(a) and _is_int(b):
        # A real MongoDB server hands back 64-bit integers as bson.int64.Int64, an int
        # subclass that compares, prints and serializes as the int it holds.
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every entry under ``root`` (symlinks unfollowed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            state[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return state
