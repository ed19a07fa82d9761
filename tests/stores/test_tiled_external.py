"""External data through the tiled store: fill=True, get_images, the v2 shim, timeouts.

The session's tiled server (``tiled_server``) holds scan_id 9: a ``rel_scan`` of five points of
ophyd.sim's registry-backed image detector ``img`` (6x8 float frames, one ``.npy`` file each,
spec ``NPY_SEQ``) and ``det``, recorded by a real RunEngine through TiledWriter, which made an
array node reading those files.  The same documents, as the RunEngine emitted them, are held in
a MemoryStore whose handler reads the same files: every filled answer of the tiled store is
compared with that reference (and with tiled's own client).  What the SQL layout lost is the
one expected difference: external fields hold placeholder datum ids, not the detector's.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tiled_server import broker_config

from broker_v1 import Broker
from broker_v1.errors import DatumNotFound, StoreUnavailable


@pytest.fixture(scope="module")
def uid(tiled_server: Any) -> str:
    (run,) = [r for r in tiled_server.runs if r["scan_id"] == 9]
    return str(run["uid"])


@pytest.fixture(scope="module")
def db(tiled_server: Any) -> Iterator[Broker]:
    db = Broker.from_config(broker_config(tiled_server.uri))
    yield db
    db.store.close()


@pytest.fixture(scope="module")
def memory(tiled_server: Any) -> Broker:
    """The image run's documents, as the RunEngine emitted them, in a MemoryStore whose
    NPY_SEQ handler reads the files the detector wrote."""
    from handlers import NpySeqHandler

    ref = Broker.from_config({"store": {"backend": "memory"}, "timezone": "US/Eastern"})
    # ophyd (in the test extra) advertises its own NPY_SEQ handler: this one reads the same.
    ref.reg.register_handler("NPY_SEQ", NpySeqHandler, overwrite=True)
    for line in tiled_server.documents.read_text().splitlines():
        name, doc = json.loads(line)
        ref.insert(name, doc)
    return ref


def _array_requests(server: Any, uid: str) -> int:
    """Requests for the image node's data the server has logged so far."""
    return server.log.read_text().count(f"/api/v1/array/full/{uid}/primary/img")


def _images(db: Broker, uid: str, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # get_images is deprecated (v1 says so)
        return db.get_images(db[uid], "img", *args)


def test_unfilled_events_carry_stable_placeholders(db: Broker, memory: Broker, uid: str,
                                                   tiled_server: Any) -> None:
    """Without fill, img holds sr-<descriptor uid>-img/<seq_num - 1>, the same through a new
    store; every other field, seq_num and time are the RunEngine's."""
    ours, ref = list(db.get_events(db[uid])), list(memory.get_events(memory[uid]))
    (descriptor,) = db[uid].descriptors
    assert descriptor["data_keys"]["img"]["external"] == "FILESTORE"
    assert [e["data"]["img"] for e in ours] == [
        f"sr-{descriptor['uid']}-img/{n}" for n in range(5)]
    again = Broker.from_config(broker_config(tiled_server.uri))
    try:
        assert [e["data"]["img"] for e in again.get_events(again[uid])] == [
            e["data"]["img"] for e in ours]
    finally:
        again.store.close()
    assert [e["filled"] for e in ours] == [{"img": False}] * 5
    for mine, theirs in zip(ours, ref, strict=True):
        assert (mine["seq_num"], mine["time"]) == (theirs["seq_num"], theirs["time"])
        assert {k: v for k, v in mine["data"].items() if k != "img"} == {
            k: v for k, v in theirs["data"].items() if k != "img"}
        assert re.fullmatch(r"[0-9a-f-]{36}/\d", theirs["data"]["img"])  # ophyd's datum id
    table = db.get_table(db[uid])
    assert list(table["img"]) == [e["data"]["img"] for e in ours]
    expected = memory.get_table(memory[uid])
    assert table.drop(columns="img").equals(expected.drop(columns="img"))


def test_filled_events_match_the_memory_store(db: Broker, memory: Broker, uid: str) -> None:
    """get_events(fill=True) gives the frames the detector wrote (values and dtype), with
    filled naming the placeholder; fill=['img'] is the same, fill=['det'] fills nothing."""
    ref = list(memory.get_events(memory[uid], fill=True))
    for fill in (True, ["img"]):
        ours = list(db.get_events(db[uid], fill=fill))
        assert len(ours) == len(ref) == 5
        for n, (mine, theirs) in enumerate(zip(ours, ref, strict=True)):
            assert mine["data"]["img"].dtype == theirs["data"]["img"].dtype == np.float64
            np.testing.assert_array_equal(mine["data"]["img"], theirs["data"]["img"])
            assert mine["data"]["det"] == theirs["data"]["det"]
            assert mine["filled"]["img"].endswith(f"-img/{n}")
    assert isinstance(next(iter(db.get_events(db[uid], fill=["det"])))["data"]["img"], str)


def test_filled_table_and_documents_match(db: Broker, memory: Broker, uid: str) -> None:
    """get_table(fill=True) column by column and get_documents(fill=True) event by event
    equal the memory store's; the tiled run replays no resource or datum documents."""
    ours, ref = db.get_table(db[uid], fill=True), memory.get_table(memory[uid], fill=True)
    assert list(ours.columns) == list(ref.columns)
    assert ours.drop(columns="img").equals(ref.drop(columns="img"))
    np.testing.assert_array_equal(np.stack(ours["img"].to_numpy()),
                                  np.stack(ref["img"].to_numpy()))
    mine = list(db.get_documents(db[uid], fill=True))
    theirs = list(memory.get_documents(memory[uid], fill=True))
    assert [n for n, _ in mine] == [n for n, _ in theirs if n not in ("resource", "datum")]
    mine_events = [d for n, d in mine if n == "event"]
    their_events = [d for n, d in theirs if n == "event"]
    for a, b in zip(mine_events, their_events, strict=True):
        np.testing.assert_array_equal(a["data"]["img"], b["data"]["img"])


def test_get_images(db: Broker, memory: Broker, uid: str) -> None:
    """get_images: shape, integers (negative too), slices and lists give the memory store's
    frames."""
    ours, ref = _images(db, uid), _images(memory, uid)
    assert ours.shape == ref.shape == (5, 6, 8)
    np.testing.assert_array_equal(ours[-1], ref[4])
    np.testing.assert_array_equal(ours[1:4], ref[1:4])
    np.testing.assert_array_equal(ours[[4, 0]], np.stack([ref[4], ref[0]]))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    with pytest.raises(IndexError):
        ours[5]


def test_v2_read_matches_tiled_and_memory(db: Broker, memory: Broker, uid: str,
                                         tiled_server: Any) -> None:
    """db.v2[uid].primary.read()['img'] is what tiled's own client reads and what the memory
    store's v2 shim reads through its handler."""
    from tiled.client import from_uri
    from tiled_server import API_KEY

    ours = db.v2[uid].primary.read()["img"].values
    np.testing.assert_array_equal(ours, memory.v2[uid].primary.read()["img"].values)
    client = from_uri(tiled_server.uri, api_key=API_KEY)
    try:
        np.testing.assert_array_equal(ours, client[uid]["primary"].read()["img"].values)
    finally:
        client.context.close()


def test_field_reads_and_lazy_reads(db: Broker, memory: Broker, uid: str) -> None:
    """h.data('img'), fields=['img'] with fill, the v2 shim's to_dask() and
    documents(fill='delayed') give the memory store's frames."""
    ref = np.asarray(_images(memory, uid))
    np.testing.assert_array_equal(np.stack(list(db[uid].data("img"))), ref)
    table = db.get_table(db[uid], fields=["img"], fill=True)
    assert list(table.columns) == ["time", "img"]
    np.testing.assert_array_equal(np.stack(table["img"].to_numpy()), ref)
    run = db.v2[uid]
    np.testing.assert_array_equal(run.primary.to_dask()["img"].values, ref)
    delayed = [doc["data"]["img"][0] for name, doc in run.documents(fill="delayed")
               if name == "event_page"]
    np.testing.assert_array_equal(np.stack([np.asarray(d) for d in delayed]), ref)


def test_one_request_per_stream_and_field(tiled_server: Any, open_tiled_broker: Any,
                                          uid: str) -> None:
    """The server sees one array request for get_table(fill=True), one for
    get_documents(fill=True) (filled event by event) and one for get_images[:]."""
    db = open_tiled_broker(tiled_server.uri)
    h = db[uid]
    before = _array_requests(tiled_server, uid)
    db.get_table(h, fill=True)
    assert _array_requests(tiled_server, uid) == before + 1
    fresh = open_tiled_broker(tiled_server.uri)
    list(fresh.get_documents(fresh[uid], fill=True))
    assert _array_requests(tiled_server, uid) == before + 2
    other = open_tiled_broker(tiled_server.uri)
    _images(other, uid)[:]
    assert _array_requests(tiled_server, uid) == before + 3


def test_large_reads_are_split_into_bounded_requests(tiled_server: Any, open_tiled_broker: Any,
                                                      memory: Broker, uid: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for two frames per request, the five frames come in three requests and are
    the same frames."""
    from broker_v1.stores.tiled import _external

    monkeypatch.setattr(_external, "REQUEST_BYTES", 2 * 6 * 8 * 8)
    db = open_tiled_broker(tiled_server.uri)
    before = _array_requests(tiled_server, uid)
    frames = np.stack(db.get_table(db[uid], fill=True)["img"].to_numpy())
    assert _array_requests(tiled_server, uid) == before + 3
    np.testing.assert_array_equal(frames, np.asarray(_images(memory, uid)))


def test_unknown_placeholders_are_not_datums(db: Broker, uid: str) -> None:
    """A placeholder of a run this store never read, or any other id, is DatumNotFound from
    the handler path, saying what the layout keeps instead; a row beyond the node's is
    DatumNotFound naming the field and the rows the server holds."""
    with pytest.raises(DatumNotFound, match="placeholder ids"):
        db.store.get_datum("sr-not-a-descriptor-img/0")
    assert db.store.read_external(["sr-not-a-descriptor-img/0"]) is None
    first = next(iter(db.get_events(db[uid])))["data"]["img"]
    beyond = first.rpartition("/")[0] + "/7"
    with pytest.raises(DatumNotFound, match=r"Row 7 of the external field 'img'.*beyond the 5"):
        db.store.read_external([beyond])


def test_changing_a_filled_frame_changes_no_later_read(tiled_server: Any, open_tiled_broker: Any,
                                                       memory: Broker, uid: str) -> None:
    """Frames handed out are the caller's: zeroing them (event by event, where the store
    keeps the block it read ahead) leaves later reads as the files are."""
    db = open_tiled_broker(tiled_server.uri)
    for _, doc in db.get_documents(db[uid], fill=True):
        if "img" in doc.get("data", {}):
            doc["data"]["img"][:] = 0
    again = [d["data"]["img"] for n, d in db.get_documents(db[uid], fill=True) if n == "event"]
    np.testing.assert_array_equal(np.stack(again), np.asarray(_images(memory, uid)))


# ---------------------------------------------------------------------- failures, for real
# tiled's Context leaves an HTTP client unclosed when a request fails mid-way.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_read_that_times_out_is_paged(slow_proxy: Any, open_tiled_broker: Any, memory: Broker,
                                        uid: str, no_retries: None) -> None:
    """Through a server that answers reads of more than two frames after 3 s, a store with
    timeout=1 splits the read (5 -> 2 + 3 -> 1 + 2) and gets every frame right."""
    proxy = slow_proxy(2, 3.0)
    db = open_tiled_broker(proxy.uri, timeout=1)
    frames = np.stack(db.get_table(db[uid], fill=True)["img"].to_numpy())
    np.testing.assert_array_equal(frames, np.asarray(_images(memory, uid)))
    assert proxy.sizes == [5, 2, 3, 1, 2]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_a_frame_that_times_out_names_the_setting(slow_proxy: Any, open_tiled_broker: Any,
                                                  uid: str, no_retries: None) -> None:
    """When even one frame is slower than store.timeout, the error names the server, the
    field and the setting."""
    proxy = slow_proxy(0, 2.0)
    db = open_tiled_broker(proxy.uri, timeout=0.5)
    with pytest.raises(StoreUnavailable, match=r"did not answer in time while trying to read "
                       r"rows 0-0 of the external field 'img'.*store\.timeout") as info:
        db.get_table(db[uid], fill=True)
    assert proxy.uri in str(info.value)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_a_server_gone_while_filling(slow_proxy: Any, open_tiled_broker: Any, uid: str,
                                     no_retries: None) -> None:
    """A server that stops between reading the events and filling them is StoreUnavailable
    naming it and the field being read."""
    proxy = slow_proxy(99, 0.0)
    db = open_tiled_broker(proxy.uri)
    h = db[uid]
    events, descriptors = list(db.get_events(h)), h.descriptors
    proxy.stop()
    with pytest.raises(StoreUnavailable, match=r"Could not reach the tiled server at "
                       rf"{re.escape(proxy.uri)} to read the external data of field 'img'"):
        list(db.fill_events(events, descriptors))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_a_5xx_carries_the_request_id(tiled_server: Any, open_tiled_broker: Any, uid: str,
                                      no_retries: None) -> None:
    """A frame file gone from the server's disk is the server's 500: StoreUnavailable with its
    status, the server, and the request id to look up in the server's log."""
    (frame,) = tiled_server.external.glob("*_3.npy")
    away = frame.with_suffix(".away")
    frame.rename(away)
    try:
        db = open_tiled_broker(tiled_server.uri)
        with pytest.raises(StoreUnavailable, match=r"failed \(500\) while trying to read rows "
                           r"0-4 of the external field 'img'.*\(request id [0-9a-f]+\)") as info:
            db.get_table(db[uid], fill=True)
    finally:
        away.rename(frame)
    (request_id,) = re.findall(r"request id ([0-9a-f]+)", str(info.value))
    assert f"[{request_id}]" in tiled_server.log.read_text()
    assert tiled_server.uri in str(info.value)
