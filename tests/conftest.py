"""Shared fixtures: a store harness parametrized over every backend, and sample runs.

``store_harness`` gives each contract test a fresh, empty, writable store of one kind, with
``reopen()`` (a new store object over the same storage) and ``kind`` (for messages only; tests
never branch on it).  Kinds whose dependencies or servers are absent skip with the reason, so
``-ra`` shows every gap.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import event_model
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from broker_v1 import Broker  # noqa: E402
from broker_v1.stores.base import DocumentStore  # noqa: E402
from broker_v1.stores.memory import MemoryStore  # noqa: E402

STORE_KINDS = ["memory", "files", "mongomock", "mongo"]
#: The store contract suite also runs on a tiled server; the other users of the harness
#: (property tests, corpora, Broker-level tests) keep STORE_KINDS.
CONTRACT_KINDS = [*STORE_KINDS, "tiled"]

# Run in the tiled server's venv (bluesky, ophyd), never imported here: no doctests to collect.
collect_ignore = ["stores/tiled_fill.py"]


@dataclass
class Harness:
    """A store under test plus a way to reopen its storage."""

    kind: str
    store: DocumentStore
    reopen: Callable[[], DocumentStore]
    cleanup: Callable[[], None] = field(default=lambda: None)


def _memory_harness(tmp_path: Path) -> Harness:
    store = MemoryStore()
    return Harness("memory", store, reopen=lambda: store)


def _files_harness(tmp_path: Path) -> Harness:
    try:
        from stores.files_harness import make_files_harness
    except ImportError as err:  # the file store lands in its own change
        pytest.skip(f"files store not available: {err}")
    harness = make_files_harness(tmp_path)
    return Harness("files", harness.store, reopen=harness.reopen)


def _mongomock_harness(tmp_path: Path) -> Harness:
    try:
        from broker_v1.stores.mongo import MongoStore
    except ImportError as err:
        pytest.skip(f"mongo store not available: {err}")
    uri = f"mongomock://localhost/test-{uuid.uuid4().hex[:12]}"
    store = MongoStore(uri=uri)
    return Harness("mongomock", store, reopen=lambda: MongoStore(uri=uri))


def _mongo_harness(tmp_path: Path) -> Harness:
    base = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if not base:
        pytest.skip("set BROKER_V1_TEST_MONGO_URI to run against a MongoDB server")
    try:
        from broker_v1.stores.mongo import MongoStore
    except ImportError as err:
        pytest.skip(f"mongo store not available: {err}")
    db_name = f"broker_v1_test_{uuid.uuid4().hex[:12]}"
    uri = base.rstrip("/") + "/" + db_name
    store = MongoStore(uri=uri)

    def cleanup() -> None:
        import pymongo

        with pymongo.MongoClient(base) as client:  # closed, or pytest fails on its ResourceWarning
            client.drop_database(db_name)

    return Harness("mongo", store, reopen=lambda: MongoStore(uri=uri), cleanup=cleanup)


# One writable tiled server per session, started by the first tiled harness (a server per
# test would cost 8-11 s each); each test gets its own catalog container on it.
_TILED_WRITABLE: dict[str, Any] = {}


def _tiled_writable_server(tmp_path: Path) -> Any:
    if "server" in _TILED_WRITABLE:
        return _TILED_WRITABLE["server"]
    if "skip" in _TILED_WRITABLE:
        pytest.skip(_TILED_WRITABLE["skip"])
    try:
        import bluesky_tiled_plugins  # noqa: F401
        import tiled.client  # noqa: F401
    except ImportError as err:
        _TILED_WRITABLE["skip"] = (f'the tiled extra is not installed ({err}; pip install -e '
                                   '".[test,tiled]")')
        pytest.skip(_TILED_WRITABLE["skip"])
    from tiled_server import TiledServer, server_venv

    venv = server_venv()
    if venv is None:
        where = os.environ.get("BROKER_V1_TILED_VENV") or ".ci/tiled-venv"
        _TILED_WRITABLE["skip"] = (
            f"no tiled server venv: {where} has no bin/tiled (a venv with tiled[server] and "
            "bluesky-tiled-plugins; .ci/run builds .ci/tiled-venv, BROKER_V1_TILED_VENV "
            "names another)")
        pytest.skip(_TILED_WRITABLE["skip"])
    # In memory where there is a tmpfs: the server's SQLite commits then cost no disk syncs,
    # which halves the time of the writes the tests make.  Removed at the session's end.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path.parent
    folder = Path(tempfile.mkdtemp(prefix="broker-v1-tiled-", dir=base))
    server = TiledServer(venv, folder, anonymous=True)
    server.start()
    _TILED_WRITABLE["server"] = server
    return server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the shared writable tiled server, if a test started it."""
    server = _TILED_WRITABLE.pop("server", None)
    root = _TILED_WRITABLE.pop("root", None)
    if root is not None:
        root.context.close()
    if server is not None:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


def new_tiled_catalog(tmp_path: Path) -> str:
    """The URI of a fresh, empty catalog of Bluesky runs on the session's writable server."""
    server = _tiled_writable_server(tmp_path)
    from tiled.client import from_uri
    from tiled.structures.core import Spec
    from tiled_server import API_KEY

    if "root" not in _TILED_WRITABLE:
        _TILED_WRITABLE["root"] = from_uri(server.uri, api_key=API_KEY)
    key = f"catalog-{uuid.uuid4().hex[:12]}"
    _TILED_WRITABLE["root"].create_container(
        key=key, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")])
    return f"{server.uri}/api/v1/metadata/{key}"


def _tiled_harness(tmp_path: Path) -> Harness:
    from tiled_server import API_KEY

    from broker_v1.stores.tiled import TiledStore

    uri = new_tiled_catalog(tmp_path)
    # Rows batched (sent when the store reads, and at stops): the contract then covers the
    # send-before-read path, and the suite makes fewer requests.  The default (each insert's
    # rows sent at once) is covered by tests/stores/test_tiled_writing.py.
    store = TiledStore(uri=uri, api_key=API_KEY, write_batch_size=1000)
    reopened: list[DocumentStore] = []

    def reopen() -> DocumentStore:
        reopened.append(TiledStore(uri=uri, api_key=API_KEY))
        return reopened[-1]

    def cleanup() -> None:
        for other in reopened:
            other.close()

    return Harness("tiled", store, reopen=reopen, cleanup=cleanup)


_FACTORIES = {
    "memory": _memory_harness,
    "files": _files_harness,
    "mongomock": _mongomock_harness,
    "mongo": _mongo_harness,
    "tiled": _tiled_harness,
}


def make_harness(kind: str, tmp_path: Path) -> Any:
    """Yield a fresh store harness of ``kind`` and close it afterwards."""
    harness = _FACTORIES[kind](tmp_path)
    yield harness
    harness.store.close()
    harness.cleanup()


@pytest.fixture(params=STORE_KINDS)
def store_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh, empty, writable store of each kind."""
    yield from make_harness(request.param, tmp_path)


def read_while_writing(
    read_once: Callable[[], str | None], write: Callable[[], None], *, readers: int = 1
) -> list[str]:
    """Call ``read_once`` over and over on ``readers`` threads of their own while ``write``
    runs on this one, threads switched as often as the interpreter allows.

    Returns the problems found: a message ``read_once`` returned, or an exception it raised
    (warnings are errors in this suite), at most one per reader; and a note if no read ever
    finished while ``write`` ran.
    """
    import threading

    done = threading.Event()
    problems: list[str] = []
    finished: list[int] = []

    def loop() -> None:
        try:
            while not done.is_set():
                problem = read_once()
                if problem:
                    problems.append(problem)
                    return
                finished.append(1)
        except Exception as err:
            problems.append(repr(err))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=loop) for _ in range(readers)]
    try:
        for thread in threads:
            thread.start()
        write()
    finally:
        done.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    if not finished and not problems:
        problems.append("no read finished while the writer ran")
    return problems


def require_kept(store: DocumentStore, *what: str) -> None:
    """Skip the test when the store's layout does not keep ``what`` (its reason given)."""
    for item in what:
        if item in store.layout_losses:
            pytest.skip(f"{store.describe()}: {store.layout_losses[item]}")


@pytest.fixture
def store(store_harness: Harness) -> DocumentStore:
    """The store of :func:`store_harness`."""
    return store_harness.store


@pytest.fixture
def db(store: DocumentStore) -> Broker:
    """A Broker over each kind of store, in US/Eastern so time tests are reproducible."""
    return Broker(store, timezone="US/Eastern")


# ---------------------------------------------------------------------- sample runs
@dataclass
class SampleRun:
    """The documents of one composed run, in emission order."""

    uid: str
    docs: list[tuple[str, dict[str, Any]]]

    @property
    def start(self) -> dict[str, Any]:
        return self.docs[0][1]


def make_run(
    *,
    t0: float,
    scan_id: int | None = 1,
    plan_name: str = "scan",
    uid: str | None = None,
    n_events: int = 3,
    with_baseline: bool = True,
    with_stop: bool = True,
    external: bool = False,
    metadata: dict[str, Any] | None = None,
) -> SampleRun:
    """Compose a realistic run: a primary stream (motor, det, optional image), a baseline."""
    md = {"plan_name": plan_name, "detectors": ["det"], "motors": ["motor"], **(metadata or {})}
    if scan_id is not None:
        md["scan_id"] = scan_id
    bundle = event_model.compose_run(uid=uid, time=t0, metadata=md)
    docs: list[tuple[str, dict[str, Any]]] = [("start", bundle.start_doc)]
    data_keys = {
        "motor": {"source": "SIM:motor", "dtype": "number", "shape": [], "units": "mm"},
        "motor_setpoint": {"source": "SIM:motor_sp", "dtype": "number", "shape": []},
        "det": {"source": "SIM:det", "dtype": "number", "shape": []},
    }
    if external:
        data_keys["img"] = {"source": "SIM:img", "dtype": "array", "shape": [4, 4],
                            "external": "FILESTORE:"}
    primary = bundle.compose_descriptor(
        name="primary",
        data_keys=data_keys,
        time=t0 + 0.1,
        object_keys={"motor": ["motor", "motor_setpoint"], "det": ["det"]}
        | ({"cam": ["img"]} if external else {}),
        configuration={
            "det": {
                "data": {"det_exposure": 0.1},
                "timestamps": {"det_exposure": t0},
                "data_keys": {"det_exposure": {"source": "SIM:exp", "dtype": "number",
                                               "shape": []}},
            }
        },
    )
    docs.append(("descriptor", primary.descriptor_doc))
    if with_baseline:
        baseline = bundle.compose_descriptor(
            name="baseline",
            data_keys={"temp": {"source": "SIM:temp", "dtype": "number", "shape": []}},
            time=t0 + 0.05,
            object_keys={"temp": ["temp"]},
        )
        docs.append(("descriptor", baseline.descriptor_doc))
        docs.append(("event", baseline.compose_event(
            data={"temp": 20.0}, timestamps={"temp": t0 + 0.06}, time=t0 + 0.06)))
    resource = None
    if external:
        resource = bundle.compose_resource(
            spec="NPY_SEQ", root="/tmp/data", resource_path="img", resource_kwargs={}
        )
        docs.append(("resource", resource.resource_doc))
    for i in range(n_events):
        data: dict[str, Any] = {"motor": float(i), "motor_setpoint": float(i), "det": 10.0 * i}
        ts = {k: t0 + 1 + i for k in data}
        if resource is not None:
            datum = resource.compose_datum(datum_kwargs={"index": i})
            docs.append(("datum", datum))
            data["img"] = datum["datum_id"]
            ts["img"] = t0 + 1 + i
        docs.append(("event", primary.compose_event(data=data, timestamps=ts, time=t0 + 1 + i,
                                                    filled={"img": False} if external else {})))
    if with_baseline:
        docs.append(("event", baseline.compose_event(
            data={"temp": 21.0}, timestamps={"temp": t0 + 2 + n_events},
            time=t0 + 2 + n_events)))
    if with_stop:
        docs.append(("stop", bundle.compose_stop(time=t0 + 3 + n_events)))
    return SampleRun(bundle.start_doc["uid"], docs)


_SAMPLE_RUNS: list[SampleRun] = []


def sample_runs() -> list[SampleRun]:
    """Runs covering the lookup edge cases: repeated scan_ids, no stop, a shared uid prefix.

    The same documents on every call (fresh copies), so tests can compare against them.
    """
    if not _SAMPLE_RUNS:
        _SAMPLE_RUNS.extend(_compose_sample_runs())
    return copy.deepcopy(_SAMPLE_RUNS)


def _compose_sample_runs() -> list[SampleRun]:
    base = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    return [
        make_run(t0=base, scan_id=1, plan_name="count", uid="abcdef01-0000-4000-8000-000000000001"),
        make_run(t0=base + 100, scan_id=2, plan_name="scan",
                 uid="abcdef02-0000-4000-8000-000000000002",
                 metadata={"sample": {"name": "silicon", "position": 3}, "operator": "Dmitri"}),
        make_run(t0=base + 200, scan_id=2, plan_name="scan", external=True,
                 metadata={"sample": {"name": "gold"}, "operator": "Michael",
                           "purpose": "good sample alignment"}),
        make_run(t0=base + 300, scan_id=3, plan_name="count", with_stop=False),
        make_run(t0=base + 400, scan_id=4, plan_name="scan", n_events=5,
                 metadata={"operator": "Dmitri"}),
    ]


def insert_all(target: Any, runs: list[SampleRun]) -> None:
    """Insert every document of ``runs`` into a store or Broker."""
    for run in runs:
        for name, doc in run.docs:
            target.insert(name, doc)


@pytest.fixture
def runs() -> list[SampleRun]:
    """Fresh sample runs (time-ordered, oldest first)."""
    return sample_runs()


@pytest.fixture
def filled_db(db: Broker, runs: list[SampleRun]) -> Broker:
    """A Broker whose store holds :func:`sample_runs`."""
    insert_all(db, runs)
    return db


def now() -> float:
    return time.time()


# ---------------------------------------------------------------------- a tiled server
def _tiled_venv(layout: str) -> Any:
    """The tiled server venv, or skip saying what is missing."""
    pytest.importorskip("tiled.client", reason='the tiled extra is not installed '
                        '(pip install -e ".[test,tiled]")')
    pytest.importorskip("bluesky_tiled_plugins", reason='the tiled extra is not installed '
                        '(pip install -e ".[test,tiled]")')
    from tiled_server import has_databroker, server_venv

    venv = server_venv()
    where = os.environ.get("BROKER_V1_TILED_VENV") or ".ci/tiled-venv"
    if venv is None:
        pytest.skip(f"no tiled server venv: {where} has no bin/tiled (a venv with "
                    "tiled[server], bluesky, ophyd, bluesky-tiled-plugins; .ci/run builds "
                    ".ci/tiled-venv, BROKER_V1_TILED_VENV names another)")
    if layout == "mongo" and not has_databroker(venv):
        pytest.skip(f"the tiled server venv {where} has no databroker 2 (databroker[server]"
                    "==2.0.2 serves the Mongo layout; .ci/run installs it)")
    return venv


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiled server (SQL catalog) holding runs recorded by a real RunEngine, per session.

    Skips when the package's tiled extra or the server's venv is missing.
    """
    from tiled_server import TiledServer

    server = TiledServer(_tiled_venv("sql"), tmp_path_factory.mktemp("tiled-server"))
    server.start()
    try:
        server.fill()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiled_mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """databroker 2's MongoAdapter behind tiled (the Mongo layout), per session, over a
    database of the wire test server holding :func:`sample_runs`, an NPY_SEQ image run whose
    frames are real files (found through ``server.root_map``) and an in-event-array run, all
    written by broker_v1's Mongo store (``server.mongo_runs``).

    Skips when the tiled extra, the server venv (with databroker) or the wire server is missing.
    """
    venv = _tiled_venv("mongo")
    base = os.environ.get("BROKER_V1_TEST_MONGO_URI")
    if not base:
        pytest.skip("set BROKER_V1_TEST_MONGO_URI (the wire test server, see .ci/run) to "
                    "serve the Mongo layout through tiled")
    from tiled_server import IMAGE_ROOT, TiledServer, array_run_documents, npy_image_run_documents

    db_name = f"broker_v1_tiled_{uuid.uuid4().hex[:12]}"
    server = TiledServer(venv, tmp_path_factory.mktemp("tiled-mongo-server"), layout="mongo",
                         mongo_uri=base.rstrip("/") + "/" + db_name)
    files = server.folder / "external"
    server.root_map = {IMAGE_ROOT: str(files)}
    server.fill_mongo([run.docs for run in sample_runs()]
                      + [npy_image_run_documents(files), array_run_documents()])
    server.start()
    try:
        yield server
    finally:
        server.stop()
        import pymongo

        with pymongo.MongoClient(base) as client:
            client.drop_database(db_name)


@pytest.fixture
def slow_proxy(tiled_server: Any) -> Any:
    """Start :class:`slow_proxy.SlowProxy` s in front of the session's SQL-layout server:
    ``start(max_rows, delay, max_columns=None)``; stopped after the test."""
    import threading

    from slow_proxy import SlowProxy

    started: list[Any] = []

    def start(max_rows: int, delay: float, max_columns: int | None = None) -> Any:
        proxy = SlowProxy(tiled_server.uri, max_rows, delay, max_columns)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def no_retries() -> Any:
    """tiled's client retries a timed-out or failed request for up to 45 s; once here."""
    import stamina

    stamina.set_testing(True, attempts=1)
    yield
    stamina.set_testing(False)


@pytest.fixture
def open_tiled_broker() -> Any:
    """``Broker`` over the tiled server at a URI (the test key, ``store`` options as keywords),
    its store closed after the test."""
    from tiled_server import broker_config

    opened: list[Broker] = []

    def open_(uri: str, **options: Any) -> Broker:
        opened.append(Broker.from_config(broker_config(uri, **options)))
        return opened[-1]

    yield open_
    for db in opened:
        db.store.close()
