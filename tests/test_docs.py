"""The documentation in ``docs/``: every example runs, every config shown opens, the site builds.

Conventions the pages follow (and these tests enforce):

* Python examples are doctests (``>>>``), run per page with ``ELLIPSIS`` and
  ``NORMALIZE_WHITESPACE``; each page is self-contained.  A page that needs an optional module
  says so with a reST comment ``.. requires-module: dotted.name`` and is skipped, with that
  reason, when the module cannot be imported.
* There are no un-run Python blocks: ``code-block`` languages are limited to the ones below,
  and a bare ``::`` literal block must hold doctest examples.
* ``.. code-block:: yaml`` blocks parse with the safe loader; those that are whole configs (a
  ``store``, ``metadatastore``/``assets`` or ``sources`` key) are translated and validated as
  ``Broker.from_config`` would.
* ``.. code-block:: console`` blocks are run: each ``$ broker-v1 ...`` line is executed, in a
  fresh folder with no user configs, and must exit with status 0.  Commands shown but not run
  (installation, benchmarks) use ``.. code-block:: sh``.
* ``sphinx-build -W -n`` (warnings are errors, every reference must resolve) succeeds, and the
  API reference documents every name in ``broker_v1.__all__``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

import broker_v1
import broker_v1.stores
from broker_v1._layouts import layout_of, source_names, translate
from broker_v1.config import validate_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: code-block languages allowed on a page; Python must be a doctest instead.
ALLOWED_LANGUAGES = {"yaml", "console", "sh", "text", "javascript", "toml", "ini", "pycon", "none"}

_REQUIRES = re.compile(r"^\.\. requires-module: (\S+)\s*$", re.M)
_DIRECTIVE = re.compile(r"^(\s*)\.\. (code-block|code|sourcecode)::\s*(\S*)\s*$")


def _page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _missing_requirements(text: str) -> list[str]:
    missing = []
    for module in _REQUIRES.findall(text):
        try:
            importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{module} ({err})")
    return missing


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, line number, dedented body)`` of every code-block directive."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip().startswith(":"):  # options (:caption: ...)
            j += 1
        body: list[str] = []
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        width = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
        out.append((m.group(3) or "none", start, "\n".join(b[width:] for b in body).strip("\n")))
        i = j
    return out


def _bare_literal_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, body)`` of every ``::`` literal block (not a directive)."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.endswith("::") or stripped.startswith(".."):
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        if any(b.strip() for b in body):
            out.append((i + 2, "\n".join(body)))
    return out


# --------------------------------------------------------------------------- examples run
def test_there_are_pages() -> None:
    """The docs folder holds the site's pages (a guard against a wrong path)."""
    assert DOCS.joinpath("conf.py").is_file()
    assert len(PAGES) >= 10, [p.name for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``>>>`` example on the page runs and prints what the page shows."""
    text = page.read_text(encoding="utf-8")
    missing = _missing_requirements(text)
    if missing:
        pytest.skip(f"{_page_id(page)} needs {', '.join(missing)}")
    # Examples that write files write into a fresh folder; no user config is visible, and
    # whatever a page does to the environment is undone afterwards.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(tmp_path / "no-configs"))
    for var in ("DATABROKER_CONFIG_PATH", "INTAKE_PATH"):
        monkeypatch.delenv(var, raising=False)
    # A page may register a store backend (stores/third-party.rst); keep that to the page.
    for registry in ("_registered", "_loaded"):
        monkeypatch.setattr(broker_v1.stores, registry, dict(getattr(broker_v1.stores, registry)))
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"__name__": "__main__"}, _page_id(page), str(page), 0)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) failed in {page}:\n{out.getvalue()}"


def test_every_guide_page_has_examples() -> None:
    """Pages that explain the API show it working (at least one doctest each)."""
    exempt = {"index.rst", "cli.rst", "performance.rst", "api"}
    for page in PAGES:
        rel = _page_id(page)
        if rel in exempt or rel.split("/")[0] in exempt or rel.endswith("/index.rst"):
            continue
        assert ">>> " in page.read_text(encoding="utf-8"), f"{rel} has no doctest examples"


# --------------------------------------------------------------------------- nothing un-run
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_unexecuted_python(page: Path) -> None:
    """Python appears only as doctests, so nothing shown can silently rot."""
    text = page.read_text(encoding="utf-8")
    for language, line, body in _blocks(text):
        assert language in ALLOWED_LANGUAGES, (
            f"{page}:{line}: code-block language {language!r}; write Python as a doctest "
            f"(>>>) and use one of {sorted(ALLOWED_LANGUAGES)} for other text"
        )
        if language == "pycon":
            assert ">>>" in body, f"{page}:{line}: a pycon block without >>> examples"
    for line, body in _bare_literal_blocks(text):
        assert ">>>" in body, (
            f"{page}:{line}: a '::' literal block without doctest examples; use "
            "'.. code-block:: text' (or yaml, sh, console) for text that is not Python"
        )


# --------------------------------------------------------------------------- configs shown
def _yaml_blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for language, line, body in _blocks(page.read_text(encoding="utf-8")):
            if language == "yaml":
                found.append((f"{_page_id(page)}:{line}", body))
    return found


@pytest.mark.parametrize("where,body", _yaml_blocks(), ids=[w for w, _ in _yaml_blocks()])
def test_yaml_configs_are_valid(where: str, body: str, tmp_path: Path) -> None:
    """Each YAML block parses; each whole config in it translates and validates."""
    config = yaml.safe_load(body)
    assert config is not None, f"{where}: empty YAML block"
    if not isinstance(config, dict) or not ({"store", "metadatastore", "assets", "sources"}
                                            & set(config)):
        return  # a fragment (one section of a config), shown for its shape
    source = str(tmp_path / "example.yml")
    entries = source_names(config) if layout_of(config) == "intake" else [None]
    for entry in entries:
        validate_config(translate(config, source=source, entry=entry), source=source)


# --------------------------------------------------------------------------- commands shown
def _console_commands() -> list[tuple[str, list[list[str]]]]:
    found = []
    for page in PAGES:
        for language, line, body in _blocks(page.read_text(encoding="utf-8")):
            if language != "console":
                continue
            commands = [shlex.split(cmd[2:]) for cmd in body.splitlines()
                        if cmd.startswith("$ ")]
            found.append((f"{_page_id(page)}:{line}", commands))
    return found


@pytest.mark.parametrize("where,commands", _console_commands(),
                         ids=[w for w, _ in _console_commands()])
def test_console_blocks_run(where: str, commands: list[list[str]], tmp_path: Path) -> None:
    """Each ``$ broker-v1 ...`` command shown in a console block exits with status 0."""
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "BROKER_V1_CONFIG_PATH": str(tmp_path / "no-configs"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "100",
    }
    env.pop("DATABROKER_CONFIG_PATH", None)
    env.pop("INTAKE_PATH", None)
    assert commands, f"{where}: a console block with no '$ ' command"
    for argv in commands:
        assert argv[0] == "broker-v1", f"{where}: console blocks may only run broker-v1: {argv}"
        done = subprocess.run([sys.executable, "-m", "broker_v1", *argv[1:]], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (
            f"{where}: {shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )


def test_benchmark_commands_exist() -> None:
    """Every ``python benchmarks/...`` command the docs name is a script in the repository."""
    named = set()
    for page in PAGES:
        named.update(re.findall(r"python3? (benchmarks/\w+\.py)", page.read_text("utf-8")))
    assert named, "the performance page names no benchmark command"
    for script in sorted(named):
        assert (ROOT / script).is_file(), f"docs name {script}, which does not exist"


# --------------------------------------------------------------------------- the site builds
def _require_sphinx() -> None:
    for module, package in (("sphinx", "sphinx"), ("numpydoc", "numpydoc"),
                            ("sphinx_click", "sphinx-click")):
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"{package} is not installed; install the docs extra "
                        "(pip install -e '.[docs]') to build the documentation")


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W -n`` succeeds and the API reference covers ``broker_v1.__all__``."""
    _require_sphinx()
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout}\n{done.stderr}"
    # objects.inv: four header lines, then zlib-compressed "name domain:role prio uri text".
    raw = (out / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode("utf-8")
    documented = {line.split(" ", 1)[0] for line in body.splitlines() if " py:" in line}
    public = [n for n in broker_v1.__all__ if not n.startswith("__")]
    missing = [n for n in public
               if not any(d == f"broker_v1.{n}" or d.endswith(f".{n}") for d in documented)]
    assert not missing, f"not in the API reference: {missing}"
