"""A real tiled server for the tests: a SQL catalog filled by a RunEngine through TiledWriter.

The server and the RunEngine run in their own virtual environment (tiled[server], bluesky,
ophyd and bluesky-tiled-plugins pin versions the package's own venv must not be tied to):
``BROKER_V1_TILED_VENV``, else ``.ci/tiled-venv`` (``.ci/run`` builds it).  The server gets a
free loopback port and a catalog in a temporary folder; ``tests/stores/tiled_fill.py`` records
the runs in a subprocess of that venv.
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

CONFIG = """\
authentication: {{single_user_api_key: "{key}", allow_anonymous_access: {anonymous}}}
trees:
  - path: /
    tree: catalog
    args:
      uri: "sqlite:///{data}/catalog.db"
      init_if_not_exists: true
      specs: [{{name: CatalogOfBlueskyRuns, version: "3.0"}}]
      writable_storage: ["{data}/data", "sqlite:///{data}/tabular.db"]
      readable_storage: ["{data}/external"]
media_types:
  BlueskyRun: {{application/json-seq: bluesky_tiled_plugins.exporters:json_seq_exporter}}
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


def server_venv() -> Path | None:
    """The venv holding ``tiled serve`` and the RunEngine, or None when there is none."""
    configured = os.environ.get("BROKER_V1_TILED_VENV")
    venv = Path(configured) if configured else REPO / ".ci" / "tiled-venv"
    return venv if (venv / "bin" / "tiled").exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TiledServer:
    """One ``tiled serve config`` process over a catalog in ``folder``."""

    venv: Path
    folder: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Callers without a key may read (tiled gives them no write scopes).
    anonymous: bool = False
    #: ``(user, password)``: an authentication provider with that one user instead of the
    #: single-user key.
    user: tuple[str, str] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self, timeout: float = 90.0) -> None:
        data = self.folder / "catalog"
        for sub in ("data", "external"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        if self.user is None:
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
             self.uri, API_KEY],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "TMPDIR": str(tmp)})
        if result.returncode != 0:
            raise RuntimeError(f"filling the tiled server failed:\n{result.stderr[-3000:]}")
        self.runs = [json.loads(line) for line in result.stdout.splitlines()
                     if line.startswith("{")]
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
