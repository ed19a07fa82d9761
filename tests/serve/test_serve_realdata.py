"""The real runs of ``tests/data`` served in-process, read as tables equal to the store's.

Every real run (databroker-pack jsonl/msgpack, the bluesky tutorials, apstools exports) goes
into one memory store served with the NPY_SEQ handler and the pack runs' ``root_map``; every
run's start comes back through a listing, and a sample of runs (every 8th, plus every run
with external frames) is read stream by stream with bluesky-tiled-plugins' client and
compared with ``Broker.get_table`` on the store (frames filled on both sides; external fields
with no shipped handler are left out of the served stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tiled.server", reason='the serve extra is not installed '
                    '(pip install -e ".[test,serve]")')
pytest.importorskip("bluesky_tiled_plugins", reason="bluesky-tiled-plugins is not installed")

import realdata  # noqa: E402
from handlers import NpySeqHandler  # noqa: E402
from tiled.client import Context, from_context  # noqa: E402

from broker_v1 import Broker  # noqa: E402
from broker_v1.serve import build_app  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

KEY = "realdatakey"
RUNS = list({run.uid: run for run in realdata.all_real_runs()}.values())
SAMPLE = [run for i, run in enumerate(RUNS) if i % 8 == 0 or run.external_root]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Broker, Any]]:
    """A Broker over a memory store of every real run, and a client of it served."""
    store = MemoryStore()
    root_map: dict[str, str] = {}
    for run in RUNS:
        root_map.update(run.root_map)
        for name, doc in run.documents:
            store.insert(name, doc)
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler}, root_map=root_map)
    context = Context.from_app(build_app(store, api_key=KEY, filler=db.reg.filler(store)),
                               api_key=KEY)
    try:
        yield db, from_context(context)
    finally:
        context.close()


def test_every_real_run_is_listed_with_its_start(served: tuple[Broker, Any]) -> None:
    """Listing the catalog gives every real run's start document, oldest first."""
    db, client = served
    listed = {uid: dict(run.start) for uid, run in client.items()}
    assert len(listed) == len(RUNS) == db.store.count_runs({})
    assert listed == {run.uid: db.store.get_run_start(run.uid) for run in RUNS}


@pytest.mark.parametrize("run", SAMPLE, ids=[run.name for run in SAMPLE])
def test_real_streams_read_as_the_store_tables(served: tuple[Broker, Any],
                                               run: realdata.RealRun) -> None:
    """Each stream's read() holds the store's table, column for column (frames filled)."""
    db, client = served
    header = db[run.uid]
    served_run = client[run.uid]
    assert sorted(served_run) == sorted(header.stream_names)
    for stream in header.stream_names:
        ds = served_run[stream].read()
        table = db.get_table(header, stream_name=stream, fill=bool(run.external_root))
        assert len(ds["time"]) == len(table)
        # External fields without a shipped handler are left out; nothing else is.
        external = {k for d in header.descriptors for k, v in d["data_keys"].items()
                    if v.get("external")}
        left_out = set(table.columns) - set(ds.data_vars) - {"time"}
        assert left_out <= (set() if run.external_root else external)
        for column in table.columns:
            if column == "time" or column in left_out:
                continue
            served_values = ds[column].values
            expected = table[column].to_numpy()
            if expected.dtype == object and len(expected) and isinstance(expected[0],
                                                                         np.ndarray):
                expected = np.stack(list(expected))  # filled frames
            if expected.dtype.kind in "fiub" and served_values.dtype.kind in "fiub":
                np.testing.assert_array_equal(served_values, expected, err_msg=column)
            else:
                assert [str(v) for v in served_values] == [str(v) for v in expected], column
