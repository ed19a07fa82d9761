"""Checks that the real-data corpus in tests/data loads as README.md describes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import event_model
import msgpack
import msgpack_numpy
import numpy as np
import pytest
import realdata

# Runs whose file holds just that run, so the file name carries the start uid.
SINGLE_RUN_SETS = {
    "pack-jsonl",
    "pack-msgpack",
    "tutorials",
    "apstools-msgpack",
    "usaxs-msgpack",
    "callbacks",
    "polar-440",
}


@pytest.fixture(scope="module")
def runs() -> list[realdata.RealRun]:
    return realdata.all_real_runs()


def _stream_counts(run: realdata.RealRun) -> Counter[str]:
    """Number of event rows per stream name, counting every row of an event_page."""
    streams: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for name, doc in run.documents:
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event":
            counts[streams[doc["descriptor"]]] += 1
        elif name == "event_page":
            counts[streams[doc["descriptor"]]] += len(doc["seq_num"])
    return counts


def _events(run: realdata.RealRun) -> list[dict[str, Any]]:
    """All events of a run as single events, pages unpacked, in file order."""
    events: list[dict[str, Any]] = []
    for name, doc in run.documents:
        if name == "event":
            events.append(doc)
        elif name == "event_page":
            events.extend(event_model.unpack_event_page(doc))
    return events


def _readme_counts() -> dict[str, tuple[str, int]]:
    """Parse the run-count table of tests/data/README.md: set -> (format, runs)."""
    text = (realdata.DATA_DIR / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+)` \| ([\w-]+) \| `[^`]+` \| (\d+) \|", text, re.MULTILINE)
    return {set_name: (fmt, int(count)) for set_name, fmt, count in rows}


def test_run_counts_match_readme(runs):
    """Each set holds as many runs, in the format, as the README's count table says."""
    expected = _readme_counts()
    found: dict[str, tuple[str, int]] = {}
    for run in runs:
        set_name = run.name.split("/")[0]
        fmt, count = found.get(set_name, (run.format, 0))
        assert fmt == run.format, run.name
        found[set_name] = (fmt, count + 1)
    assert found == expected
    assert sum(count for _, count in expected.values()) == 160


def test_names_are_unique(runs):
    """Every run has its own name, and a uid appears at most once per set."""
    assert len({run.name for run in runs}) == len(runs)
    assert len({(run.name.split("/")[0], run.uid) for run in runs}) == len(runs)


def test_start_uid_matches_file_name(runs):
    """Every run opens with its only start document, whose uid the per-run file name carries."""
    checked = 0
    for run in runs:
        names = [name for name, _ in run.documents]
        assert names[0] == "start" and names.count("start") == 1, run.name
        assert run.uid == run.start["uid"]
        if run.name.split("/")[0] in SINGLE_RUN_SETS:
            stem = Path(run.source_path).name.split(".")[0]
            # callbacks files are named like 'uid-b31e8698' or 'hklpy-26aac337'
            assert stem == run.uid or stem.split("-", 1)[-1] == run.uid[:8], run.name
            checked += 1
    assert checked == 97


def test_msgpack_manifests_list_every_run(runs):
    """Each packed catalog's documents_manifest.txt names exactly the runs loaded from it."""
    by_catalog: dict[Path, set[str]] = {}
    for run in runs:
        if run.format == "msgpack":
            catalog = Path(run.source_path).parent.parent
            by_catalog.setdefault(catalog, set()).add(f"documents/{run.uid}.msgpack")
    assert len(by_catalog) == 5
    for catalog, expected in by_catalog.items():
        manifest = (catalog / "documents_manifest.txt").read_text(encoding="utf-8").split()
        assert set(manifest) == expected, catalog


def test_documents_reference_earlier_parents(runs):
    """Every event/datum (or page) names a descriptor/resource seen earlier in the same run."""
    for run in runs:
        descriptors: set[str] = set()
        resources: set[str] = set()
        for name, doc in run.documents:
            if name in ("descriptor", "resource", "stop"):
                assert doc["run_start"] == run.uid, run.name
            if name == "descriptor":
                descriptors.add(doc["uid"])
            elif name == "resource":
                resources.add(doc["uid"])
            elif name in ("event", "event_page"):
                assert doc["descriptor"] in descriptors, run.name
            elif name in ("datum", "datum_page"):
                assert doc["resource"] in resources, run.name
        if run.stop is not None:
            assert run.documents[-1] == ("stop", run.stop), run.name


def test_event_counts_match_stop_except_known_quirk(runs):
    """Event rows per stream equal the stop's num_events, except in run 3e89a55c (no descriptor)."""
    mismatched = set()
    for run in runs:
        if run.stop is None:
            continue
        expected = {key: value for key, value in run.stop["num_events"].items() if value}
        if dict(_stream_counts(run)) != expected:
            mismatched.add(run.name)
    assert mismatched == {"apstools-json/3e89a55c", "apstools-msgpack/3e89a55c"}


def test_edge_case_runs_present(runs):
    """The README's edge-case runs exist in the shape it describes."""
    by_name = {run.name: run for run in runs}
    for fmt in ("json", "msgpack"):
        no_stop = by_name[f"apstools-{fmt}/49dce8d9"]
        assert no_stop.stop is None
        assert [name for name, _ in no_stop.documents] == ["start", "descriptor"]
        no_descriptor = by_name[f"apstools-{fmt}/3e89a55c"]
        assert [name for name, _ in no_descriptor.documents] == ["start", "stop"]
    failed = by_name["callbacks/b31e8698"]
    assert failed.stop is not None and failed.stop["exit_status"] == "fail"
    assert _stream_counts(failed) == Counter({"label_start_motor": 1})
    assert sum(run.stop is None for run in runs) == 2


def _is_plain(obj: Any) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(key, str) and _is_plain(value) for key, value in obj.items())
    if isinstance(obj, list):
        return all(_is_plain(value) for value in obj)
    return obj is None or type(obj) in (str, int, float, bool)


def test_documents_are_plain_json(runs):
    """Every document is built only from dict/list/str/int/float/bool/None."""
    for run in runs:
        for name, doc in run.documents:
            assert type(name) is str and _is_plain(doc), (run.name, name)


def test_load_msgpack_converts_numpy(tmp_path):
    """msgpack-numpy encoded arrays and scalars come back as plain lists and numbers."""
    path = tmp_path / "run.msgpack"
    doc = {"uid": "abc", "data": {"img": np.arange(6.0).reshape(2, 3), "n": np.int64(3)}}
    path.write_bytes(msgpack.packb(["start", doc], default=msgpack_numpy.encode))
    ((name, loaded),) = realdata.load_msgpack(path)
    assert name == "start"
    assert loaded == {"uid": "abc", "data": {"img": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "n": 3}}
    assert type(loaded["data"]["n"]) is int


def test_load_apstools_json_splits_runs(tmp_path):
    """A multi-run apstools file is split at start documents; a leading orphan is refused."""
    path = tmp_path / "two.json"
    docs = [["start", {"uid": "a"}], ["stop", {"run_start": "a"}], ["start", {"uid": "b"}]]
    path.write_text(json.dumps(docs), encoding="utf-8")
    assert [[name for name, _ in run] for run in realdata.load_apstools_json(path)] == [
        ["start", "stop"],
        ["start"],
    ]
    path.write_text(json.dumps(docs[1:]), encoding="utf-8")
    with pytest.raises(ValueError, match="before any start"):
        realdata.load_apstools_json(path)


def test_external_files_found_through_root_map(runs):
    """Every NPY_SEQ datum resolves through root_map to an all-ones array of the declared shape."""
    files = 0
    for run in runs:
        resources = {doc["uid"]: doc for name, doc in run.documents if name == "resource"}
        if not resources:
            continue
        specs = {doc["spec"] for doc in resources.values()}
        if run.external_root is None:
            # the tutorials' 'newton' handler computes its images; there are no files
            assert run.name.startswith("tutorials/") and specs == {"newton"}, run.name
            continue
        assert specs == {"NPY_SEQ"}, run.name
        for name, page in run.documents:
            if name != "datum_page":
                continue
            resource = resources[page["resource"]]
            root = run.root_map[resource["root"]]
            assert root == run.external_root
            for datum in event_model.unpack_datum_page(page):
                index = datum["datum_kwargs"]["index"]
                array = np.load(Path(root) / f"{resource['resource_path']}_{index}.npy")
                np.testing.assert_array_equal(array, np.ones((10, 10)))
                files += 1
    assert files == 5


def test_paired_runs_hold_identical_events():
    """JSON events and unpacked msgpack event pages of the same run carry identical values."""
    pairs = realdata.paired_runs()
    assert len(pairs) == 63
    total = 0
    for json_run, msgpack_run in pairs:
        assert json_run.uid == msgpack_run.uid
        assert json_run.format == "apstools-json" and msgpack_run.format == "msgpack"
        assert {name for name, _ in json_run.documents} <= {"start", "descriptor", "event", "stop"}
        assert "event" not in {name for name, _ in msgpack_run.documents}
        json_events = _events(json_run)
        msgpack_events = _events(msgpack_run)
        assert len(json_events) == len(msgpack_events), json_run.name
        for ours, theirs in zip(json_events, msgpack_events):
            for key in ("uid", "descriptor", "seq_num", "time", "data", "timestamps"):
                assert ours[key] == theirs[key], (json_run.name, key)
        # Apart from paging, the two copies hold the very same documents.
        assert [(name, doc) for name, doc in json_run.documents if name != "event"] == [
            (name, doc) for name, doc in msgpack_run.documents if name != "event_page"
        ]
        total += len(json_events)
    assert total == 1302 + 172
