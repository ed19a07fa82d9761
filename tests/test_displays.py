"""Notebook displays render with the runtime requirements alone, over every store.

The test venv holds more than ``pip install .`` brings (Sphinx pulls in jinja2, for one), so
the displays are rendered in a subprocess that refuses to import any module outside the
standard library and the distributions broker_v1's runtime requirements resolve to.  Anything
a ``_repr_html_`` needs that only an extra provides by accident fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_modules(dist: metadata.Distribution) -> set[str]:
    """The top-level modules a distribution installs, from its list of files (Python 3.10's
    ``packages_distributions`` reads only ``top_level.txt``, which many wheels lack)."""
    modules = set()
    for file in dist.files or []:
        top = file.parts[0]
        if len(file.parts) == 1:
            if top.endswith((".py", ".so", ".pyd")):
                modules.add(top.split(".")[0])
        elif not top.endswith((".dist-info", ".egg-info", ".data")) and top != "__pycache__":
            modules.add(top)
    return modules


def runtime_modules() -> set[str]:
    """Top-level module names of broker_v1 and every distribution its runtime needs."""
    by_dist: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(_normal(dist), set()).add(module)
    for found in metadata.distributions():
        by_dist.setdefault(_normal(found.metadata["Name"]), set()).update(
            _top_level_modules(found))
    modules = {"broker_v1"}
    seen: set[str] = set()
    todo = ["broker_v1"]
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        modules |= by_dist.get(name, set())
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return modules


_CHILD = textwrap.dedent('''
    import importlib.abc, importlib.machinery, json, site, sys

    allowed = set(json.loads(sys.argv[1]))
    installed = tuple(site.getsitepackages())

    class RuntimeOnly(importlib.abc.MetaPathFinder):
        """Refuses installed top-level modules that no runtime requirement provides."""

        def find_spec(self, name, path=None, target=None):
            if path is not None or name in allowed or name in sys.stdlib_module_names:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name)
            where = (spec.origin or "") if spec else ""
            locations = list(spec.submodule_search_locations or []) if spec else []
            if any(p.startswith(installed) for p in [where, *locations] if p):
                raise ModuleNotFoundError(
                    f"No module named {name!r} (installed, but not a runtime requirement)")
            return None

    sys.meta_path.insert(0, RuntimeOnly())

    import time
    import event_model
    from broker_v1 import Broker

    db = Broker.from_config({"store": json.loads(sys.argv[2])})
    bundle = event_model.compose_run(metadata={"plan_name": "count", "note": "<b>"})
    primary = bundle.compose_descriptor(
        name="primary", data_keys={
            "det": {"source": "s", "dtype": "number", "shape": []},
            "img": {"source": "c", "dtype": "array", "shape": [2, 2], "external": "FILESTORE:"}})
    resource = bundle.compose_resource(spec="NPY_SEQ", root="/r", resource_path="p",
                                       resource_kwargs={})
    datum = resource.compose_datum(datum_kwargs={"index": 0})
    docs = [("start", bundle.start_doc), ("descriptor", primary.descriptor_doc),
            ("resource", resource.resource_doc), ("datum", datum),
            ("event", primary.compose_event(data={"det": 1.0, "img": datum["datum_id"]},
                                            timestamps={"det": time.time(), "img": time.time()},
                                            filled={"img": False})),
            ("stop", bundle.compose_stop())]
    for name, doc in docs:
        db.insert(name, doc)

    h = db[-1]
    shown = {"Header": h, "start": h.start, "stop": h.stop, "descriptor": h.descriptors[0]}
    shown.update({f"get_events {i}": e for i, e in enumerate(db.get_events(h))})
    shown.update({f"documents {n}": d for n, d in h.documents()})
    run = db.v2[h.uid]
    shown.update({"catalog": db.v2, "run": run, "stream": run.primary})
    shown.update({f"v2 {n}": d for n, d in run.documents(fill="no")})
    rendered = {}
    for label, obj in shown.items():
        if hasattr(obj, "_repr_html_"):
            out = obj._repr_html_()
            assert isinstance(out, str) and out.startswith("<"), (label, out)
            assert "<b>" not in out, (label, "values must be escaped")
            rendered[label] = len(out)
    print(json.dumps(sorted(rendered)))
''')


def test_runtime_modules_exclude_the_extras() -> None:
    """The allowed set is the runtime closure: it has event_model, not sphinx or jinja2."""
    modules = runtime_modules()
    assert {"broker_v1", "event_model", "doct", "pandas", "pymongo", "humanize"} <= modules
    assert not {"sphinx", "jinja2", "pytest", "hypothesis"} & modules


def test_every_html_display_renders_on_the_runtime_requirements(store: Any, tmp_path: Path
                                                                ) -> None:
    """Header, its documents, events and replayed documents render in a notebook.

    The subprocess opens the same kind of store (the same directory or database; a memory
    or mongomock store of its own) and records a run with external data into it.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(sorted(runtime_modules())),
         json.dumps(store.config())],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    rendered = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    expected = {"Header", "start", "stop", "descriptor", "get_events 0", "documents start",
                "documents descriptor", "documents resource", "documents datum",
                "documents event", "documents stop"}
    assert expected <= rendered, expected - rendered
