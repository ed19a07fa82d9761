"""The memory store keeps descriptors marshalled: what comes back is what went in, value for
value and type for type, in time order, never shared with the caller, and the kept form is
nothing the garbage collector has to walk."""

from __future__ import annotations

import enum
import gc
import math
import uuid
from typing import Any

import pytest

from broker_v1.errors import DuplicateDocument
from broker_v1.stores.memory import MemoryStore


class Gain(enum.IntEnum):
    HIGH = 2


class Label(str):
    pass


def start(store: MemoryStore) -> str:
    uid = str(uuid.uuid4())
    store.insert("start", {"uid": uid, "time": 1.0})
    return uid


def descriptor(run: str, t: float, **config_data: Any) -> dict[str, Any]:
    return {
        "uid": str(uuid.uuid4()), "run_start": run, "time": t, "name": "primary",
        "data_keys": {"x": {"source": "PV:x", "dtype": "number", "shape": []}},
        "configuration": {"det": {"data": dict(config_data), "timestamps": {}, "data_keys": {}}},
    }


def test_values_and_types_come_back_exactly() -> None:
    store = MemoryStore()
    run = start(store)
    odd = {"nan": math.nan, "negative_zero": -0.0, "big": 2**70, "surrogate": "\ud800",
           "int": 1, "float": 1.0, "flag": True, "none": None}
    doc = descriptor(run, 2.0, **odd)
    store.insert("descriptor", doc)
    (back,) = store.get_descriptors(run)
    data = back["configuration"]["det"]["data"]
    assert list(data) == list(odd)
    assert math.isnan(data["nan"])
    assert math.copysign(1.0, data["negative_zero"]) == -1.0
    assert data["big"] == 2**70 and data["surrogate"] == "\ud800"
    for key in ("int", "float", "flag", "none"):
        assert type(data[key]) is type(odd[key]), key
    assert list(back) == list(doc)
    assert store.get_descriptor(doc["uid"])["configuration"]["det"]["data"]["big"] == 2**70


def test_subclasses_of_plain_types_are_kept_as_given() -> None:
    store = MemoryStore()
    run = start(store)
    doc = descriptor(run, 2.0, gain=Gain.HIGH, label=Label("fast"))
    store.insert("descriptor", doc)
    data = store.get_descriptors(run)[0]["configuration"]["det"]["data"]
    assert type(data["gain"]) is Gain and type(data["label"]) is Label


def test_identical_reinsert_is_a_no_op_and_a_different_one_is_refused() -> None:
    store = MemoryStore()
    run = start(store)
    doc = descriptor(run, 2.0, nan=math.nan)
    store.insert("descriptor", doc)
    store.insert("descriptor", doc)  # NaN equals NaN for duplicates
    assert len(store.get_descriptors(run)) == 1
    with pytest.raises(DuplicateDocument):
        store.insert("descriptor", {**doc, "name": "other"})


def test_copies_are_isolated_both_ways() -> None:
    store = MemoryStore()
    run = start(store)
    doc = descriptor(run, 2.0, gain=1)
    store.insert("descriptor", doc)
    doc["data_keys"]["x"]["shape"].append(5)
    doc["configuration"]["det"]["data"]["gain"] = 2
    got = store.get_descriptors(run)[0]
    assert got["data_keys"]["x"]["shape"] == [] and got["configuration"]["det"]["data"] == {
        "gain": 1}
    got["data_keys"]["x"]["shape"].append(7)
    assert store.get_descriptors(run)[0]["data_keys"]["x"]["shape"] == []
    assert store.get_descriptor(doc["uid"]) is not store.get_descriptor(doc["uid"])


def test_descriptors_come_in_time_order() -> None:
    store = MemoryStore()
    run = start(store)
    late, early, middle = (descriptor(run, t) for t in (5.0, 2.0, 3.0))
    for doc in (late, early, middle):
        store.insert("descriptor", doc)
    assert [d["uid"] for d in store.get_descriptors(run)] == [
        early["uid"], middle["uid"], late["uid"]]


def test_kept_descriptors_are_not_walked_by_the_garbage_collector() -> None:
    store = MemoryStore()
    run = start(store)
    for t in (2.0, 3.0):
        store.insert("descriptor", descriptor(run, t, gain=1))
    assert not any(gc.is_tracked(kept) for kept in store._descriptors.values())
