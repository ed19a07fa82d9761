"""Security: read-only mode is enforced in every store; credentials never leak.

* ``read_only: true`` in a config: every document type, every re-insert, copies into the
  store, ``repair()`` (files) and ``ensure_indexes()`` (mongo) are refused with
  :class:`ReadOnlyStore`; the storage is byte-for-byte (files) or collection-for-collection,
  index-for-index (mongo) unchanged -- including a legacy database with no indexes, where a
  writable store would create them;
* a password in a MongoDB URI (broker_v1's layout, databroker 0.x's ``mongo_pwd``, intake's
  ``args``) never appears in ``repr``/``str``/``describe()``/``config()``/``get_config()``,
  in any error message or the errors chained under it, in log records (every logger, DEBUG),
  in warnings, or in ``broker-v1 config show``.

Dependency auditing (``pip-audit``) cannot work on this network (see ENVIRONMENT.md), so it is
not a test here.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import insert_all, make_run, sample_runs
from event_model import pack_datum_page
from rel_corpus import _corpus_reporter, record, snapshot, tree_state  # noqa: F401

from broker_v1 import Broker
from broker_v1.copying import copy_runs
from broker_v1.documents import pack_events
from broker_v1.errors import BrokerError, ReadOnlyStore
from broker_v1.stores.memory import MemoryStore

SECRET = "hunter2-S3cr3t"


# ---------------------------------------------------------------------- read-only
def _native_state(store: Any) -> Any:
    """What the backend holds, read around the store: files and bytes, or collections and
    indexes; None for the memory store (its state is what snapshot() reads)."""
    if store.backend == "files":
        return {k: v for k, v in tree_state(Path(store.path)).items()
                if not k.startswith(".broker_v1")}
    if store.backend == "mongo":
        from broker_v1.stores.mongo import make_client

        section = store.config()
        state = {}
        for key in ("uri", "asset_uri"):
            if key in section:
                uri = section[key]
                client = make_client(uri)
                db = client[uri.rsplit("/", 1)[1].split("?")[0]]
                state[key] = {name: (db[name].count_documents({}),
                                     sorted(db[name].index_information()))
                              for name in sorted(db.list_collection_names())}
                if not type(client).__module__.startswith("mongomock"):
                    client.close()
        return state
    return None


def _new_run_documents() -> list[tuple[str, dict[str, Any]]]:
    run = make_run(t0=1_800_000_000.0, external=True, n_events=2)
    docs = list(run.docs)
    events = [d for n, d in docs if n == "event"]
    datums = [d for n, d in docs if n == "datum"]
    docs.append(("event_page", pack_events([e for e in events if e["descriptor"] ==
                                            events[-1]["descriptor"]])))
    docs.append(("datum_page", dict(pack_datum_page(*datums))))
    return docs


def test_read_only_config_is_enforced(store_harness: Any) -> None:
    """A store opened from a config with read_only: true refuses every write, repair and
    index creation, and its storage is left exactly as it was."""
    writable = store_harness.store
    insert_all(writable, sample_runs())
    section = {**writable.config(), "read_only": True}
    db = Broker.from_config({"store": section, "description": "read-only view"})
    store = db.store
    assert store.read_only
    before = json.dumps(snapshot(store), sort_keys=True, default=repr)
    native = _native_state(store)
    refused = 0
    for name, doc in _new_run_documents() + sample_runs()[0].docs:  # new, and identical again
        with pytest.raises(ReadOnlyStore, match="read-only") as info:
            db.insert(name, copy.deepcopy(doc))
        assert store.describe() in str(info.value)
        refused += 1
    for maintenance in ("repair", "ensure_indexes"):
        if hasattr(store, maintenance):
            with pytest.raises(ReadOnlyStore, match="read-only"):
                getattr(store, maintenance)()
            refused += 1
    if hasattr(store, "repair"):
        with pytest.raises(ReadOnlyStore):
            store.repair(sample_runs()[0].uid)
        refused += 1
    source = MemoryStore()
    insert_all(source, [make_run(t0=1_900_000_000.0)])
    with pytest.raises(ReadOnlyStore, match="nothing was copied"):
        copy_runs(source, store)
    refused += 1
    assert json.dumps(snapshot(store), sort_keys=True, default=repr) == before
    assert _native_state(store) == native
    if store.backend != "memory":  # a read-only memory store is a new, empty one
        assert db[-1].start["uid"] == sample_runs()[-1].uid
        assert len(list(db(plan_name="scan"))) == 3
    record("security/read-only refusals", store_harness.kind, refused)


@pytest.fixture(params=["mongomock", "mongo"])
def legacy_db(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """A database written by another program, without any index: (uri, raw database)."""
    import os

    from broker_v1.stores.mongo import make_client

    name = f"legacy-{uuid.uuid4().hex[:10]}"
    if request.param == "mongomock":
        pytest.importorskip("mongomock")
        uri = f"mongomock://security-tests/{name}"
        yield uri, make_client(uri)[name]
        return
    base = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if not base:
        pytest.skip("set BROKER_V1_TEST_MONGO_URI to run against a MongoDB server")
    import pymongo

    client = pymongo.MongoClient(base)
    try:
        yield f"{base.rstrip('/')}/{name}", client[name]
    finally:
        client.drop_database(name)
        client.close()


def test_read_only_mongo_never_creates_indexes(legacy_db: tuple[str, Any]) -> None:
    """On a database without indexes, a read-only store reads, refuses ensure_indexes and
    writes, and leaves the database without any index or new collection."""
    from broker_v1.stores.mongo import MissingIndexWarning

    uri, raw = legacy_db
    run = sample_runs()[0]
    for name, doc in run.docs:
        collection = {"start": "run_start", "stop": "run_stop", "descriptor": "event_descriptor",
                      "event": "event"}[name]
        raw[collection].insert_one(dict(doc))
    before = {c: sorted(raw[c].index_information()) for c in raw.list_collection_names()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingIndexWarning)
        db = Broker.from_config({"store": {"backend": "mongo", "uri": uri, "read_only": True}})
        assert db[-1].start["uid"] == run.uid
        assert len(db[-1].table()) == 3
        with pytest.raises(ReadOnlyStore):
            db.store.ensure_indexes()
        with pytest.raises(ReadOnlyStore):
            db.insert("start", make_run(t0=2e9).start)
    after = {c: sorted(raw[c].index_information()) for c in raw.list_collection_names()}
    assert after == before == {c: ["_id_"] for c in before}
    db.store.close()
    record("security/read-only refusals", "mongo", 2)


# ---------------------------------------------------------------------- credentials
def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """An exception and everything chained under it (cause and context), once each."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _assert_secret_free(texts: list[str]) -> None:
    for text in texts:
        assert SECRET not in text, text
        assert "hunter2" not in text, text


def _configs(port: int) -> dict[str, dict[str, Any]]:
    uri = (f"mongodb://alice:{SECRET}@127.0.0.1:{port}/csx?authSource=admin"
           "&serverSelectionTimeoutMS=150&connectTimeoutMS=150")
    return {
        "broker_v1": {"description": "secret", "store": {
            "backend": "mongo", "uri": uri,
            "asset_uri": uri.replace("/csx?", "/csx-assets?")}},
        "databroker_0x": {
            "description": "secret (0.x)",
            "metadatastore": {"module": "databroker.headersource.mongo", "class": "MDS",
                              "config": {"host": "127.0.0.1", "port": port, "database": "csx",
                                         "mongo_user": "alice", "mongo_pwd": SECRET,
                                         "authsource": "admin", "timezone": "US/Eastern"}},
            "assets": {"module": "databroker.assets.mongo", "class": "Registry",
                       "config": {"host": "127.0.0.1", "port": port, "database": "csx-assets",
                                  "mongo_user": "alice", "mongo_pwd": SECRET}},
        },
        "intake": {"sources": {"csx": {
            "driver": "bluesky-mongo-normalized-catalog",
            "args": {"metadatastore_db": uri, "asset_registry_db": uri}}}},
    }


@pytest.mark.parametrize("layout", ["broker_v1", "databroker_0x", "intake"])
def test_credentials_never_shown(layout: str, caplog: pytest.LogCaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A password in a MongoDB URI never appears in reprs, descriptions, configs, errors (and
    what they chain), log records, or warnings, whichever config layout carried it."""
    import pymongo.common

    # databroker 0.x configs cannot say serverSelectionTimeoutMS: fail fast (nothing listens).
    monkeypatch.setattr(pymongo.common, "SERVER_SELECTION_TIMEOUT", 0.15)
    config = _configs(_closed_port())[layout]
    shown: list[str] = []
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = Broker.from_config(copy.deepcopy(config), source="/etc/databroker/secret.yml")
        store = db.store
        shown += [repr(db), str(db), repr(store), store.describe(), json.dumps(store.config()),
                  json.dumps(db.get_config()), repr(db.v2)]
        attempts = [
            lambda: db[-1],
            lambda: list(db(plan_name="scan")),
            lambda: db.insert("start", make_run(t0=1.0).start),
            lambda: store.ensure_indexes(),
            lambda: store.count_runs({"plan_name": "x"}),
            lambda: store.get_resource("r"),
        ]
        for attempt in attempts:
            with pytest.raises((BrokerError, KeyError)) as info:
                attempt()
            for err in _chain(info.value):
                shown += [str(err), repr(err)]
        store.close()
    shown += [r.getMessage() for r in caplog.records]
    shown += [str(w.message) for w in caught]
    _assert_secret_free(shown)
    redacted = db.get_config()
    assert redacted is not None and "***" in json.dumps(redacted)
    record("security/operations with a password in the config", layout, len(attempts) + 7)


def test_bad_uris_never_echo_the_password() -> None:
    """A URI refused as malformed is quoted in the error with its password hidden."""
    from broker_v1.errors import ConfigError

    bad = [
        f"mongodb://alice:{SECRET}@db.example/csx?noSuchOption=1",
        f"mongodb://alice:{SECRET}@db.example:notaport/csx",
        f"mongodb://alice:{SECRET}@db.example",
        f"postgres://alice:{SECRET}@db.example/csx",
        f"mongodb://alice:{SECRET}@db.example/a.b",
    ]
    shown = []
    for uri in bad:
        with pytest.raises(ConfigError) as info:
            Broker.from_config({"store": {"backend": "mongo", "uri": uri}},
                               source="/etc/databroker/secret.yml")
        shown += [str(e) for e in _chain(info.value)]
    _assert_secret_free(shown)
    record("security/operations with a password in the config", "bad uris", len(bad))


def test_config_show_hides_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``broker-v1 config show`` (YAML and JSON) prints the config with the password hidden."""
    from click.testing import CliRunner

    from broker_v1.cli import main

    folder = tmp_path / "configs"
    folder.mkdir()
    port = _closed_port()
    import yaml

    for layout, config in _configs(port).items():
        (folder / f"{layout}.yml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shown = []
    for layout in _configs(port):
        for extra in ([], ["--json"]):
            result = CliRunner().invoke(main, ["config", "show", layout, *extra])
            assert result.exit_code == 0, result.output
            assert "alice:***@" in result.output
            shown.append(result.output)
    _assert_secret_free(shown)
    record("security/operations with a password in the config", "cli", len(shown))
