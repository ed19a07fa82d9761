"""Every real run in tests/data inserts into every store and reads back identically."""

from __future__ import annotations

import pytest
import realdata

from broker_v1.documents import unpack_events

# Each run once: the second format of a paired run is covered by the re-insert test below.
RUNS = list({run.uid: run for run in realdata.all_real_runs()}.values())


def _expected(run):
    """Split a run's documents into singles keyed by identity (pages unpacked)."""
    out = {"start": run.start, "stop": None, "descriptor": {}, "event": {}, "resource": {},
           "datum": {}}
    for name, doc in run.documents:
        if name == "stop":
            out["stop"] = doc
        elif name == "descriptor":
            out["descriptor"][doc["uid"]] = doc
        elif name == "event":
            out["event"][doc["uid"]] = doc
        elif name == "event_page":
            for event in unpack_events(doc):
                out["event"][event["uid"]] = event
        elif name == "resource":
            out["resource"][doc["uid"]] = doc
        elif name == "datum":
            out["datum"][doc["datum_id"]] = doc
        elif name == "datum_page":
            for i, datum_id in enumerate(doc["datum_id"]):
                out["datum"][datum_id] = {
                    "resource": doc["resource"], "datum_id": datum_id,
                    "datum_kwargs": {k: v[i] for k, v in doc["datum_kwargs"].items()}}
    return out


def _core(event):
    return {k: event[k] for k in ("descriptor", "uid", "time", "seq_num", "data", "timestamps")}


def test_every_real_run_round_trips(store):
    """Every real run inserts and reads back document for document."""
    for run in RUNS:
        for name, doc in run.documents:
            store.insert(name, doc)
    assert store.count_runs({}) == len({run.uid for run in RUNS})
    for run in RUNS:
        expected = _expected(run)
        assert store.get_run_start(run.uid) == expected["start"], run.name
        assert store.get_run_stop(run.uid) == expected["stop"], run.name
        descriptors = store.get_descriptors(run.uid)
        assert {d["uid"]: d for d in descriptors} == expected["descriptor"], run.name
        got_events = {}
        for d in descriptors:
            for event in store.iter_events(d["uid"]):
                got_events[event["uid"]] = _core(event)
        assert got_events == {u: _core(e) for u, e in expected["event"].items()}, run.name
        for uid, resource in expected["resource"].items():
            assert store.get_resource(uid) == resource, run.name
        for datum_id, datum in expected["datum"].items():
            assert store.get_datum(datum_id) == datum, run.name


@pytest.mark.parametrize("pair", realdata.paired_runs()[:5], ids=lambda p: p[0].name)
def test_second_format_of_a_run_is_an_identical_reinsert(store, pair):
    """Inserting the msgpack copy after the JSON copy of the same run changes nothing."""
    json_run, msgpack_run = pair
    for name, doc in json_run.documents:
        store.insert(name, doc)
    before = list(store.iter_documents(json_run.uid))
    for name, doc in msgpack_run.documents:
        store.insert(name, doc)
    assert list(store.iter_documents(json_run.uid)) == before
