"""Real tiled servers for the tests, in both layouts a v1 user meets.

* ``layout="sql"``: a SQL catalog filled by a RunEngine through TiledWriter
  (``tests/stores/tiled_fill.py`` records the runs in a subprocess of the server's venv).
* ``layout="mongo"``: databroker 2's ``MongoAdapter`` over a database of the MongoDB
  wire-protocol test server, holding documents written by broker_v1's own Mongo store
  (:meth:`TiledServer.fill_mongo`).

The servers run in their own virtual environment (tiled[server], bluesky, ophyd,
bluesky-tiled-plugins and databroker[server] pin versions the package's own venv must not be
tied to): ``BROKER_V1_TILED_VENV``, else ``.ci/tiled-venv`` (``.ci/run`` builds it).  Each
server gets a free loopback port and its files in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
API_KEY = "brokerv1testkey"  # tiled accepts only alphanumeric keys

# The SQL catalog TiledWriter writes into (both SQL-layout configs serve it).
_SQL_TREES = """\
trees:
  - path: /
    tree: catalog
    args:
      uri: "sqlite:///{data}/catalog.db"
      init_if_not_exists: true
      specs: [{{name: CatalogOfBlueskyRuns, version: "3.0"}}]
      writable_storage: ["{data}/data", "sqlite:///{data}/tabular.db"]
      readable_storage: ["{data}/external"]
"""

CONFIG = """\
authentication: {{single_user_api_key: "{key}", allow_anonymous_access: {anonymous}}}
""" + _SQL_TREES + """\
media_types:
  BlueskyRun: {{application/json-seq: bluesky_tiled_plugins.exporters:json_seq_exporter}}
"""

# databroker 2's adapter over the normalized Mongo layout (root spec CatalogOfBlueskyRuns 1).
MONGO_CONFIG = """\
authentication: {{single_user_api_key: "{key}", allow_anonymous_access: false}}
trees:
  - path: /
    tree: databroker.mongo_normalized:MongoAdapter.from_uri
    args:
      uri: "{mongo_uri}"
"""


# A server with an authentication provider (tiled's test-only dictionary of passwords): keys
# are made per user with chosen scopes, as at a facility.
AUTH_CONFIG = """\
authentication:
  providers:
    - provider: toy
      authenticator: tiled.authenticators:DictionaryAuthenticator
      args:
        users_to_passwords: {{{user}: "{password}"}}
  secret_keys: ["{secret}"]
  allow_anonymous_access: false
database:
  uri: "sqlite:///{data}/auth.db"
  init_if_not_exists: true
""" + _SQL_TREES


def broker_config(uri: str, **options: Any) -> dict[str, Any]:
    """A broker_v1 config whose store reads the tiled server at ``uri`` with the test key."""
    return {"store": {"backend": "tiled", "uri": uri, "api_key": API_KEY, **options},
            "timezone": "US/Eastern"}


def server_venv() -> Path | None:
    """The venv holding ``tiled serve`` and the RunEngine, or None when there is none."""
    configured = os.environ.get("BROKER_V1_TILED_VENV")
    venv = Path(configured) if configured else REPO / ".ci" / "tiled-venv"
    return venv if (venv / "bin" / "tiled").exists() else None


def has_databroker(venv: Path) -> bool:
    """Whether the server venv holds databroker 2 (its MongoAdapter serves the Mongo layout)."""
    return any(venv.glob("lib/python*/site-packages/databroker/mongo_normalized.py"))


def array_run_documents() -> list[tuple[str, dict[str, Any]]]:
    """A stopped run with an in-event 2x3 array and a configuration update (a second
    ``primary`` descriptor), for the Mongo layout (conftest's sample runs have neither)."""
    import event_model

    t0 = 1_700_001_000.0
    bundle = event_model.compose_run(uid="feed0001-0000-4000-8000-000000000001", time=t0,
                                     metadata={"plan_name": "count", "scan_id": 9,
                                               "detectors": ["cam"]})
    docs: list[tuple[str, dict[str, Any]]] = [("start", bundle.start_doc)]
    data_keys = {"frame": {"source": "SIM:frame", "dtype": "array", "shape": [2, 3]},
                 "gain": {"source": "SIM:gain", "dtype": "integer", "shape": []}}
    for n, gain in enumerate((1, 2)):
        descriptor = bundle.compose_descriptor(
            name="primary", data_keys=data_keys, time=t0 + 10 * n + 0.1,
            object_keys={"cam": ["frame", "gain"]},
            configuration={"cam": {"data": {"cam_gain": gain},
                                   "timestamps": {"cam_gain": t0 + 10 * n},
                                   "data_keys": {"cam_gain": {"source": "SIM:g",
                                                              "dtype": "integer",
                                                              "shape": []}}}})
        docs.append(("descriptor", descriptor.descriptor_doc))
        for i in range(2):
            frame = [[gain * (i + r + c) for c in range(3)] for r in range(2)]
            t = t0 + 10 * n + 1 + i
            docs.append(("event", descriptor.compose_event(
                data={"frame": frame, "gain": gain}, timestamps={"frame": t, "gain": t},
                time=t, seq_num=2 * n + i + 1)))
    docs.append(("stop", bundle.compose_stop(time=t0 + 30)))
    return docs


#: Where the NPY_SEQ image run's resource says its files are (a beamline path that does not
#: exist here): readers find them through ``root_map`` (:attr:`TiledServer.root_map`).
IMAGE_ROOT = "/nsls2/data/xf99/assets"


def npy_image_run_documents(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """A stopped ``count`` of five 6x8 frames of an NPY_SEQ detector (one ``.npy`` file per
    frame, written into ``folder/cam``) with a resource and one datum per event, as a
    registry-backed detector records them; its root is :data:`IMAGE_ROOT`, so reading the
    frames needs ``root_map={IMAGE_ROOT: folder}``."""
    import event_model
    import numpy as np

    (folder / "cam").mkdir(parents=True, exist_ok=True)
    t0 = 1_700_000_500.0
    bundle = event_model.compose_run(uid="cafe0001-0000-4000-8000-000000000005", time=t0,
                                     metadata={"plan_name": "scan", "scan_id": 5,
                                               "detectors": ["cam"]})
    docs: list[tuple[str, dict[str, Any]]] = [("start", bundle.start_doc)]
    descriptor = bundle.compose_descriptor(
        name="primary", time=t0 + 0.1, object_keys={"cam": ["img", "cam_stats"]},
        data_keys={"img": {"source": "SIM:img", "dtype": "array", "shape": [6, 8],
                           "external": "FILESTORE:"},
                   "cam_stats": {"source": "SIM:stats", "dtype": "number", "shape": []}})
    docs.append(("descriptor", descriptor.descriptor_doc))
    resource = bundle.compose_resource(spec="NPY_SEQ", root=IMAGE_ROOT,
                                       resource_path="cam/img", resource_kwargs={})
    docs.append(("resource", resource.resource_doc))
    for i in range(5):
        frame = np.arange(48, dtype=float).reshape(6, 8) * (i + 1)
        np.save(folder / "cam" / f"img_{i}.npy", frame)
        datum = resource.compose_datum(datum_kwargs={"index": i})
        docs.append(("datum", datum))
        t = t0 + 1 + i
        docs.append(("event", descriptor.compose_event(
            data={"img": datum["datum_id"], "cam_stats": float(frame.sum())},
            timestamps={"img": t, "cam_stats": t}, time=t, seq_num=i + 1,
            filled={"img": False})))
    docs.append(("stop", bundle.compose_stop(time=t0 + 10)))
    return docs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TiledServer:
    """One ``tiled serve config`` process over a catalog in ``folder`` (``layout="sql"``) or
    over the MongoDB database ``mongo_uri`` (``layout="mongo"``)."""

    venv: Path
    folder: Path
    layout: str = "sql"
    mongo_uri: str | None = None
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    mongo_runs: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Callers without a key may read (tiled gives them no write scopes).
    anonymous: bool = False
    #: ``(user, password)``: an authentication provider with that one user instead of the
    #: single-user key.
    user: tuple[str, str] | None = None
    #: How readers find the external files of :attr:`mongo_runs` (``root_map``).
    root_map: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def external(self) -> Path:
        """Where the image detector writes its files (inside the server's readable_storage)."""
        return self.folder / "catalog" / "external" / "img"

    @property
    def documents(self) -> Path:
        """The image run's documents as the RunEngine emitted them (JSON ``[name, doc]`` lines)."""
        return self.folder / "image-run.jsonl"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self, timeout: float = 90.0) -> None:
        data = self.folder / "catalog"
        for sub in ("data", "external"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        if self.layout == "mongo":
            config.write_text(MONGO_CONFIG.format(key=API_KEY, mongo_uri=self.mongo_uri))
        elif self.user is None:
            config.write_text(CONFIG.format(key=API_KEY, data=data,
                                             anonymous=str(self.anonymous).lower()))
        else:
            config.write_text(AUTH_CONFIG.format(user=self.user[0], password=self.user[1],
                                                 secret=os.urandom(24).hex(), data=data))
        t0 = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "tiled"), "serve", "config", str(config),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tiled serve exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/api/v1/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"tiled serve did not answer within {timeout} s: "
                               f"{self.log.read_text()[-3000:]}")
        self.timings["start"] = time.monotonic() - t0

    def fill(self) -> None:
        """Record the runs of ``tests/stores/tiled_fill.py`` (a real RunEngine)."""
        t0 = time.monotonic()
        tmp = self.folder / "tmp"  # ophyd.sim makes temporary folders on import
        tmp.mkdir(exist_ok=True)
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), str(REPO / "tests" / "stores" / "tiled_fill.py"),
             self.uri, API_KEY, str(self.external), str(self.documents)],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "TMPDIR": str(tmp)})
        if result.returncode != 0:
            raise RuntimeError(f"filling the tiled server failed:\n{result.stderr[-3000:]}")
        self.runs = [json.loads(line) for line in result.stdout.splitlines()
                     if line.startswith("{")]
        self.timings["fill"] = time.monotonic() - t0

    def fill_mongo(self, runs: list[list[tuple[str, dict[str, Any]]]]) -> None:
        """Write ``runs`` (each a list of ``(name, doc)``) into ``mongo_uri`` with broker_v1's
        own Mongo store, which writes the normalized layout the MongoAdapter serves; they are
        kept in :attr:`mongo_runs` for the tests to compare with."""
        from broker_v1.stores.mongo import MongoStore

        t0 = time.monotonic()
        with MongoStore(uri=self.mongo_uri) as store:
            for docs in runs:
                for name, doc in docs:
                    store.insert(name, doc)
        self.mongo_runs = runs
        self.runs = [{"uid": docs[0][1]["uid"], "scan_id": docs[0][1].get("scan_id"),
                      "plan_name": docs[0][1]["plan_name"]} for docs in runs]
        self.timings["fill"] = time.monotonic() - t0

    def api_key(self, scopes: list[str]) -> str:
        """A new API key of :attr:`user` with these scopes (log in, then ask for the key)."""
        import httpx

        user, password = self.user or ("", "")
        base = self.uri + "/api/v1/auth"
        token = httpx.post(f"{base}/provider/toy/token",
                           data={"username": user, "password": password}).json()
        made = httpx.post(f"{base}/apikey", json={"scopes": scopes, "expires_in": 3600},
                          headers={"Authorization": f"Bearer {token['access_token']}"})
        made.raise_for_status()
        return str(made.json()["secret"])

    def stop(self) -> None:
        """SIGTERM the server's process group (it leads its own) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None
