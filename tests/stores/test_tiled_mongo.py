"""The tiled store over databroker 2's MongoAdapter (the legacy Mongo layout behind tiled).

The session's server (``tiled_mongo_server`` in ``tests/conftest.py``) serves a database of the
MongoDB wire test server into which broker_v1's own Mongo store wrote conftest's sample runs
(repeated scan_ids, a run left open, uids sharing the prefix ``abcdef0``, a baseline stream,
configuration, an external image with its resource and datums), an NPY_SEQ image run whose
frames are real ``.npy`` files under a root that ``root_map`` moves (scan_id 5) and a run with an
in-event array and a configuration update.  Every answer is compared with the same documents
held in a MemoryStore (with the same handlers and ``root_map`` where data is filled).  Tests
that apply to both layouts unchanged are parametrized in ``test_tiled.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from broker_v1 import Broker
from broker_v1.errors import (
    AmbiguousUid,
    DatumNotFound,
    ResourceNotFound,
    RunNotFound,
    UnsupportedQuery,
)
from broker_v1.stores.memory import MemoryStore

OPEN_RUN = 3  # index in server.mongo_runs of the sample run left without a stop


def _config(server: Any, **options: Any) -> dict[str, Any]:
    from tiled_server import API_KEY

    return {"store": {"backend": "tiled", "uri": server.uri, "api_key": API_KEY, **options},
            "timezone": "US/Eastern"}


@pytest.fixture(scope="module")
def db(tiled_mongo_server: Any) -> Iterator[Broker]:
    """A Broker over the session's Mongo-layout tiled server."""
    db = Broker.from_config(_config(tiled_mongo_server))
    yield db
    db.store.close()


@pytest.fixture(scope="module")
def mem(tiled_mongo_server: Any) -> Broker:
    """The same documents in a MemoryStore: the reference answers."""
    mem = Broker(MemoryStore(), timezone="US/Eastern")
    for docs in tiled_mongo_server.mongo_runs:
        for name, doc in docs:
            mem.insert(name, doc)
    return mem


@pytest.fixture(scope="module")
def uids(tiled_mongo_server: Any) -> list[str]:
    """Start uids in the order they were written (oldest first)."""
    return [docs[0][1]["uid"] for docs in tiled_mongo_server.mongo_runs]


def _same_header(a: Any, b: Any) -> None:
    assert dict(a.start) == dict(b.start)
    assert dict(a.stop) == dict(b.stop)
    assert [dict(d) for d in a.descriptors] == [dict(d) for d in b.descriptors]


def test_layout_is_detected_from_the_server(db: Broker, tiled_mongo_server: Any) -> None:
    """The root's spec (CatalogOfBlueskyRuns version 1) selects the Mongo layout."""
    from broker_v1.stores.tiled._mongo_layout import MongoLayout

    db[-1]
    assert db.store._conn.layout == "mongo"
    assert isinstance(db.store._layout(), MongoLayout)
    assert db.store.describe() == f"tiled store {tiled_mongo_server.uri}"


@pytest.mark.parametrize("key", [-1, -2, -6, 1, 2, 3, 4, 9, "abcdef01", "abcdef02-0000",
                                 "feed0001-0000-4000-8000-000000000001"])
def test_every_key_finds_the_run_memory_finds(db: Broker, mem: Broker, key: Any) -> None:
    """db[-N], db[scan_id] (the newest of repeated ones), full and partial uids."""
    _same_header(db[key], mem[key])


def test_key_forms_by_uid_slices_and_lists(db: Broker, mem: Broker, uids: list[str]) -> None:
    """Every full uid and 8-character prefix; slices and lists as in memory."""
    for uid in uids:
        _same_header(db[uid], mem[uid])
        _same_header(db[uid[:8]], mem[uid[:8]])
    for key in (slice(-3, None), slice(-4, -2), [1, -1], [uids[0], 4]):
        assert ([h.start["uid"] for h in db[key]] == [h.start["uid"] for h in mem[key]]), key


def test_unknown_and_ambiguous_keys(db: Broker) -> None:
    """Unknown uids and scan_ids are RunNotFound; a shared prefix is AmbiguousUid."""
    with pytest.raises(RunNotFound):
        db["00000000-0000-4000-8000-000000000000"]
    with pytest.raises(RunNotFound):
        db["zzzzzz"]
    with pytest.raises(RunNotFound):
        db[99]
    with pytest.raises(IndexError):
        db[-8]
    with pytest.raises(AmbiguousUid, match="'abcdef' matches 2 runs"):
        db["abcdef"]
    with pytest.raises(RunNotFound):  # case-sensitive, as MongoDB
        db["ABCDEF01"]


QUERIES: list[dict[str, Any]] = [
    {},
    {"plan_name": "scan"},
    {"scan_id": 2},
    {"scan_id": {"$gte": 2, "$lt": 4}},
    {"scan_id": {"$in": [1, 4, 9]}},
    {"scan_id": {"$nin": [1, 4]}},
    {"operator": "Dmitri", "plan_name": "scan"},
    {"operator": {"$ne": "Dmitri"}},  # also runs without an operator, as MongoDB
    {"sample.name": "gold"},
    {"detectors": "det"},  # equality with a list element
    {"detectors": ["det"]},
    {"sample": {"$exists": False}},  # KeyPresent is ignored by the adapter: checked here
    {"plan_name": {"$regex": "^co"}},
    {"purpose": {"$regex": "align"}},
    {"plan_name": {"$gt": "d"}},  # strings compare with strings, as MongoDB
    {"plan_name": {"$gt": 1}},
    {"$or": [{"scan_id": 1}, {"scan_id": 4}]},
    {"sample": {"name": "gold"}},  # equality with a document: checked here
    {"scan_id": {"$not": {"$gt": 2}}},
    {"stop.exit_status": "success"},  # the Broker's opt-in search on stop documents
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_search_matches_memory(db: Broker, mem: Broker, query: dict[str, Any]) -> None:
    """db(**query) gives the runs the memory store gives, in the same order."""
    assert [h.start["uid"] for h in db(**query)] == [h.start["uid"] for h in mem(**query)]
    assert db.store.count_runs(query) == mem.store.count_runs(query) or "stop." in str(query)


def test_regex_options_are_mongodb_s(db: Broker) -> None:
    """$options 'i' is answered by MongoDB (the memory store's matcher ignores $options, so
    the reference here is the same search in lower case)."""
    assert ([h.start["uid"] for h in db(plan_name={"$regex": "^CO", "$options": "i"})]
            == [h.start["uid"] for h in db(plan_name={"$regex": "^co"})])
    assert len(list(db(plan_name={"$regex": "^co"}))) == 3


def test_since_until(db: Broker, mem: Broker) -> None:
    """since/until become a time comparison the server answers."""
    t2, t4 = db[2].start["time"], db[4].start["time"]
    for kwargs in ({"since": t2}, {"until": t4}, {"since": t2, "until": t4}):
        assert ([h.start["uid"] for h in db(**kwargs)]
                == [h.start["uid"] for h in mem(**kwargs)]), kwargs


def test_what_the_adapter_cannot_answer_is_never_sent() -> None:
    """$exists, $or, documents and None stay residual (the adapter ignores KeyPresent and
    would answer nothing else with MongoDB's meaning); the rest is sent, with no recheck."""
    pytest.importorskip("tiled.queries", reason="the tiled extra is not installed")
    from tiled.queries import Comparison, Eq, In, NotEq, NotIn, Regex

    from broker_v1.stores.tiled._mongo_layout import MongoLayout, plan_mongo_query

    plan = plan_mongo_query({"plan_name": "scan", "detectors": ["det"],
                             "operator": {"$ne": "x", "$nin": ["y"]},
                             "scan_id": {"$in": [1], "$gt": 0},
                             "uid": {"$regex": "^ab", "$options": "i"}})
    assert plan.exact and plan.residual == []
    assert [type(q) for q in plan.queries] == [Eq, Eq, NotEq, NotIn, In, Comparison, Regex]
    assert plan.queries[-1].case_sensitive is False
    for query in ({"x": {"$exists": True}}, {"$or": [{"a": 1}]}, {"x": None},
                  {"x": {"a": 1}}, {"x": {"$regex": "a", "$options": "x"}},
                  {"x": {"$size": 1}}, {"x": {"$in": [{"a": 1}]}}):
        assert plan_mongo_query(query).residual, query
    assert MongoLayout(lambda uid: None, dict).sort([("time", -1), ("uid", -1)]) == [
        ("time", -1)]


def test_unbounded_residual_is_refused_naming_operator_and_server(
        tiled_mongo_server: Any) -> None:
    """Beyond client_filter_limit, $exists is UnsupportedQuery naming it and the adapter."""
    db = Broker.from_config(_config(tiled_mongo_server, client_filter_limit=3))
    try:
        with pytest.raises(UnsupportedQuery, match=r"cannot evaluate '\$exists'.*MongoAdapter"
                           r".*leaves 7 runs") as info:
            db(sample={"$exists": False})
        assert info.value.operator == "$exists"
        # Narrowed by the server first, the same operator is checked here.
        assert [h.start["scan_id"] for h in db(plan_name="count",
                                               sample={"$exists": False})] == [9, 3, 1]
    finally:
        db.store.close()


def test_headers_match_memory(db: Broker, mem: Broker, uids: list[str]) -> None:
    """start, stop and descriptors (configuration and updates included) exactly as stored."""
    for uid in uids:
        _same_header(db[uid], mem[uid])
    h = db[uids[-1]]
    assert [d["configuration"]["cam"]["data"]["cam_gain"] for d in h.descriptors] == [1, 2]
    assert db[uids[OPEN_RUN]].stop == {}
    assert db.store.get_run_stop(uids[OPEN_RUN]) is None


def test_tables_events_and_documents_match_memory(db: Broker, mem: Broker,
                                                  uids: list[str]) -> None:
    """get_table of every stream, get_events and get_documents (event uids, resources and
    datums included) are the memory store's, for every stopped run."""
    for uid in uids:
        if uid == uids[OPEN_RUN]:
            continue
        here, there = db[uid], mem[uid]
        for stream in there.stream_names:
            expected = mem.get_table(there, stream_name=stream)
            assert db.get_table(here, stream_name=stream).equals(expected), (uid, stream)
        assert list(db.get_events(here)) == list(mem.get_events(there)), uid
        assert list(db.get_documents(here)) == list(mem.get_documents(there)), uid
    frames = db.get_table(db[uids[-1]])["frame"]
    assert [list(map(list, f)) for f in frames][-1] == [[2, 4, 6], [4, 6, 8]]


def test_open_run_loses_its_last_page_on_the_server(db: Broker, mem: Broker,
                                                    uids: list[str]) -> None:
    """databroker 2.0.2's documents route flushes a page of events only when another
    document follows, so a run without a stop lacks its last page of events (here the second
    baseline event); what it sends is exact and in order."""
    here = [doc for name, doc in db.get_documents(db[uids[OPEN_RUN]]) if name == "event"]
    there = [doc for name, doc in mem.get_documents(mem[uids[OPEN_RUN]]) if name == "event"]
    assert here == there[:-1] and len(here) == 4


def test_resources_and_datums_of_a_read_run(tiled_mongo_server: Any, uids: list[str],
                                            mem: Broker, monkeypatch: Any) -> None:
    """The external-image run's resource and datums come from its documents; they are found
    again after the run's documents were evicted, and unknown ones are the not-found errors."""
    from broker_v1.stores.tiled import _mongo_layout

    monkeypatch.setattr(_mongo_layout, "_BODY_CACHE", 1)
    db = Broker.from_config(_config(tiled_mongo_server))
    try:
        store = db.store
        external = uids[2]
        docs = dict(mem.store.iter_documents(external))  # the last of each name
        resource, datum = docs["resource"], docs["datum"]
        with pytest.raises(ResourceNotFound, match="read that run's events first"):
            store.get_resource(resource["uid"])
        with pytest.raises(DatumNotFound, match="read that run's events first"):
            store.get_datum(datum["datum_id"])
        list(db.get_events(db[external]))
        list(db.get_events(db[uids[0]]))  # evicts the external run's documents
        assert store.get_resource(resource["uid"]) == resource
        assert store.get_datum(datum["datum_id"]) == datum
        assert (list(store.iter_datum_pages(resource["uid"]))
                == list(mem.store.iter_datum_pages(resource["uid"])))
        assert list(store.iter_datum_pages("no-such-resource")) == []
    finally:
        db.store.close()


def test_layout_is_chosen_from_the_spec_version() -> None:
    """Version 3.x is the SQL layout, 1 the Mongo layout; another version is a ConfigError
    naming it (checked on the root's specs before anything else is read)."""
    pytest.importorskip("tiled.client", reason="the tiled extra is not installed")
    from types import SimpleNamespace

    from broker_v1.errors import ConfigError, MissingDependency
    from broker_v1.stores.tiled._client import TiledConnection

    def root(version: str) -> Any:  # a root node's specs as tiled's client lists them
        return SimpleNamespace(specs=[SimpleNamespace(name="CatalogOfBlueskyRuns",
                                                      version=version)])

    conn = TiledConnection("http://tiled.example.org:8000/raw", None, label="test")
    for version, layout in (("3.0", "sql"), ("1", "mongo")):
        with pytest.raises(MissingDependency):  # a stand-in root is no plugins client
            conn._check_layout(root(version))
        assert conn.layout == layout
    with pytest.raises(ConfigError, match="version 2.0, a layout the tiled store does not"):
        conn._check_layout(root("2.0"))


def test_insert_is_refused_before_anything_is_sent(db: Broker) -> None:
    """The MongoAdapter cannot record runs: ReadOnlyStore naming the layout and what to use,
    and the run never appears."""
    from broker_v1.errors import ReadOnlyStore

    with pytest.raises(ReadOnlyStore, match="Mongo layout.*backend: mongo.*Nothing was sent"):
        db.insert("start", {"uid": "never-written", "time": 1.0, "scan_id": 1})
    assert db.store.count_runs({"uid": "never-written"}) == 0


# ---------------------------------------------------------------------- external data, filled
IMAGE_RUN = "cafe0001-0000-4000-8000-000000000005"


def _with_handlers(config: dict[str, Any], server: Any) -> dict[str, Any]:
    return {**config, "handlers": {"NPY_SEQ": {"module": "handlers", "class": "NpySeqHandler"}},
            "root_map": dict(server.root_map)}


@pytest.fixture(scope="module")
def filling(tiled_mongo_server: Any) -> Iterator[tuple[Broker, Broker]]:
    """(tiled store, memory store) with the NPY_SEQ handler and the run's root_map."""
    db = Broker.from_config(_with_handlers(_config(tiled_mongo_server), tiled_mongo_server))
    ref = Broker.from_config(_with_handlers({"store": {"backend": "memory"},
                                             "timezone": "US/Eastern"}, tiled_mongo_server))
    for docs in tiled_mongo_server.mongo_runs:
        for name, doc in docs:
            ref.insert(name, doc)
    yield db, ref
    db.store.close()


def _plain(value: Any) -> Any:
    return {k: _plain(v) for k, v in dict(value).items()} if hasattr(value, "keys") else value


def _same_docs(here: list[Any], there: list[Any]) -> None:
    """Documents (or events) equal, numpy frames compared by value."""
    import numpy as np

    assert len(here) == len(there)
    for a, b in zip(here, there):
        if isinstance(a, tuple):
            assert a[0] == b[0]
            a, b = a[1], b[1]
        a, b = dict(a), dict(b)  # v1 events are doct-style documents
        data_a, data_b = dict(a.get("data", {})), dict(b.get("data", {}))
        assert a.keys() == b.keys() and data_a.keys() == data_b.keys()
        assert ({k: _plain(v) for k, v in a.items() if k != "data"}
                == {k: _plain(v) for k, v in b.items() if k != "data"})
        for key in data_a:
            np.testing.assert_array_equal(data_a[key], data_b[key])


def test_filled_reads_match_memory(filling: tuple[Broker, Broker]) -> None:
    """fill=True and fill=['img'] in get_events, get_table and get_documents read the frames
    through the client's handler and root_map, as the memory store does."""
    import numpy as np

    db, ref = filling
    here, there = db[IMAGE_RUN], ref[IMAGE_RUN]
    for fill in (True, ["img"]):
        events = list(db.get_events(here, fill=fill))
        _same_docs(events, list(ref.get_events(there, fill=fill)))
        assert dict(events[4]["filled"]) == {"img": list(ref.get_table(there)["img"])[4]}
        np.testing.assert_array_equal(events[4]["data"]["img"],
                                      np.arange(48.0).reshape(6, 8) * 5)
        table, expected = db.get_table(here, fill=fill), ref.get_table(there, fill=fill)
        assert list(table.columns) == list(expected.columns)
        assert table["cam_stats"].equals(expected["cam_stats"])
        np.testing.assert_array_equal(np.stack(table["img"].to_numpy()),
                                      np.stack(expected["img"].to_numpy()))
    _same_docs(list(db.get_documents(here, fill=True)),
               list(ref.get_documents(there, fill=True)))
    # Unfilled, the datum ids are the detector's own.
    assert (list(db.get_table(here)["img"]) == list(ref.get_table(there)["img"])
            and list(db.get_table(here)["img"])[0].startswith(
                ref.store.get_datum(list(ref.get_table(there)["img"])[0])["resource"]))


def test_get_images_and_v2_read_match_memory(filling: tuple[Broker, Broker]) -> None:
    """get_images slices and the v2 shim's read() give the memory store's frames."""
    import warnings

    import numpy as np

    db, ref = filling
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # get_images is deprecated (v1 says so)
        images = db.get_images(db[IMAGE_RUN], "img")
        expected = ref.get_images(ref[IMAGE_RUN], "img")
    assert images.shape == expected.shape == (5, 6, 8)
    np.testing.assert_array_equal(images[1:4], expected[1:4])
    np.testing.assert_array_equal(images[-1], expected[-1])
    read, reference = db.v2[IMAGE_RUN].primary.read(), ref.v2[IMAGE_RUN].primary.read()
    assert read.identical(reference)
    assert read["img"].shape == (5, 6, 8)


def test_filling_a_fresh_store_finds_resources_and_datums(tiled_mongo_server: Any,
                                                          filling: tuple[Broker, Broker],
                                                          monkeypatch: Any) -> None:
    """Events handed to fill_events by another reader are filled by a store that never read
    the run (their datums are found through the run named by the descriptor), also once the
    run's documents were evicted from the store's cache."""
    from broker_v1.stores.tiled import _mongo_layout

    monkeypatch.setattr(_mongo_layout, "_BODY_CACHE", 1)
    _, ref = filling
    events = list(ref.get_events(ref[IMAGE_RUN]))
    descriptors = ref[IMAGE_RUN].descriptors
    fresh = Broker.from_config(_with_handlers(_config(tiled_mongo_server), tiled_mongo_server))
    try:
        _same_docs(list(fresh.fill_events(events, descriptors)),
                   list(ref.fill_events(events, descriptors)))
        list(fresh.get_events(fresh[1]))  # evicts the image run's documents
        _same_docs(list(fresh.fill_events(events[2:], descriptors)),
                   list(ref.fill_events(events[2:], descriptors)))
    finally:
        fresh.store.close()


def test_fill_without_handler_or_root_map_names_what_to_do(tiled_mongo_server: Any) -> None:
    """No handler: MissingHandler naming the spec; no root_map: ExternalDataError naming the
    beamline root the resource holds."""
    from broker_v1.errors import ExternalDataError, MissingHandler

    config = _config(tiled_mongo_server)
    bare = Broker.from_config(config, auto_register=False)
    no_map = Broker.from_config({**_with_handlers(config, tiled_mongo_server), "root_map": {}})
    try:
        with pytest.raises(MissingHandler, match="'NPY_SEQ'"):
            bare.get_table(bare[IMAGE_RUN], fill=True)
        from tiled_server import IMAGE_ROOT

        with pytest.raises(ExternalDataError, match=IMAGE_ROOT):
            no_map.get_table(no_map[IMAGE_RUN], fill=True)
    finally:
        bare.store.close()
        no_map.store.close()
