"""Load the real bluesky document streams stored under ``tests/data``.

The files and their provenance are described in ``tests/data/README.md``. Every run is returned
as a :class:`RealRun` whose documents are plain JSON-like Python objects (dicts, lists, str,
int, float, bool, None), in the order they appear in the file.

Usage from a test module in ``tests/``::

    import realdata

    for run in realdata.all_real_runs():
        ...
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"

Document = tuple[str, dict[str, Any]]


@dataclass
class RealRun:
    """One recorded run and the information needed to read it.

    Attributes
    ----------
    name : str
        Short unique id, ``"<set>/<first 8 characters of the start uid>"``.
    uid : str
        The start document's uid.
    documents : list of (str, dict)
        ``(name, doc)`` pairs in file order.
    source_path : str
        Absolute path of the file the run was read from.
    format : str
        ``"jsonl"``, ``"msgpack"`` or ``"apstools-json"``.
    external_root : str or None
        Directory holding this run's external files, or None if the run references none
        that ship with the test data.
    root_map : dict of str to str
        Resource ``root`` -> absolute directory, as a reader of this run's catalog must be
        configured to find the external files. Empty when nothing needs remapping.
    """

    name: str
    uid: str
    documents: list[Document]
    source_path: str
    format: str
    external_root: str | None = None
    root_map: dict[str, str] = field(default_factory=dict)

    @property
    def start(self) -> dict[str, Any]:
        """The run's start document."""
        return self.documents[0][1]

    @property
    def stop(self) -> dict[str, Any] | None:
        """The run's stop document, or None if the run has none."""
        return next((doc for name, doc in self.documents if name == "stop"), None)


def _plain(obj: Any) -> Any:
    """Return ``obj`` with numpy arrays/scalars and tuples turned into lists and numbers."""
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _pair(item: Any) -> Document:
    name, doc = item
    return str(name), doc


def load_jsonl(path: str | Path) -> list[Document]:
    """Read a suitcase-jsonl file: one ``[name, doc]`` JSON array per line.

    Parameters
    ----------
    path : str or Path
        The ``<start uid>.jsonl`` file.

    Returns
    -------
    list of (str, dict)
        The documents in file order.
    """
    with open(path, encoding="utf-8") as file:
        return [_pair(json.loads(line)) for line in file if line.strip()]


def load_msgpack(path: str | Path) -> list[Document]:
    """Read a databroker-pack / suitcase-msgpack file: a stream of ``[name, doc]`` arrays.

    Parameters
    ----------
    path : str or Path
        The ``documents/<start uid>.msgpack`` file.

    Returns
    -------
    list of (str, dict)
        The documents in file order, with any msgpack-numpy arrays turned into lists.
    """
    with open(path, "rb") as file:
        unpacker = msgpack.Unpacker(
            file,
            object_hook=msgpack_numpy.decode,
            raw=False,
            strict_map_key=False,
        )
        return [_pair(_plain(item)) for item in unpacker]


def load_apstools_json(path: str | Path) -> list[list[Document]]:
    """Read an apstools JSON file: a (possibly gzipped) JSON array of ``[name, doc]`` pairs.

    Such a file may hold several runs one after another, so it is split at each start
    document.

    Parameters
    ----------
    path : str or Path
        A ``.json`` or ``.json.gz`` file.

    Returns
    -------
    list of list of (str, dict)
        One document list per run, runs and documents in file order.

    Raises
    ------
    ValueError
        If a document comes before the first start document.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        pairs = [_pair(item) for item in json.load(file)]
    runs: list[list[Document]] = []
    for name, doc in pairs:
        if name == "start":
            runs.append([])
        elif not runs:
            raise ValueError(f"{path}: {name!r} document before any start document")
        runs[-1].append((name, doc))
    return runs


def _catalog_root_map(catalog_dir: Path) -> dict[str, str]:
    """Root map of a databroker-pack catalog, pointing at its own ``external_files``.

    The msgpack catalogs give ``external_files/<hash>`` relative to the catalog, but the jsonl
    catalog gives a path relative to the upstream repository root, so only the last path
    component of each value is trusted.
    """
    config = yaml.safe_load((catalog_dir / "catalog.yml").read_text(encoding="utf-8"))
    (source,) = config["sources"].values()
    root_map = source["args"].get("root_map") or {}
    return {
        root: str(catalog_dir / "external_files" / Path(target).name)
        for root, target in root_map.items()
    }


def _make_run(
    set_name: str, fmt: str, source: Path, docs: list[Document], root_map: dict[str, str]
) -> RealRun:
    uid = docs[0][1]["uid"]
    roots = {doc["root"] for name, doc in docs if name == "resource"}
    mapped = sorted(root_map[root] for root in roots if root in root_map)
    return RealRun(
        name=f"{set_name}/{uid[:8]}",
        uid=uid,
        documents=docs,
        source_path=str(source),
        format=fmt,
        external_root=mapped[0] if mapped else None,
        root_map=dict(root_map),
    )


def _catalog_runs(set_name: str, catalog_dir: Path) -> list[RealRun]:
    root_map = _catalog_root_map(catalog_dir)
    packed = sorted(catalog_dir.glob("documents/*.msgpack"))
    if packed:
        return [_make_run(set_name, "msgpack", p, load_msgpack(p), root_map) for p in packed]
    return [
        _make_run(set_name, "jsonl", p, load_jsonl(p), root_map)
        for p in sorted(catalog_dir.glob("*.jsonl"))
    ]


def _apstools_runs(set_name: str, paths: list[Path]) -> list[RealRun]:
    return [
        _make_run(set_name, "apstools-json", path, docs, {})
        for path in paths
        for docs in load_apstools_json(path)
    ]


def runs_by_set() -> dict[str, list[RealRun]]:
    """Load every run in ``tests/data``, grouped by set name.

    Returns
    -------
    dict of str to list of RealRun
        Set name (the prefix of :attr:`RealRun.name`) -> runs in a stable order.
        The sets are listed in ``tests/data/README.md``.
    """
    pack = DATA_DIR / "databroker-pack"
    aps = DATA_DIR / "apstools"
    tutorials = sorted((DATA_DIR / "bluesky-tutorials" / "example_data").glob("*.jsonl"))
    return {
        "pack-jsonl": _catalog_runs("pack-jsonl", pack / "jsonl_01732a1" / "simple_catalog"),
        "pack-msgpack": (
            _catalog_runs("pack-msgpack", pack / "msgpack_HEAD" / "simple_catalog")
            + _catalog_runs("pack-msgpack", pack / "msgpack_HEAD" / "another_simple_catalog")
        ),
        # the tutorial catalog needs no root map: its 'newton' resources have no files
        "tutorials": [_make_run("tutorials", "jsonl", p, load_jsonl(p), {}) for p in tutorials],
        "apstools-json": _apstools_runs("apstools-json", [aps / "tests" / "apstools.json.gz"]),
        "apstools-msgpack": _catalog_runs(
            "apstools-msgpack", aps / "resources_packs" / "apstools_test"
        ),
        "usaxs-json": _apstools_runs("usaxs-json", [aps / "tests" / "usaxs.json.gz"]),
        "usaxs-msgpack": _catalog_runs("usaxs-msgpack", aps / "resources_packs" / "usaxs_test"),
        "callbacks": _apstools_runs("callbacks", sorted((aps / "callbacks_tests").glob("*.json"))),
        "polar-440": _catalog_runs(
            "polar-440", aps / "callbacks_tests" / "440_specwriter_problem_run"
        ),
    }


def all_real_runs() -> list[RealRun]:
    """Load every run in ``tests/data`` once per stored copy.

    Runs stored in two formats appear twice, under different set names
    (e.g. ``apstools-json/04faecb3`` and ``apstools-msgpack/04faecb3``).

    Returns
    -------
    list of RealRun
        Freshly loaded runs; callers may modify the documents.
    """
    return [run for runs in runs_by_set().values() for run in runs]


def get_run(name: str) -> RealRun:
    """Load one run by its :attr:`RealRun.name`, e.g. ``"tutorials/45243b54"``.

    Raises
    ------
    KeyError
        If no run has that name.
    """
    set_name = name.split("/", 1)[0]
    for run in runs_by_set().get(set_name, []):
        if run.name == name:
            return run
    raise KeyError(name)


# Sets that hold the same runs as JSON `event`s and as msgpack one-row `event_page`s.
PAIRED_SETS = (("apstools-json", "apstools-msgpack"), ("usaxs-json", "usaxs-msgpack"))


def paired_runs() -> list[tuple[RealRun, RealRun]]:
    """Pair the runs stored both as apstools JSON and as msgpack.

    Returns
    -------
    list of (RealRun, RealRun)
        ``(json_run, msgpack_run)`` with equal start uids, in JSON file order.
    """
    sets = runs_by_set()
    pairs = []
    for json_set, msgpack_set in PAIRED_SETS:
        by_uid = {run.uid: run for run in sets[msgpack_set]}
        pairs.extend((run, by_uid[run.uid]) for run in sets[json_set] if run.uid in by_uid)
    return pairs
