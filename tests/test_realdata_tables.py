"""get_table on the real runs, checked against an independent oracle.

The oracle is deliberately naive and separate from broker_v1's read path: it unpacks the
events of the *JSON* copy of each run with event-model, sorts them by time and builds the frame
row by row.  broker_v1 reads the *msgpack* copy of the same run (inserted into each store), so
a mismatch in either format handling or in the columnar table code shows up.
"""

from __future__ import annotations

import event_model
import numpy as np
import pandas as pd
import pytest
import realdata

from broker_v1 import Broker

PAIRS = realdata.paired_runs()


def oracle_table(documents, stream):
    """The v1 table of one stream built naively from a run's documents."""
    descriptors = [d for n, d in documents if n == "descriptor"
                   and (d.get("name") or "primary") == stream]
    descriptors.sort(key=lambda d: d["time"])
    frames = []
    for descriptor in descriptors:
        events = []
        for name, doc in documents:
            if name == "event" and doc["descriptor"] == descriptor["uid"]:
                events.append(doc)
            elif name == "event_page" and doc["descriptor"] == descriptor["uid"]:
                events.extend(event_model.unpack_event_page(doc))
        events.sort(key=lambda e: (e["time"], e["seq_num"]))
        if not events:
            continue
        rows = [{"time": e["time"], **{k: e["data"].get(k) for k in descriptor["data_keys"]}}
                for e in events]
        frame = pd.DataFrame(rows, index=[e["seq_num"] for e in events])
        frames.append(frame)
    return pd.concat(frames) if frames else None


def assert_same(table, expected):
    assert list(table.columns) == list(expected.columns)
    assert list(table.index) == list(expected.index)
    for column in expected.columns:
        for got, want in zip(table[column], expected[column]):
            if isinstance(want, list | np.ndarray) or isinstance(got, np.ndarray):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
            elif isinstance(want, float) and np.isnan(want):
                assert got is None or np.isnan(got)
            else:
                assert got == want, (column, got, want)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].name)
def test_tables_match_the_oracle(pair):
    """Every stream's table of each real run equals the naive oracle built from the other format."""
    json_run, msgpack_run = pair
    db = Broker(__import__("broker_v1").temp().store, timezone="UTC")
    for name, doc in msgpack_run.documents:
        db.insert(name, doc)
    h = db[json_run.uid]
    for stream in h.stream_names:
        expected = oracle_table(json_run.documents, stream)
        table = h.table(stream, convert_times=False, localize_times=False)
        if expected is None:
            assert table.empty
            continue
        assert table.index.name == "seq_num"
        assert_same(table, expected)
        localized = h.table(stream)["time"]
        want = pd.to_datetime(expected["time"], unit="s")
        assert (abs(localized.values - want.values) < np.timedelta64(1, "us")).all()


def test_oracle_is_not_trivial():
    """The oracle sees real data: many runs, several streams, arrays, thousands of rows."""
    rows = streams = arrays = 0
    for json_run, _ in PAIRS:
        names = {(d.get("name") or "primary") for n, d in json_run.documents if n == "descriptor"}
        for stream in names:
            frame = oracle_table(json_run.documents, stream)
            if frame is not None:
                rows += len(frame)
                streams += 1
                arrays += sum(isinstance(v, list) for v in frame.iloc[0])
    assert len(PAIRS) >= 60 and streams >= 70 and rows >= 1400 and arrays >= 1
