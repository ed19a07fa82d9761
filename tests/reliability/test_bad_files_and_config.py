"""Bad files and configs: the store reads what is sound, reports what is not, writes nowhere
else, and runs nothing it reads.

* run files cut at every kind of offset, overwritten with garbage, or holding lines of the
  wrong shape; whole files of junk; a file whose name and start uid disagree; two files
  claiming one run;
* a search index that is stale, copied from another store, or not even a file;
* uids (and links, and lookups) that try to leave the store directory;
* run files crafted to execute code when read (msgpack-numpy's pickled object arrays);
* the YAML config corpus in ``corpus/config/`` (malformed, wrong shape, python tags, alias
  bombs, not UTF-8).

Each test snapshots the folder *around* the store and checks it is unchanged at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_corpus import REPO, _corpus_reporter, record, tree_state  # noqa: F401

from broker_v1 import Broker
from broker_v1.errors import (
    BrokerError,
    ConfigError,
    CorruptRunFile,
    RunNotFound,
)
from broker_v1.stores.files import FileStore, RunFileWarning

CORPUS = Path(__file__).parent / "corpus"
T0 = 1_700_000_000.0


# ---------------------------------------------------------------------- a sound run file
def write_run(directory: Path, uid: str, *, n_events: int = 4, stop: bool = True) -> bytes:
    """Write one complete run (two streams, a resource, datums, pages) through a store."""
    store = FileStore(path=directory, fsync_interval=0)
    desc, base, res = f"{uid}-d", f"{uid}-b", f"{uid}-r"
    store.insert("start", {"uid": uid, "time": T0, "scan_id": 1, "plan_name": "scan",
                           "sample": {"name": "Si"}})
    store.insert("descriptor", {
        "uid": desc, "run_start": uid, "time": T0 + 0.1, "name": "primary",
        "data_keys": {"x": {"source": "x", "dtype": "number", "shape": []},
                      "img": {"source": "i", "dtype": "array", "shape": [2],
                              "external": "FILESTORE:"}}})
    store.insert("descriptor", {"uid": base, "run_start": uid, "time": T0 + 0.2,
                                "name": "baseline",
                                "data_keys": {"t": {"source": "t", "dtype": "number",
                                                    "shape": []}}})
    store.insert("resource", {"uid": res, "run_start": uid, "spec": "NPY_SEQ", "root": "/r",
                              "resource_path": "p", "resource_kwargs": {}})
    for i in range(n_events):
        store.insert("datum", {"resource": res, "datum_id": f"{res}/{i}",
                               "datum_kwargs": {"index": i}})
        store.insert("event", {"uid": f"{uid}-e{i}", "descriptor": desc, "time": T0 + 1 + i,
                               "seq_num": i + 1, "data": {"x": float(i), "img": f"{res}/{i}"},
                               "timestamps": {"x": T0 + 1 + i, "img": T0 + 1 + i},
                               "filled": {"img": False}})
    store.insert("event_page", {"uid": [f"{uid}-b0", f"{uid}-b1"], "descriptor": base,
                                "time": [T0 + 0.5, T0 + 50], "seq_num": [1, 2],
                                "data": {"t": [20.0, 21.0]},
                                "timestamps": {"t": [T0 + 0.5, T0 + 50]}})
    if stop:
        store.insert("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 60,
                              "exit_status": "success"})
    store.close()
    return (directory / f"{uid}.jsonl").read_bytes()


def identities(lines: list[bytes]) -> set[tuple[str, str]]:
    """(kind, id) of every document held by complete ``[name, doc]`` lines."""
    out = set()
    for line in lines:
        name, doc = json.loads(line)
        if name == "event_page":
            out.update(("event", u) for u in doc["uid"])
        elif name == "datum_page":
            out.update(("datum", d) for d in doc["datum_id"])
        elif name == "datum":
            out.add(("datum", doc["datum_id"]))
        else:
            out.add((name, doc["uid"]))
    return out


def visible(store: FileStore, uid: str, resources: list[str]) -> set[tuple[str, str]]:
    """(kind, id) of every document of run ``uid`` the store shows through its reads."""
    out = set()
    try:
        start = store.get_run_start(uid)
    except RunNotFound:
        return out
    out.add(("start", start["uid"]))
    for d in store.get_descriptors(uid):
        out.add(("descriptor", d["uid"]))
        out.update(("event", e["uid"]) for e in store.iter_events(d["uid"]))
    for r in resources:
        try:
            store.get_resource(r)
        except KeyError:
            continue
        out.add(("resource", r))
        out.update(("datum", d["datum_id"]) for d in store.iter_datums(r))
    stop = store.get_run_stop(uid)
    if stop is not None:
        out.add(("stop", stop["uid"]))
    return out


@pytest.fixture(scope="module")
def sound_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """The bytes of one complete run file, written by the store."""
    uid = "0f1e2d3c-0000-4000-8000-00000000abcd"
    data = write_run(tmp_path_factory.mktemp("sound"), uid)
    return uid, data


def _open(directory: Path) -> tuple[FileStore, list[Any]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = FileStore(path=directory, torn_grace=0)
        list(store.find_run_starts({}))
    return store, caught


# ---------------------------------------------------------------------- torn and truncated
def _few(n: int) -> Any:
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@_few(25)
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_truncated_run_file_shows_exactly_its_complete_lines(
        tmp_path: Path, sound_run: tuple[str, bytes], fraction: float) -> None:
    """A run file cut at any byte shows exactly the documents of its complete lines, warns
    about the rest, never changes the file by reading, and repair() cuts at the last newline."""
    check_truncated(tmp_path, sound_run, fraction)


@pytest.mark.slow
@_few(1000)
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_truncated_run_file_long_profile(
        tmp_path: Path, sound_run: tuple[str, bytes], fraction: float) -> None:
    """The same at 1,000 cut points (``-m slow``)."""
    check_truncated(tmp_path, sound_run, fraction)


def check_truncated(tmp_path: Path, sound_run: tuple[str, bytes], fraction: float) -> None:
    """Cut the sound run at ``fraction`` of its bytes and check what the store shows."""
    uid, data = sound_run
    cut = int(len(data) * fraction)
    case = tmp_path / uuid.uuid4().hex
    directory = case / "store"
    directory.mkdir(parents=True)
    torn = data[:cut]
    (directory / f"{uid}.jsonl").write_bytes(torn)
    outside = tree_state(case)
    complete = [line for line in torn[: torn.rfind(b"\n") + 1].split(b"\n") if line]
    expected = identities(complete)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = FileStore(path=directory, torn_grace=0)
        shown = visible(store, uid, [f"{uid}-r"])
    assert shown == expected, (cut, sorted(expected ^ shown))
    if complete and not torn.endswith(b"\n"):
        assert any(isinstance(w.message, RunFileWarning) for w in caught), cut
    assert (directory / f"{uid}.jsonl").read_bytes() == torn  # reading never writes
    store.repair()
    assert (directory / f"{uid}.jsonl").read_bytes() == torn[: torn.rfind(b"\n") + 1]
    store.close()
    after = {k: v for k, v in tree_state(case).items() if not k.startswith("store")}
    assert after == {k: v for k, v in outside.items() if not k.startswith("store")}
    shutil.rmtree(case)
    record("files/truncated run file", "files")


# ---------------------------------------------------------------------- garbage
@_few(25)
@given(seed=st.integers(0, 2**32 - 1))
def test_garbage_inside_a_run_is_reported_and_other_runs_read(
        tmp_path: Path, sound_run: tuple[str, bytes], seed: int) -> None:
    """Random bytes written over part of one run file: that run raises CorruptRunFile naming
    the file and line (or is not listed, with a warning, if its start line was hit), every
    other run reads exactly as before, and no other kind of error escapes."""
    check_garbage(tmp_path, sound_run, seed)


@pytest.mark.slow
@_few(1000)
@given(seed=st.integers(0, 2**32 - 1))
def test_garbage_long_profile(tmp_path: Path, sound_run: tuple[str, bytes], seed: int) -> None:
    """The same with 1,000 random damages (``-m slow``)."""
    check_garbage(tmp_path, sound_run, seed)


def check_garbage(tmp_path: Path, sound_run: tuple[str, bytes], seed: int) -> None:
    """Overwrite a random span of the sound run with random bytes and check the store."""
    uid, data = sound_run
    rng = random.Random(seed)
    case = tmp_path / uuid.uuid4().hex
    directory = case / "store"
    directory.mkdir(parents=True)
    good_uid = "7a7a7a7a-0000-4000-8000-000000000001"
    write_run(directory, good_uid)
    before_good = visible(FileStore(path=directory), good_uid, [f"{good_uid}-r"])
    start = rng.randrange(len(data))
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    damaged = data[:start] + junk + data[start + len(junk):]
    (directory / f"{uid}.jsonl").write_bytes(damaged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = FileStore(path=directory, torn_grace=0)
        listed = {s["uid"] for s in store.find_run_starts({})}
        assert good_uid in listed
        if uid in listed:
            try:
                visible(store, uid, [f"{uid}-r"])
            except CorruptRunFile as err:
                assert err.path == str(directory / f"{uid}.jsonl")
                assert err.line is None or err.line >= 1
                assert str(directory / f"{uid}.jsonl") in str(err)
        else:
            assert any(isinstance(w.message, RunFileWarning) for w in caught) or \
                b"\n" not in damaged, seed
        assert visible(store, good_uid, [f"{good_uid}-r"]) == before_good
    store.close()
    shutil.rmtree(case)
    record("files/garbage bytes", "files")


@pytest.mark.parametrize("damage", [b'"datum_kwargz"', b'"datum_kwargs": 7, "x"'],
                         ids=["key_renamed", "not_a_mapping"])
def test_damaged_datum_kwargs_raise_corrupt_run_file(tmp_path: Path, damage: bytes) -> None:
    """A datum line that still parses but lost its ``datum_kwargs`` (damage found by the
    garbage test with seed 109781: a KeyError escaped) raises CorruptRunFile naming the file
    when the resource's datums are read; the run's other documents still read."""
    directory = tmp_path / "store"
    directory.mkdir()
    uid = "2d2d2d2d-0000-4000-8000-000000000001"
    data = write_run(directory, uid)
    lines = data.split(b"\n")
    hit = next(i for i, line in enumerate(lines) if line.startswith(b'["datum"'))
    lines[hit] = lines[hit].replace(b'"datum_kwargs"', damage, 1)
    path = directory / f"{uid}.jsonl"
    path.write_bytes(b"\n".join(lines))
    store = FileStore(path=directory, torn_grace=0)
    with pytest.raises(CorruptRunFile) as caught:
        list(store.iter_datums(f"{uid}-r"))
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value) and "datum_kwargs" in str(caught.value)
    assert [d["uid"] for d in store.get_descriptors(uid)] == [f"{uid}-d", f"{uid}-b"]
    assert len(list(store.iter_events(f"{uid}-d"))) == 4
    store.close()
    record("files/damaged datum", "files")


JUNK_FILES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("only_newlines", b"\n\n\n"),
    ("nul_bytes", b"\x00" * 100 + b"\n"),
    ("invalid_utf8", b"\xff\xfe\xfa not text\n"),
    ("utf16", '["start", {"uid": "x", "time": 1}]\n'.encode("utf-16")),
    ("json_object", b'{"start": {"uid": "x", "time": 1}}\n'),
    ("json_null", b"null\n"),
    ("short_pair", b'["start"]\n'),
    ("not_a_start", b'["stop", {"uid": "s", "time": 1, "run_start": "x"}]\n'),
    ("start_without_time", b'["start", {"uid": "x"}]\n'),
    ("start_with_string_time", b'["start", {"uid": "x", "time": "noon"}]\n'),
    ("start_uid_number", b'["start", {"uid": 5, "time": 1}]\n'),
    ("huge_line_no_newline", b'["start", {"uid": "x", "time": 1, "pad": "' + b"a" * 2_000_000),
    ("deeply_nested", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    ("nan_time", b'["start", {"uid": "x", "time": NaN}]\n'),
]


@pytest.mark.parametrize("content", [j[1] for j in JUNK_FILES], ids=[j[0] for j in JUNK_FILES])
def test_junk_run_files_are_skipped_and_reported(tmp_path: Path, content: bytes) -> None:
    """A .jsonl file that is not a run is not listed, is reported (when it has a complete
    line) and never stops the store from serving the sound runs beside it."""
    directory = tmp_path / "store"
    directory.mkdir()
    good = "6b6b6b6b-0000-4000-8000-000000000001"
    write_run(directory, good)
    (directory / "junk-run.jsonl").write_bytes(content)
    outside = tree_state(tmp_path)
    store, caught = _open(directory)
    assert [s["uid"] for s in store.find_run_starts({})] == [good]
    assert len(visible(store, good, [f"{good}-r"])) == 1 + 2 + 4 + 2 + 1 + 4 + 1
    if b"\n" in content and content.strip():
        assert any("junk-run.jsonl" in str(w.message) for w in caught), [
            str(w.message) for w in caught]
    with pytest.raises(RunNotFound):
        store.get_run_start("junk-run")
    store.close()
    assert (directory / "junk-run.jsonl").read_bytes() == content
    assert {k: v for k, v in tree_state(tmp_path).items() if not k.startswith("store/.broker")} \
        == {k: v for k, v in outside.items() if not k.startswith("store/.broker")}
    record("files/junk run files", "files")


# ---------------------------------------------------------------------- names and uids
def test_run_file_named_differently_from_its_start_uid(tmp_path: Path) -> None:
    """A run file whose name is not its start uid is read under the start's uid; a new run
    with the file's name as uid is refused without touching that file."""
    directory = tmp_path / "store"
    directory.mkdir()
    uid = "1c1c1c1c-0000-4000-8000-000000000001"
    data = write_run(directory, uid)
    os.rename(directory / f"{uid}.jsonl", directory / "scan_0042.jsonl")
    shutil.rmtree(directory / ".broker_v1")
    store, caught = _open(directory)
    assert [s["uid"] for s in store.find_run_starts({})] == [uid]
    assert len(visible(store, uid, [f"{uid}-r"])) == 1 + 2 + 4 + 2 + 1 + 4 + 1
    with pytest.raises(BrokerError) as info:
        store.insert("start", {"uid": "scan_0042", "time": T0 + 5})
    assert "scan_0042.jsonl" in str(info.value) and "Nothing was written" in str(info.value) \
        or "nothing was written" in str(info.value)
    assert (directory / "scan_0042.jsonl").read_bytes() == data
    store.close()
    record("files/name and uid disagree", "files")


def test_two_files_claiming_one_run(tmp_path: Path) -> None:
    """Two files holding the same start uid: one is used, the other is named in a warning."""
    directory = tmp_path / "store"
    directory.mkdir()
    uid = "2d2d2d2d-0000-4000-8000-000000000001"
    data = write_run(directory, uid)
    (directory / "copy-of-run.jsonl").write_bytes(data)
    store, caught = _open(directory)
    assert [s["uid"] for s in store.find_run_starts({})] == [uid]
    messages = [str(w.message) for w in caught]
    assert any("copy-of-run.jsonl" in m and uid in m for m in messages), messages
    store.close()
    record("files/duplicate run files", "files")


# ---------------------------------------------------------------------- the index
def test_index_copied_from_another_store_is_not_believed(tmp_path: Path) -> None:
    """An index file copied in from another store describes files that are not here: the
    store answers from its own files only."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ua, ub = "3e3e3e3e-0000-4000-8000-00000000000a", "3e3e3e3e-0000-4000-8000-00000000000b"
    write_run(a, ua)
    write_run(b, ub)
    FileStore(path=a).close()
    shutil.rmtree(b / ".broker_v1")
    shutil.copytree(a / ".broker_v1", b / ".broker_v1")
    store, _ = _open(b)
    assert [s["uid"] for s in store.find_run_starts({})] == [ub]
    with pytest.raises(RunNotFound):
        store.get_run_start(ua)
    assert len(visible(store, ub, [f"{ub}-r"])) == 15
    store.close()
    record("files/stale index", "files")


def test_run_files_changed_while_closed_are_reindexed(tmp_path: Path) -> None:
    """Runs deleted, replaced, grown or added while no store was open are seen as they are."""
    directory = tmp_path / "store"
    directory.mkdir()
    uids = [f"4f4f4f4f-0000-4000-8000-00000000000{i}" for i in range(4)]
    open_run = write_run(directory, uids[0], stop=False)
    write_run(directory, uids[1])
    write_run(directory, uids[2])
    FileStore(path=directory).close()  # indexed
    os.remove(directory / f"{uids[1]}.jsonl")  # deleted
    replacement = (directory / f"{uids[2]}.jsonl").read_bytes().replace(b'"Si"', b'"Au"')
    (directory / f"{uids[2]}.jsonl").write_bytes(replacement)  # replaced, same size
    with open(directory / f"{uids[0]}.jsonl", "ab") as f:  # grown: its stop arrives
        f.write(json.dumps(["stop", {"uid": "late-stop", "run_start": uids[0],
                                     "time": T0 + 99, "exit_status": "abort"}]).encode() + b"\n")
    write_run(directory, uids[3])  # added
    assert open_run
    store, _ = _open(directory)
    assert sorted(s["uid"] for s in store.find_run_starts({})) == [uids[0], uids[2], uids[3]]
    assert store.get_run_stop(uids[0])["exit_status"] == "abort"
    assert store.get_run_start(uids[2])["sample"] == {"name": "Au"}
    assert [s["uid"] for s in store.find_run_starts({"sample.name": "Au"})] == [uids[2]]
    with pytest.raises(RunNotFound):
        store.get_run_start(uids[1])
    store.close()
    record("files/files changed while closed", "files")


@pytest.mark.parametrize("what", ["directory", "garbage", "empty", "state_dir_is_a_file"])
def test_index_that_is_not_an_index(tmp_path: Path, what: str) -> None:
    """An index path holding a directory, garbage, nothing, or a state folder that is a file:
    the store still opens and answers from the run files."""
    directory = tmp_path / "store"
    directory.mkdir()
    uid = "5a5a5a5a-0000-4000-8000-000000000001"
    write_run(directory, uid)
    state = directory / ".broker_v1"
    shutil.rmtree(state)
    if what == "state_dir_is_a_file":
        state.write_bytes(b"not a folder")
    else:
        state.mkdir()
        index = state / "index.sqlite"
        if what == "directory":
            index.mkdir()
        else:
            index.write_bytes(b"" if what == "empty" else os.urandom(4096))
    store, caught = _open(directory)
    assert [s["uid"] for s in store.find_run_starts({})] == [uid]
    assert len(visible(store, uid, [f"{uid}-r"])) == 15
    if what == "directory":
        assert any("cannot be opened" in str(w.message) for w in caught)
    store.close()
    record("files/broken index", "files")


# ---------------------------------------------------------------------- escaping the folder
hostile_text = st.one_of(
    st.sampled_from([
        "..", ".", "../x", "../../etc/passwd", "/etc/passwd", "/tmp", "a/../../b", "..\\x",
        "C:\\Windows", "x\x00y", "\x00", "x/", "./x", ".hidden", "_assets", "~", "~root",
        "x" * 300, "é" * 200, "a\nb", "a\rb", "\t", " ", "\u202e", "\ud800", "con", "nul",
        "x.jsonl", "x.msgpack", "*", "?", "$(touch pwned)", "`touch pwned`", "%2e%2e%2f",
    ]),
    st.text(alphabet=st.sampled_from(list("./\\x.~\x00-_ é")), min_size=1, max_size=12),
)


@_few(40)
@given(uid=hostile_text, link=hostile_text)
def test_hostile_uids_never_touch_anything_outside_the_store(
        tmp_path: Path, uid: str, link: str) -> None:
    """Hostile uids, links and lookup keys are written (as safe file names) or refused with a
    broker_v1 error; nothing outside the store folder is created, changed or removed, and
    every file inside it is the store's own."""
    check_hostile(tmp_path, uid, link)


@pytest.mark.slow
@_few(1000)
@given(uid=hostile_text, link=hostile_text)
def test_hostile_uids_long_profile(tmp_path: Path, uid: str, link: str) -> None:
    """The same with 1,000 pairs of hostile strings (``-m slow``)."""
    check_hostile(tmp_path, uid, link)


def check_hostile(tmp_path: Path, uid: str, link: str) -> None:
    """Throw ``uid`` and ``link`` at every entry point of a fresh store; check the folder."""
    case = tmp_path / uuid.uuid4().hex
    case.mkdir()
    (case / "victim.jsonl").write_bytes(b'["start", {"uid": "v", "time": 1}]\n["torn')
    (case / "pwned").mkdir()
    directory = case / "store"
    outside = tree_state(case)
    store = FileStore(path=directory, torn_grace=0)
    db = Broker(store, timezone="UTC")
    attempts = [
        lambda: store.insert("start", {"uid": uid, "time": T0}),
        lambda: store.insert("descriptor", {"uid": link, "run_start": uid, "time": T0 + 1,
                                            "data_keys": {}}),
        lambda: store.insert("stop", {"uid": link + "-s", "run_start": uid, "time": T0 + 2}),
        lambda: store.insert("resource", {"uid": link, "run_start": uid, "spec": "S",
                                          "root": "/", "resource_path": link,
                                          "resource_kwargs": {}}),
        lambda: store.insert("datum", {"resource": link, "datum_id": uid,
                                       "datum_kwargs": {}}),
        lambda: store.repair(link),
        lambda: store.repair("../victim"),
        lambda: db[link],
        lambda: store.get_resource(link),
        lambda: store.get_datum(link),
        lambda: list(store.iter_event_pages(link)),
        lambda: store.get_descriptors(link),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunFileWarning)
        for attempt in attempts:
            try:
                attempt()
            except (BrokerError, KeyError):
                pass  # refused cleanly (KeyError: an unknown descriptor/resource/datum)
        store.repair()
    store.close()
    now = tree_state(case)
    assert {k: v for k, v in now.items() if not k.startswith("store")} == outside
    for entry in os.listdir(directory):
        assert entry == ".broker_v1" or (entry.endswith(".jsonl") and "/" not in entry
                                         and not entry.startswith(".")), entry
    shutil.rmtree(case)
    record("files/hostile uids", "files", len(attempts))


def test_run_whose_start_uid_is_a_path_writes_only_its_own_file(tmp_path: Path) -> None:
    """A run file (written by another program) whose start uid looks like a path is read under
    that uid, and documents added to it go into that same file, never along the path."""
    case = tmp_path / "case"
    directory = case / "store"
    directory.mkdir(parents=True)
    uid = "../../escaped"
    (directory / "odd-run.jsonl").write_bytes(
        json.dumps(["start", {"uid": uid, "time": T0}]).encode() + b"\n")
    outside = tree_state(case)
    store, _ = _open(directory)
    assert [s["uid"] for s in store.find_run_starts({})] == [uid]
    store.insert("descriptor", {"uid": "odd-d", "run_start": uid, "time": T0 + 1,
                                "data_keys": {"x": {"source": "x", "dtype": "number",
                                                    "shape": []}}})
    store.insert("event", {"uid": "odd-e", "descriptor": "odd-d", "time": T0 + 2, "seq_num": 1,
                           "data": {"x": 1.0}, "timestamps": {"x": T0 + 2}})
    store.insert("stop", {"uid": "odd-s", "run_start": uid, "time": T0 + 3})
    assert store.repair(uid) == {}
    store.close()
    lines = (directory / "odd-run.jsonl").read_bytes().splitlines()
    assert [json.loads(line)[0] for line in lines] == ["start", "descriptor", "event", "stop"]
    assert sorted(os.listdir(directory)) == [".broker_v1", "odd-run.jsonl"]
    now = tree_state(case)
    assert {k: v for k, v in now.items() if not k.startswith("store")} == {
        k: v for k, v in outside.items() if not k.startswith("store")}
    record("files/hostile uids", "files")


def test_dangling_symlink_in_place_of_a_new_run_is_not_followed(tmp_path: Path) -> None:
    """A dangling symbolic link where a new run file would go is refused, not written through."""
    directory = tmp_path / "store"
    directory.mkdir()
    target = tmp_path / "outside.jsonl"
    os.symlink(target, directory / "run1.jsonl")
    store = FileStore(path=directory)
    with pytest.raises(CorruptRunFile, match="not a regular run file"):
        store.insert("start", {"uid": "run1", "time": T0})
    assert not target.exists()
    store.close()
    record("files/symlinks", "files")


def test_repair_never_truncates_through_a_symlink(tmp_path: Path) -> None:
    """repair() leaves a symlinked run file (which may live outside the store) alone."""
    directory = tmp_path / "store"
    directory.mkdir()
    victim = tmp_path / "elsewhere.jsonl"
    content = b'["start", {"uid": "linked", "time": 1.0}]\n["descriptor", {"uid'
    victim.write_bytes(content)
    os.symlink(victim, directory / "linked.jsonl")
    store = FileStore(path=directory, torn_grace=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.repair() == {}
        assert store.repair("linked") == {}
    assert victim.read_bytes() == content
    assert any("symbolic link" in str(w.message) for w in caught)
    store.close()
    record("files/symlinks", "files")


# ---------------------------------------------------------------------- nothing runs
def _msgpack_run(path: Path, payload: Any) -> None:
    msgpack = pytest.importorskip("msgpack")
    with open(path, "wb") as f:
        f.write(msgpack.packb(["start", {"uid": path.stem, "time": T0, "x": payload}],
                              use_bin_type=True))
        f.write(msgpack.packb(["stop", {"uid": path.stem + "-s", "run_start": path.stem,
                                        "time": T0 + 1}], use_bin_type=True))


READ_ALL = """
import sys, warnings
from broker_v1.stores.files import FileStore
warnings.simplefilter("ignore")
store = FileStore(path=sys.argv[1])
for start in store.find_run_starts({}):
    list(store.iter_documents(start["uid"]))
print("read", store.count_runs())
"""


def test_msgpack_run_files_never_execute_or_crash(tmp_path: Path) -> None:
    """msgpack runs crafted to unpickle code, or to build object arrays from raw bytes (a
    crash), are refused as corrupt: nothing runs, the process survives, sound runs read."""
    pytest.importorskip("msgpack_numpy")
    import pickle

    directory = tmp_path / "store"
    directory.mkdir()
    marker = tmp_path / "EXECUTED"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    _msgpack_run(directory / "pickled.msgpack",
                 {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": (1,),
                  b"data": pickle.dumps(Payload())})
    pointers = b"\x41" * 64
    _msgpack_run(directory / "objects.msgpack",
                 {b"nd": True, b"type": "|O", b"kind": b"", b"shape": (8,), b"data": pointers})
    _msgpack_run(directory / "record.msgpack",
                 {b"nd": True, b"type": [[b"a", "|O"]], b"kind": b"V", b"shape": (8,),
                  b"data": pointers})
    _msgpack_run(directory / "scalar.msgpack", {b"nd": False, b"type": "|O", b"data": pointers})
    _msgpack_run(directory / "plain.msgpack",
                 {b"nd": True, b"type": "<f8", b"kind": b"", b"shape": (2,), b"data": b"\0" * 16})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", READ_ALL, str(directory)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "read 1"  # only the sound run is a run
    assert not marker.exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = FileStore(path=directory, index_path=":memory:")
        assert [s["uid"] for s in store.find_run_starts({})] == ["plain"]
        assert store.get_run_start("plain")["x"] == [0.0, 0.0]
    reported = " ".join(str(w.message) for w in caught)
    for name in ("pickled", "objects", "record", "scalar"):
        assert f"{name}.msgpack" in reported
    assert "never unpickled" in reported and "never read" in reported
    store.close()
    record("files/code in data files", "files", 4)


# ---------------------------------------------------------------------- YAML configs
CONFIGS = sorted(p.name for p in (CORPUS / "config").glob("*.yml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_bad_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every config in the corpus raises ConfigError naming the file; nothing from it runs
    and no store is created anywhere."""
    folder = tmp_path / "configs"
    folder.mkdir()
    marker = tmp_path / "EXECUTED"
    data = (CORPUS / "config" / name).read_bytes().replace(b"{marker}", str(marker).encode())
    path = folder / name
    path.write_bytes(data)
    monkeypatch.setenv("BROKER_V1_CONFIG_PATH", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABROKER_CONFIG_PATH", raising=False)
    monkeypatch.delenv("INTAKE_PATH", raising=False)
    before = tree_state(tmp_path)
    with pytest.raises(ConfigError) as info:
        Broker.named(path.stem)
    assert str(path) in str(info.value), str(info.value)
    assert info.value.source == str(path)
    assert "hunter2" not in str(info.value)  # a password in a bad URI is never echoed
    assert not marker.exists()
    assert tree_state(tmp_path) == before
    record("config/yaml corpus", "-")
