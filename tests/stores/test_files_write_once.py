"""The files store's write path encodes each document once and reads the index only when it
must: a start's and a stop's JSON serve the run file line, the index row and the checksum,
and the link checks of a run this process is writing take its start from memory.

Lines are written by orjson where its text says exactly what Python's json says, and by json
otherwise: every line parses back to the same document, value and type (NaN, Infinity, big
integers, lone surrogates, unicode), and run files written by the old encoder still read.
Which documents are accepted or refused is what it always was."""

from __future__ import annotations

import enum
import json
import math
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest
from files_harness import index_statements
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_v1.errors import DuplicateDocument, InvalidDocument
from broker_v1.stores._util import loads_json
from broker_v1.stores.files import FileStore
from broker_v1.stores.files._format import _DESC_RE, _NAME_RE, _dump_line, _encode, _line_of

T0 = 1_700_000_000.0


def run_docs(uid: str) -> list[tuple[str, dict[str, Any]]]:
    desc = f"{uid}-primary"
    return [
        ("start", {"uid": uid, "time": T0, "scan_id": 7, "plan_name": "count",
                   "note": "é ✓ \u2028", "nan_md": math.nan, "big": 2**70}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": T0, "name": "primary",
                        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "sim"}}}),
        ("event", {"uid": f"{uid}-e1", "descriptor": desc, "time": T0 + 1, "seq_num": 1,
                   "data": {"x": 1.5}, "timestamps": {"x": T0 + 1}}),
        ("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 2,
                  "exit_status": "success", "reason": "ünïcode", "num_events": {"primary": 1}}),
    ]


class _Label(str, enum.Enum):
    A = "label-a"


class _Level(enum.IntEnum):
    HIGH = 3


class _Tag(str):
    """A str subclass: orjson is told to refuse it, so json writes it (as before)."""


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, NaN equal to NaN and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"next": [value]}
    return value


ODD_DOCS = [
    {},
    {"uid": "a", "time": 1.0, "null": None, "text": "null and NaN"},
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "none": None},
    {"list": [None, 1.0, math.nan], "ok": True},
    {"text": "é ✓ \u2028 \x00 \x7f \"quoted\" \\ slash", "surrogate": "\ud800"},
    {"unicode": "ünïcode ✓", "cjk": "测量", "emoji": "🔬"},
    {"big": 2**80, "u64": 2**64 - 1, "i64": 2**63, "min": -(2**63), "below": -(2**63) - 1},
    {"neg": -0.0, "e16": 1e16, "tiny": 5e-324, "max": 1.7976931348623157e308, "third": 1 / 3},
    {"nested": {"list": [1, 2.5, None, True, False, [{"deep": "x"}]], "empty": {}}},
    {"deep": _nested(130)},  # 261 containers deep: deeper than orjson writes
]


@pytest.mark.parametrize("doc", ODD_DOCS)
@pytest.mark.parametrize("name", ["start", "stop", "descriptor", "event"])
def test_line_parses_back_to_the_same_document(name: str, doc: dict[str, Any]) -> None:
    line = _dump_line(name, doc)
    assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
    # The line is a suitcase-jsonl [name, doc] pair that json reads back equal, type for type.
    assert same(json.loads(line), [name, doc])
    match = _NAME_RE.match(line)
    assert match is not None and match.group(1) == name.encode()
    # The writer builds a start's and a stop's line from the text the index keeps.
    assert _line_of(name, _encode(doc)) == line
    assert same(json.loads(_encode(doc)), doc)
    if any(isinstance(v, float) and not math.isfinite(v) for v in doc.values()):
        assert b"NaN" in line or b"Infinity" in line  # the tokens json and suitcase write
    if "deep" not in doc:
        assert same(loads_json(line), [name, doc])  # the store's own reader agrees


@pytest.mark.parametrize("event", [
    {"descriptor": "d-1", "uid": "e", "data": {"x": 1.5}},  # orjson's compact text
    {"descriptor": "d-1", "uid": "e", "data": {"x": math.nan}},  # json's, with a NaN token
])
def test_an_event_lines_descriptor_is_read_off_without_parsing(event: dict[str, Any]) -> None:
    """Readers sort event lines by descriptor from the raw bytes (``_DESC_RE``) before
    parsing them; both encoders' lines give it up."""
    line = _dump_line("event", event)
    assert _DESC_RE.findall(line) == [b"d-1"]


def test_subclasses_and_enums_are_written_as_json_writes_them() -> None:
    doc = {_Tag("key"): _Tag("value"), "label": _Label.A, "level": _Level.HIGH}
    assert _encode(doc) == json.dumps(doc).encode("ascii")  # the str subclass: json wrote it
    enums = {"label": _Label.A, "level": _Level.HIGH}
    assert same(json.loads(_encode(enums)), json.loads(json.dumps(enums)))


_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.sampled_from(["null", "NaN", "Infinity", "\ud800", "-0.0"])
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _JSON_VALUES, max_size=6))
def test_any_json_like_document_round_trips(doc: dict[str, Any]) -> None:
    line = _dump_line("event", doc)
    assert line.isascii() and line.count(b"\n") == 1
    assert same(json.loads(line), ["event", doc])


def test_runs_written_by_the_old_encoder_still_read(tmp_path: Path) -> None:
    """A run file written before orjson wrote lines (Python's json, ``["name", {...}]``) reads
    back as it did; a run left open in such a file is stopped by the new writer, and the
    file, now mixing both encodings, reads back whole."""
    old_encode = json.JSONEncoder(check_circular=False).encode  # what wrote lines before
    closed, open_ = run_docs("old1"), run_docs("old2")
    (tmp_path / "old1.jsonl").write_bytes(
        b"".join((old_encode([n, d]) + "\n").encode("ascii") for n, d in closed))
    (tmp_path / "old2.jsonl").write_bytes(
        b"".join((old_encode([n, d]) + "\n").encode("ascii") for n, d in open_[:-1]))
    with FileStore(path=tmp_path) as store:
        assert store.get_run_stop("old2") is None
        store.insert(*open_[-1])
    with FileStore(path=tmp_path) as store:
        for uid, docs in (("old1", closed), ("old2", open_)):
            got = list(store.iter_documents(uid))
            assert [n for n, _ in got] == [n for n, _ in docs]
            assert all(same(g, d) for (_, g), (_, d) in zip(got, docs)), got
            assert same(store.get_run_start(uid), docs[0][1])
            assert same(store.get_run_stop(uid), docs[-1][1])
    lines = (tmp_path / "old2.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[-1] == _dump_line("stop", open_[-1][1])


def _index_rows(location: str, uid: str) -> tuple[str, str, int]:
    conn = sqlite3.connect(location)
    try:
        start, stop = conn.execute(
            "SELECT start, stop FROM runs WHERE uid = ?", (uid,)).fetchone()
        (crc,) = conn.execute(
            "SELECT head_crc FROM files WHERE name = ?", (uid + ".jsonl",)).fetchone()
    finally:
        conn.close()
    return start, stop, crc


def test_run_file_and_index_hold_the_same_documents(tmp_path: Path) -> None:
    docs = run_docs("r1")
    with FileStore(path=tmp_path) as store:
        for name, doc in docs:
            store.insert(name, doc)
        location = store._index.location
    # Closed: the stop's rows, left for the next index transaction, were written at close.
    start_text, stop_text, crc = _index_rows(location, "r1")
    lines = (tmp_path / "r1.jsonl").read_bytes().splitlines(keepends=True)
    assert lines == [_dump_line(name, doc) for name, doc in docs]
    assert all(same(json.loads(line), list(pair)) for line, pair in zip(lines, docs))
    # The index keeps the very text of the start's and the stop's lines.
    assert _line_of("start", start_text.encode("ascii")) == lines[0]
    assert _line_of("stop", stop_text.encode("ascii")) == lines[-1]
    assert same(json.loads(start_text), docs[0][1])
    assert same(json.loads(stop_text), docs[-1][1])
    assert crc == zlib.crc32(lines[0])


def test_open_run_link_checks_do_not_read_the_runs_table(tmp_path: Path) -> None:
    docs = run_docs("r2")
    with FileStore(path=tmp_path) as store:
        store.insert(*docs[0])
        with index_statements(store) as statements:
            store.insert(*docs[1])
        # The descriptor's duplicate check still asks the index; its rows are written with
        # the run's stop (tests/stores/test_files_open_runs.py), so nothing else runs here.
        assert statements and all(s.startswith("SELECT") for s in statements)
        assert not [s for s in statements if "FROM runs WHERE uid" in s]


def test_stop_of_a_run_this_process_records_reads_only_the_stop_uid(tmp_path: Path) -> None:
    """The stop of a run this process started and has not stopped has no other stop to be
    checked against (one process writes a run); only its own uid is looked up."""
    docs = run_docs("r7")
    with FileStore(path=tmp_path) as store:
        for name, doc in docs[:-1]:
            store.insert(name, doc)
        with index_statements(store) as statements:
            store.insert(*docs[-1])
        # Its rows wait for the next index transaction: the stop only reads.
        assert statements == ["SELECT stop FROM runs WHERE stop_uid = 'r7-stop'"]
        assert store.get_run_stop("r7") == docs[-1][1]
        with pytest.raises(DuplicateDocument, match="already has a stop"):
            store.insert("stop", dict(docs[-1][1], uid="r7-stop2"))


def test_open_run_start_reinserted_is_a_no_op_or_refused(tmp_path: Path) -> None:
    docs = run_docs("r3")
    with FileStore(path=tmp_path) as store:
        store.insert(*docs[0])
        store.insert("start", dict(docs[0][1]))  # identical: a no-op
        changed = dict(docs[0][1], plan_name="scan")
        with pytest.raises(DuplicateDocument, match="r3"):
            store.insert("start", changed)
        for name, doc in docs[1:]:
            store.insert(name, doc)
        # Stopped: the start comes from the index again, with the same verdicts.
        store.insert("start", dict(docs[0][1]))
        with pytest.raises(DuplicateDocument, match="r3"):
            store.insert("start", changed)
        with pytest.raises(DuplicateDocument, match="already has a stop"):
            store.insert("stop", dict(docs[-1][1], uid="r3-stop2"))
    assert (tmp_path / "r3.jsonl").read_bytes().count(b"\n") == len(docs)


def test_runs_of_another_writer_are_found_through_the_index(tmp_path: Path) -> None:
    docs = run_docs("r4")
    with FileStore(path=tmp_path) as writer, FileStore(path=tmp_path) as other:
        writer.insert(*docs[0])
        # The second store (as another process would) links to a run it did not start.
        other.insert(*docs[1])
        with pytest.raises(InvalidDocument, match="before its start"):
            other.insert("stop", dict(docs[-1][1], time=T0 - 1))
        writer.insert(*docs[2])
        writer.insert(*docs[3])
        assert other.get_run_stop("r4") == docs[3][1]
        assert [d["uid"] for d in other.get_descriptors("r4")] == ["r4-primary"]


@pytest.mark.parametrize("n", [2, 5, 63, 64, 65, 200])
def test_columnar_cache_order_check_matches_sorting(n: int) -> None:
    """The cache's "rows already ordered" flag: Python below 64 rows, numpy above; both must
    say what sorting by (time, seq_num) says, ties, NaN and huge integers included."""
    import random

    from broker_v1.stores.files._cache import _is_ordered

    rng = random.Random(n)
    for _ in range(200):
        times: list[Any] = sorted(rng.choice([1.0, 2.0, 2.5, T0, 2**60, 2**60 + 1])
                                  for _ in range(n))
        seqs = list(range(n))
        if rng.random() < 0.5:
            i, j = rng.randrange(n), rng.randrange(n)
            times[i], times[j] = times[j], times[i]
        if rng.random() < 0.3:
            seqs[rng.randrange(n)] = rng.randrange(n)
        if rng.random() < 0.1:
            times[rng.randrange(n)] = math.nan
        pairs = list(zip(times, seqs))
        expected = all(a <= b for a, b in zip(pairs, pairs[1:]))
        assert _is_ordered(times, seqs) is expected


def test_new_run_file_drops_stale_rows_of_its_name(tmp_path: Path) -> None:
    """Rows an index still holds under a new run file's name (left by a file of that name
    that is gone) are dropped in the transaction that indexes the new run."""
    with FileStore(path=tmp_path) as store:
        store._index.write(lambda conn: conn.execute(
            "INSERT INTO members (kind, uid, file) VALUES ('descriptor', 'stale', 'r6.jsonl')"))
        store.insert(*run_docs("r6")[0])
        assert store._index.read("SELECT uid FROM members WHERE file = 'r6.jsonl'") == []
        assert store._index.read("SELECT uid FROM runs WHERE file = 'r6.jsonl'") == [("r6",)]


def plain_run(uid: str) -> list[tuple[str, dict[str, Any]]]:
    """A start, a descriptor and a stop of plain values (msgpack and ``==`` take them)."""
    return [
        ("start", {"uid": uid, "time": T0, "scan_id": 7, "plan_name": "count"}),
        ("descriptor", {"uid": f"{uid}-primary", "run_start": uid, "time": T0,
                        "name": "primary",
                        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}}}),
        ("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 2,
                  "exit_status": "success"}),
    ]


def test_a_new_start_is_written_before_any_lookup(tmp_path: Path) -> None:
    """A new run's start is written first: no read of the index before its transaction (the
    exclusive create of its file and the index's unique run uids refuse a copy)."""
    with FileStore(path=tmp_path) as store:
        with index_statements(store) as statements:
            store.insert(*plain_run("r8")[0])
        # The first statement takes the write lock (after the busy timeout is set for it).
        assert [s for s in statements if not s.startswith("PRAGMA")][0] == "BEGIN IMMEDIATE"
        assert not [s for s in statements if s.startswith("SELECT file, start, stop")]
        assert store.get_run_start("r8") == plain_run("r8")[0][1]


def test_a_start_stored_under_another_file_name_is_found_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    """A run whose file has another name (copied in by hand) holds the uid: inserting its
    start again is a no-op, a different one is refused, as before the start was written
    first, and neither leaves a ``<uid>.jsonl`` behind or changes what the store holds."""
    docs = plain_run("r9")
    lines = [json.dumps([name, doc]) for name, doc in docs]
    (tmp_path / "copied-by-hand.jsonl").write_text("\n".join(lines) + "\n")
    with FileStore(path=tmp_path) as store:
        assert store.get_run_start("r9") == docs[0][1]  # indexed under the other name
        with index_statements(store) as statements:
            store.insert(*docs[0])  # identical: a no-op
        # Written first, refused by the index's unique uid, rolled back, then looked up.
        assert "ROLLBACK" in statements
        assert statements[-1].startswith("SELECT file, start, stop FROM runs WHERE uid")
        with pytest.raises(DuplicateDocument, match="r9"):
            store.insert("start", dict(docs[0][1], plan_name="scan"))
        assert not (tmp_path / "r9.jsonl").exists()
        assert store._index.read("SELECT file FROM runs WHERE uid = 'r9'") == [
            ("copied-by-hand.jsonl",)]
        # The store goes on recording: the next run gets its file and its row.
        for name, doc in plain_run("r10"):
            store.insert(name, doc)
        assert store.get_run_stop("r10") == plain_run("r10")[-1][1]
    with FileStore(path=tmp_path) as reopened:
        assert sorted(r for (r,) in reopened._index.read("SELECT uid FROM runs")) == [
            "r10", "r9"]


def test_a_start_whose_msgpack_run_exists_takes_the_lookup(tmp_path: Path) -> None:
    """``<uid>.msgpack`` holds the run: the start is not written first, the lookup finds it
    there, and no ``<uid>.jsonl`` is created."""
    msgpack = pytest.importorskip("msgpack")
    docs = plain_run("r11")
    with open(tmp_path / "r11.msgpack", "wb") as f:
        for name, doc in docs:
            f.write(msgpack.packb([name, doc], use_bin_type=True))
    with FileStore(path=tmp_path) as store:
        with index_statements(store) as statements:
            store.insert(*docs[0])  # identical: a no-op
        assert [s for s in statements if s.startswith("SELECT file, start, stop")]
        with pytest.raises(DuplicateDocument, match="r11"):
            store.insert("start", dict(docs[0][1], plan_name="scan"))
        assert not (tmp_path / "r11.jsonl").exists()


@pytest.mark.parametrize("n", [1, 63, 64, 65, 150])
def test_column_accumulator_spreads_single_events_in_batches(n: int) -> None:
    """Single events wait in batches before they are spread into columns: the columns (and
    their order, pages between events included) are those of the events as written, and an
    event whose keys do not match gives the cache up, wherever it falls in a batch."""
    from broker_v1.stores.files._cache import _ColumnAcc

    def event(i: int, **extra: Any) -> dict[str, Any]:
        return {"uid": f"e{i}", "time": T0 + i, "seq_num": i, "data": {"x": i, "y": str(i)},
                "timestamps": {"x": T0, "y": T0 + i}, **extra}

    acc = _ColumnAcc(event(0))
    for i in range(n):
        assert acc.add_event(event(i))
    page = {"uid": ["p"], "time": [T0], "seq_num": [n], "data": {"x": [-1], "y": ["p"]},
            "timestamps": {"x": [T0], "y": [T0]}}
    assert acc.add(page)
    assert acc.add_event(event(n + 1))
    cols = acc.columns()
    assert cols is not None
    order = [*range(n), "page", n + 1]
    assert cols.uid == [f"e{i}" if i != "page" else "p" for i in order]
    assert cols.data["x"] == [i if i != "page" else -1 for i in order]
    assert cols.timestamps["y"] == [T0 + i if i != "page" else T0 for i in order]
    for bad_at in (0, n // 2, n - 1):
        acc = _ColumnAcc(event(0))
        verdicts = [acc.add_event(event(i, filled={}) if i == bad_at else event(i))
                    for i in range(n)]
        assert all(verdicts[:63])  # found when its batch is spread: at the 64th event,
        assert False in verdicts or acc.columns() is None  # or at the latest by columns()


def test_a_recording_process_keeps_where_only_its_recent_runs_are(tmp_path: Path) -> None:
    """A process recording run after run keeps, of where its documents went, only its last
    few runs (not three entries a run for its whole life); an older run's start, descriptor
    and file are then found through the index, with the same verdicts."""
    runs = [plain_run(f"r{i}") for i in range(12)]
    resource = {"uid": "r0-res", "run_start": "r0", "spec": "NPY_SEQ", "root": "/data",
                "resource_path": "r0.npy", "resource_kwargs": {}, "path_semantics": "posix"}
    with FileStore(path=tmp_path) as store:
        store.insert(*runs[0][0])
        store.insert("resource", resource)
        for run in [runs[0][1:], *runs[1:]]:
            for name, doc in run:
                store.insert(name, doc)
        writer = store._writer
        assert len(writer.run_file) <= 5 and len(writer.desc_file) <= 5
        assert "r0" not in writer.run_file and "r0-primary" not in writer.desc_file
        assert "r0-res" not in writer.res_file
        assert store.get_descriptor("r0-primary")["name"] == "primary"
        assert store.get_resource("r0-res")["spec"] == "NPY_SEQ"
        store.insert(*runs[0][0])  # identical: a no-op
        store.insert(*runs[0][1])
        store.insert("resource", resource)
        with pytest.raises(DuplicateDocument, match="r0"):
            store.insert("start", dict(runs[0][0][1], scan_id=99))
        with pytest.raises(DuplicateDocument, match="r0-primary"):
            store.insert("descriptor", dict(runs[0][1][1], name="other"))
        later = dict(resource, uid="r0-res2", resource_path="r0b.npy")
        store.insert("resource", later)  # goes to its run's file, as for a recent run
    names = [json.loads(line)[0] for line in (tmp_path / "r0.jsonl").read_text().splitlines()]
    assert names == ["start", "resource", "descriptor", "stop", "resource"]
    with FileStore(path=tmp_path) as fresh:
        assert fresh.get_resource("r0-res2")["resource_path"] == "r0b.npy"
        assert fresh.count_runs() == 12
