"""The v1 Broker: lookups, search, insert, filters and aliases, over every store."""

from __future__ import annotations

import datetime
import zoneinfo

import numpy as np
import pytest
from conftest import make_run, sample_runs

import broker_v1
from broker_v1 import (
    AmbiguousUid,
    Broker,
    Header,
    InvalidQuery,
    RunIndexError,
    RunNotFound,
    UnsupportedQuery,
)

RUNS = sample_runs()  # oldest first: scan_ids 1, 2, 2, 3, 4


def uids(headers):
    return [h.uid for h in headers]


# ---------------------------------------------------------------------- db[key]
def test_negative_index_counts_back_from_newest(filled_db):
    """db[-1] is the most recent run, db[-5] the oldest; further back is an IndexError."""
    assert filled_db[-1].uid == RUNS[4].uid
    assert filled_db[-5].uid == RUNS[0].uid
    with pytest.raises(RunIndexError, match=r"6th most recent run.*holds only 5 runs") as info:
        filled_db[-6]
    assert isinstance(info.value, IndexError)
    assert info.value.count == 5


def test_empty_store_index_error(db):
    """db[-1] on an empty store is an IndexError saying there are no runs."""
    with pytest.raises(IndexError, match="holds only 0 runs"):
        db[-1]


@pytest.mark.parametrize("key", [2, np.int64(2), np.int32(2), np.uint8(2)])
def test_scan_id_lookup_most_recent_wins(filled_db, key):
    """A non-negative integer (numpy too) is a scan_id; the most recent run wins."""
    assert filled_db[key].uid == RUNS[2].uid


def test_scan_id_zero_and_missing(filled_db):
    """An unknown scan_id raises RunNotFound, which is both KeyError and ValueError."""
    with pytest.raises(RunNotFound, match="No run with scan_id 0") as info:
        filled_db[0]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("No run")  # no quotes around a KeyError message


def test_uid_and_prefix_lookup(filled_db):
    """Full uids and unique prefixes find their run; digit-only strings are uid prefixes."""
    assert filled_db[RUNS[3].uid].uid == RUNS[3].uid
    assert filled_db[RUNS[3].uid[:8]].uid == RUNS[3].uid
    assert filled_db["abcdef01"].uid == RUNS[0].uid
    with pytest.raises(RunNotFound, match="uid starting '4242'"):
        filled_db["4242"]


def test_ambiguous_prefix_names_candidates(filled_db):
    """A prefix matching several runs raises AmbiguousUid naming them and the count."""
    with pytest.raises(AmbiguousUid, match=r"'abcdef' matches 2 runs.*abcdef02.*abcdef01") as info:
        filled_db["abcdef"]
    assert info.value.total == 2
    assert info.value.matches == [RUNS[1].uid, RUNS[0].uid]
    assert isinstance(info.value, ValueError)


def test_ambiguous_prefix_lists_at_most_ten(db):
    """With more than 10 matches, 10 are named and the total is given."""
    for i in range(12):
        run = make_run(t0=1000.0 + i, uid=f"ffff{i:04d}-0000-4000-8000-000000000000",
                       with_baseline=False, n_events=0, with_stop=False)
        db.insert("start", run.start)
    with pytest.raises(AmbiguousUid, match=r"matches 12 runs.*\(10 of 12 shown\)") as info:
        db["ffff"]
    assert len(info.value.matches) == 10 and info.value.total == 12


def test_slices_are_newest_first_lists(filled_db):
    """Slices give lists, newest first; too far back gives a shorter list."""
    assert uids(filled_db[-3:]) == [r.uid for r in RUNS[2:][::-1]]
    assert uids(filled_db[-3:-1]) == [RUNS[3].uid, RUNS[2].uid]
    assert uids(filled_db[-3:0]) == uids(filled_db[-3:])
    assert uids(filled_db[-50:]) == [r.uid for r in RUNS[::-1]]
    assert uids(filled_db[-5::2]) == [RUNS[4].uid, RUNS[2].uid, RUNS[0].uid]
    assert uids(filled_db[-4::2]) == [RUNS[3].uid, RUNS[1].uid]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (slice(None, -1), "slicing infinitely into the past"),
        (slice(2, None), "start must be negative"),
        (slice(-3, 2), "stop must be negative"),
        (slice(-3, None, -1), "step must be positive"),
        (slice(-3.5, None), "must be an integer"),
        (1.5, "not a valid run key"),
        (None, "not a valid run key"),
        ({"uid": "x"}, "not a valid run key"),
        (True, "not a valid run key"),
        ("", "empty string"),
    ],
)
def test_bad_keys_raise_value_error(filled_db, key, message):
    """Unsupported keys and bad slices raise ValueError saying what is allowed."""
    with pytest.raises(ValueError, match=message):
        filled_db[key]


def test_collections_of_keys_flatten(filled_db):
    """Lists and tuples of mixed keys give a list, nested lists flattened."""
    got = filled_db[[-1, RUNS[0].uid[:8], (1, [RUNS[3].uid])]]
    assert uids(got) == [RUNS[4].uid, RUNS[0].uid, RUNS[0].uid, RUNS[3].uid]
    assert uids(filled_db[[-1]]) == [RUNS[4].uid]
    assert sorted(uids(filled_db[{-1, -2}])) == sorted([RUNS[4].uid, RUNS[3].uid])


def test_slices_inside_collections(filled_db):
    """Any element of a list, tuple or set may be a slice: its runs, newest first, in place."""
    newest_three = [r.uid for r in RUNS[2:][::-1]]
    got = filled_db[[-1, RUNS[0].uid[:8], slice(-3, 0)]]
    assert uids(got) == [RUNS[4].uid, RUNS[0].uid, *newest_three]
    assert uids(filled_db[(slice(-2, None),)]) == [RUNS[4].uid, RUNS[3].uid]
    nested = filled_db[[RUNS[1].uid, [RUNS[0].uid, -3], slice(-4, -1)]]
    assert uids(nested) == [RUNS[1].uid, RUNS[0].uid, RUNS[2].uid,
                            RUNS[3].uid, RUNS[2].uid, RUNS[1].uid]
    assert uids(filled_db[[[slice(-5, None, 2)]]]) == uids(filled_db[-5::2])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ([-1, slice(None, -1)], "slicing infinitely into the past"),
        ((slice(2, None),), "start must be negative"),
        ([RUNS[0].uid, [slice(-3, 2)]], "stop must be negative"),
        ([slice(-3, None, -1)], "step must be positive"),
        ([[slice(-3.5, None)]], "must be an integer"),
        ([-1, 1.5], "not a valid run key"),
    ],
)
def test_bad_keys_inside_collections_raise_the_same_errors(filled_db, key, message):
    """A bad element of a collection raises the ValueError the same key raises alone."""
    with pytest.raises(ValueError, match=message):
        filled_db[key]


# ---------------------------------------------------------------------- db(...)
def test_search_by_keywords_newest_first(filled_db):
    """Keyword equality, operators and dotted keys search start documents."""
    assert uids(filled_db(plan_name="scan")) == [RUNS[4].uid, RUNS[2].uid, RUNS[1].uid]
    assert uids(filled_db(scan_id={"$gte": 3})) == [RUNS[4].uid, RUNS[3].uid]
    assert uids(filled_db(**{"sample.name": "gold"})) == [RUNS[2].uid]
    assert uids(filled_db(**{"$or": [{"scan_id": 1}, {"scan_id": 3}]})) == [
        RUNS[3].uid, RUNS[0].uid]
    assert list(filled_db(plan_name="nothing")) == []


def test_results_are_lazy_and_reiterable(filled_db):
    """Results can be iterated twice, see new runs on the next pass, and have no len()."""
    results = filled_db(plan_name="count")
    assert len(list(results)) == 2
    run = make_run(t0=1_800_000_000.0, plan_name="count", scan_id=9)
    for name, doc in run.docs:
        filled_db.insert(name, doc)
    assert uids(results)[0] == run.uid
    with pytest.raises(TypeError):
        len(results)
    assert all(isinstance(h, Header) for h in results)


def test_since_until_inclusive_in_broker_timezone(filled_db):
    """since/until strings are read in the Broker's timezone; until is inclusive."""
    eastern = zoneinfo.ZoneInfo("US/Eastern")
    t2 = RUNS[2].start["time"]
    local = datetime.datetime.fromtimestamp(t2, eastern).strftime("%Y-%m-%d %H:%M:%S")
    assert RUNS[2].uid in uids(filled_db(until=local))
    assert RUNS[2].uid in uids(filled_db(since=local))
    assert uids(filled_db(since=t2 + 1)) == [RUNS[4].uid, RUNS[3].uid]
    assert uids(filled_db(since="2023-11-14", until="2023-11-15")) == uids(filled_db())
    assert list(filled_db(since="2030")) == []
    assert uids(filled_db(since=0)) == uids(filled_db())  # falsy values are ignored


def test_deprecated_time_spellings(filled_db):
    """start_time/stop_time warn; combining them with since/until is a TypeError."""
    with pytest.warns(UserWarning, match="start_time.*deprecated"):
        assert len(list(filled_db(start_time=RUNS[3].start["time"]))) == 2
    with pytest.raises(TypeError, match="not both"):
        filled_db(since=1, start_time=2)


def test_bad_time_strings(filled_db):
    """Unparseable time strings raise InvalidQuery listing the accepted formats."""
    with pytest.raises(InvalidQuery, match=r"failed to parse time: 'aardvark'.*%Y-%m-%d"):
        filled_db(since="aardvark")
    assert isinstance(InvalidQuery("x"), ValueError)


def test_text_search_and_its_combination(filled_db):
    """db('words') searches text and is AND-ed with other criteria (not dropped as in 0.13)."""
    if not filled_db.store.supports_text_search:
        with pytest.raises(UnsupportedQuery):
            filled_db("Dmitri")
        return
    assert uids(filled_db("Dmitri")) == [RUNS[4].uid, RUNS[1].uid]
    assert uids(filled_db("Dmitri", scan_id=2)) == [RUNS[1].uid]
    assert uids(filled_db(text_search="gold")) == [RUNS[2].uid]


def test_data_key_post_filter(filled_db):
    """data_key keeps runs where any stream has that field."""
    assert uids(filled_db(data_key="img")) == [RUNS[2].uid]
    assert len(list(filled_db(data_key="temp"))) == 5


def test_filters_apply_to_search_not_lookup(filled_db):
    """Filters are AND-ed with every search, never rewritten, and ignored by db[...]."""
    filled_db.add_filter(plan_name="scan")
    filled_db.add_filter(since="2023-11-14")
    assert filled_db.filters == {"plan_name": "scan", "since": "2023-11-14"}
    assert uids(filled_db(scan_id=2)) == [RUNS[2].uid, RUNS[1].uid]
    assert uids(filled_db()) == [RUNS[4].uid, RUNS[2].uid, RUNS[1].uid]
    assert filled_db.filters["since"] == "2023-11-14"
    assert filled_db[-2].uid == RUNS[3].uid  # a count run: filters do not apply
    filled_db.add_filter(plan_name="count")
    assert len(filled_db.filters) == 2
    filled_db.clear_filters()
    assert filled_db.filters == {} and len(list(filled_db())) == 5


def test_alias_and_dynamic_alias(filled_db):
    """alias names a search; dynamic_alias recomputes its query on each access."""
    filled_db.alias("counts", plan_name="count")
    assert uids(filled_db.counts) == [RUNS[3].uid, RUNS[0].uid]
    state = {"scan_id": 4}
    filled_db.dynamic_alias("current", lambda: dict(state))
    assert uids(filled_db.current) == [RUNS[4].uid]
    state["scan_id"] = 1
    assert uids(filled_db.current) == [RUNS[0].uid]
    filled_db.alias("counts", plan_name="scan")  # redefining an alias is allowed
    assert len(list(filled_db.counts)) == 3
    with pytest.raises(ValueError, match="already an attribute"):
        filled_db.alias("get_table", plan_name="x")
    with pytest.raises(AttributeError):
        _ = filled_db.no_such_alias


# ---------------------------------------------------------------------- insert path
def test_insert_accepts_every_document_type_and_reads_back(db):
    """Runs composed by event-model insert through the Broker and read back unchanged."""
    run = make_run(t0=1e9, external=True)
    for name, doc in run.docs:
        db.insert(name, doc)
    h = db[-1]
    assert dict(h.start) == run.start
    assert dict(h.stop) == run.docs[-1][1]


def test_bulk_events_and_bulk_datum_are_converted(db):
    """The deprecated bulk types insert as pages with a warning."""
    run = make_run(t0=1e9, with_baseline=False, n_events=2, external=True)
    by_name = {}
    for name, doc in run.docs:
        by_name.setdefault(name, []).append(doc)
    db.insert("start", run.start)
    db.insert("descriptor", by_name["descriptor"][0])
    db.insert("resource", by_name["resource"][0])
    with pytest.warns(UserWarning, match="bulk_datum"):
        db.insert("bulk_datum", {"resource": by_name["resource"][0]["uid"],
                                 "datum_ids": [d["datum_id"] for d in by_name["datum"]],
                                 "datum_kwarg_list": [d["datum_kwargs"] for d in by_name["datum"]]})
    with pytest.warns(UserWarning, match="bulk_events"):
        db.insert("bulk_events", {by_name["descriptor"][0]["uid"]: by_name["event"]})
    descriptor = by_name["descriptor"][0]["uid"]
    assert len(list(db.store.iter_events(descriptor))) == 2
    assert db.store.get_datum(by_name["datum"][1]["datum_id"]) == by_name["datum"][1]


# ---------------------------------------------------------------------- construction
def test_temp_brokers_are_independent():
    """Each temp() / named('temp') Broker has its own empty store."""
    a, b = broker_v1.temp(), Broker.named("temp")
    run = make_run(t0=1e9)
    a.insert("start", run.start)
    assert a[-1].uid == run.uid
    with pytest.raises(IndexError):
        b[-1]
    assert b.name == "temp"


def test_from_config_and_get_config_round_trip():
    """from_config(get_config()) opens an equivalent Broker; get_config is a copy."""
    config = {"description": "test", "timezone": "Europe/Berlin",
              "store": {"backend": "memory"}}
    db = Broker.from_config(config, name="x")
    assert db.timezone == "Europe/Berlin" and db.name == "x"
    got = db.get_config()
    assert got == config
    got["description"] = "changed"
    assert db.get_config()["description"] == "test"
    again = Broker.from_config(db.get_config())
    assert again.timezone == "Europe/Berlin"
    first, second = broker_v1.temp_config(), broker_v1.temp_config()
    assert first["store"]["backend"] == "files" and first != second
    temp_db = broker_v1.Broker.from_config(first)
    run = make_run(t0=1e9)
    for name, doc in run.docs:
        temp_db.insert(name, doc)
    assert broker_v1.Broker.from_config(first)[-1].uid == run.uid
    assert broker_v1.temp().get_config() == {"description": "temporary",
                                             "store": {"backend": "memory"}}


def test_broker_needs_a_store():
    """Broker(something else) explains how to open a Broker."""
    with pytest.raises(TypeError, match="needs a DocumentStore"):
        Broker({"store": {"backend": "memory"}})


def test_opt_in_search_on_stop_fields(filled_db):
    """Keys prefixed 'stop.' search the stop document, AND-ed with start criteria."""
    run = make_run(t0=1_700_000_900.0, scan_id=9, plan_name="count", with_baseline=False)
    for name, doc in run.docs:
        if name == "stop":
            doc = {**doc, "exit_status": "abort"}
        filled_db.insert(name, doc)
    assert uids(filled_db(**{"stop.exit_status": "abort"})) == [run.uid]
    assert uids(filled_db(plan_name="scan", **{"stop.exit_status": "success"})) == [
        RUNS[4].uid, RUNS[2].uid, RUNS[1].uid]
    assert list(filled_db(plan_name="scan", **{"stop.exit_status": "abort"})) == []
    assert list(filled_db(exit_status="abort")) == []  # start fields only, as databroker


def test_broker_without_store_uses_the_per_user_files_store(tmp_path, monkeypatch):
    """Broker() opens the embedded default: a files store in the user's data folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    db = Broker()
    assert db.store.backend == "files"
    assert str(tmp_path) in db.store.describe()
    run = make_run(t0=1e9)
    for name, doc in run.docs:
        db.insert(name, doc)
    db.store.close()
    assert Broker()[-1].uid == run.uid
