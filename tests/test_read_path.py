"""The Broker's read path end to end: tables, events, documents, replay, over every store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import sample_runs

from broker_v1 import ALL

RUNS = sample_runs()


def test_header_table_positional_stream(filled_db):
    """h.table('baseline') and db.get_table(h, stream_name=...) give the stream's rows."""
    h = filled_db[RUNS[1].uid]
    baseline = h.table("baseline")
    assert list(baseline.columns) == ["time", "temp"]
    assert list(baseline["temp"]) == [20.0, 21.0]
    assert baseline.index.name == "seq_num"
    primary = filled_db.get_table(h)
    assert list(primary.columns) == ["time", "motor", "motor_setpoint", "det"]
    assert list(primary.index) == [1, 2, 3]
    assert primary["time"].dtype == np.dtype("datetime64[ns]")


def test_table_localises_to_broker_timezone(filled_db):
    """Times are naive wall-clock times in the Broker's timezone (US/Eastern here)."""
    h = filled_db[RUNS[1].uid]
    t = h.table()["time"].iloc[0]
    expected = pd.Timestamp(RUNS[1].start["time"] + 1, unit="s", tz="UTC").tz_convert(
        "US/Eastern").tz_localize(None)
    assert abs((t - expected).total_seconds()) < 1e-3
    utc = h.table(timezone="UTC")["time"].iloc[0]
    assert (t - utc).total_seconds() == -5 * 3600
    raw = h.table(convert_times=False, localize_times=False)["time"].iloc[0]
    assert raw == RUNS[1].start["time"] + 1


def test_table_of_several_headers_and_fields(filled_db):
    """Several headers concatenate; fields regexes select columns and add constants."""
    headers = filled_db(plan_name="scan")
    table = filled_db.get_table(headers, fields=["det", "det_exposure", "operator"])
    assert list(table.columns) == ["time", "det", "det_exposure", "operator"]
    assert len(table) == 5 + 3 + 3
    assert set(table["det_exposure"]) == {0.1}
    assert list(table["operator"][:5]) == ["Dmitri"] * 5


def test_external_field_keeps_datum_ids_without_fill(filled_db):
    """fill=False leaves datum ids in external columns; fill=True needs handlers."""
    h = filled_db[RUNS[2].uid]
    table = h.table()
    datums = [doc["datum_id"] for name, doc in RUNS[2].docs if name == "datum"]
    assert list(table["img"]) == datums


def test_events_documents_restream_process(filled_db):
    """events(), documents(), restream and process replay what was recorded."""
    h = filled_db[RUNS[0].uid]
    events = list(h.events())
    assert [e["seq_num"] for e in events] == [1, 2, 3]
    assert all(e["descriptor"] == RUNS[0].docs[1][1]["uid"] for e in events)
    names = [name for name, _ in h.documents()]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 5
    assert [n for n, _ in filled_db.restream(h)] == names
    seen = []
    filled_db.process(h, lambda name, doc: seen.append(name))
    assert seen == names
    assert list(filled_db.get_events(h, stream_name=ALL))[0]["data"] == {"temp": 20.0}


def test_data_generator(filled_db):
    """h.data(field) yields one value per event."""
    h = filled_db[RUNS[4].uid]
    assert list(h.data("det")) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert list(h.data("temp", stream_name="baseline")) == [20.0, 21.0]


def test_run_without_stop_reads(filled_db):
    """A run with no stop reads and replays without a stop document."""
    h = filled_db[RUNS[3].uid]
    assert len(h.table()) == 3
    assert [name for name, _ in h.documents()][-1] == "event"


def test_unknown_stream_warns_and_is_empty(filled_db):
    """An unknown stream gives an empty frame and a warning naming the streams."""
    with pytest.warns(UserWarning, match="baseline.*primary|primary.*baseline"):
        table = filled_db[-1].table("nope")
    assert table.empty and table.index.name == "seq_num"
