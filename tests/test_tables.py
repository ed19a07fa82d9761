"""get_table: the v1 DataFrame shape of spec §4.1, row by row, against the store API only."""

from __future__ import annotations

import warnings
from datetime import datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from event_model import compose_run

from broker_v1._run import RunDocs
from broker_v1.tables import empty_table, get_table
from broker_v1.utils import ALL

T0 = 1_600_000_000.0  # 2020-09-13 12:26:40 UTC


def keys(*names: str, dtype: str = "number", **extra: Any) -> dict[str, dict[str, Any]]:
    return {n: {"dtype": dtype, "shape": [], "source": f"sim:{n}", **extra} for n in names}


class Run:
    """Builds one run with event_model.compose_run and inserts it as it goes."""

    def __init__(self, store: Any, *, time: float = T0, **metadata: Any) -> None:
        self.store = store
        self.bundle = compose_run(time=time, metadata=metadata)
        self.uid = self.bundle.start_doc["uid"]
        store.insert("start", self.bundle.start_doc)

    def stream(self, name: str, data_keys: dict, *, time: float, **kw: Any) -> Any:
        d = self.bundle.compose_descriptor(name=name, data_keys=data_keys, time=time, **kw)
        self.store.insert("descriptor", d.descriptor_doc)
        return d

    def event(self, d: Any, data: dict, *, time: float, seq_num: int | None = None) -> dict:
        ev = d.compose_event(
            data=data, timestamps={k: time for k in data}, time=time, seq_num=seq_num
        )
        self.store.insert("event", ev)
        return ev

    def stop(self, *, time: float) -> dict:
        doc = self.bundle.compose_stop(time=time)
        self.store.insert("stop", doc)
        return doc

    def docs(self) -> RunDocs:
        s = self.store
        return RunDocs(
            s.get_run_start(self.uid), s.get_run_stop(self.uid), s.get_descriptors(self.uid)
        )


def table(store: Any, runs: Any, **kw: Any) -> pd.DataFrame:
    if isinstance(runs, RunDocs):
        runs = [runs]
    kw.setdefault("timezone", "UTC")
    return get_table(store, runs, **kw)


def simple_run(store: Any, n: int = 3, **metadata: Any) -> Run:
    """A run with a 'primary' stream of det/motor and a 'baseline' stream of 'temp'."""
    run = Run(store, **metadata)
    p = run.stream("primary", keys("motor", "det"), time=T0 + 0.1)
    b = run.stream("baseline", keys("temp"), time=T0 + 0.2)
    run.event(b, {"temp": 20.0}, time=T0 + 0.3)
    for i in range(n):
        run.event(p, {"motor": i * 10, "det": i + 0.5}, time=T0 + 1 + i)
    run.event(b, {"temp": 21.0}, time=T0 + 10)
    run.stop(time=T0 + 11)
    return run


# --------------------------------------------------------------------------- index and columns
def test_index_is_seq_num(store):
    """The index holds the events' seq_num values and is named 'seq_num'."""
    df = table(store, simple_run(store).docs())
    assert df.index.name == "seq_num"
    assert df.index.tolist() == [1, 2, 3]


def test_time_first_then_data_keys_in_descriptor_order(store):
    """Columns are 'time' then the data keys in the descriptor's order, not alphabetical."""
    run = Run(store)
    d = run.stream("primary", keys("zeta", "alpha", "mid"), time=T0)
    run.event(d, {"zeta": 1.0, "alpha": 2.0, "mid": 3.0}, time=T0 + 1)
    df = table(store, run.docs())
    assert list(df.columns) == ["time", "zeta", "alpha", "mid"]
    assert df.loc[1, "alpha"] == 2.0


def test_values_and_numeric_dtypes(store):
    """Scalar fields come back with their values and numpy numeric dtypes."""
    df = table(store, simple_run(store).docs())
    assert df["motor"].tolist() == [0, 10, 20]
    assert df["det"].tolist() == [0.5, 1.5, 2.5]
    assert df["motor"].dtype == np.int64
    assert df["det"].dtype == np.float64


def test_string_columns_are_object_dtype(store):
    """String fields are object columns (v1 dtype), not pandas 3's str dtype."""
    run = Run(store)
    d = run.stream("primary", keys("name", dtype="string"), time=T0)
    run.event(d, {"name": "a"}, time=T0 + 1)
    run.event(d, {"name": "b"}, time=T0 + 2)
    df = table(store, run.docs())
    assert df["name"].dtype == object
    assert df["name"].tolist() == ["a", "b"]


def test_boolean_column(store):
    """Boolean fields come back as a bool column."""
    run = Run(store)
    d = run.stream("primary", keys("ok", dtype="boolean"), time=T0)
    run.event(d, {"ok": True}, time=T0 + 1)
    run.event(d, {"ok": False}, time=T0 + 2)
    df = table(store, run.docs())
    assert df["ok"].dtype == bool
    assert df["ok"].tolist() == [True, False]


def test_array_field_is_object_column_of_numpy_arrays(store):
    """Inline array fields give one object column holding a numpy array per row."""
    run = Run(store)
    d = run.stream("primary", {"spec": {"dtype": "array", "shape": [3], "source": "s"}}, time=T0)
    run.event(d, {"spec": [1, 2, 3]}, time=T0 + 1)
    run.event(d, {"spec": [4, 5, 6]}, time=T0 + 2)
    df = table(store, run.docs())
    assert df["spec"].dtype == object
    cells = df["spec"].tolist()
    assert all(isinstance(c, np.ndarray) for c in cells)
    np.testing.assert_array_equal(cells[1], [4, 5, 6])


def test_ragged_array_field(store):
    """Array cells of different lengths stay one array per row."""
    run = Run(store)
    d = run.stream("primary", {"spec": {"dtype": "array", "shape": [-1], "source": "s"}}, time=T0)
    run.event(d, {"spec": [1, 2]}, time=T0 + 1)
    run.event(d, {"spec": [1, 2, 3]}, time=T0 + 2)
    df = table(store, run.docs())
    assert [len(c) for c in df["spec"]] == [2, 3]


def test_numbers_with_missing_values_read_as_float_nan(store):
    """A numeric field with a null value reads as float with NaN, as pandas infers it."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1}, time=T0 + 1)
    run.event(d, {"det": None}, time=T0 + 2)
    df = table(store, run.docs())
    assert df["det"].dtype == np.float64
    assert df["det"].iloc[0] == 1.0 and np.isnan(df["det"].iloc[1])


def test_external_field_unfilled_keeps_datum_ids(store):
    """External fields hold their datum id strings when not filled."""
    run = Run(store)
    res = run.bundle.compose_resource(spec="NPY", root="/", resource_path="x", resource_kwargs={})
    store.insert("resource", res.resource_doc)
    dk = {"img": {"dtype": "array", "shape": [2, 2], "source": "s", "external": "FILESTORE:"}}
    d = run.stream("primary", dk, time=T0)
    ids = []
    for i in range(2):
        datum = res.compose_datum(datum_kwargs={"i": i})
        store.insert("datum", datum)
        ids.append(datum["datum_id"])
        run.event(d, {"img": datum["datum_id"]}, time=T0 + 1 + i)
    df = table(store, run.docs())
    assert df["img"].tolist() == ids
    assert df["img"].dtype == object


# --------------------------------------------------------------------------- fields
def test_fields_are_full_match_regexes(store):
    """'det' selects det only, 'det.*' selects det and det2."""
    run = Run(store)
    d = run.stream("primary", keys("det", "det2", "motor"), time=T0)
    run.event(d, {"det": 1.0, "det2": 2.0, "motor": 3.0}, time=T0 + 1)
    assert list(table(store, run.docs(), fields=["det"]).columns) == ["time", "det"]
    assert list(table(store, run.docs(), fields=["det.*"]).columns) == ["time", "det", "det2"]
    assert list(table(store, run.docs(), fields="mot.r").columns) == ["time", "motor"]


def test_fields_add_config_then_start_then_stop_constant_columns(store):
    """Matching configuration, start and stop values become constant columns in that order."""
    run = Run(store, bc=7, sample="Si")
    conf = {
        "det": {
            "data": {"exposure_time": 0.5},
            "timestamps": {"exposure_time": T0},
            "data_keys": keys("exposure_time"),
        }
    }
    d = run.stream("primary", keys("det", "motor"), time=T0, configuration=conf)
    for i in range(2):
        run.event(d, {"det": float(i), "motor": i}, time=T0 + 1 + i)
    run.stop(time=T0 + 5)
    df = table(store, run.docs(), fields=["exit_status", "sample", "det", "bc", "exposure_time"])
    assert list(df.columns) == ["time", "det", "exposure_time", "bc", "sample", "exit_status"]
    assert df["exposure_time"].tolist() == [0.5, 0.5]
    assert df["bc"].tolist() == [7, 7]
    assert df["sample"].tolist() == ["Si", "Si"]
    assert df["exit_status"].tolist() == ["success", "success"]
    assert df["sample"].dtype == object


def test_no_constant_columns_without_fields(store):
    """Without fields, configuration, start and stop values are not added."""
    run = Run(store, bc=7)
    conf = {
        "det": {
            "data": {"exposure_time": 0.5},
            "timestamps": {"exposure_time": T0},
            "data_keys": keys("exposure_time"),
        }
    }
    d = run.stream("primary", keys("det"), time=T0, configuration=conf)
    run.event(d, {"det": 1.0}, time=T0 + 1)
    run.stop(time=T0 + 2)
    assert list(table(store, run.docs()).columns) == ["time", "det"]


def test_event_field_wins_over_start_key_of_same_name(store):
    """An event field named like a start key keeps the event values."""
    run = Run(store, det="from start")
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1.0}, time=T0 + 1)
    df = table(store, run.docs(), fields=["det"])
    assert list(df.columns) == ["time", "det"]
    assert df["det"].tolist() == [1.0]


def test_start_time_never_replaces_time_column(store):
    """A fields pattern matching 'time' does not replace the events' time column."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1.0}, time=T0 + 1)
    df = table(store, run.docs(), fields=[".*"], localize_times=False, convert_times=False)
    assert df["time"].tolist() == [T0 + 1]


def test_unknown_fields_give_empty_frame(store):
    """Fields matching no event field (even if they match a start key) give the empty frame."""
    run = simple_run(store, bc=7)
    for fields in (["nope"], ["bc"], []):
        df = table(store, run.docs(), fields=fields)
        assert df.empty and list(df.columns) == [] and df.index.name == "seq_num"


def test_invalid_regex_raises_value_error(store):
    """An invalid regular expression in fields raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"'det\['"):
        table(store, simple_run(store).docs(), fields=["det["])


def test_fields_projection_is_passed_to_the_store(store):
    """With fields, get_table asks the store for the selected columns only."""
    run = simple_run(store)
    asked = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def iter_event_pages(self, uid: str, *, fields: Any = None) -> Any:
            asked.append(fields)
            return store.iter_event_pages(uid, fields=fields)

    get_table(Spy(), [run.docs()], fields=["det"], timezone="UTC")
    get_table(Spy(), [run.docs()], timezone="UTC")
    assert asked == [["det"], None]


# --------------------------------------------------------------------------- rows
def test_rows_in_time_order_not_seq_num_order(store):
    """Events inserted out of time order come back in ascending time; seq_num follows."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 3.0}, time=T0 + 3, seq_num=1)
    run.event(d, {"det": 1.0}, time=T0 + 1, seq_num=2)
    run.event(d, {"det": 2.0}, time=T0 + 2, seq_num=3)
    df = table(store, run.docs())
    assert df["det"].tolist() == [1.0, 2.0, 3.0]
    assert df.index.tolist() == [2, 3, 1]


def test_descriptors_of_one_stream_concatenate_in_time_order(store):
    """Two descriptors of a stream stack in ascending descriptor time with a union of columns."""
    run = Run(store)
    # Legacy data: event-model now refuses different keys within one stream name.
    late = run.stream("primary", keys("det", "extra"), time=T0 + 5, validate=False)
    early = run.stream("primary", keys("det"), time=T0 + 1, validate=False)
    run.event(early, {"det": 1.0}, time=T0 + 2)
    run.event(late, {"det": 2.0, "extra": 9.0}, time=T0 + 6)
    docs = run.docs()
    for order in (docs.descriptors, docs.descriptors[::-1]):
        df = table(store, docs._replace(descriptors=order))
        assert list(df.columns) == ["time", "det", "extra"]
        assert df["det"].tolist() == [1.0, 2.0]
        assert np.isnan(df["extra"].iloc[0]) and df["extra"].iloc[1] == 9.0
        assert df.index.tolist() == [1, 2]  # event-model counts seq_num per stream name


def test_missing_string_column_in_one_descriptor_is_object_with_nan(store):
    """A string column absent from one descriptor stays object, with NaN there."""
    run = Run(store)
    a = run.stream("primary", keys("det"), time=T0 + 1, validate=False)
    label = keys("label", dtype="string")
    b = run.stream("primary", {**keys("det"), **label}, time=T0 + 2, validate=False)
    run.event(a, {"det": 1.0}, time=T0 + 3)
    run.event(b, {"det": 2.0, "label": "x"}, time=T0 + 4)
    df = table(store, run.docs())
    assert df["label"].dtype == object
    assert df["label"].iloc[1] == "x" and pd.isna(df["label"].iloc[0])


def test_config_constant_per_descriptor(store):
    """A configuration value that changed between descriptors changes in the table."""
    run = Run(store)
    for i, exposure in enumerate((0.1, 0.2)):
        conf = {
            "det": {
                "data": {"exposure_time": exposure},
                "timestamps": {"exposure_time": T0},
                "data_keys": keys("exposure_time"),
            }
        }
        d = run.stream("primary", keys("det"), time=T0 + 10 * i, configuration=conf)
        run.event(d, {"det": float(i)}, time=T0 + 10 * i + 1)
    df = table(store, run.docs(), fields=["det", "exposure_time"])
    assert df["exposure_time"].tolist() == [0.1, 0.2]


def test_several_runs_concatenate_in_the_order_given(store):
    """Tables of several runs stack in the order given and the index repeats."""
    a = simple_run(store, n=2, which="a")
    b = simple_run(store, n=3, which="b")
    df = table(store, [b.docs(), a.docs()], fields=["det", "which"])
    assert df["which"].tolist() == ["b", "b", "b", "a", "a"]
    assert df.index.tolist() == [1, 2, 3, 1, 2]


def test_runs_may_be_a_generator(store):
    """get_table accepts a lazy iterable of runs."""
    runs = [simple_run(store, n=2) for _ in range(3)]
    df = table(store, (r.docs() for r in runs))
    assert len(df) == 6


def test_other_stream(store):
    """stream_name selects another stream."""
    df = table(store, simple_run(store).docs(), stream_name="baseline")
    assert list(df.columns) == ["time", "temp"]
    assert df["temp"].tolist() == [20.0, 21.0]


def test_nameless_descriptor_counts_as_primary(store):
    """A legacy descriptor without a name is read as the 'primary' stream (spec §9 #21)."""
    run = Run(store)
    d = run.bundle.compose_descriptor(name="primary", data_keys=keys("det"), time=T0)
    doc = {k: v for k, v in d.descriptor_doc.items() if k != "name"}
    store.insert("descriptor", doc)
    ev = d.compose_event(data={"det": 1.0}, timestamps={"det": T0}, time=T0 + 1)
    store.insert("event", ev)
    df = table(store, run.docs())
    assert df["det"].tolist() == [1.0]


# --------------------------------------------------------------------------- empty results
def test_empty_table_shape():
    """The empty result has no columns, no rows and the index name 'seq_num'."""
    df = empty_table()
    assert list(df.columns) == [] and len(df) == 0 and df.index.name == "seq_num"


def test_unknown_stream_warns_naming_existing_streams(store):
    """An unknown stream gives the empty frame and a UserWarning naming the streams."""
    run = simple_run(store)
    with pytest.warns(UserWarning, match=r"'nope'.*'baseline', 'primary'"):
        df = table(store, run.docs(), stream_name="nope")
    assert df.empty and df.index.name == "seq_num"


def test_stream_all_gives_empty_frame_without_warning(store):
    """stream_name=ALL is not supported by v1 tables: the empty frame, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = table(store, simple_run(store).docs(), stream_name=ALL)
    assert df.empty and df.index.name == "seq_num"


def test_stream_with_no_events_gives_empty_frame_without_warning(store):
    """A stream that exists but has no events gives the empty frame and no warning."""
    run = Run(store)
    run.stream("primary", keys("det"), time=T0)
    run.stop(time=T0 + 1)
    df = table(store, run.docs())
    assert df.empty and df.index.name == "seq_num"


def test_run_without_descriptors_warns(store):
    """A run with no descriptors at all warns that no stream exists."""
    run = Run(store)
    run.stop(time=T0 + 1)
    with pytest.warns(UserWarning, match="none"):
        df = table(store, run.docs())
    assert df.empty


def test_no_runs_gives_empty_frame(store):
    """No runs at all give the empty frame and no warning."""
    assert table(store, []).empty


def test_run_without_stop(store):
    """A run with no stop reads normally; stop fields simply match nothing."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1.0}, time=T0 + 1)
    docs = run.docs()
    assert docs.stop is None
    df = table(store, docs, fields=["det", "exit_status"])
    assert list(df.columns) == ["time", "det"]


# --------------------------------------------------------------------------- times
def wall_clock(t: float, tz: str) -> np.datetime64:
    """Independent oracle: the zoneinfo wall-clock time of an epoch, naive."""
    return np.datetime64(datetime.fromtimestamp(t, ZoneInfo(tz)).replace(tzinfo=None), "ns")


@pytest.mark.parametrize(
    "tz, transition",
    [("US/Eastern", 1615705200.0), ("Europe/Amsterdam", 1616893200.0)],  # spring DST changes
)
def test_times_localized_to_timezone_wall_clock(store, tz, transition):
    """Times are naive wall-clock datetime64[ns] in the given zone, across a DST change."""
    run = Run(store, time=transition - 7200)
    d = run.stream("primary", keys("det"), time=transition - 7200)
    times = [transition - 1800.25, transition - 0.5, transition + 0.75, transition + 1800.5]
    for i, t in enumerate(times):
        run.event(d, {"det": float(i)}, time=t)
    df = table(store, run.docs(), timezone=tz)
    assert df["time"].dtype == "datetime64[ns]"
    assert list(df["time"].to_numpy()) == [wall_clock(t, tz) for t in times]
    # The two zones really differ from UTC here, so the conversion is exercised.
    assert df["time"].iloc[0] != np.datetime64(int(times[0] * 1e9), "ns")


def test_convert_times_true_localize_false_is_naive_utc(store):
    """convert_times without localize_times gives naive UTC datetimes."""
    run = simple_run(store)
    df = table(store, run.docs(), timezone="US/Eastern", localize_times=False)
    assert df["time"].dtype == "datetime64[ns]"
    assert df["time"].iloc[0] == pd.Timestamp("2020-09-13 12:26:41")


def test_localize_times_alone_still_converts(store):
    """convert_times=False with localize_times=True still gives (local) datetimes."""
    df = table(store, simple_run(store).docs(), timezone="US/Eastern", convert_times=False)
    assert df["time"].iloc[0] == pd.Timestamp("2020-09-13 08:26:41")


def test_both_false_gives_float_epoch_seconds(store):
    """With convert_times and localize_times False, time is float epoch seconds."""
    df = table(store, simple_run(store).docs(), convert_times=False, localize_times=False)
    assert df["time"].dtype == np.float64
    assert df["time"].tolist() == [T0 + 1, T0 + 2, T0 + 3]


def test_time_keeps_nanoseconds_of_the_float(store):
    """Converted times are the float's exact value rounded to the nanosecond."""
    t = 1_600_000_000.123456789
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1.0}, time=t)
    df = table(store, run.docs(), localize_times=False)
    expected = round(Fraction(t) * 10**9)
    assert int(df["time"].to_numpy()[0].astype("int64")) == expected


def test_unknown_timezone_raises_value_error(store):
    """An unknown time zone name raises ValueError naming it."""
    with pytest.raises(ValueError, match="Mars/Olympus"):
        table(store, simple_run(store).docs(), timezone="Mars/Olympus")


# --------------------------------------------------------------------------- fill
def external_run(store: Any) -> tuple[Run, list[str]]:
    run = Run(store)
    res = run.bundle.compose_resource(spec="NPY", root="/", resource_path="x", resource_kwargs={})
    store.insert("resource", res.resource_doc)
    dk = {
        "img": {"dtype": "array", "shape": [2], "source": "s", "external": "FILESTORE:"},
        "det": {"dtype": "number", "shape": [], "source": "s"},
    }
    d = run.stream("primary", dk, time=T0)
    ids = []
    for i in range(3):
        datum = res.compose_datum(datum_kwargs={"i": i})
        store.insert("datum", datum)
        ids.append(datum["datum_id"])
        run.event(d, {"img": datum["datum_id"], "det": float(i)}, time=T0 + 1 + i)
    return run, ids


class StubFiller:
    """Loads 'data' as an array derived from the datum id's position."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.calls: list[tuple[str, list[str]]] = []

    def fill_column(self, descriptor: dict, key: str, datum_ids: list[str]) -> list[np.ndarray]:
        self.calls.append((key, list(datum_ids)))
        return [np.full(2, self.ids.index(i)) for i in datum_ids]


def test_fill_without_filler_raises_value_error(store):
    """fill selecting external fields without a filler raises ValueError."""
    run, _ = external_run(store)
    for fill in (True, ["img"], "false"):
        with pytest.raises(ValueError, match="handler registry"):
            table(store, run.docs(), fill=fill)


def test_fill_naming_no_external_field_needs_no_filler(store):
    """fill=[names] that selects no external field reads datum ids without a filler."""
    run, ids = external_run(store)
    assert table(store, run.docs(), fill=["det"])["img"].tolist() == ids
    assert table(store, run.docs(), fill=0)["img"].tolist() == ids


def test_fill_calls_filler_once_per_column(store):
    """Filling replaces the external column with what the filler loads, one call per column."""
    run, ids = external_run(store)
    filler = StubFiller(ids)
    df = table(store, run.docs(), fill=True, filler=filler)
    assert filler.calls == [("img", ids)]
    assert df["img"].dtype == object
    assert [c.tolist() for c in df["img"]] == [[0, 0], [1, 1], [2, 2]]
    assert df["det"].tolist() == [0.0, 1.0, 2.0]


def test_timezone_none_means_the_machine_zone(store, monkeypatch):
    """timezone=None localizes to the machine's zone as tzlocal reports it."""
    import tzlocal

    monkeypatch.setattr(tzlocal, "get_localzone_name", lambda: "Asia/Tokyo")
    df = table(store, simple_run(store).docs(), timezone=None)
    assert df["time"].iloc[0] == pd.Timestamp("2020-09-13 21:26:41")


def test_nan_time_becomes_nat():
    """A NaN event time (legacy data) converts to NaT, not to a garbage date."""
    from broker_v1.tables import _time_series

    series = _time_series(np.array([T0, np.nan]), True, True, "UTC")
    assert series.iloc[0] == pd.Timestamp("2020-09-13 12:26:40") and pd.isna(series.iloc[1])
