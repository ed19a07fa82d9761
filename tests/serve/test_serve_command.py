"""``broker-v1 serve`` as a real subprocess on a free port, read over HTTP.

One server per module (a files store holding the conftest sample runs), read with tiled's
client + bluesky-tiled-plugins and with broker_v1's own ``tiled`` store, whose answers must
equal the files store read directly.  The last test stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas
import pytest

pytest.importorskip("tiled.server", reason='the serve extra is not installed '
                    '(pip install -e ".[test,serve]")')
pytest.importorskip("bluesky_tiled_plugins", reason="bluesky-tiled-plugins is not installed")

from conftest import SampleRun, insert_all, sample_runs  # noqa: E402

from broker_v1 import Broker  # noqa: E402
from broker_v1.stores import store_from_config  # noqa: E402

KEY = "servecommandkey"

#: Run by databroker 2's v1 shim in its own venv: reads the server, prints JSON.
SHIM = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from tiled.client import from_uri
client = from_uri(sys.argv[1], api_key=sys.argv[2])
db = client.v1
h = db[-1]
print(json.dumps({
    "last": h.start["uid"], "scan_id_2": db[2].start["uid"],
    "prefix": db["abcdef01"].start["uid"],
    "search": sorted(x.start["uid"] for x in db(plan_name="scan")),
    "stop": dict(h.stop),
    "det": db.get_table(h)["det"].tolist(),
    "baseline": db.get_table(h, stream_name="baseline")["temp"].tolist(),
    "documents": [name for name, doc in h.documents()],
    "events": [e["uid"] for e in db.get_events(h)],
}))
client.context.close()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "broker_v1", "serve", *args], env=env,
                            stdin=subprocess.DEVNULL, **kwargs)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BROKER_V1_SERVE_API_KEY", "TILED_API_KEY")}
    return {**env, **extra}


@dataclass
class Server:
    """A running ``broker-v1 serve DIR`` and what it serves."""

    proc: subprocess.Popen[bytes]
    url: str
    folder: Path
    runs: list[SampleRun]
    log: Path
    startup: float


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``broker-v1 serve`` over a files store with the sample runs, per module."""
    tmp = tmp_path_factory.mktemp("serve-command")
    folder = tmp / "runs"
    store = store_from_config({"backend": "files", "path": str(folder)})
    runs = sample_runs()
    insert_all(store, runs)
    store.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = _command(str(folder), "--port", str(port),
                        env=_env(BROKER_V1_SERVE_API_KEY=KEY), stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, url, log)
        yield Server(proc, url, folder, runs, log, time.monotonic() - t0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_tiled_client_reads_the_served_store(server: Server) -> None:
    """from_uri(url, api_key=...) is a CatalogOfBlueskyRuns whose c[-1] is the newest run."""
    from tiled.client import from_uri

    print(f"broker-v1 serve answered {server.startup:.1f} s after launch")
    client = from_uri(server.url, api_key=KEY)
    try:
        assert type(client).__name__ == "CatalogOfBlueskyRuns"
        newest = client[-1]
        assert newest.start["uid"] == server.runs[-1].uid
        assert list(newest["primary"].read()["det"].values) == [0.0, 10.0, 20.0, 30.0, 40.0]
    finally:
        client.context.close()


def test_no_key_is_401(server: Server) -> None:
    """A request without the key is refused with 401."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/api/v1/metadata/", timeout=10)
    caught.value.close()
    assert caught.value.code == 401


def test_tiled_store_reads_what_the_files_store_holds(server: Server) -> None:
    """broker_v1's tiled store over the server answers as the files store read directly."""
    remote = Broker(store_from_config({"backend": "tiled", "uri": server.url, "api_key": KEY}),
                    timezone="US/Eastern")
    local = Broker(store_from_config({"backend": "files", "path": str(server.folder),
                                      "read_only": True}), timezone="US/Eastern")
    try:
        assert [h.start["uid"] for h in remote()] == [h.start["uid"] for h in local()]
        assert [h.start["uid"] for h in remote(plan_name="scan")] == \
            [h.start["uid"] for h in local(plan_name="scan")]
        assert remote[-1].start == local[-1].start
        assert remote["abcdef01"].start["uid"] == server.runs[0].uid
        assert remote[2].start == local[2].start
        for run in server.runs:
            r, h = remote[run.uid], local[run.uid]
            assert r.start == h.start
            assert r.stop == h.stop
            assert r.stream_names == h.stream_names
            for stream in h.stream_names:
                # External fields (the image run's 'img') are not served in this version.
                expected = local.get_table(h, stream_name=stream).drop(columns=["img"],
                                                                         errors="ignore")
                got = remote.get_table(r, stream_name=stream).drop(columns=["img"],
                                                                     errors="ignore")
                assert list(got.columns) == list(expected.columns), (run.uid, stream)
                pandas.testing.assert_frame_equal(got, expected)
    finally:
        remote.store.close()
        local.store.close()


def _shim_python() -> Path | None:
    configured = os.environ.get("BROKER_V1_SHIM_VENV")
    venv = Path(configured) if configured else Path(__file__).parents[2] / ".ci" / "tiled-venv"
    python = venv / "bin" / "python"
    return python if python.exists() else None


def test_databroker2_v1_shim_reads_it(server: Server) -> None:
    """databroker 2's v1 shim (from_uri(url).v1, its own venv) reads what the store holds."""
    python = _shim_python()
    if python is None:
        pytest.skip("no databroker 2 venv: set BROKER_V1_SHIM_VENV or build .ci/tiled-venv "
                    "(it holds databroker[server,back-compat]==2.0.2; .ci/run builds it)")
    done = subprocess.run([str(python), "-c", SHIM, server.url, KEY], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    got = json.loads(done.stdout.strip().splitlines()[-1])
    local = Broker(store_from_config({"backend": "files", "path": str(server.folder),
                                      "read_only": True}))
    try:
        h = local[-1]
        assert got["last"] == h.start["uid"]
        assert got["scan_id_2"] == local[2].start["uid"]
        assert got["prefix"] == server.runs[0].uid
        assert got["search"] == sorted(x.start["uid"] for x in local(plan_name="scan"))
        assert got["stop"] == local.store.get_run_stop(h.start["uid"])
        assert got["det"] == local.get_table(h)["det"].tolist()
        assert got["baseline"] == local.get_table(h, stream_name="baseline")["temp"].tolist()
        assert got["documents"] == [name for name, _ in h.documents()]
        assert got["events"] == [e["uid"] for e in local.get_events(h)]
    finally:
        local.store.close()


def test_refuses_without_a_key(tmp_path: Path) -> None:
    """Without --api-key, the environment variable or --public, it refuses (exit 2)."""
    proc = _command(str(tmp_path), "--port", str(_free_port()), env=_env(),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"refusing to serve without an API key" in err
    both = _command(str(tmp_path), "--api-key", KEY, "--public", env=_env(),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = both.communicate(timeout=60)
    assert both.returncode == 2
    assert b"either --api-key or --public, not both" in err


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            pytest.fail(f"broker-v1 serve exited ({proc.returncode}): {log.read_text()}")
        if time.monotonic() - t0 > 120:
            pytest.fail(f"broker-v1 serve did not answer in 120 s: {log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/api/v1/", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)


def test_workers_serve_the_same_store_publicly(server: Server, tmp_path: Path) -> None:
    """--workers 2 --public: worker processes rebuild the app; anonymous clients read it."""
    from tiled.client import from_uri

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "workers.log"
    with open(log, "wb") as out:
        proc = _command(str(server.folder), "--port", str(port), "--workers", "2", "--public",
                        env=_env(), stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True)
    try:
        _wait_ready(proc, url, log)
        client = from_uri(url)
        try:
            assert client[-1].start["uid"] == server.runs[-1].uid
            assert client[2].start["uid"] == server.runs[2].uid
        finally:
            client.context.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_a_runengine_recording_meanwhile_is_read_by_connected_clients(
        server: Server, tmp_path: Path) -> None:
    """A real RunEngine records into the served directory (``RE.subscribe(db.insert)``)
    while a client stays connected: each run is readable by its uid while it runs, is the
    client's ``c[-1]`` once stopped (within the server's 1 s freshness) and its primary and
    baseline tables equal the files store's, with no restart.  (Runs last in the module:
    the earlier tests count on the sample runs being the newest.)"""
    pytest.importorskip("bluesky", reason='bluesky is in the test extra (pip install -e ".[test]")')
    pytest.importorskip("ophyd", reason='ophyd is in the test extra (pip install -e ".[test]")')
    import tempfile

    from tiled.client import from_uri

    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path)  # ophyd.sim's import-time folders
    try:
        from bluesky import RunEngine
        from bluesky.plans import scan
        from bluesky.preprocessors import SupplementalData
        from ophyd.sim import det, motor, motor1
    finally:
        tempfile.tempdir = saved

    db = Broker.from_config({"store": {"backend": "files", "path": str(server.folder)}})
    client = from_uri(server.url, api_key=KEY)
    seen_while_running: dict[str, Any] = {}  # run uid -> (its start uid, its stop) as served

    def read_the_open_run(name: str, doc: dict[str, Any]) -> None:
        if name == "event" and doc["seq_num"] == 2:
            run_uid = db.store.get_descriptor(doc["descriptor"])["run_start"]
            if run_uid not in seen_while_running:
                run = client[run_uid]
                seen_while_running[run_uid] = (run.start["uid"], run.stop)

    RE = RunEngine({})
    RE.preprocessors.append(SupplementalData(baseline=[motor1]))
    RE.subscribe(db.insert)
    RE.subscribe(read_the_open_run)  # after db.insert: the event is stored when it runs
    try:
        before = len(client)
        uids = []
        for points in (3, 5):
            (uid,) = RE(scan([det], motor, -1, 1, points), purpose="served while recording")
            uids.append(uid)
            deadline = time.monotonic() + 15
            while client[-1].start["uid"] != uid and time.monotonic() < deadline:
                time.sleep(0.2)
            newest = client[-1]
            assert newest.start["uid"] == uid
            assert newest.stop["exit_status"] == "success"
            primary = newest["primary"].read()
            table = db.get_table(db[uid])
            assert list(primary["det"].values) == table["det"].tolist()
            assert list(primary["motor"].values) == table["motor"].tolist()
            baseline = newest["baseline"].read()
            assert list(baseline["motor1"].values) == \
                db.get_table(db[uid], stream_name="baseline")["motor1"].tolist()
        assert seen_while_running == {uid: (uid, None) for uid in uids}
        assert len(client) == before + 2
    finally:
        client.context.close()
        db.store.close()


def test_sigterm_stops_the_server(server: Server) -> None:
    """SIGTERM ends the server promptly; the key never appears in its output.

    uvicorn shuts down gracefully, then re-raises the signal it caught, so the status is
    -SIGTERM (what a service manager expects of a process it stopped), not 0.
    """
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == -signal.SIGTERM
    log = server.log.read_text()
    assert KEY not in log
    assert "Traceback" not in log
    assert f"files store {server.folder}" in log
