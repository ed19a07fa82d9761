"""iter_events / iter_documents and the field helpers (spec §3, §4.2, §9, §11.1)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from event_model import compose_run

from broker_v1._run import RunDocs
from broker_v1.replay import (
    compile_fields,
    config_data,
    descriptors_of_stream,
    iter_documents,
    iter_events,
    keys_to_fill,
)
from broker_v1.utils import ALL

T0 = 1_600_000_000.0


def keys(*names: str, dtype: str = "number", **extra: Any) -> dict[str, dict[str, Any]]:
    return {n: {"dtype": dtype, "shape": [], "source": f"sim:{n}", **extra} for n in names}


def external(*names: str) -> dict[str, dict[str, Any]]:
    return {
        n: {"dtype": "array", "shape": [2], "source": f"sim:{n}", "external": "FILESTORE:"}
        for n in names
    }


class Run:
    """Builds one run with event_model.compose_run, inserting and recording every document."""

    def __init__(self, store: Any, *, time: float = T0, **metadata: Any) -> None:
        self.store = store
        self.inserted: list[tuple[str, dict]] = []
        self.bundle = compose_run(time=time, metadata=metadata)
        self.uid = self.bundle.start_doc["uid"]
        self.insert("start", self.bundle.start_doc)

    def insert(self, name: str, doc: dict) -> dict:
        self.inserted.append((name, copy.deepcopy(doc)))
        self.store.insert(name, doc)
        return doc

    def stream(self, name: str, data_keys: dict, *, time: float, **kw: Any) -> Any:
        d = self.bundle.compose_descriptor(name=name, data_keys=data_keys, time=time, **kw)
        self.insert("descriptor", d.descriptor_doc)
        return d

    def event(self, d: Any, data: dict, *, time: float, seq_num: int | None = None) -> dict:
        ev = d.compose_event(
            data=data, timestamps={k: time for k in data}, time=time, seq_num=seq_num
        )
        return self.insert("event", ev)

    def resource(self) -> Any:
        res = self.bundle.compose_resource(
            spec="NPY", root="/", resource_path="x", resource_kwargs={}
        )
        self.insert("resource", res.resource_doc)
        return res

    def datum(self, res: Any, i: int) -> dict:
        return self.insert("datum", res.compose_datum(datum_kwargs={"i": i}))

    def stop(self, *, time: float) -> dict:
        return self.insert("stop", self.bundle.compose_stop(time=time))

    def docs(self) -> RunDocs:
        s = self.store
        return RunDocs(
            s.get_run_start(self.uid), s.get_run_stop(self.uid), s.get_descriptors(self.uid)
        )

    def inserted_doc(self, name: str, key: str, value: Any) -> dict:
        return next(d for n, d in self.inserted if n == name and d[key] == value)


def two_stream_run(store: Any, **metadata: Any) -> Run:
    """'primary' (det, motor) and 'baseline' (temp) with interleaved event times."""
    run = Run(store, **metadata)
    p = run.stream("primary", keys("det", "motor"), time=T0 + 0.1)
    b = run.stream("baseline", keys("temp"), time=T0 + 0.2)
    run.event(b, {"temp": 20.0}, time=T0 + 0.5)
    run.event(p, {"det": 1.0, "motor": 0}, time=T0 + 1)
    run.event(p, {"det": 2.0, "motor": 1}, time=T0 + 2)
    run.event(b, {"temp": 21.0}, time=T0 + 2.5)
    run.event(p, {"det": 3.0, "motor": 2}, time=T0 + 3)
    run.stop(time=T0 + 4)
    return run


def image_run(store: Any) -> tuple[Run, dict[str, list[str]]]:
    """A run whose 'primary' events reference two external fields in one resource."""
    run = Run(store)
    d = run.stream("primary", {**external("img", "img2"), **keys("det")}, time=T0 + 0.1)
    res = run.resource()
    ids: dict[str, list[str]] = {"img": [], "img2": []}
    for i in range(2):
        data: dict[str, Any] = {"det": float(i)}
        for k in ("img", "img2"):
            datum = run.datum(res, i)
            ids[k].append(datum["datum_id"])
            data[k] = datum["datum_id"]
        run.event(d, data, time=T0 + 1 + i)
    run.stop(time=T0 + 5)
    return run, ids


# --------------------------------------------------------------------------- helpers
def test_compile_fields_full_match():
    """Patterns are full-matched: 'det' selects det but not det2; 'det.*' selects both."""
    match = compile_fields(["det", "mot.*"])
    assert [n for n in ("det", "det2", "xdet", "motor", "m") if match(n)] == ["det", "motor"]
    assert compile_fields(["det.*"])("det2")


def test_compile_fields_none_all_empty_nothing_string_one():
    """None selects everything, [] nothing, and a bare string is one pattern."""
    assert compile_fields(None)("anything")
    assert not compile_fields([])("det")
    match = compile_fields("det")
    assert match("det") and not match("d")


def test_compile_fields_errors():
    """An invalid pattern raises ValueError and a non-string entry TypeError."""
    with pytest.raises(ValueError, match=r"'\('"):
        compile_fields(["("])
    with pytest.raises(TypeError, match="regular expressions"):
        compile_fields([3])


def test_descriptors_of_stream():
    """ALL keeps every descriptor; a name selects its stream; nameless counts as 'primary'."""
    ds = [{"uid": "a", "name": "primary"}, {"uid": "b", "name": "baseline"}, {"uid": "c"}]
    assert [d["uid"] for d in descriptors_of_stream(ds, ALL)] == ["a", "b", "c"]
    assert [d["uid"] for d in descriptors_of_stream(ds, "primary")] == ["a", "c"]
    assert [d["uid"] for d in descriptors_of_stream(ds, "baseline")] == ["b"]
    assert descriptors_of_stream(ds, "nope") == []


def test_config_data_per_stream_in_descriptor_time_order():
    """config_data groups a device's configuration by stream, one entry per descriptor."""

    def desc(name: str | None, time: float, exposure: float | None) -> dict:
        conf = {} if exposure is None else {"det": {"data": {"exposure": exposure}}}
        d = {"uid": str(time), "time": time, "data_keys": {}, "configuration": conf}
        if name is not None:
            d["name"] = name
        return d

    ds = [
        desc("primary", 3, 0.3),
        desc(None, 1, 0.1),
        desc("baseline", 2, 0.2),
        desc("primary", 4, None),
    ]
    assert config_data(ds, "det") == {
        "primary": [{"exposure": 0.1}, {"exposure": 0.3}],
        "baseline": [{"exposure": 0.2}],
    }
    assert config_data(ds, "nope") == {}


def test_keys_to_fill():
    """fill: a list/tuple/set names fields to fill; anything else is judged by truthiness."""
    d = {"data_keys": {**external("img", "img2"), **keys("det")}}
    assert keys_to_fill(d, True) == ["img", "img2"]
    assert keys_to_fill(d, "false") == ["img", "img2"]
    assert keys_to_fill(d, False) == []
    assert keys_to_fill(d, ["img2", "det"]) == ["img2"]
    assert keys_to_fill(d, ("img",)) == ["img"]
    assert keys_to_fill(d, set()) == []


# --------------------------------------------------------------------------- iter_events
def test_events_default_primary_shape(store):
    """Events of 'primary' come as (descriptor, event) with exactly the v1 event keys."""
    run = two_stream_run(store)
    pairs = list(iter_events(store, [run.docs()]))
    assert [ev["data"]["det"] for _, ev in pairs] == [1.0, 2.0, 3.0]
    d, ev = pairs[0]
    assert d == run.inserted_doc("descriptor", "name", "primary")
    assert list(ev) == ["descriptor", "uid", "time", "seq_num", "data", "timestamps", "filled"]
    assert ev["descriptor"] == d["uid"]
    assert ev["filled"] == {}
    inserted = run.inserted_doc("event", "uid", ev["uid"])
    assert {k: ev[k] for k in ("time", "seq_num", "data", "timestamps")} == {
        k: inserted[k] for k in ("time", "seq_num", "data", "timestamps")
    }


def test_events_all_streams_merged_by_time(store):
    """With stream_name=ALL, events of every stream are merged in ascending time."""
    run = two_stream_run(store)
    times = [ev["time"] for _, ev in iter_events(store, [run.docs()], stream_name=ALL)]
    assert times == [T0 + 0.5, T0 + 1, T0 + 2, T0 + 2.5, T0 + 3]


def test_events_in_time_order_when_inserted_out_of_order(store):
    """Events inserted out of time order come out in ascending time."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    for seq, t in ((1, 3), (2, 1), (3, 2)):
        run.event(d, {"det": float(t)}, time=T0 + t, seq_num=seq)
    assert [ev["seq_num"] for _, ev in iter_events(store, [run.docs()])] == [2, 3, 1]


def test_events_of_several_runs_in_the_order_given(store):
    """Runs are read in the order given."""
    a, b = two_stream_run(store, which="a"), two_stream_run(store, which="b")
    descs = [d["run_start"] for d, _ in iter_events(store, [b.docs(), a.docs()])]
    assert descs == [b.uid] * 3 + [a.uid] * 3


def test_events_are_fresh_objects(store):
    """Every event, its data and its filled dict are distinct objects; mutating one is harmless."""
    run, _ = image_run(store)
    events = [ev for _, ev in iter_events(store, [run.docs()])]
    assert events[0]["filled"] is not events[1]["filled"]
    events[0]["data"]["det"] = 99.0
    events[0]["filled"]["img"] = "x"
    again = [ev for _, ev in iter_events(store, [run.docs()])]
    assert again[0]["data"]["det"] == 0.0 and again[0]["filled"]["img"] is False


def test_events_filled_recomputed_from_descriptor(store):
    """filled lists the external keys as False, whatever was stored."""
    run, ids = image_run(store)
    for i, (_, ev) in enumerate(iter_events(store, [run.docs()])):
        assert ev["filled"] == {"img": False, "img2": False}
        assert ev["data"]["img"] == ids["img"][i]


def test_events_array_values_as_stored_lists(store):
    """Inline array values come back as stored (lists), not numpy arrays."""
    run = Run(store)
    d = run.stream("primary", {"spec": {"dtype": "array", "shape": [2], "source": "s"}}, time=T0)
    run.event(d, {"spec": [1, 2]}, time=T0 + 1)
    ((_, ev),) = iter_events(store, [run.docs()])
    assert ev["data"]["spec"] == [1, 2] and type(ev["data"]["spec"]) is list


def test_events_fields_prune_data_and_descriptor(store):
    """fields prunes event data/timestamps and the yielded descriptor's data_keys."""
    run = two_stream_run(store)
    pairs = list(iter_events(store, [run.docs()], fields=["det"]))
    assert len(pairs) == 3
    for d, ev in pairs:
        assert list(d["data_keys"]) == ["det"]
        assert list(ev["data"]) == ["det"] and list(ev["timestamps"]) == ["det"]
    stored = run.docs().descriptors
    assert all(set(d["data_keys"]) != {"det"} for d in stored)  # the RunDocs are untouched


def test_events_fields_merge_config_and_start_values(store):
    """Matching configuration and start values are merged into each event's data."""
    run = Run(store, bc=7)
    conf = {
        "det": {
            "data": {"exposure": 0.5},
            "timestamps": {"exposure": T0 - 1},
            "data_keys": keys("exposure"),
        }
    }
    d = run.stream("primary", keys("det", "motor"), time=T0, configuration=conf)
    run.event(d, {"det": 1.0, "motor": 0}, time=T0 + 1)
    ((desc, ev),) = iter_events(store, [run.docs()], fields=["det", "exposure", "bc"])
    assert ev["data"] == {"det": 1.0, "exposure": 0.5, "bc": 7}
    assert ev["timestamps"] == {"det": T0 + 1, "exposure": T0 - 1, "bc": T0}
    assert list(desc["data_keys"]) == ["det"]


def test_events_with_no_selected_field_are_skipped(store):
    """Fields that match nothing yield no events at all."""
    run = two_stream_run(store)
    assert list(iter_events(store, [run.docs()], fields=["nope"])) == []


def test_events_nameless_descriptor_is_primary(store):
    """Events of a nameless legacy descriptor are 'primary' events."""
    run = Run(store)
    d = run.bundle.compose_descriptor(name="primary", data_keys=keys("det"), time=T0)
    store.insert("descriptor", {k: v for k, v in d.descriptor_doc.items() if k != "name"})
    store.insert("event", d.compose_event(data={"det": 1.0}, timestamps={"det": T0}, time=T0))
    assert [ev["data"] for _, ev in iter_events(store, [run.docs()])] == [{"det": 1.0}]


def test_events_fill_without_filler_raises(store):
    """fill selecting external fields without a filler raises ValueError."""
    run, _ = image_run(store)
    with pytest.raises(ValueError, match="handler registry"):
        next(iter_events(store, [run.docs()], fill=True))


class StubFiller:
    """Loads each datum id as an array holding the id's position in a known list."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.calls: list[str] = []

    def fill_column(self, descriptor: dict, key: str, datum_ids: list[str]) -> list[np.ndarray]:
        self.calls.append(key)
        return [np.full(2, self.ids.index(i)) for i in datum_ids]


def test_events_fill_list_fills_only_those_keys(store):
    """fill=['img2'] loads img2 (filled holds the datum id) and leaves img as a datum id."""
    run, ids = image_run(store)
    filler = StubFiller(ids["img2"])
    events = [ev for _, ev in iter_events(store, [run.docs()], fill=["img2"], filler=filler)]
    assert filler.calls == ["img2"]  # one call per page and key
    for i, ev in enumerate(events):
        assert ev["data"]["img2"].tolist() == [i, i]
        assert ev["filled"] == {"img": False, "img2": ids["img2"][i]}
        assert ev["data"]["img"] == ids["img"][i]


# --------------------------------------------------------------------------- iter_documents
def test_documents_order_and_exact_keys(store):
    """start, descriptors, resource and each datum before its first event, events, stop."""
    run, ids = image_run(store)
    docs = list(iter_documents(store, [run.docs()]))
    names = [n for n, _ in docs]
    assert names == [
        "start",
        "descriptor",
        "resource",
        "datum",
        "datum",
        "event",
        "datum",
        "datum",
        "event",
        "stop",
    ]
    for name, doc in docs:
        if name == "event":
            inserted = run.inserted_doc("event", "uid", doc["uid"])
            assert doc == {**inserted, "filled": {"img": False, "img2": False}}
        else:
            key = "datum_id" if name == "datum" else "uid"
            assert doc == run.inserted_doc(name, key, doc[key])  # same keys, same values
    datum_ids = [d["datum_id"] for n, d in docs if n == "datum"]
    assert datum_ids == [ids["img"][0], ids["img2"][0], ids["img"][1], ids["img2"][1]]


def test_documents_interleave_streams_by_time(store):
    """Events of all streams are interleaved by time."""
    run = two_stream_run(store)
    events = [d for n, d in iter_documents(store, [run.docs()]) if n == "event"]
    assert [e["time"] for e in events] == [T0 + 0.5, T0 + 1, T0 + 2, T0 + 2.5, T0 + 3]


def test_documents_one_stream(store):
    """stream_name restricts descriptors and events to that stream."""
    run = two_stream_run(store)
    docs = list(iter_documents(store, [run.docs()], stream_name="baseline"))
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "event", "stop"]
    assert docs[1][1]["name"] == "baseline"


def test_documents_without_stop_end_without_stop(store):
    """A run with no stop yields no stop document (spec §11.1 #10)."""
    run = Run(store)
    d = run.stream("primary", keys("det"), time=T0)
    run.event(d, {"det": 1.0}, time=T0 + 1)
    assert [n for n, _ in iter_documents(store, [run.docs()])] == ["start", "descriptor", "event"]


def test_documents_descriptors_without_events(store):
    """A run with descriptors but no events yields start, descriptors and stop."""
    run = Run(store)
    run.stream("primary", keys("det"), time=T0)
    run.stop(time=T0 + 1)
    assert [n for n, _ in iter_documents(store, [run.docs()])] == ["start", "descriptor", "stop"]


def test_documents_fields_prune_descriptors_events_and_datums(store):
    """With fields, descriptors and events are pruned and only referenced datums are sent."""
    run, ids = image_run(store)
    docs = list(iter_documents(store, [run.docs()], fields=["img2"]))
    assert [n for n, _ in docs] == [
        "start",
        "descriptor",
        "resource",
        "datum",
        "event",
        "datum",
        "event",
        "stop",
    ]
    assert list(docs[1][1]["data_keys"]) == ["img2"]
    assert [d["datum_id"] for n, d in docs if n == "datum"] == ids["img2"]
    for n, d in docs:
        if n == "event":
            assert list(d["data"]) == ["img2"] and d["filled"] == {"img2": False}


def test_documents_fields_skip_descriptors_left_empty(store):
    """A descriptor with no selected field is not emitted and neither are its events."""
    run = two_stream_run(store)
    docs = list(iter_documents(store, [run.docs()], fields=["temp"]))
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "event", "stop"]
    assert docs[1][1]["name"] == "baseline"


def test_documents_fill_replaces_data_and_sets_filled(store):
    """fill=True loads external values into documents' events; resources and datums still flow."""
    run, ids = image_run(store)
    filler = StubFiller(ids["img"] + ids["img2"])
    docs = list(iter_documents(store, [run.docs()], fill=True, filler=filler))
    events = [d for n, d in docs if n == "event"]
    assert events[1]["filled"] == {"img": ids["img"][1], "img2": ids["img2"][1]}
    assert events[1]["data"]["img"].tolist() == [1, 1]
    assert sum(n == "datum" for n, _ in docs) == 4


def test_documents_fill_without_filler_raises_before_output(store):
    """fill without a filler raises before the first document is produced."""
    run, _ = image_run(store)
    with pytest.raises(ValueError, match="handler registry"):
        next(iter_documents(store, [run.docs()], fill=["img"]))


def test_documents_do_not_share_state_with_rundocs(store):
    """Mutating yielded documents leaves the RunDocs they came from untouched."""
    run = two_stream_run(store)
    docs = run.docs()
    before = copy.deepcopy(docs)
    for _, doc in iter_documents(store, [docs]):
        doc["mutated"] = True
        if "data_keys" in doc:
            doc["data_keys"].clear()
    assert docs == before


def test_events_fields_matching_only_start_values(store):
    """Fields matching only start values still yield events carrying those values (v1)."""
    run = two_stream_run(store, bc=7)
    events = [ev for _, ev in iter_events(store, [run.docs()], fields=["bc"])]
    assert [ev["data"] for ev in events] == [{"bc": 7}] * 3


def test_events_of_a_stream_with_no_events(store):
    """A stream whose descriptor has no events yields nothing."""
    run = Run(store)
    run.stream("primary", keys("det"), time=T0)
    assert list(iter_events(store, [run.docs()])) == []


def test_documents_datum_reused_by_a_later_kept_field(store):
    """A datum first referenced by a pruned field is still sent before the kept event using it."""
    run = Run(store)
    d = run.stream("primary", external("img", "img2"), time=T0)
    res = run.resource()
    a, b, c = (run.datum(res, i)["datum_id"] for i in range(3))
    run.event(d, {"img": a, "img2": b}, time=T0 + 1)
    run.event(d, {"img": c, "img2": a}, time=T0 + 2)
    docs = list(iter_documents(store, [run.docs()], fields=["img2"]))
    sent = [(n, d.get("datum_id") or d.get("data", {}).get("img2")) for n, d in docs[2:]]
    assert sent == [("resource", None), ("datum", b), ("event", b), ("datum", a), ("event", a)]


def test_documents_read_each_document_once(store, monkeypatch):
    """The replay streams the run body once: start, descriptors and stop come from the
    RunDocs the caller holds, each datum and resource is fetched once, and no datum of a
    pruned field is fetched at all."""
    run, ids = image_run(store)
    docs = run.docs()
    calls: dict[str, list[Any]] = {}

    def count(name: str) -> None:
        real = getattr(store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.setdefault(name, []).append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)

    for name in ("get_run_start", "get_run_stop", "get_descriptors", "get_datum",
                 "get_resource", "iter_documents"):
        count(name)
    sent = list(iter_documents(store, [docs], fields=["img2", "det"]))
    assert [n for n, _ in sent] == ["start", "descriptor", "resource", "datum", "event",
                                    "datum", "event", "stop"]
    assert not {"get_run_start", "get_run_stop", "get_descriptors", "iter_documents"} & set(calls)
    assert sorted(args[0] for args in calls["get_datum"]) == sorted(ids["img2"])
    assert len(calls["get_resource"]) == 1


def test_documents_of_several_runs(store):
    """Runs are replayed one after the other, each from start to stop."""
    a, b = two_stream_run(store), two_stream_run(store)
    docs = list(iter_documents(store, [b.docs(), a.docs()], stream_name="baseline"))
    starts = [d["uid"] for n, d in docs if n == "start"]
    assert starts == [b.uid, a.uid]
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "event", "stop"] * 2


def test_documents_descriptor_without_data_keys_kept_without_fields(store):
    """Without fields, a descriptor with no data keys is still replayed (its events are not)."""
    run = Run(store)
    run.stream("primary", {}, time=T0)
    run.stop(time=T0 + 1)
    assert [n for n, _ in iter_documents(store, [run.docs()])] == ["start", "descriptor", "stop"]
    assert [n for n, _ in iter_documents(store, [run.docs()], fields=["det"])] == ["start", "stop"]
