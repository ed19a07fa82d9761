"""Details of the shared insert path that the bad-document corpus draws only at random."""

from __future__ import annotations

import uuid

import pytest

from broker_v1.errors import InvalidDocument
from broker_v1.stores.memory import MemoryStore


def test_an_event_missing_several_fields_names_the_first_in_order() -> None:
    store = MemoryStore()
    run = str(uuid.uuid4())
    store.insert("start", {"uid": run, "time": 1.0})
    store.insert("descriptor", {"uid": "d", "run_start": run, "time": 2.0, "data_keys": {
        "x": {"source": "PV:x", "dtype": "number", "shape": []}}})
    event = {"descriptor": "d", "uid": "e", "data": {"x": 1.0}, "timestamps": {"x": 3.0}}
    for missing, named in ((("time", "seq_num"), "time"), (("seq_num", "data"), "seq_num"),
                           (("data", "timestamps"), "data")):
        doc = {"time": 3.0, "seq_num": 1, **event}
        for field in missing:
            doc.pop(field, None)
        with pytest.raises(InvalidDocument, match=f"failed validation: {named} is required"):
            store.insert("event", doc)
        assert list(store.iter_event_pages("d")) == []
