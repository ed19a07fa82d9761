"""Model-based property tests: every store answers queries exactly as MemoryStore does."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import _FACTORIES, STORE_KINDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker_v1.stores.memory import MemoryStore

PLANS = ["scan", "count", "grid_scan"]
SAMPLES = ["Si", "Au", "Cu", "Si wafer"]

start_docs = st.lists(
    st.fixed_dictionaries(
        {
            "time": st.sampled_from([100.0, 200.0, 300.0, 300.0, 400.5]),
            "scan_id": st.integers(min_value=0, max_value=6),
            "plan_name": st.sampled_from(PLANS),
        },
        optional={
            "sample": st.fixed_dictionaries({"name": st.sampled_from(SAMPLES)}),
            "operator": st.sampled_from(["Dmitri", "Michael"]),
            "num_points": st.integers(min_value=-3, max_value=100),
        },
    ),
    min_size=0,
    max_size=12,
)

conditions = st.one_of(
    st.builds(lambda v: {"plan_name": v}, st.sampled_from(PLANS + ["nope"])),
    st.builds(lambda v: {"scan_id": v}, st.integers(0, 6)),
    st.builds(lambda op, v: {"scan_id": {op: v}}, st.sampled_from(["$gt", "$gte", "$lt", "$lte",
                                                                   "$ne"]), st.integers(0, 6)),
    st.builds(lambda vs: {"scan_id": {"$in": vs}}, st.lists(st.integers(0, 6), max_size=3)),
    st.builds(lambda b: {"operator": {"$exists": b}}, st.booleans()),
    st.builds(lambda v: {"sample.name": v}, st.sampled_from(SAMPLES)),
    st.builds(lambda p: {"plan_name": {"$regex": f"^{p}"}}, st.sampled_from(["s", "co", "g"])),
    st.builds(lambda lo, hi: {"time": {"$gte": lo, "$lte": hi}},
              st.sampled_from([0.0, 150.0, 300.0]), st.sampled_from([200.0, 300.0, 1e9])),
)
queries = st.one_of(
    st.just({}),
    conditions,
    st.builds(lambda a, b: {"$or": [a, b]}, conditions, conditions),
    st.builds(lambda a, b: {"$and": [a, b]}, conditions, conditions),
)


def _uids(store, query, **kwargs):
    return [s["uid"] for s in store.find_run_starts(query, **kwargs)]


@pytest.mark.parametrize("kind", [k for k in STORE_KINDS if k != "memory"])
def test_store_agrees_with_memory_store(kind):
    """For random runs and queries, each store returns the same runs, in the same order."""
    probe_dir = Path(tempfile.mkdtemp())
    try:
        _FACTORIES[kind](probe_dir).store.close()  # skips when the kind is unavailable
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(docs=start_docs, query_list=st.lists(queries, min_size=1, max_size=4),
           skip=st.integers(0, 3), limit=st.one_of(st.none(), st.integers(1, 5)))
    def check(docs, query_list, skip, limit):
        folder = Path(tempfile.mkdtemp())
        harness = _FACTORIES[kind](folder)
        model = MemoryStore()
        try:
            for i, doc in enumerate(docs):
                doc = {**doc, "uid": f"{uuid.UUID(int=i + 1)}"}
                harness.store.insert("start", doc)
                model.insert("start", doc)
            for query in query_list:
                assert _uids(harness.store, query) == _uids(model, query), query
                assert harness.store.count_runs(query) == model.count_runs(query), query
                assert (_uids(harness.store, query, skip=skip, limit=limit)
                        == _uids(model, query, skip=skip, limit=limit)), query
            for prefix in ("0000", f"{uuid.UUID(int=1)}"[:30]):
                assert ([s["uid"] for s in harness.store.find_runs_by_uid_prefix(prefix)]
                        == [s["uid"] for s in model.find_runs_by_uid_prefix(prefix)])
            for scan_id in range(4):
                assert ([s["uid"] for s in harness.store.find_runs_by_scan_id(scan_id, limit=None)]
                        == [s["uid"] for s in model.find_runs_by_scan_id(scan_id, limit=None)])
        finally:
            harness.store.close()
            harness.cleanup()
            shutil.rmtree(folder, ignore_errors=True)

    check()
