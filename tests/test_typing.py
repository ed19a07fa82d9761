"""broker_v1's type hints are checked, not only written: ``mypy`` finds nothing in the package
under setup.cfg's ``[mypy]`` (strict everywhere).

The verdict must not depend on which extras are installed: where tiled, its server's libraries
or dask are missing, mypy reads them as ``Any``, and the package still checks clean (the
check was run both ways when it was added).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for this module's checks: broker_v1 is analysed once, not per test."""
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(*targets: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """mypy on ``targets`` (paths relative to the repository), with the project's config."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary",
         *targets],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )


def test_the_package_type_checks_strictly(cache: Path) -> None:
    result = run_mypy("broker_v1", cache=cache)
    assert result.returncode == 0, (
        "mypy found type errors in broker_v1 (fix the code or its hints; run "
        f"'python -m mypy broker_v1'):\n{result.stdout}{result.stderr}"
    )


def test_the_check_is_strict(tmp_path: Path, cache: Path) -> None:
    """The config the check above uses refuses what only strict mode refuses: a function
    without hints, and a typed function returning ``Any``."""
    package = tmp_path / "broker_v1_probe"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import json\n\n\n"
        "def untyped(value):\n    return value\n\n\n"
        "def returns_any(text: str) -> dict[str, int]:\n    return json.loads(text)\n",
        encoding="utf-8",
    )
    result = run_mypy(str(package), cache=cache)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[no-untyped-def]" in result.stdout, result.stdout
    assert "[no-any-return]" in result.stdout, result.stdout


#: What beamline scripts do with the v1 API and the v2 catalog (never run, only checked).
USERS_SCRIPT = '''
import numpy as np

from broker_v1 import Broker

db = Broker.named("temp")
h = db[-1]
uid: str = h["start"]["uid"]
print(h.start["scan_id"], h.stop.get("exit_status"), db[np.int64(3)].start, db["3f2a"].uid)
for header in db(plan_name="scan", since="2020-01-01"):
    print(header.start.uid)
for header in db[-5:]:
    print(header["start"]["uid"], header.table().shape)
print(db[[1, 2]][0].uid, db[(1, "3f2a")][1].start)
table = db.get_table(h, stream_name="primary", fields=["det"])
print(table["det"].mean(), h.table(stream_name="baseline", fill=True).index)
for name, doc in db.get_documents(h):
    print(name, doc["uid"])
print(list(db.get_events(h, fill=False)), len(db.get_images(h, "img")))
print(h.fields(), h.descriptors[0]["data_keys"], h.stream_names, h.config_data("det"))
print(db.stream_names_given_header(h), db.get_fields(h))
db.add_filter(user="x")
db.clear_filters()
db.insert("start", {"uid": "x", "time": 0.0})
catalog = db.v2
print(catalog[-1].metadata["start"]["uid"], catalog[-1].primary.read()["det"].values)
for key, run in catalog.search({"plan_name": "scan"}).items():
    print(key, run.metadata["stop"])
'''


def test_a_users_v1_script_type_checks(tmp_path: Path, cache: Path) -> None:
    """broker_v1's hints let a user's strictly checked script use the v1 API as the docs show
    it: ``db[-1]`` is a Header (a slice or a list of keys gives a list of them), and so on."""
    script = tmp_path / "beamline_script.py"
    script.write_text(USERS_SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
         "--no-error-summary", str(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
