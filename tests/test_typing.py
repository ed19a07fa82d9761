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

ROOT = Path(__file__).resolve().parent.parent


def run_mypy(*targets: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """mypy on ``targets`` (paths relative to the repository), with the project's config."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary",
         *targets],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )


def test_the_package_type_checks_strictly(tmp_path: Path) -> None:
    result = run_mypy("broker_v1", cache=tmp_path / "cache")
    assert result.returncode == 0, (
        "mypy found type errors in broker_v1 (fix the code or its hints; run "
        f"'python -m mypy broker_v1'):\n{result.stdout}{result.stderr}"
    )


def test_the_check_is_strict(tmp_path: Path) -> None:
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
    result = run_mypy(str(package), cache=tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[no-untyped-def]" in result.stdout, result.stdout
    assert "[no-any-return]" in result.stdout, result.stdout
