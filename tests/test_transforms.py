"""Config transforms run exactly once per read, on every read path, over every store.

Each transform marks the document it is given and fails if the mark is already there, so a
second application on any path raises (spec §11.4 row 4).  The resource transform also moves
the resource's root to where the files really are, so filling only works if the filler reads
resources through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import realdata
from handlers import NpySeqHandler

from broker_v1 import Broker

MARK = "transformed_by"
KINDS = ("start", "stop", "descriptor", "resource")


class TransformedTwice(AssertionError):
    """A transform was given a document it had already transformed."""


def _once(kind: str, fix_root: dict[str, str]) -> Any:
    def transform(doc: dict[str, Any]) -> dict[str, Any]:
        if MARK in doc:
            raise TransformedTwice(f"the {kind} transform was applied twice")
        doc[MARK] = kind
        if kind == "resource":
            doc["root"] = fix_root.get(doc.get("root"), doc.get("root"))
        return doc
    return transform


@pytest.fixture
def real_run() -> Any:
    """A real run with external .npy frames (databroker-pack NPY_SEQ)."""
    return realdata.get_run("pack-jsonl/1069c439")


@pytest.fixture
def tdb(store: Any, real_run: Any) -> Broker:
    """A Broker whose four transforms each detect a second application; no root_map."""
    db = Broker(store, handlers={"NPY_SEQ": NpySeqHandler},
                transforms={k: _once(k, real_run.root_map) for k in KINDS})
    for name, doc in real_run.documents:
        db.insert(name, doc)
    return db


def _marked(doc: Any, kind: str) -> bool:
    return dict(doc).get(MARK) == kind


def _check_documents(pairs: Any) -> dict[str, int]:
    seen: dict[str, int] = {}
    for name, doc in pairs:
        if name in KINDS:
            assert _marked(doc, name), (name, doc)
        seen[name] = seen.get(name, 0) + 1
    return seen


def test_header_attributes_and_items(tdb: Broker, real_run: Any) -> None:
    """h.start / h['stop'] / h.descriptors and every other Header path: marked once."""
    for _ in range(2):  # a second lookup reads afresh and transforms afresh, once
        h = tdb[real_run.uid]
        assert _marked(h.start, "start") and _marked(h["start"], "start")
        assert _marked(h.stop, "stop") and _marked(h["stop"], "stop")
        assert all(_marked(d, "descriptor") for d in h.descriptors)
        assert all(_marked(d, "descriptor") for d in h["descriptors"])
        assert dict(h.items())["start"][MARK] == "start"
        _, pair = h.to_name_dict_pair()
        assert pair["start"][MARK] == "start" and pair["stop"][MARK] == "stop"
        assert h.stream_names and h.fields() and "Header" in h._repr_html_()
        assert "img" in h.fields("primary") and repr(h)
    assert MARK not in tdb.store.get_run_start(real_run.uid)


def test_documents_and_get_documents(tdb: Broker, real_run: Any) -> None:
    """h.documents(), db.get_documents, restream and process: each document marked once."""
    h = tdb[real_run.uid]
    for pairs in (h.documents(), tdb.get_documents(h), tdb.get_documents([h, h]),
                  tdb.restream(h), h.documents(fill=True), h.documents(fields=["img"])):
        seen = _check_documents(pairs)
        assert seen.get("resource") and seen.get("descriptor") and seen.get("stop")
    collected: list[tuple[str, Any]] = []
    tdb.process(h, lambda name, doc: collected.append((name, doc)))
    assert _check_documents(collected)["start"] == 1


def test_events_tables_and_filling(tdb: Broker, real_run: Any) -> None:
    """get_events (its descriptors), get_table and filling read transformed documents once."""
    h = tdb[real_run.uid]
    events = list(tdb.get_events(h, fill=True))
    assert events and all(np.asarray(e["data"]["img"]).shape == (10, 10) for e in events)
    assert list(h.events()) and list(tdb.get_events([h, h], stream_name=tdb.ALL))
    table = tdb.get_table(h, fill=True)
    assert len(table) == 3 and all(f.shape == (10, 10) for f in table["img"])
    assert len(h.table(fields=["img"])) == 3
    frames = list(h.data("img"))
    assert len(frames) == 3 and np.all(frames[0] == 1.0)
    with pytest.warns(UserWarning, match="get_images is deprecated"):
        images = tdb.get_images(h, "img")
    assert len(images) == 3 and images[0].shape == (10, 10)


def test_v2_paths(tdb: Broker, real_run: Any) -> None:
    """v2 run.metadata, run.documents() (every fill), stream read/metadata: marked once."""
    run = tdb.v2[real_run.uid]
    assert _marked(run.metadata["start"], "start") and _marked(run.metadata["stop"], "stop")
    for fill in ("no", "yes", "delayed"):
        seen = _check_documents(run.documents(fill=fill))
        assert seen["descriptor"] and seen["resource"]
    dataset = run.primary.read()
    assert dataset["img"].shape == (3, 10, 10) and float(dataset["img"].max()) == 1.0
    assert float(run.primary.to_dask()["img"].max().compute()) == 1.0
    metadata = run.primary.metadata
    assert _marked(metadata["start"], "start")
    assert all(_marked(d, "descriptor") for d in metadata["descriptors"])
    for device in run.primary.config.values():
        device.read()
    assert run.v1.uid == real_run.uid
