"""The :class:`FileStore` facade (see the package docstring for the store's layout)."""

from __future__ import annotations

import contextlib
import errno
import gc
import itertools
import json
import math
import operator
import os
import re
import shutil
import sqlite3
import stat as stat_module
import struct
import sys
import threading
import time
import warnings
import zlib
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ...errors import (
    CorruptRunFile,
    DatumNotFound,
    DuplicateDocument,
    InvalidDocument,
    MissingDependency,
    ReadOnlyStore,
    ResourceNotFound,
    StoreUnavailable,
    UnsafeUid,
)
from .._columns import _Columns, _sort_key
from .._query import QueryMatcher, searchable_text, split_text
from .._util import DocumentValueError, json_copy, loads_json, sanitize
from .._util import valid_unicode as _sqlable
from ..base import DEFAULT_SORT, Doc, DocumentStore, RunCopy, Sort, not_found_run

__all__ = ["FileStore", "RunFileWarning", "TornRunFileWarning"]

# Derived state lives in one hidden subdirectory, so that SQLite's -wal/-shm files coming and
# going never change the mtime of the run directory (which tells the index a rescan is due).
STATE_DIR = ".broker_v1"
INDEX_NAME = "index.sqlite"
CACHE_DIR = "cache"
ASSETS_NAME = "_assets.jsonl"
SCHEMA_VERSION = "1"
_SUFFIXES = (".jsonl", ".msgpack")
# A directory mtime younger than this may not yet reflect a file created in the same clock
# tick, so it is not trusted to mean "nothing changed" (the "racy timestamp" problem).
_DIR_TRUST_SECONDS = 1.0
# Largest SQLite parameter list used in one IN (...) clause.
_CHUNK = 500

_T = TypeVar("_T")


class RunFileWarning(UserWarning):
    """A run file could not be read completely; the message names the file and line."""


class TornRunFileWarning(RunFileWarning):
    """A run file ends with an incomplete line, left by a writer that was interrupted.

    Every complete document before it is read; :meth:`FileStore.repair` removes the tail.
    """


# ---------------------------------------------------------------------------- small helpers
_NAME_RE = re.compile(rb'\s*\[\s*"([A-Za-z_]+)"')
_DESC_RE = re.compile(rb'"descriptor"\s*:\s*"([^"\\]*)"')
_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]*)"')
_ASCII_WORD = re.compile(r"[a-z0-9_]+")
_EXACT_INT = 2**53


def _dump_line(name: str, doc: Any) -> bytes:
    # Python's json (allow_nan) writes NaN/Infinity tokens exactly as suitcase-jsonl does;
    # ensure_ascii keeps lone surrogates representable.
    return (json.dumps([name, doc]) + "\n").encode("ascii")


def _json_ok(text: str) -> bool:
    # SQLite's JSON functions (before 3.42) reject NaN/Infinity tokens.
    return "NaN" not in text and "Infinity" not in text


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_time(value: Any) -> bool:
    # A start time the index can order by: a number, not NaN.
    return _is_number(value) and value == value


def _sql_text(text: str) -> str:
    # Lone surrogates become "?": both are non-word characters and the same replacement is
    # made in stored text and searched text, so the $text prefilter stays a superset.
    return text if _sqlable(text) else text.encode("utf-8", "replace").decode("utf-8")


def _is_corrupt(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    text = str(err).lower()
    return "malformed" in text or "not a database" in text


def _plain(value: Any) -> Any:
    """msgpack-numpy values → JSON-like ones (arrays and numpy scalars become lists/numbers)."""
    cls = type(value)
    if cls is dict:
        return {k if type(k) is str else str(k): _plain(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [_plain(v) for v in value]
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``uid >= lo AND uid < hi`` selects exactly the strings starting with ``prefix``."""
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix, None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return prefix, prefix[:-1] + chr(nxt)


def _regex_prefix(pattern: Any) -> str | None:
    """The literal prefix of a ``'^' + re.escape(prefix)`` pattern, else None."""
    if not isinstance(pattern, str) or not pattern.startswith("^"):
        return None
    rest = pattern[1:]
    literal = re.sub(r"\\(.)", r"\1", rest, flags=re.DOTALL)
    if re.escape(literal) != rest:
        return None
    return literal


def _fts_words(search: str) -> list[str] | None:
    """Words of a ``$text`` search the FTS prefilter may use, or None to use the exact UDF.

    Only plain ASCII words without phrases: FTS5's tokenizer then yields a superset of what
    :func:`~broker_v1.stores._query.text_matches` accepts, which re-checks every candidate.
    """
    search = search.lower()
    if _PHRASE.search(search):
        return None
    words: list[str] = []
    for token in search.split():
        if token.startswith("-") and len(token) > 1:
            continue
        for word in _WORD.findall(token):
            if not _ASCII_WORD.fullmatch(word):
                return None
            words.append(word)
    return words or None


def _udf_text(search: str, text: str) -> int:
    from .._query import text_matches

    return int(text_matches(search, text))


# ---------------------------------------------------------------------------- run contents
class _RunData:
    """Parsed contents of one run file (or ``_assets.jsonl``), grown in place as it grows.

    Event lines are kept as raw bytes, grouped by descriptor, until a descriptor's events are
    asked for: a run's skeleton (start, descriptors, resources, datums, stop) is then cheap.
    """

    def __init__(self, name: str, fmt: str) -> None:
        self.name = name
        self.fmt = fmt
        self.size = 0
        self.mtime_ns = 0
        self.offset = 0  # bytes of complete lines consumed
        self.head_crc: int | None = None
        self.lines = 0  # complete lines consumed
        self.tail = 0  # bytes of an incomplete last line
        self.start: Doc | None = None
        self.stop: Doc | None = None
        self.descriptors: dict[str, Doc] = {}
        self.resources: dict[str, Doc] = {}
        self.datums: dict[str, Doc] = {}
        self.datums_by_resource: dict[str, list[str]] = {}
        self.columns: dict[str, _Columns] = {}
        self.pending: dict[str | None, list[tuple[int, bytes]]] = {}
        self.pending_docs: dict[str, list[tuple[str, Doc]]] = {}
        self.rows_by_uid: dict[str, dict[str, int]] = {}

    # -------------------------------------------------------------- ingest
    def add_doc(self, name: str, doc: Doc) -> None:
        if name == "start":
            if self.start is None:
                self.start = doc
        elif name == "descriptor":
            if isinstance(doc.get("uid"), str):
                self.descriptors[doc["uid"]] = doc
        elif name == "stop":
            self.stop = doc
        elif name == "resource":
            if "uid" not in doc and "_id" in doc:
                doc = {**doc, "uid": str(doc["_id"])}
            if isinstance(doc.get("uid"), str):
                self.resources[doc["uid"]] = doc
        elif name == "datum":
            self._add_datum(doc)
        elif name == "datum_page":
            ids = doc.get("datum_id") or []
            kwargs = doc.get("datum_kwargs") or {}
            for i, datum_id in enumerate(ids):
                self._add_datum(
                    {
                        "datum_id": datum_id,
                        "datum_kwargs": {k: col[i] for k, col in kwargs.items()},
                        "resource": doc.get("resource"),
                    }
                )
        elif name in ("event", "event_page"):
            descriptor = doc.get("descriptor")
            if isinstance(descriptor, str):
                self.pending_docs.setdefault(descriptor, []).append((name, doc))
        # Anything else (bulk_events, resource_update, ...) is not part of the v1 model.

    def _add_datum(self, datum: Doc) -> None:
        datum_id = datum.get("datum_id")
        if not isinstance(datum_id, str):
            return
        if datum_id not in self.datums:
            self.datums_by_resource.setdefault(str(datum.get("resource")), []).append(datum_id)
        self.datums[datum_id] = datum

    def ingest_jsonl(self, data: bytes, path: Path) -> None:
        """Consume the complete lines of ``data`` (bytes read from ``self.offset`` on)."""
        end = data.rfind(b"\n") + 1
        self.tail = len(data) - end
        if not end:
            return
        lines = data[:end].split(b"\n")
        lines.pop()
        number = self.lines
        for line in lines:
            number += 1
            m = _NAME_RE.match(line)
            if m is not None and m.group(1) in (b"event", b"event_page"):
                found = _DESC_RE.findall(line)
                try:
                    key = found[0].decode() if len(found) == 1 else None
                except UnicodeDecodeError:
                    key = None  # damaged bytes: parsed (and reported) with the unknowns
                self.pending.setdefault(key, []).append((number, line))
                continue
            if not line.strip():
                continue
            name, doc = _parse_line(line, path, number)
            self.add_doc(name, doc)
        self.lines = number
        self.offset += end

    # -------------------------------------------------------------- events
    def _parse_unknown(self, path: Path) -> None:
        # Event lines whose descriptor could not be read off cheaply: parse and distribute.
        for name, doc in _parse_lines(self.pending.pop(None, []), path):
            target = doc.get("descriptor")
            if isinstance(target, str):
                self.pending_docs.setdefault(target, []).append((name, doc))

    def columns_for(self, descriptor: str, path: Path) -> _Columns | None:
        if None in self.pending:
            self._parse_unknown(path)
        docs: list[tuple[str, Doc]] = []
        for name, doc in _parse_lines(self.pending.pop(descriptor, []), path):
            target = doc.get("descriptor")
            if target == descriptor:
                docs.append((name, doc))
            elif isinstance(target, str):  # the guess was wrong (a data key "descriptor")
                self.pending_docs.setdefault(target, []).append((name, doc))
        docs.extend(self.pending_docs.pop(descriptor, []))
        if docs:
            cols = self.columns.get(descriptor)
            if cols is None:
                cols = self.columns[descriptor] = _Columns()
            _append_events(cols, docs, path)
            self.rows_by_uid.pop(descriptor, None)
        return self.columns.get(descriptor)

    def all_columns(self, path: Path) -> dict[str, _Columns]:
        if None in self.pending:
            self._parse_unknown(path)
        for key in [k for k in self.pending if k is not None] + list(self.pending_docs):
            self.columns_for(key, path)
        return self.columns

    def weight(self) -> int:
        """Rough memory use, in rows, for the LRU."""
        return sum(len(c) for c in self.columns.values()) + sum(
            len(v) for v in self.pending.values()
        ) + sum(len(v) for v in self.pending_docs.values()) + len(self.datums)

    def event_uids(self, path: Path) -> Iterator[tuple[str, str]]:
        for descriptor, cols in self.all_columns(path).items():
            for uid in cols.uid:
                yield uid, descriptor

    def find_event(self, uid: str, path: Path) -> Doc | None:
        for descriptor, cols in self.all_columns(path).items():
            rows = self.rows_by_uid.get(descriptor)
            if rows is None:
                rows = self.rows_by_uid[descriptor] = {u: i for i, u in enumerate(cols.uid)}
            i = rows.get(uid)
            if i is not None:
                return cols.row(i, descriptor)
        return None


def _parse_line(line: bytes, path: Path, number: int) -> tuple[str, Doc]:
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
        raise CorruptRunFile(
            f"{path} line {number} is not valid JSON ({err}); the file is corrupt in the middle "
            "(not a torn last line, which would be skipped). Restore the file from a backup or "
            "remove that line by hand.",
            path=str(path),
            line=number,
        ) from None
    return _check_pair(item, path, number)


def _check_pair(item: Any, path: Path, number: int | None) -> tuple[str, Doc]:
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not isinstance(item[0], str)
        or not isinstance(item[1], dict)
    ):
        where = f"line {number}" if number is not None else "an item"
        raise CorruptRunFile(
            f"{path} {where} is not a [name, document] pair as suitcase-jsonl writes "
            f"(got {str(item)[:80]!r}). Restore the file or remove that line by hand.",
            path=str(path),
            line=number,
        )
    return item[0], item[1]


def _parse_lines(lines: list[tuple[int, bytes]], path: Path) -> list[tuple[str, Doc]]:
    if not lines:
        return []
    # One json.loads over many lines is markedly faster than one call per line, and the
    # cyclic collector has nothing to find in fresh JSON (it would walk every new dict).
    enabled = gc.isenabled()
    gc.disable()
    try:
        items = loads_json(b"[" + b",".join(line for _, line in lines) + b"]")
    except (ValueError, RecursionError):
        items = None
    finally:
        if enabled:
            gc.enable()
    if items is None or len(items) != len(lines):
        # Some line is damaged (or holds more than one value): find it, with its number.
        return [_parse_line(line, path, number) for number, line in lines]
    return [_check_pair(item, path, number) for item, (number, _) in zip(items, lines)]


_EVENT_FIELDS = ("uid", "time", "seq_num", "data", "timestamps")


def _append_events(cols: _Columns, docs: list[tuple[str, Doc]], path: Path) -> None:
    """Append events and event pages to columns, packing runs of single events into pages.

    Single events are copied row by row (each event's dicts are touched once while they are
    in the CPU cache), which is several times faster than one pass per column.
    """
    page: Doc | None = None
    shape: tuple[Any, ...] = ()
    items: tuple[list[tuple[str, list[Any]]], ...] = ()

    def flush() -> None:
        nonlocal page
        if page is not None:
            cols.append(page)
            page = None

    for name, doc in docs:
        missing = [f for f in _EVENT_FIELDS if f not in doc]
        if missing:
            raise CorruptRunFile(
                f"{path} holds an {name} of descriptor {doc.get('descriptor')!r} without "
                f"{missing[0]!r}, so the run's events cannot be read. Repair the file by hand.",
                path=str(path),
            )
        if name != "event":
            flush()
            if doc["uid"]:
                cols.append(doc)
            continue
        filled = doc.get("filled")
        key = (
            doc["data"].keys(),
            doc["timestamps"].keys(),
            None if filled is None else filled.keys(),
        )
        if page is None or key != shape:
            flush()
            shape = key
            page = {"time": [], "seq_num": [], "uid": [],
                    "data": {k: [] for k in doc["data"]},
                    "timestamps": {k: [] for k in doc["timestamps"]}}
            if filled is not None:
                page["filled"] = {k: [] for k in filled}
            items = (
                list(page["data"].items()),
                list(page["timestamps"].items()),
                list(page.get("filled", {}).items()),
            )
        page["time"].append(doc["time"])
        page["seq_num"].append(doc["seq_num"])
        page["uid"].append(doc["uid"])
        data = doc["data"]
        for k, col in items[0]:
            col.append(data[k])
        timestamps = doc["timestamps"]
        for k, col in items[1]:
            col.append(timestamps[k])
        if filled is not None:
            for k, col in items[2]:
                col.append(filled[k])
    flush()


# ---------------------------------------------------------------------------- columnar cache
_CACHE_MAGIC = b"BV1COLS\x01"


def _encode_column(values: list[Any]) -> tuple[str, bytes]:
    """A column as bytes, in an encoding that gives back exactly the same Python values."""
    types = set(map(type, values))
    if types == {float}:
        return "f8", array("d", values).tobytes()
    if types == {int}:
        try:
            return "i8", array("q", values).tobytes()
        except OverflowError:
            pass  # beyond 64 bits: JSON keeps it exact
    elif types == {bool}:
        return "b1", bytes(values)
    elif types == {str}:
        joined = "\x00".join(values)
        if joined.count("\x00") == len(values) - 1:
            return "s0", joined.encode("utf-8", "surrogatepass")
    return "json", json.dumps(values).encode("ascii")


def _decode_column(enc: str, blob: memoryview | bytes) -> list[Any]:
    import numpy as np

    if enc == "f8":
        return np.frombuffer(blob, dtype="<f8").tolist()  # type: ignore[no-any-return]
    if enc == "i8":
        return np.frombuffer(blob, dtype="<i8").tolist()  # type: ignore[no-any-return]
    if enc == "b1":
        return [b == 1 for b in bytes(blob)]
    if enc == "s0":
        return bytes(blob).decode("utf-8", "surrogatepass").split("\x00")
    return json.loads(bytes(blob))  # type: ignore[no-any-return]


class _ColumnAcc:
    """One descriptor's events, column-wise, as this process writes them (for the cache).

    Appending plain values to a few long lists creates no new containers per event, so it
    costs little and does not make the cyclic garbage collector walk every written event.
    """

    __slots__ = ("time", "seq_num", "uid", "data", "timestamps", "filled")

    def __init__(self, page: Doc) -> None:
        self.time: list[Any] = []
        self.seq_num: list[Any] = []
        self.uid: list[Any] = []
        self.data: dict[str, list[Any]] = {k: [] for k in page["data"]}
        self.timestamps: dict[str, list[Any]] = {k: [] for k in page["timestamps"]}
        self.filled: dict[str, list[Any]] | None = (
            {k: [] for k in page["filled"]} if "filled" in page else None
        )

    def add(self, page: Doc) -> bool:
        """Append a page; False when its keys do not match (the cache is then given up)."""
        if ("filled" in page) != (self.filled is not None):
            return False
        try:
            self.time.extend(page["time"])
            self.seq_num.extend(page["seq_num"])
            self.uid.extend(page["uid"])
            data = self.data
            for k, col in page["data"].items():
                data[k].extend(col)
            timestamps = self.timestamps
            for k, col in page["timestamps"].items():
                timestamps[k].extend(col)
            if self.filled is not None:
                filled = self.filled
                for k, col in page["filled"].items():
                    filled[k].extend(col)
        except KeyError:
            return False
        return True

    def add_event(self, event: Doc) -> bool:
        """Append one event; False when its keys do not match (as :meth:`add`)."""
        if ("filled" in event) != (self.filled is not None):
            return False
        data, timestamps = self.data, self.timestamps
        if event["data"].keys() != data.keys() or event["timestamps"].keys() != data.keys():
            return False
        self.time.append(event["time"])
        self.seq_num.append(event["seq_num"])
        self.uid.append(event["uid"])
        for k, v in event["data"].items():
            data[k].append(v)
        for k, v in event["timestamps"].items():
            timestamps[k].append(v)
        if self.filled is not None:
            try:
                for k, v in event["filled"].items():
                    self.filled[k].append(v)
            except KeyError:
                return False
        return True

    def columns(self) -> _Columns | None:
        n = len(self.uid)
        parts = [self.time, self.seq_num, *self.data.values(), *self.timestamps.values()]
        parts.extend((self.filled or {}).values())
        if any(len(col) != n for col in parts):
            return None  # a page lacked a key: the columns do not line up
        cols = _Columns()
        cols.time, cols.seq_num, cols.uid = self.time, self.seq_num, self.uid
        cols.data, cols.timestamps, cols.filled = self.data, self.timestamps, self.filled
        _finish_columns(cols)
        return cols


_CONTAINERS = frozenset({dict, list})


def _finish_columns(cols: _Columns) -> None:
    """Set ``ordered`` and ``nested`` exactly as :class:`_Columns` would have."""
    cols.ordered = _is_ordered(cols.time, cols.seq_num)
    cols.nested = {k for k, col in cols.data.items() if not _CONTAINERS.isdisjoint(map(type, col))}


def _is_ordered(times: list[Any], seqs: list[Any]) -> bool:
    """Whether rows are already in (time, seq_num) order."""
    if len(times) < 2:
        return True
    time_types = set(map(type, times))
    if time_types <= {float, int} and set(map(type, seqs)) == {int}:
        import numpy as np

        try:
            t = np.frombuffer(array("d", times), dtype="f8")
            s = np.frombuffer(array("q", seqs), dtype="i8")
            exact = not np.isnan(t).any()
        except OverflowError:
            exact = False
        if exact:
            dt = np.diff(t)
            ds = np.diff(s)
            if (dt >= 0).all() and ((dt > 0) | (ds >= 0)).all():
                # float64 may merge distinct large ints; then confirm in Python.
                if time_types == {float} or max(map(abs, times)) < 2**53:
                    return True
            elif time_types == {float} or max(map(abs, times)) < 2**53:
                return False
    pairs = list(zip(times, seqs))
    return all(a <= b for a, b in zip(pairs, pairs[1:]))


def _write_cache(
    path: Path,
    source: Mapping[str, Any],
    doc_lines: list[bytes],
    columns: Mapping[str, _Columns],
    lines: int,
) -> None:
    """Write a columnar copy of a completed run atomically (temporary file + rename)."""
    blobs: list[bytes] = []
    offset = 0

    def add(blob: bytes) -> list[int]:
        nonlocal offset
        blobs.append(blob)
        where = [offset, len(blob)]
        offset += len(blob)
        return where

    header: dict[str, Any] = {
        "source": dict(source),
        "lines": lines,
        "docs": add(b"".join(doc_lines)),
    }
    descriptors = {}
    for descriptor, cols in columns.items():
        entry: dict[str, Any] = {
            "n": len(cols),
            "ordered": cols.ordered,
            "nested": sorted(cols.nested),
            "cols": [],
        }
        for part in ("time", "seq_num", "uid"):
            enc, blob = _encode_column(getattr(cols, part))
            entry["cols"].append([part, None, enc, *add(blob)])
        for part in ("data", "timestamps", "filled"):
            mapping = getattr(cols, part)
            if mapping is None:
                continue
            entry.setdefault("has", []).append(part)
            for key, col in mapping.items():
                enc, blob = _encode_column(col)
                entry["cols"].append([part, key, enc, *add(blob)])
        descriptors[descriptor] = entry
    header["descriptors"] = descriptors
    head = json.dumps(header).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(_CACHE_MAGIC + struct.pack("<Q", len(head)) + head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def _read_cache(path: Path, source: Mapping[str, Any], name: str) -> _RunData | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        if raw[:8] != _CACHE_MAGIC:
            return None
        (n,) = struct.unpack("<Q", raw[8:16])
        header = json.loads(raw[16 : 16 + n])
        if header.get("source") != dict(source):
            return None
        body = memoryview(raw)[16 + n :]

        def blob(where: list[int]) -> memoryview:
            return body[where[0] : where[0] + where[1]]

        rd = _RunData(name, "jsonl")
        docs = bytes(blob(header["docs"])).split(b"\n")
        docs.pop()
        for item in loads_json(b"[" + b",".join(docs) + b"]"):
            rd.add_doc(*_check_pair(item, path, None))
        for descriptor, entry in header["descriptors"].items():
            cols = _Columns()
            has = set(entry.get("has", ()))
            cols.data, cols.timestamps = {}, {}
            cols.filled = {} if "filled" in has else None
            for part, key, enc, off, length in entry["cols"]:
                values = _decode_column(enc, blob([off, length]))
                if key is None:
                    setattr(cols, part, values)
                else:
                    getattr(cols, part)[key] = values
            cols.ordered = bool(entry["ordered"])
            cols.nested = set(entry["nested"])
            rd.columns[descriptor] = cols
        rd.lines = int(header.get("lines", 0))
        return rd
    except (ValueError, KeyError, TypeError, IndexError, RecursionError, struct.error):
        return None  # a damaged cache is just rebuilt


# ---------------------------------------------------------------------------- writer state
class _RunState:
    """What this process knows about a run file it writes (or checked duplicates against)."""

    __slots__ = (
        "name",
        "run_uid",
        "fd",
        "size",
        "lines",
        "dirty",
        "new_entry",
        "uids_loaded",
        "event_uids",
        "datum_ids",
        "docs",
        "pending_datums",
        "acc",
        "doc_lines",
        "acc_bytes",
    )

    def __init__(self, name: str, run_uid: str | None) -> None:
        self.name = name
        self.run_uid = run_uid
        self.fd: int | None = None
        self.size = 0
        self.lines = 0
        self.dirty = False
        self.new_entry = False
        self.uids_loaded = False
        self.event_uids: set[str] = set()
        self.datum_ids: set[str] = set()
        self.docs: dict[tuple[str, str], Doc] = {}  # (kind, uid) -> descriptor / resource
        self.pending_datums: list[str] = []
        # What a run this process created holds, kept for the columnar cache at stop: events
        # column-wise per descriptor, every other document as its JSON line.
        self.acc: dict[str, _ColumnAcc] | None = None
        self.doc_lines: list[bytes] = []
        self.acc_bytes = 0


def _accumulate(state: _RunState, doc: Doc, *, single: bool) -> None:
    """Keep a written event (or page) column-wise for the run's columnar cache; a document
    whose keys do not match gives the cache up (the run gets one on first read instead)."""
    if state.acc is None:
        return
    acc = state.acc.get(doc["descriptor"])
    if acc is None:
        acc = state.acc[doc["descriptor"]] = _ColumnAcc(doc)
    if not (acc.add_event(doc) if single else acc.add(doc)):
        state.acc, state.doc_lines = None, []


def _read_first_line(f: Any) -> bytes | None:
    chunks = []
    while True:
        chunk = f.read(65536)
        if not chunk:
            return None
        i = chunk.find(b"\n")
        if i >= 0:
            chunks.append(chunk[: i + 1])
            return b"".join(chunks)
        chunks.append(chunk)


def _load_msgpack() -> tuple[Any, Any]:
    try:
        import msgpack
        import msgpack_numpy
    except ImportError as err:
        raise MissingDependency(
            f"Reading .msgpack run files needs {err.name}, which is not installed. "
            "Install it with: pip install msgpack msgpack-numpy"
        ) from err
    return msgpack, msgpack_numpy


def _read_msgpack(path: Path) -> tuple[list[tuple[str, Doc]], int, int]:
    """Every complete ``[name, doc]`` of a msgpack run file, bytes consumed and file size."""
    msgpack, msgpack_numpy = _load_msgpack()
    data = path.read_bytes()

    def decode(obj: dict[Any, Any]) -> Any:
        # msgpack-numpy unpickles arrays of dtype object ({'nd': True, 'kind': b'O'}) and
        # builds other arrays straight from the file's bytes, which for a dtype holding
        # Python objects means pointers chosen by whoever wrote the file.  Neither is ever
        # done: such an item makes the file unreadable (CorruptRunFile), and nothing runs.
        if b"nd" in obj:
            if obj.get(b"kind") == b"O":
                raise ValueError("it holds a pickled object array, which is never unpickled")
            import numpy as np

            unpack = getattr(msgpack_numpy, "_unpack_dtype", np.dtype)
            descr = obj.get(b"type")
            if isinstance(descr, list | tuple):
                descr = [tuple(t.decode() if isinstance(t, bytes) else t for t in d)
                         for d in descr]
            if unpack(descr).hasobject:
                raise ValueError("it holds an array of Python objects, which is never read")
        return msgpack_numpy.decode(obj)

    unpacker = msgpack.Unpacker(
        object_hook=decode, raw=False, strict_map_key=False, max_buffer_size=0
    )
    unpacker.feed(data)
    docs = []
    consumed = 0
    number = 0
    try:
        for item in unpacker:
            number += 1
            docs.append(_check_pair(_plain(item), path, number))
            consumed = unpacker.tell()
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError) as err:
        if isinstance(err, CorruptRunFile):
            raise
        raise CorruptRunFile(
            f"{path} item {number + 1} is not valid msgpack ({err}). Restore the file from its "
            "source catalog.",
            path=str(path),
            line=number + 1,
        ) from None
    return docs, consumed, len(data)


# ---------------------------------------------------------------------------- the store
#: Most stop fsyncs in flight at once inside ``deferred_sync()`` (each holds a descriptor).
_MAX_PENDING_SYNCS = 64
#: Inside ``deferred_sync()``, whole-run copies share one index transaction of at most this many
#: runs or seconds: far fewer commits, and the write lock is never held for long.
_BATCH_RUNS = 200
_BATCH_SECONDS = 0.25


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore(DocumentStore):
    """Runs kept as suitcase-jsonl files in one directory, with an SQLite search index.

    Parameters
    ----------
    path
        The store directory.  Created when missing unless ``read_only``.
    read_only, validate
        See :class:`~broker_v1.stores.base.DocumentStore`.  A read-only store never modifies
        a run file; it still maintains the derived index and columnar cache when the
        directory is writable (and keeps its index in memory otherwise).
    page_size
        Largest number of events handed out in one event page.
    fsync_interval
        Seconds after which written documents are fsynced even before the run's stop
        (``0`` fsyncs every document).  Every document is flushed to the operating system
        as soon as ``insert`` returns, so a killed process loses nothing; fsync guards
        against power loss.
    torn_grace
        Seconds during which an incomplete last line of a run without a stop is taken for a
        write in progress (silently not shown) rather than an interrupted one (warned about).
    index_path
        Where the index lives; default ``<path>/.broker_v1/index.sqlite``; ``":memory:"``
        keeps it in memory (rebuilt at every open).
    columnar_cache
        Keep a binary columnar copy of each completed run's events under
        ``<path>/.broker_v1/cache/`` so reading a run does not parse JSON.  The writer makes
        it at ``stop`` (it holds the events already); other runs get one on first read.
        It is checked against the run file and rebuilt whenever stale or missing.
    cache_runs
        How many parsed runs to keep in memory (least recently used are dropped).
    cache_max_bytes
        Largest run (in bytes of JSON written) for which the writer keeps events in memory
        to write the columnar cache at stop; larger runs get theirs on first read.

    Notes
    -----
    Resources name their run with ``run_start`` and are written into that run's file.  A
    legacy resource without ``run_start`` goes into the run most recently started (and not
    yet stopped) by this process, as suitcase-jsonl would write it; with no such run it
    goes into ``_assets.jsonl``.  Datums go into their resource's file.

    One process writes a given run at a time; different processes may write different runs
    into one directory concurrently.  Duplicate event uids are detected within a run.
    """

    backend = "files"
    supports_writes = True
    supports_text_search = True

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        read_only: bool = False,
        validate: str = "compatible",
        page_size: int = 100_000,
        fsync_interval: float = 1.0,
        torn_grace: float = 5.0,
        index_path: str | os.PathLike[str] | None = None,
        columnar_cache: bool = True,
        cache_runs: int = 8,
        cache_max_bytes: int = 256 * 2**20,
    ) -> None:
        super().__init__(read_only=read_only, validate=validate)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}.")
        self.path = Path(os.fspath(path)).expanduser().absolute()
        self._dirname = str(self.path)  # for the hot paths, where pathlib's cost shows
        self.page_size = int(page_size)
        self.fsync_interval = float(fsync_interval)
        self.torn_grace = float(torn_grace)
        self.columnar_cache = bool(columnar_cache)
        self.cache_runs = max(1, int(cache_runs))
        self.cache_max_bytes = int(cache_max_bytes)
        self._index_option = None if index_path is None else os.fspath(index_path)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._lru: OrderedDict[str, _RunData] = OrderedDict()
        self._warned: set[tuple[str, int]] = set()
        self._states: OrderedDict[str, _RunState] = OrderedDict()
        self._event_owner: dict[str, str] = {}
        self._datum_owner: dict[str, str] = {}
        self._desc_file: dict[str, str] = {}
        self._res_file: dict[str, str] = {}
        self._run_file: dict[str, str] = {}
        self._last_started: str | None = None
        self._sync_timer: threading.Timer | None = None
        # deferred_sync(): nesting depth, the syncs in flight (file name, future), and whether
        # the directory holds new entries not yet synced.
        self._deferred = 0
        self._sync_pool: Any = None
        self._planner: _Planner | None = None  # whole-run copies checked in a 2nd process
        self._planner_failed = False
        self._hinted = 0  # runs announced by prepare_copies() in this deferred_sync() block
        self._checked_ahead = 0  # whole-run copies whose checks came from the planner
        self._pending_syncs: deque[tuple[str, Any]] = deque()
        self._dir_unsynced = False
        # the index transaction whole-run copies keep open inside deferred_sync()
        self._batch_runs = 0
        self._batch_began = 0.0
        self._db: sqlite3.Connection | None = None
        self._db_ident: tuple[int, int] | None = None
        self._dir_mtime: int | None = None
        self._fts = False
        self._json1 = False
        self._open_directory()
        self._connect()

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """``files store <path>``."""
        return f"files store {self.path}"

    def config(self) -> dict[str, Any]:
        """The ``store:`` section that reopens this store (non-default options included)."""
        out: dict[str, Any] = {
            "backend": "files",
            "path": str(self.path),
            "read_only": self.read_only,
        }
        defaults = {
            "page_size": 100_000,
            "fsync_interval": 1.0,
            "torn_grace": 5.0,
            "columnar_cache": True,
            "cache_runs": 8,
            "cache_max_bytes": 256 * 2**20,
        }
        for key, default in defaults.items():
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        if self.validate != "compatible":
            out["validate"] = self.validate
        if self._index_option is not None:
            out["index_path"] = self._index_option
        return out

    # ------------------------------------------------------------------ opening
    def _open_directory(self) -> None:
        if self.path.is_dir():
            if not self.read_only and not os.access(self.path, os.W_OK | os.X_OK):
                raise StoreUnavailable(
                    f"{self.describe()}: the directory is not writable by this user. Open it "
                    "with read_only: true to read it, or fix its permissions."
                )
            return
        if self.path.exists():
            raise StoreUnavailable(
                f"{self.describe()}: {self.path} exists but is not a directory. Point the "
                "files store at a directory."
            )
        if self.read_only:
            raise StoreUnavailable(
                f"{self.describe()}: the directory {self.path} does not exist, and a read-only "
                "store does not create it. Check the path, or open it with read_only: false to "
                "create an empty store there."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreUnavailable(
                f"{self.describe()}: cannot create the directory {self.path} ({err.strerror})."
            ) from err

    def _index_location(self) -> str:
        if self._index_option is not None:
            return self._index_option
        state = self.path / STATE_DIR
        default = state / INDEX_NAME
        if state.is_dir() and os.access(state, os.W_OK | os.X_OK):
            return str(default)
        if not state.exists() and os.access(self.path, os.W_OK | os.X_OK):
            try:
                state.mkdir()
            except FileExistsError:
                pass
            except OSError:
                return ":memory:"
            return str(default)
        return ":memory:"  # a directory we cannot write to: keep the index in memory

    def _connect(self) -> None:
        """Open (creating or rebuilding as needed) the index and bring it up to date."""
        with self._lock:
            location = self._index_location()
            try:
                self._open_db(location)
            except sqlite3.DatabaseError as err:
                if location == ":memory:":
                    raise
                if not _is_corrupt(err):
                    # Not a file SQLite can open (a directory in its place, no permission):
                    # the run files are the truth, so search with an index kept in memory.
                    if self._index_option is not None:
                        raise StoreUnavailable(
                            f"{self.describe()}: cannot open the index {location} ({err})."
                        ) from err
                    warnings.warn(
                        f"{self.describe()}: the index {location} cannot be opened ({err}); "
                        "searching with an index kept in memory instead (rebuilt at every "
                        f"open). Remove or fix {location}.",
                        UserWarning,
                        stacklevel=4,
                    )
                    location = ":memory:"
                else:
                    self._close_db()
                    self._remove_index(location)
                self._open_db(location)
            self._pid = os.getpid()
            self._refresh()

    def _open_db(self, location: str) -> None:
        conn = sqlite3.connect(
            location, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db = conn
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            if location != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                    conn.execute("PRAGMA journal_mode = DELETE")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("bv1_text", 2, _udf_text, deterministic=True)
            try:
                conn.execute("SELECT json_extract('{\"a\": 1}', '$.a')").fetchone()
                self._json1 = True
            except sqlite3.OperationalError:
                self._json1 = False
            self._ensure_schema(conn, location)
        except BaseException:
            self._close_db()
            raise
        if location != ":memory:":
            st = os.stat(location)
            self._db_ident = (st.st_dev, st.st_ino)
        else:
            self._db_ident = None
        self._db_location = location

    def _ensure_schema(self, conn: sqlite3.Connection, location: str) -> None:
        version = None
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = row[0] if row else None
        except sqlite3.OperationalError:
            version = None
        if version != SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("runs_fts", "members", "runs", "files", "meta"):
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                fts = True
                try:
                    conn.execute(
                        "CREATE VIRTUAL TABLE runs_fts USING fts5(words, "
                        "tokenize = 'unicode61 remove_diacritics 2')"
                    )
                except sqlite3.OperationalError:
                    fts = False
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?), ('fts', ?)",
                    (SCHEMA_VERSION, "1" if fts else "0"),
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # keep the original error
                    conn.execute("ROLLBACK")
                raise
        else:
            # Added after schema 1 shipped: lets db[scan_id] use the scan_id index (SQLite
            # answers "scan_id IN (...) OR scan_id_odd = 1" from two indexes, not a scan).
            with contextlib.suppress(sqlite3.OperationalError):  # a read-only index file
                conn.execute(_SCAN_ID_ODD_INDEX)
        row = conn.execute("SELECT value FROM meta WHERE key = 'fts'").fetchone()
        self._fts = bool(row and row[0] == "1")
        row = conn.execute("SELECT value FROM meta WHERE key = 'dir_mtime'").fetchone()
        self._dir_mtime = int(row[0]) if row and row[0] is not None else None

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def _remove_index(self, location: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(location + suffix)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None or os.getpid() != self._pid:
            if os.getpid() != self._pid:
                # A forked child must not use its parent's connection; leave it unclosed.
                self._db = None
                self._states.clear()
                self._event_owner.clear()
                self._datum_owner.clear()
            self._connect()
        assert self._db is not None
        return self._db

    def _recover(self) -> None:
        """Replace a corrupt index with one rebuilt from the run files."""
        with self._lock:
            location = getattr(self, "_db_location", self._index_location())
            self._close_db()
            if location == ":memory:":
                self._open_db(location)
                self._dir_mtime = None
                self._refresh(deep=True)
                return
            with self._directory_lock():
                try:
                    st = os.stat(location)
                    replaced = (st.st_dev, st.st_ino) != self._db_ident
                except FileNotFoundError:
                    replaced = True
                if replaced:
                    # Another process rebuilt it (or deleted it) meanwhile: use the current one.
                    try:
                        self._open_db(location)
                        self._conn().execute("SELECT count(*) FROM runs").fetchone()
                    except sqlite3.DatabaseError as err:
                        if not _is_corrupt(err):
                            raise
                        replaced = False
                        self._close_db()
                if not replaced:
                    self._remove_index(location)
                    self._open_db(location)
                self._dir_mtime = None
                self._refresh(deep=True)

    @contextlib.contextmanager
    def _directory_lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a read query, rebuilding a corrupt index once."""
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as err:
                if not _is_corrupt(err):
                    if isinstance(err, sqlite3.OperationalError):
                        raise self._index_unusable("read", err) from err
                    raise
                self._recover()
                return self._conn().execute(sql, params).fetchall()

    def _index_unusable(self, action: str, err: sqlite3.OperationalError) -> StoreUnavailable:
        """The error for an index that cannot be read or written (disk full, I/O error,
        locked past the timeout)."""
        location = getattr(self, "_db_location", "the index")
        return StoreUnavailable(
            f"{self.describe()}: could not {action} the search index {location} ({err}). "
            "Documents already appended to run files stay there and are indexed once the index "
            "can be written again; inserting the same document again is a no-op."
        )

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """Run ``fn`` in one index transaction; a corrupt index is rebuilt from the files
        instead (which then already holds whatever ``fn`` would have recorded)."""
        with self._lock:
            self._commit_batch()
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.DatabaseError as err:
                self._index_write_failed(err)
                return None

    def _index_write_failed(self, err: sqlite3.DatabaseError) -> None:
        """Rebuild a corrupt index from the files; raise for anything else."""
        if not _is_corrupt(err):
            if isinstance(err, sqlite3.OperationalError):
                raise self._index_unusable("update", err) from err
            raise err
        self._recover()

    def _write_batched(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """``_write`` for whole-run copies: inside ``deferred_sync()`` the transaction stays
        open for the next runs and is committed when it is full or old, before any other
        write, and when the block ends.  Its rows are seen at once by this store (same
        connection); other stores see them at the commit.  A run file whose rows are rolled
        back or never committed (a crash) is still in the directory, and the next refresh
        indexes it, as it would a file another program wrote."""
        with self._lock:
            if not self._deferred:
                self._write(fn)
                return
            conn = self._conn()
            try:
                if not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                    self._batch_runs, self._batch_began = 0, time.monotonic()
                fn(conn)
            except BaseException as err:
                self._abandon_batch(conn)
                if isinstance(err, sqlite3.DatabaseError):
                    self._index_write_failed(err)
                    return
                raise
            self._batch_runs += 1
            if (self._batch_runs >= _BATCH_RUNS
                    or time.monotonic() - self._batch_began > _BATCH_SECONDS):
                self._commit_batch()

    def _commit_batch(self) -> None:
        """Commit the transaction ``_write_batched`` left open, if any."""
        with self._lock:
            conn = self._db
            if conn is None or not conn.in_transaction:
                return
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                self._abandon_batch(conn)
                self._index_write_failed(err)

    def _abandon_batch(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        self._dir_mtime = None  # the next refresh scans the directory and indexes those files

    # ------------------------------------------------------------------ refreshing the index
    def _refresh(self, *, deep: bool = False) -> None:
        """Bring the index up to date with the directory (cheap when nothing changed)."""
        with self._lock:
            if self._db is None or os.getpid() != self._pid:
                self._conn()  # reconnecting refreshes
                if not deep:
                    return
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise StoreUnavailable(
                    f"{self.describe()}: the directory {self.path} no longer exists."
                ) from None
            self._check_index_identity()
            if deep or st.st_mtime_ns != self._dir_mtime:
                self._full_scan(st)
            else:
                self._check_volatile()

    def _check_index_identity(self) -> None:
        # If another process replaced the index (after finding it corrupt), follow it.
        if self._db_ident is None:
            return
        try:
            st = os.stat(self._db_location)
            same = (st.st_dev, st.st_ino) == self._db_ident
        except FileNotFoundError:
            same = False
        if not same:
            self._close_db()
            self._connect()

    def _file_rows(self, where: str = "", params: Sequence[Any] = ()) -> dict[str, tuple[Any, ...]]:
        rows = self._read(
            "SELECT name, size, mtime_ns, scanned, head_crc, kind, run_uid FROM files " + where,
            params,
        )
        return {r[0]: r for r in rows}

    def _full_scan(self, dir_stat: os.stat_result) -> None:
        known = self._file_rows()
        seen: set[str] = set()
        changed: list[tuple[str, os.stat_result, tuple[Any, ...] | None]] = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(_SUFFIXES) or not _sqlable(name):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if not stat_module.S_ISREG(st.st_mode):
                    continue
                seen.add(name)
                row = known.get(name)
                if row is None or row[1] != st.st_size or row[2] != st.st_mtime_ns:
                    changed.append((name, st, row))
        vanished = [name for name in known if name not in seen]
        if vanished:

            def forget(conn: sqlite3.Connection) -> None:
                for name in vanished:
                    self._forget_file(conn, name)

            self._write(forget)
            for name in vanished:
                self._lru.pop(name, None)
        changed.sort(key=lambda item: item[0])
        for i in range(0, len(changed), 200):
            # Transactions of 200 files: a rebuild never holds the write lock for long.
            self._index_files(changed[i : i + 200])
        # Trust the directory mtime only once it is old enough that a later change must move it.
        trusted = (
            dir_stat.st_mtime_ns if time.time() - dir_stat.st_mtime > _DIR_TRUST_SECONDS else None
        )
        if trusted != self._dir_mtime:
            self._dir_mtime = trusted
            self._write(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('dir_mtime', ?)",
                    (None if trusted is None else str(trusted),),
                )
            )

    def _check_volatile(self) -> None:
        rows = self._file_rows("WHERE volatile = 1")
        changed = []
        for name, row in rows.items():
            try:
                st = os.stat(self.path / name)
            except FileNotFoundError:
                self._dir_mtime = None  # the directory changed after all: scan next time
                continue
            if row[1] != st.st_size or row[2] != st.st_mtime_ns:
                changed.append((name, st, row))
        if changed:
            self._index_files(changed)

    def _index_files(
        self, items: Sequence[tuple[str, os.stat_result, tuple[Any, ...] | None]]
    ) -> None:
        def index(conn: sqlite3.Connection) -> None:
            for item in items:
                self._index_file(conn, *item)

        self._write(index)

    def _refresh_file(self, name: str) -> None:
        """Re-index one file if it changed since it was indexed."""
        rows = self._file_rows("WHERE name = ?", (name,))
        try:
            st = os.stat(self.path / name)
        except FileNotFoundError:
            return
        row = rows.get(name)
        if row is None or row[1] != st.st_size or row[2] != st.st_mtime_ns:
            self._write(lambda conn: self._index_file(conn, name, st, row))

    def _forget_file(self, conn: sqlite3.Connection, name: str) -> None:
        for (rowid,) in conn.execute("SELECT id FROM runs WHERE file = ?", (name,)).fetchall():
            if self._fts:
                conn.execute("DELETE FROM runs_fts WHERE rowid = ?", (rowid,))
            conn.execute("DELETE FROM runs WHERE id = ?", (rowid,))
        conn.execute("DELETE FROM members WHERE file = ?", (name,))
        conn.execute("DELETE FROM files WHERE name = ?", (name,))

    def _set_file_row(
        self,
        conn: sqlite3.Connection,
        name: str,
        st: os.stat_result,
        scanned: int,
        crc: int | None,
        kind: str,
        run_uid: str | None,
        volatile: bool,
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO files (name, size, mtime_ns, scanned, head_crc, kind, "
            "run_uid, volatile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, st.st_size, st.st_mtime_ns, scanned, crc, kind, run_uid, int(volatile)),
        )

    def _index_file(
        self,
        conn: sqlite3.Connection,
        name: str,
        st: os.stat_result,
        seen_row: tuple[Any, ...] | None,
    ) -> None:
        """(Re)index one file inside the caller's transaction, incrementally when it grew.

        ``seen_row`` was read before the transaction; another process may have indexed the
        file since, so the row is read again here and that one counts.
        """
        del seen_row
        row = conn.execute(
            "SELECT name, size, mtime_ns, scanned, head_crc, kind, run_uid FROM files "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        if row is not None and (row[1], row[2]) == (st.st_size, st.st_mtime_ns):
            return  # already indexed as it is now
        path = self.path / name
        if name.endswith(".msgpack"):
            self._index_msgpack(conn, name, st)
            return
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            self._forget_file(conn, name)
            return
        with f:
            head = _read_first_line(f)
            if head is None:  # empty, or the first line is still being written
                if row is not None and row[5] != "pending":
                    self._forget_file(conn, name)
                self._set_file_row(conn, name, st, 0, None, "pending", None, True)
                return
            crc = zlib.crc32(head)
            size = max(st.st_size, len(head))
            incremental = (
                row is not None
                and row[4] == crc
                and row[3] <= size
                and row[5] in ("run", "assets")
                and row[3] >= len(head)
            )
            run_uid: str | None = row[6] if incremental and row is not None else None
            if incremental:
                assert row is not None
                offset = row[3]
                kind = row[5]
            else:
                self._forget_file(conn, name)
                if name == ASSETS_NAME:
                    kind, offset = "assets", 0
                else:
                    run_uid = self._index_start(conn, name, path, head)
                    if run_uid is None:
                        self._set_file_row(conn, name, st, len(head), crc, "ignored", None, False)
                        return
                    kind, offset = "run", len(head)
            f.seek(offset)
            data = f.read()
        scanned, has_stop = self._scan_members(conn, name, path, data, offset, run_uid)
        if kind == "run" and not has_stop:
            has_stop = bool(
                conn.execute(
                    "SELECT stop IS NOT NULL FROM runs WHERE uid = ?", (run_uid,)
                ).fetchone()[0]
            )
        volatile = kind == "assets" or not has_stop
        self._set_file_row(conn, name, st, scanned, crc, kind, run_uid, volatile)

    def _index_start(
        self, conn: sqlite3.Connection, name: str, path: Path, head: bytes
    ) -> str | None:
        try:
            item = json.loads(head)
            doc_name, start = _check_pair(item, path, 1)
        except (ValueError, RecursionError, CorruptRunFile):
            self._warn_once(name, 1, f"{path} line 1 is not a [name, document] pair; the file "
                            "is not shown as a run. Remove or fix it.", RunFileWarning)
            return None
        uid = start.get("uid")
        if (
            doc_name != "start"
            or not isinstance(uid, str)
            or not _sqlable(uid)
            or not _is_time(start.get("time"))
        ):
            self._warn_once(
                name,
                1,
                f"{path} does not begin with a start document that has a string uid and a "
                "numeric time, so it is not shown as a run. Remove or fix it.",
                RunFileWarning,
            )
            return None
        other = conn.execute("SELECT file FROM runs WHERE uid = ?", (uid,)).fetchone()
        if other is not None and other[0] != name:
            self._warn_once(
                name,
                1,
                f"{path} holds run {uid}, which {other[0]} in the same store already holds; "
                f"{other[0]} is used. Remove one of the two files.",
                RunFileWarning,
            )
            return None
        self._insert_run_row(conn, name, start)
        return uid

    def _insert_run_row(
        self,
        conn: sqlite3.Connection,
        name: str,
        start: Doc,
        stop: Doc | None = None,
        row: tuple[Any, ...] | None = None,
    ) -> None:
        """Index a run; ``row`` is ``_run_row_values(start, stop)`` when already computed."""
        values = _run_row_values(start, stop) if row is None else row
        cur = conn.execute(
            "INSERT INTO runs (uid, file, time, scan_id, scan_id_odd, start, json_ok, text, "
            "stop, stop_uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (values[0], name, *values[1:-1]),
        )
        if self._fts:
            conn.execute(
                "INSERT INTO runs_fts (rowid, words) VALUES (?, ?)", (cur.lastrowid, values[-1])
            )

    def _scan_members(
        self,
        conn: sqlite3.Connection,
        name: str,
        path: Path,
        data: bytes,
        offset: int,
        run_uid: str | None,
    ) -> tuple[int, bool]:
        """Index descriptors, resources, datums and the stop in complete lines of ``data``."""
        end = data.rfind(b"\n") + 1
        members: list[tuple[str, str, str]] = []
        stop: Doc | None = None
        if end:
            for line in data[:end].split(b"\n"):
                m = _NAME_RE.match(line)
                if m is None:
                    continue
                kind = m.group(1)
                if kind in (b"event", b"event_page", b"start"):
                    continue
                try:
                    doc_name, doc = _check_pair(json.loads(line), path, None)
                except (ValueError, RecursionError, CorruptRunFile):
                    continue  # reported when the run is read
                if doc_name in ("descriptor", "resource"):
                    uid = doc.get("uid")
                    if uid is None and doc_name == "resource" and "_id" in doc:
                        uid = str(doc["_id"])
                    if isinstance(uid, str):
                        members.append((doc_name, uid, name))
                elif doc_name == "datum":
                    if isinstance(doc.get("datum_id"), str):
                        members.append(("datum", doc["datum_id"], name))
                elif doc_name == "datum_page":
                    ids = doc.get("datum_id")
                    if isinstance(ids, list):
                        members.extend(("datum", d, name) for d in ids if isinstance(d, str))
                elif doc_name == "stop" and run_uid is not None:
                    if doc.get("run_start", run_uid) == run_uid:
                        stop = doc
        self._record_members(conn, members)
        if stop is not None:
            self._record_stop(conn, run_uid, stop)
        return offset + end, stop is not None

    def _record_members(
        self, conn: sqlite3.Connection, members: list[tuple[str, str, str]]
    ) -> None:
        members = [m for m in members if _sqlable(m[1])]
        if members:
            conn.executemany(
                "INSERT OR IGNORE INTO members (kind, uid, file) VALUES (?, ?, ?)", members
            )

    def _record_stop(self, conn: sqlite3.Connection, run_uid: str | None, stop: Doc) -> None:
        uid = stop.get("uid")
        conn.execute(
            "UPDATE runs SET stop = ?, stop_uid = ? WHERE uid = ?",
            (json.dumps(stop), uid if isinstance(uid, str) and _sqlable(uid) else None, run_uid),
        )

    def _index_msgpack(self, conn: sqlite3.Connection, name: str, st: os.stat_result) -> None:
        path = self.path / name
        self._forget_file(conn, name)
        try:
            docs, consumed, _ = _read_msgpack(path)
        except CorruptRunFile as err:
            self._warn_once(name, err.line or 0, f"{err} It is not shown as a run.",
                            RunFileWarning)
            self._set_file_row(conn, name, st, 0, None, "ignored", None, False)
            return
        if not docs:
            self._set_file_row(conn, name, st, 0, None, "pending", None, True)
            return
        first = json.dumps(docs[0]).encode()
        crc = zlib.crc32(first)
        doc_name, start = docs[0]
        uid = start.get("uid")
        if (
            doc_name != "start"
            or not isinstance(uid, str)
            or not _sqlable(uid)
            or not _is_time(start.get("time"))
        ):
            self._warn_once(name, 1, f"{path} does not begin with a start document, so it is "
                            "not shown as a run.", RunFileWarning)
            self._set_file_row(conn, name, st, consumed, crc, "ignored", None, False)
            return
        other = conn.execute("SELECT file FROM runs WHERE uid = ?", (uid,)).fetchone()
        if other is not None:
            self._warn_once(
                name, 1, f"{path} holds run {uid}, which {other[0]} in the same store already "
                f"holds; {other[0]} is used. Remove one of the two files.", RunFileWarning
            )
            self._set_file_row(conn, name, st, consumed, crc, "ignored", None, False)
            return
        self._insert_run_row(conn, name, start)
        members: list[tuple[str, str, str]] = []
        stop = None
        rd = _RunData(name, "msgpack")
        for doc_name, doc in docs[1:]:
            rd.add_doc(doc_name, doc)
            if doc_name == "stop":
                stop = doc
        members.extend(("descriptor", u, name) for u in rd.descriptors)
        members.extend(("resource", u, name) for u in rd.resources)
        members.extend(("datum", u, name) for u in rd.datums)
        self._record_members(conn, members)
        if stop is not None:
            self._record_stop(conn, uid, stop)
        self._set_file_row(conn, name, st, consumed, crc, "run", uid, stop is None)

    # ------------------------------------------------------------------ warnings
    def _warn_once(self, name: str, line: int, message: str, category: type[Warning]) -> None:
        key = (name, line)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, category, stacklevel=4)

    # ------------------------------------------------------------------ reading run files
    def _load_run(self, name: str) -> _RunData | None:
        """The parsed contents of a run file, from the in-memory LRU when still current."""
        with self._lock:
            path = self.path / name
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._lru.pop(name, None)
                return None
            rd = self._lru.get(name)
            if rd is not None and (rd.size, rd.mtime_ns) == (st.st_size, st.st_mtime_ns):
                self._lru.move_to_end(name)
                self._check_tail(rd, path, st)
                return rd
            if name.endswith(".msgpack"):
                rd = self._parse_msgpack(name, path)
            elif rd is not None and st.st_size > rd.size and self._same_head(path, rd):
                with open(path, "rb") as f:
                    f.seek(rd.offset)
                    data = f.read()
                rd.ingest_jsonl(data, path)
            else:
                rd = self._fresh_jsonl(name, path, st)
            if rd is None:
                return None
            rd.size, rd.mtime_ns = st.st_size, st.st_mtime_ns
            self._lru[name] = rd
            self._lru.move_to_end(name)
            self._evict()
            self._check_tail(rd, path, st)
            return rd

    def _same_head(self, path: Path, rd: _RunData) -> bool:
        with open(path, "rb") as f:
            head = _read_first_line(f)
        return head is not None and zlib.crc32(head) == rd.head_crc

    def _fresh_jsonl(self, name: str, path: Path, st: os.stat_result) -> _RunData | None:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        with f:
            head = _read_first_line(f)
            head_crc = None if head is None else zlib.crc32(head)
            if self.columnar_cache and head is not None and name != ASSETS_NAME:
                # A valid columnar copy spares reading (and parsing) the JSON at all.
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - 4096))
                tail = zlib.crc32(f.read())
                source = {"name": name, "size": size, "head": head_crc, "tail": tail}
                cached = _read_cache(self._cache_path(name), source, name)
                if cached is not None:
                    cached.offset = size
                    cached.head_crc = head_crc
                    return cached
            f.seek(0)
            data = f.read()
        rd = _RunData(name, "jsonl")
        rd.head_crc = head_crc
        rd.ingest_jsonl(data, path)
        if self.columnar_cache and rd.stop is not None and rd.tail == 0 and name != ASSETS_NAME:
            self._build_cache(name, rd, data, path)
        return rd

    def _cache_path(self, name: str) -> Path:
        return self.path / STATE_DIR / CACHE_DIR / (name + ".cols")

    def _build_cache(self, name: str, rd: _RunData, data: bytes, path: Path) -> None:
        """Write the columnar cache of a completed run read from JSON (best effort)."""
        if not os.access(self.path / STATE_DIR, os.W_OK):
            return
        source = {
            "name": name,
            "size": len(data),
            "head": rd.head_crc,
            "tail": zlib.crc32(data[-4096:]),
        }
        try:
            columns = rd.all_columns(path)
            doc_lines = [_dump_line(n, d) for n, d in _skeleton(rd)]
            _write_cache(self._cache_path(name), source, doc_lines, columns, rd.lines)
        except (OSError, ValueError, TypeError):
            pass  # the cache is an optimisation; reading works without it

    def _parse_msgpack(self, name: str, path: Path) -> _RunData | None:
        try:
            docs, consumed, size = _read_msgpack(path)
        except FileNotFoundError:
            return None
        rd = _RunData(name, "msgpack")
        for doc_name, doc in docs:
            rd.add_doc(doc_name, doc)
        rd.offset = consumed
        rd.lines = len(docs)
        rd.tail = size - consumed
        return rd

    def _check_tail(self, rd: _RunData, path: Path, st: os.stat_result) -> None:
        if not rd.tail:
            return
        state = self._states.get(rd.name)
        if state is not None and state.fd is not None:
            return  # our own write, caught in progress by another thread
        age = time.time() - st.st_mtime
        if rd.stop is None and age < self.torn_grace:
            return  # most likely a line being written right now by another process
        unit = "item" if rd.fmt == "msgpack" else "line"
        self._warn_once(
            rd.name,
            rd.lines + 1,
            f"{path} {unit} {rd.lines + 1} is incomplete ({rd.tail} bytes; a writer was "
            f"interrupted). The {rd.lines} complete documents before it are read. Call "
            "repair() on a writable store to remove the incomplete tail.",
            TornRunFileWarning,
        )

    def _evict(self) -> None:
        weights = {name: rd.weight() for name, rd in self._lru.items()}
        total = sum(weights.values())
        while len(self._lru) > 1 and (len(self._lru) > self.cache_runs or total > 4_000_000):
            name, _ = self._lru.popitem(last=False)
            total -= weights[name]

    # ------------------------------------------------------------------ locating documents
    def _member_file(self, kind: str, uid: str) -> str | None:
        if not _sqlable(uid):
            return None
        rows = self._read("SELECT file FROM members WHERE kind = ? AND uid = ?", (kind, uid))
        return rows[0][0] if rows else None

    def _locate(self, kind: str, uid: str, known: dict[str, str]) -> str | None:
        """File holding a descriptor/resource/datum: this process's writes, the index, and
        (on a miss) the index after a full refresh."""
        name = known.get(uid)
        if name is not None:
            return name
        name = self._member_file(kind, uid)
        if name is None:
            self._refresh(deep=True)
            name = self._member_file(kind, uid)
        return name

    def _run_row(self, uid: str) -> tuple[Any, ...] | None:
        if not _sqlable(uid):
            return None
        rows = self._read("SELECT file, start, stop FROM runs WHERE uid = ?", (uid,))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ read primitives
    def _check_evaluable(self, query: Mapping[str, Any]) -> None:
        """Compile the query as a search would, so a bad one fails at ``db(...)``."""
        QueryMatcher(query, store=self.describe(), supports_text=self.supports_text_search)

    def _find_run_starts(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        matcher = QueryMatcher(query, store=self.describe())
        where, params = self._pushdown(query)
        self._refresh()
        sort = tuple(tuple(s) for s in sort)  # type: ignore[misc]
        if sort in (tuple(DEFAULT_SORT), (("time", 1), ("uid", 1))):
            descending = sort[0][1] < 0
            return self._paged(where, params, matcher, skip, limit, descending)
        docs = [d for d in self._all_candidates(where, params) if matcher(d)]
        for field, direction in reversed(sort):
            docs.sort(key=_field_key(field), reverse=direction < 0)
        end = None if limit is None else skip + limit
        return iter(docs[skip:end])

    def _all_candidates(self, where: list[str], params: list[Any]) -> Iterator[Doc]:
        sql = "SELECT start FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        for (text,) in self._read(sql, params):
            yield json.loads(text)

    def _paged(
        self,
        where: list[str],
        params: list[Any],
        matcher: QueryMatcher,
        skip: int,
        limit: int | None,
        descending: bool,
    ) -> Iterator[Doc]:
        # Keyset pagination: short statements, no cursor held open between yields, and the
        # first page small so the first result arrives quickly.
        order = "DESC" if descending else "ASC"
        cmp = "<" if descending else ">"
        base = "SELECT time, uid, start FROM runs"
        batch = 20
        last: tuple[float, str] | None = None
        produced = 0
        while True:
            conds = list(where)
            args = list(params)
            if last is not None:
                conds.append(f"(time, uid) {cmp} (?, ?)")
                args.extend(last)
            sql = (
                base
                + (" WHERE " + " AND ".join(conds) if conds else "")
                + f" ORDER BY time {order}, uid {order} LIMIT ?"
            )
            rows = self._read(sql, [*args, batch])
            for _, _, text in rows:
                doc = json.loads(text)
                if not matcher(doc):
                    continue
                if skip:
                    skip -= 1
                    continue
                yield doc
                produced += 1
                if limit is not None and produced >= limit:
                    return
            if len(rows) < batch:
                return
            last = (rows[-1][0], rows[-1][1])
            batch = min(batch * 5, 2000)

    def _pushdown(self, query: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        """SQL conditions that every run matching ``query`` satisfies (a superset filter;
        the matcher decides).  Only what is certainly equivalent is pushed."""
        rest, text = split_text(query)
        conds: list[str] = []
        params: list[Any] = []
        self._push_fields(rest, conds, params)
        if text is not None:
            words = _fts_words(text) if self._fts else None
            if words:
                conds.append("id IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH ?)")
                params.append(" OR ".join('"' + w.replace('"', '""') + '"' for w in words))
            else:
                conds.append("bv1_text(?, text)")
                params.append(_sql_text(text))
        return conds, params

    def _push_fields(self, query: Mapping[str, Any], conds: list[str], params: list[Any]) -> None:
        for key, cond in query.items():
            if key == "$and" and isinstance(cond, list | tuple):
                for sub in cond:
                    if isinstance(sub, Mapping):
                        self._push_fields(sub, conds, params)
                continue
            if key.startswith("$") or not isinstance(key, str):
                continue
            ops = _operators(cond)
            if key == "uid":
                self._push_uid(ops, conds, params)
            elif key == "time":
                self._push_time(ops, conds, params)
            elif key == "scan_id":
                values = _exact_values(ops, allow_str=False)
                if values is not None:
                    marks = ", ".join("?" * len(values))
                    conds.append(f"(scan_id IN ({marks}) OR scan_id_odd = 1)")
                    params.extend(values)
            elif self._json1 and "." not in key and '"' not in key and "\\" not in key:
                values = _exact_values(ops, allow_str=True)
                if values is not None:
                    path = f'$."{key}"'
                    marks = ", ".join("?" * len(values))
                    conds.append(
                        f"(CASE WHEN json_ok THEN (json_extract(start, ?) IN ({marks}) OR "
                        "json_type(start, ?) IN ('array', 'object')) ELSE 1 END)"
                    )
                    params.extend([path, *values, path])

    def _push_uid(self, ops: dict[str, Any] | None, conds: list[str], params: list[Any]) -> None:
        if ops is None:
            return
        values = _exact_values(ops, allow_str=True, only_str=True)
        if values is not None:
            conds.append(f"uid IN ({', '.join('?' * len(values))})")
            params.extend(values)
            return
        if set(ops) == {"$regex"}:
            prefix = _regex_prefix(ops["$regex"])
            if prefix and _sqlable(prefix):
                lo, hi = _prefix_bounds(prefix)
                conds.append("uid >= ?")
                params.append(lo)
                if hi is not None:
                    conds.append("uid < ?")
                    params.append(hi)

    def _push_time(self, ops: dict[str, Any] | None, conds: list[str], params: list[Any]) -> None:
        if ops is None:
            return
        sql_ops = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
        for op, value in ops.items():
            if op in sql_ops and _is_number(value) and value == value:
                if type(value) is int and abs(value) >= _EXACT_INT:
                    continue
                conds.append(f"time {sql_ops[op]} ?")
                params.append(value)

    def count_runs(self, query: Mapping[str, Any] | None = None) -> int:
        """How many runs match ``query`` (``{}`` is answered by the index alone)."""
        if not query:
            self._refresh()
            return int(self._read("SELECT count(*) FROM runs")[0][0])
        return super().count_runs(query)

    def find_runs_by_uid_prefix(self, prefix: str, *, limit: int | None = 11) -> list[Doc]:
        """Starts whose uid begins with ``prefix`` (case-sensitive), newest first."""
        self._refresh()
        if not isinstance(prefix, str) or not _sqlable(prefix):
            return [s for s in self.find_run_starts({}) if s["uid"].startswith(prefix)][:limit]
        lo, hi = _prefix_bounds(prefix)
        sql = "SELECT start FROM runs WHERE uid >= ?" + (" AND uid < ?" if hi is not None else "")
        params: list[Any] = [lo] + ([hi] if hi is not None else [])
        sql += " ORDER BY time DESC, uid DESC"
        if limit is not None and (hi is not None or not prefix):
            sql += " LIMIT ?"
            params.append(limit)
        found = [json.loads(text) for (text,) in self._read(sql, params)]
        if hi is None and prefix:  # no exact upper bound (a prefix ending in U+10FFFF)
            found = [s for s in found if s["uid"].startswith(prefix)]
        return found[:limit]

    def find_runs_by_scan_id(self, scan_id: int, *, limit: int | None = 1) -> list[Doc]:
        """Starts with this ``scan_id``, most recent first (answered through the index)."""
        return list(self.find_run_starts({"scan_id": scan_id}, limit=limit))

    def get_run_start(self, uid: str) -> Doc:
        """The start document with exactly this uid; missing → :class:`RunNotFound`."""
        if not isinstance(uid, str):
            raise not_found_run(self, uid)
        row = self._run_row(uid)
        if row is None:
            self._refresh()
            row = self._run_row(uid)
        if row is None:
            raise not_found_run(self, uid)
        return json.loads(row[1])  # type: ignore[no-any-return]

    def get_run_stop(self, run_start_uid: str) -> Doc | None:
        """The run's stop document, or ``None`` while it is open or after a crash."""
        if not isinstance(run_start_uid, str):
            return None
        row = self._run_row(run_start_uid)
        if row is None:
            return None
        if row[2] is None:
            state = self._states.get(row[0])
            if state is not None and state.fd is not None:
                return None  # we are writing it and have not written its stop
            self._refresh_file(row[0])
            row = self._run_row(run_start_uid)
            if row is None or row[2] is None:
                return None
        return json.loads(row[2])  # type: ignore[no-any-return]

    def get_run_stops(self, run_start_uids: Sequence[str]) -> dict[str, Doc]:
        """Stops of several runs at once (runs without a stop are absent from the result)."""
        uids = [u for u in run_start_uids if isinstance(u, str) and _sqlable(u)]
        self._refresh()
        out: dict[str, Doc] = {}
        for i in range(0, len(uids), _CHUNK):
            chunk = uids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for uid, text in self._read(
                f"SELECT uid, stop FROM runs WHERE stop IS NOT NULL AND uid IN ({marks})", chunk
            ):
                out[uid] = json.loads(text)
        return {u: out[u] for u in uids if u in out}

    def get_descriptors(self, run_start_uid: str) -> list[Doc]:
        """The run's descriptors in ascending ``time``; ``[]`` when none or unknown run."""
        if not isinstance(run_start_uid, str):
            return []
        row = self._run_row(run_start_uid)
        if row is None:
            return []
        rd = self._load_run(row[0])
        if rd is None:
            return []
        docs = [d for d in rd.descriptors.values() if d.get("run_start") == run_start_uid]
        docs.sort(key=lambda d: d["time"])
        return [json_copy(d) for d in docs]

    def iter_event_pages(
        self, descriptor_uid: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[Doc]:
        """Event pages of one descriptor, rows ordered by (``time``, ``seq_num``).

        Parameters
        ----------
        descriptor_uid
            The descriptor; an unknown one yields nothing.
        fields
            Data keys to include (others and their timestamps are dropped); None for all.
        """
        if not isinstance(descriptor_uid, str):
            return
        name = self._locate("descriptor", descriptor_uid, self._desc_file)
        if name is None:
            return
        with self._lock:
            rd = self._load_run(name)
            if rd is None:
                return
            columns = rd.columns_for(descriptor_uid, self.path / name)
        if columns is None:
            return
        wanted = None if fields is None else set(fields)
        n = len(columns)
        for start in range(0, n, self.page_size):
            with self._lock:
                page = columns.page(descriptor_uid, start, min(n, start + self.page_size), wanted)
            yield page

    def get_resource(self, uid: str) -> Doc:
        """The resource with this uid (legacy resources: their ``_id``); missing →
        :class:`~broker_v1.errors.ResourceNotFound`."""
        doc = self._find_resource(uid, thorough=True) if isinstance(uid, str) else None
        if doc is None:
            raise ResourceNotFound(
                f"No resource with uid {uid!r} in {self.describe()} (looked in every run file "
                f"and {ASSETS_NAME}).",
                uid=str(uid),
                store=self.describe(),
            )
        out: Doc = json_copy(doc)
        return out

    def _find_resource(self, uid: str, *, thorough: bool) -> Doc | None:
        for state in self._states.values():
            doc = state.docs.get(("resource", uid))
            if doc is not None:
                return doc
        if thorough:
            name = self._locate("resource", uid, self._res_file)
        else:
            name = self._res_file.get(uid) or self._member_file("resource", uid)
        if name is None:
            return None
        rd = self._load_run(name)
        return None if rd is None else rd.resources.get(uid)

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        """Datum pages of one resource (nothing for an unknown resource)."""
        if not isinstance(resource_uid, str):
            return
        name = self._locate("resource", resource_uid, self._res_file)
        if name is None:
            return
        with self._lock:
            rd = self._load_run(name)
            if rd is None:
                return
            ids = list(rd.datums_by_resource.get(resource_uid, ()))
            datums = [rd.datums[i] for i in ids]
        if not datums:
            return
        keys = list(datums[0]["datum_kwargs"])
        yield {
            "resource": resource_uid,
            "datum_id": ids,
            "datum_kwargs": {
                k: [json_copy(d["datum_kwargs"].get(k)) for d in datums] for k in keys
            },
        }

    def get_datum(self, datum_id: str) -> Doc:
        """The datum with this id; missing → :class:`~broker_v1.errors.DatumNotFound`."""
        doc = self._find_datum(datum_id, thorough=True) if isinstance(datum_id, str) else None
        if doc is None:
            raise DatumNotFound(
                f"No datum with datum_id {datum_id!r} in {self.describe()}.",
                datum_id=str(datum_id),
                store=self.describe(),
            )
        out: Doc = json_copy(doc)
        return out

    def _find_datum(self, datum_id: str, *, thorough: bool) -> Doc | None:
        name = self._datum_owner.get(datum_id) or self._member_file("datum", datum_id)
        if name is None and "/" in datum_id:
            # datum ids are commonly "<resource uid>/<n>": look in that resource's file.
            name = self._res_file.get(datum_id.rsplit("/", 1)[0]) or self._member_file(
                "resource", datum_id.rsplit("/", 1)[0]
            )
        if name is not None:
            rd = self._load_run(name)
            doc = None if rd is None else rd.datums.get(datum_id)
            if doc is not None or not thorough:
                return doc
        if not thorough:
            return None
        self._refresh(deep=True)
        name = self._member_file("datum", datum_id)
        if name is None:
            return None
        rd = self._load_run(name)
        return None if rd is None else rd.datums.get(datum_id)

    # ------------------------------------------------------------------ maintenance
    def reindex(self) -> dict[str, int]:
        """Rebuild the index from the run files (the files are the truth).

        Returns
        -------
        dict
            ``{"runs": number of runs indexed, "files": run files seen}``.
        """
        with self._write_lock, self._lock:
            self._flush_all_states()

            def wipe(conn: sqlite3.Connection) -> None:
                for table in ("members", "runs", "files"):
                    conn.execute(f"DELETE FROM {table}")
                if self._fts:
                    conn.execute("DELETE FROM runs_fts")
                conn.execute("DELETE FROM meta WHERE key = 'dir_mtime'")

            self._write(wipe)
            self._dir_mtime = None
            self._lru.clear()
            self._refresh(deep=True)
            runs = int(self._read("SELECT count(*) FROM runs")[0][0])
            files = int(self._read("SELECT count(*) FROM files")[0][0])
            return {"runs": runs, "files": files}

    def repair(self, run_start_uid: str | None = None) -> dict[str, int]:
        """Truncate the incomplete last line that an interrupted writer left in run files.

        Parameters
        ----------
        run_start_uid
            Repair only this run's file; None repairs every ``.jsonl`` file of the store.
            Files changed within the last ``torn_grace`` seconds are left alone when
            repairing everything (another process may be writing them).

        Returns
        -------
        dict
            File name → number of bytes removed, for the files that were repaired.

        Raises
        ------
        ReadOnlyStore
            The store was opened read-only.
        RunNotFound
            ``run_start_uid`` is not a run of this store.
        """
        if self.read_only:
            raise ReadOnlyStore(
                f"{self.describe()} was opened read-only, so repair() was refused; it would "
                "truncate run files. Open it with read_only: false to repair.",
                store=self.describe(),
            )
        with self._write_lock, self._lock:
            if run_start_uid is not None:
                row = self._run_row(run_start_uid)
                if row is None:
                    self._refresh(deep=True)
                    row = self._run_row(run_start_uid)
                if row is None:
                    candidate = f"{run_start_uid}.jsonl"
                    if _uid_problem(run_start_uid) is None and (self.path / candidate).is_file():
                        names = [candidate]  # e.g. a torn first line: not indexed as a run
                    else:
                        raise not_found_run(self, run_start_uid)
                else:
                    names = [row[0]]
                careful = False
            else:
                names = sorted(
                    e.name for e in os.scandir(self.path)
                    if e.name.endswith(".jsonl") and not e.name.startswith(".")
                )
                careful = True
            repaired: dict[str, int] = {}
            for name in names:
                if not name.endswith(".jsonl"):
                    continue
                state = self._states.get(name)
                if state is not None and state.fd is not None:
                    continue  # this process is writing it: never torn
                removed = self._truncate_tail(self.path / name, careful)
                if removed:
                    repaired[name] = removed
                    self._lru.pop(name, None)
                    self._warned = {w for w in self._warned if w[0] != name}
            if repaired:
                self._refresh(deep=True)
            return repaired

    def _truncate_tail(self, path: Path, careful: bool) -> int:
        try:
            # Never through a symbolic link: it may lead outside the store directory.
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return 0
        except OSError as err:
            if path.is_symlink():
                warnings.warn(
                    f"{path} is a symbolic link, so repair() leaves it alone (it never writes "
                    "outside the store directory). Repair the file it points to where it lives.",
                    RunFileWarning,
                    stacklevel=3,
                )
                return 0
            raise StoreUnavailable(
                f"{self.describe()}: cannot open {path} to repair it ({err.strerror})."
            ) from err
        try:
            st = os.fstat(fd)
            if careful and time.time() - st.st_mtime < self.torn_grace:
                return 0
            size = st.st_size
            if size == 0:
                return 0
            # Find the last newline, reading backwards in blocks.
            pos = size
            keep = 0
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                block = os.pread(fd, step, pos)
                i = block.rfind(b"\n")
                if i >= 0:
                    keep = pos + i + 1
                    break
            if keep == size:
                return 0
            os.ftruncate(fd, keep)
            os.fsync(fd)
            return size - keep
        finally:
            os.close(fd)

    def close(self) -> None:
        """Flush and fsync everything written, close run files and the index."""
        with self._write_lock, self._lock:
            if self._sync_timer is not None:
                self._sync_timer.cancel()
                self._sync_timer = None
            if os.getpid() == self._pid:
                self._flush_all_states(close=True)
                self._commit_batch()
                self._close_db()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            for state in self._states.values():
                if state.fd is not None:
                    os.close(state.fd)
                    state.fd = None
        except Exception:
            pass

    # ------------------------------------------------------------------ write primitives
    def _get_existing(self, name: str, key: str) -> Doc | None:
        if not isinstance(key, str):
            return None
        if name == "start":
            row = self._run_row(key)
            if row is None and _uid_problem(key) is None:
                # Written by another process and not indexed yet?
                for suffix in _SUFFIXES:
                    if (self.path / (key + suffix)).is_file():
                        self._refresh_file(key + suffix)
                        row = self._run_row(key)
                        break
            return None if row is None else json.loads(row[1])
        if name == "descriptor":
            for state in self._states.values():
                doc = state.docs.get(("descriptor", key))
                if doc is not None:
                    return doc
            file = self._desc_file.get(key) or self._member_file("descriptor", key)
            if file is None:
                return None
            rd = self._load_run(file)
            return None if rd is None else rd.descriptors.get(key)
        if name == "resource":
            return self._find_resource(key, thorough=False)
        if name == "stop":
            if not _sqlable(key):
                return None
            rows = self._read("SELECT stop FROM runs WHERE stop_uid = ?", (key,))
            return json.loads(rows[0][0]) if rows else None
        if name == "datum":
            file = self._datum_owner.get(key) or self._member_file("datum", key)
            if file is None:
                return None
            rd = self._load_run(file)
            return None if rd is None else rd.datums.get(key)
        if name == "event":
            file = self._event_owner.get(key)
            if file is None:
                return None
            rd = self._load_run(file)
            return None if rd is None else rd.find_event(key, self.path / file)
        raise ValueError(name)

    # The insert path checks event and datum duplicates with _get_existing by uid alone; make
    # sure this process knows every event and datum already in the file they will go to.
    def _insert_event(self, event: Doc) -> None:
        self._prepare("descriptor", event.get("descriptor"))
        super()._insert_event(event)

    def _insert_event_page(self, page: Doc) -> None:
        self._prepare("descriptor", page.get("descriptor"))
        super()._insert_event_page(page)

    def _insert_datum(self, doc: Doc) -> None:
        self._prepare("resource", doc.get("resource"))
        super()._insert_datum(doc)

    def _insert_datum_page(self, page: Doc) -> None:
        self._prepare("resource", page.get("resource"))
        super()._insert_datum_page(page)

    def _prepare(self, kind: str, uid: Any) -> None:
        if not isinstance(uid, str):
            return
        known = self._desc_file if kind == "descriptor" else self._res_file
        name = known.get(uid) or self._member_file(kind, uid)
        if name is None:
            return
        state = self._states.get(name)
        if state is not None and state.uids_loaded:
            return
        self._adopt(name)

    def _adopt(self, name: str) -> _RunState:
        """Register an existing file's uids so duplicates of its documents are detected."""
        state = self._states.get(name)
        if state is None:
            run_uid = None
            if name != ASSETS_NAME:
                rows = self._read("SELECT uid FROM runs WHERE file = ?", (name,))
                run_uid = rows[0][0] if rows else None
            state = _RunState(name, run_uid)
            self._states[name] = state
        if not state.uids_loaded:
            rd = self._load_run(name)
            if rd is not None:
                path = self.path / name
                for uid, _ in rd.event_uids(path):
                    state.event_uids.add(uid)
                    self._event_owner[uid] = name
                for datum_id in rd.datums:
                    state.datum_ids.add(datum_id)
                    self._datum_owner[datum_id] = name
                for uid, doc in rd.descriptors.items():
                    self._desc_file.setdefault(uid, name)
                    state.docs[("descriptor", uid)] = doc
                for uid, doc in rd.resources.items():
                    self._res_file.setdefault(uid, name)
                    state.docs[("resource", uid)] = doc
                if rd.start is not None and isinstance(rd.start.get("uid"), str):
                    self._run_file.setdefault(rd.start["uid"], name)
            state.uids_loaded = True
        self._trim_states()
        return state

    def _trim_states(self) -> None:
        # Forget the uids of runs this process finished long ago (they are re-read on demand).
        closed = [n for n, s in self._states.items() if s.fd is None]
        for name in closed[: max(0, len(closed) - 4)]:
            state = self._states.pop(name)
            for uid in state.event_uids:
                if self._event_owner.get(uid) == name:
                    del self._event_owner[uid]
            for datum_id in state.datum_ids:
                if self._datum_owner.get(datum_id) == name:
                    del self._datum_owner[datum_id]

    def _run_file_name(self, run_uid: str) -> str | None:
        name = self._run_file.get(run_uid)
        if name is None:
            if not _sqlable(run_uid):
                return None  # no run has a uid SQLite cannot even hold
            rows = self._read("SELECT file FROM runs WHERE uid = ?", (run_uid,))
            name = rows[0][0] if rows else None
        return name

    def _writable(self, name: str) -> _RunState:
        """The state of a file, opened for appending."""
        state = self._states.get(name)
        if state is None or not state.uids_loaded:
            state = self._adopt(name)
        if state.fd is not None:
            return state
        path = self.path / name
        if name.endswith(".msgpack"):
            raise ReadOnlyStore(
                f"Run file {path} is in msgpack format, which {self.describe()} reads but never "
                "writes, so nothing was written. Insert the run into a store of .jsonl files.",
                store=self.describe(),
            )
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            raise self._cannot_open(path, err) from err
        size = os.fstat(fd).st_size
        if size:
            if _last_byte(path, size) != b"\n":
                os.close(fd)
                raise CorruptRunFile(
                    f"{path} ends with an incomplete line (a writer was interrupted), so "
                    f"nothing more can be appended to it and nothing was written. Call "
                    "repair() on the store to remove the incomplete tail, then insert again.",
                    path=str(path),
                )
        state.fd = fd
        state.size = size
        state.new_entry = state.new_entry or size == 0
        return state

    def _append(self, state: _RunState, name: str, doc: Doc) -> None:
        line = _dump_line(name, doc)
        assert state.fd is not None
        before = state.size
        view = memoryview(line)
        try:
            while view:
                written = os.write(state.fd, view)
                view = view[written:]
        except OSError as err:
            if view.nbytes != len(line) and state.name != ASSETS_NAME:
                # All of the document or none of it: cut a partial line off again.
                with contextlib.suppress(OSError):
                    os.ftruncate(state.fd, before)
            raise StoreUnavailable(
                f"{self.describe()}: could not write a {name} document to "
                f"{self.path / state.name} ({err.strerror}). Nothing was written."
            ) from err
        state.size = before + len(line)
        state.lines += 1
        if self.fsync_interval <= 0:
            self._fsync(state, name)
        else:
            state.dirty = True
            self._schedule_sync()
        if state.acc is not None:
            state.acc_bytes += len(line)
            if state.acc_bytes > self.cache_max_bytes:
                state.acc, state.doc_lines = None, []
            elif name not in ("event", "event_page"):
                state.doc_lines.append(line)

    def _cannot_open(self, path: Path, err: OSError) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.describe()}: could not open {path} for writing ({err.strerror}). Nothing "
            "was written."
        )

    def _fsync(self, state: _RunState, name: str) -> None:
        assert state.fd is not None
        try:
            os.fsync(state.fd)
        except OSError as err:
            raise StoreUnavailable(
                f"{self.describe()}: a {name} document was written to {self.path / state.name} "
                f"but could not be flushed to disk ({err.strerror}), so it may be lost if the "
                "machine stops. Check the disk, then insert the document again (an identical "
                "re-insert is a no-op)."
            ) from err

    def _write_document(self, name: str, doc: Doc) -> None:
        with self._lock:
            if name == "start":
                self._write_start(doc)
            elif name == "descriptor":
                file = self._run_file_name(doc["run_start"])
                if file is None:  # pragma: no cover - the insert path checked the link
                    raise not_found_run(self, doc["run_start"])
                state = self._writable(file)
                self._append(state, "descriptor", doc)
                self._desc_file[doc["uid"]] = file
                state.docs[("descriptor", doc["uid"])] = doc
                self._flush_state(state, [("descriptor", doc["uid"], file)])
            elif name == "event_page":
                if not doc["uid"]:
                    return  # an empty page holds nothing to keep
                file = self._desc_file.get(doc["descriptor"]) or self._member_file(
                    "descriptor", doc["descriptor"]
                )
                assert file is not None
                state = self._writable(file)
                if len(doc["uid"]) == 1:
                    # One row: written as a plain event, as suitcase-jsonl writes RunEngine
                    # output, so older readers that know only "event" read it too.
                    self._append(state, "event", _single_event(doc))
                else:
                    self._append(state, "event_page", doc)
                for uid in doc["uid"]:
                    state.event_uids.add(uid)
                    self._event_owner[uid] = file
                _accumulate(state, doc, single=False)
            elif name == "resource":
                file = self._resource_target(doc)
                state = self._writable(file)
                self._append(state, "resource", doc)
                self._res_file[doc["uid"]] = file
                state.docs[("resource", doc["uid"])] = doc
                self._flush_state(state, [("resource", doc["uid"], file)])
            elif name == "datum_page":
                file = self._res_file.get(doc["resource"]) or self._member_file(
                    "resource", doc["resource"]
                )
                assert file is not None
                state = self._writable(file)
                if len(doc["datum_id"]) == 1:
                    self._append(state, "datum", _single_datum(doc))
                else:
                    self._append(state, "datum_page", doc)
                for datum_id in doc["datum_id"]:
                    state.datum_ids.add(datum_id)
                    self._datum_owner[datum_id] = file
                state.pending_datums.extend(doc["datum_id"])
                if len(state.pending_datums) > 10_000:
                    self._flush_state(state, [])
            elif name == "stop":
                self._write_stop(doc)
            else:  # pragma: no cover - the insert path sends nothing else
                raise ValueError(name)

    def _write_event(self, event: Doc) -> None:
        # A single event is written as the line it already is (no page round trip), as
        # suitcase-jsonl writes RunEngine output; keys beyond the event's own are dropped,
        # as the page path drops them.
        if not event.keys() <= _EVENT_KEYS_KEPT:
            event = {k: v for k, v in event.items() if k in _EVENT_KEYS_KEPT}
        with self._lock:
            file = self._desc_file.get(event["descriptor"]) or self._member_file(
                "descriptor", event["descriptor"]
            )
            assert file is not None
            state = self._writable(file)
            self._append(state, "event", event)
            state.event_uids.add(event["uid"])
            self._event_owner[event["uid"]] = file
            _accumulate(state, event, single=True)

    def _write_start(self, doc: Doc) -> None:
        uid = doc["uid"]
        if doc["time"] != doc["time"]:
            # The index orders runs by time; SQLite cannot hold a NaN (it becomes NULL).
            raise InvalidDocument(
                f"start {uid} has time NaN, so it cannot be placed among the runs of "
                f"{self.describe()}. Give it the time the run started. Nothing was written.",
                name="start",
                uid=uid,
                field="time",
            )
        problem = _uid_problem(uid)
        if problem is not None:
            raise UnsafeUid(
                f"Run uid {uid!r} cannot name a run file in {self.describe()}: {problem}. "
                "Nothing was written. Use uids made of letters, digits and '-', such as "
                "str(uuid.uuid4())."
            )
        name = uid + ".jsonl"
        path = self.path / name
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            fd = -1
        except OSError as err:
            raise self._cannot_open(path, err) from err
        if fd < 0:
            if not path.is_file():  # a dangling symbolic link, a directory, ...
                raise CorruptRunFile(
                    f"{path} already exists but is not a regular run file (a dangling symbolic "
                    "link or a directory?), so nothing was written. Move it aside.",
                    path=str(path),
                ) from None
            if path.stat().st_size:
                # Another process may have created this run a moment ago.
                self._refresh_file(name)
                row = self._run_row(uid)
                if row is not None and row[0] == name:
                    if json.loads(row[1]) == doc:
                        return  # the same start: inserting it again is a no-op
                    raise DuplicateDocument(
                        f"A different start document with uid {uid} is already in "
                        f"{self.describe()}. Documents are immutable; write a new one with a "
                        "new uid instead.",
                        name="start",
                        uid=uid,
                        store=self.describe(),
                    ) from None
                raise CorruptRunFile(
                    f"{path} already exists but does not begin with a readable start document "
                    f"for run {uid}, so nothing was written. Call repair({uid!r}) if a writer "
                    "was interrupted while writing it, or move the file aside.",
                    path=str(path),
                ) from None
            try:
                fd = os.open(path, flags & ~os.O_EXCL & ~os.O_CREAT)
            except OSError as err:
                raise self._cannot_open(path, err) from err
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _RunState(name, uid)
        if state.fd is not None and state.fd != fd:
            with contextlib.suppress(OSError):
                os.close(state.fd)  # left by an earlier attempt that could not write
        state.fd, state.size, state.lines = fd, 0, 0
        state.new_entry = state.uids_loaded = True
        state.acc = {} if self.columnar_cache else None
        state.doc_lines, state.acc_bytes = [], 0
        self._append(state, "start", doc)
        self._run_file[uid] = name
        self._last_started = name
        st = os.fstat(fd)
        head_crc = zlib.crc32(_dump_line("start", doc))

        def record(conn: sqlite3.Connection) -> None:
            self._forget_file(conn, name)
            self._insert_run_row(conn, name, doc)
            self._set_file_row(conn, name, st, state.size, head_crc, "run", uid, True)

        self._write(record)

    def _resource_target(self, doc: Doc) -> str:
        run = doc.get("run_start")
        if isinstance(run, str):
            name = self._run_file_name(run)
            if name is not None and name.endswith(".jsonl"):
                return name
            return ASSETS_NAME
        last = self._last_started
        if last is not None:
            state = self._states.get(last)
            if state is not None and state.fd is not None:
                return last
        return ASSETS_NAME

    def _write_stop(self, doc: Doc) -> None:
        file = self._run_file_name(doc["run_start"])
        assert file is not None
        state = self._writable(file)
        self._append(state, "stop", doc)
        assert state.fd is not None
        if self._deferred:
            self._sync_later(state)
            self._dir_unsynced = self._dir_unsynced or state.new_entry
        else:
            self._fsync(state, "stop")
            if state.new_entry:
                self._fsync_directory()
        state.new_entry = False
        state.dirty = False
        st = os.fstat(state.fd)

        def record(conn: sqlite3.Connection) -> None:
            self._record_members(conn, [("datum", d, file) for d in state.pending_datums])
            self._record_stop(conn, doc["run_start"], doc)
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, scanned = max(scanned, ?), "
                "volatile = 0 WHERE name = ?",
                (st.st_size, st.st_mtime_ns, state.size, file),
            )

        self._write(record)
        state.pending_datums.clear()
        if state.acc is not None:
            self._cache_at_stop(state, st)
        state.acc, state.doc_lines = None, []
        os.close(state.fd)
        state.fd = None
        if self._last_started == file:
            self._last_started = None
        self._trim_states()

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """A block within which a run's stop does not wait for its fsync.

        Each stop's fsync is handed to a few background threads (they wait on the disk, not on
        Python), so writing the next run overlaps with syncing the last one; the directory is
        synced once at the end.  A killed process loses nothing either way (every document is
        in the operating system when ``insert`` returns); what waits is the guard against
        power loss, and leaving the block waits for all of it.  ``copy_runs`` uses it.

        Raises
        ------
        StoreUnavailable
            When leaving the block, naming the run files whose fsync failed.
        """
        with self._lock:
            if self._deferred == 0 and self._sync_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._sync_pool = ThreadPoolExecutor(4, thread_name_prefix="broker_v1-fsync")
            self._deferred += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferred -= 1
                outermost = self._deferred == 0
            if outermost:
                self._finish_deferred_syncs()

    def _sync_later(self, state: _RunState) -> None:
        assert state.fd is not None
        self._queue_sync(state.name, os.dup(state.fd))  # the run's own fd closes at stop

    def _queue_sync(self, name: str, fd: int) -> None:
        """fsync and close ``fd`` in the background; at most a few dozen wait at once."""
        assert self._sync_pool is not None
        while len(self._pending_syncs) >= _MAX_PENDING_SYNCS:  # bound the open descriptors
            self._pending_syncs[0][1].result()
            self._pending_syncs.popleft()
        self._pending_syncs.append((name, self._sync_pool.submit(_fsync_and_close, fd)))

    def _finish_deferred_syncs(self) -> None:
        planner, self._planner = self._planner, None
        self._hinted = 0
        if planner is not None:
            planner.close()
        try:
            self._commit_batch()
        finally:
            self._wait_for_syncs()

    def _wait_for_syncs(self) -> None:
        failed = []
        while self._pending_syncs:
            name, future = self._pending_syncs.popleft()
            try:
                future.result()
            except OSError as err:
                failed.append(f"{name} ({err.strerror})")
        pool, self._sync_pool = self._sync_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._dir_unsynced:
            self._fsync_directory()
            self._dir_unsynced = False
        if failed:
            raise StoreUnavailable(
                f"{self.describe()}: {len(failed)} run file(s) were written but could not be "
                f"flushed to disk: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}. "
                "They may be lost if the machine stops; check the disk, then write them again "
                "(an identical re-insert or copy is a no-op)."
            )

    # ------------------------------------------------------------------ whole-run copies
    def prepare_copies(self, source: DocumentStore, run_start_uids: Sequence[str]) -> None:
        """Start checking these runs of ``source`` for whole-run copies, ahead of the copy.

        Inside ``deferred_sync()`` only, from a files store, and for a copy of at least
        a couple of hundred runs: the checks run in a second process (see ``_Planner``).
        """
        if not isinstance(source, FileStore) or self.read_only or not self._deferred:
            return
        self._hinted += len(run_start_uids)
        if self._planner is None:
            if self._planner_failed or self._hinted < _PLANNER_MIN_RUNS:
                return  # a short copy: not worth starting a process
            if os.name != "posix":
                return  # the planning process needs socket pairs passed as descriptors
            try:
                self._planner = _Planner()
            except (OSError, RuntimeError, ValueError):
                self._planner_failed = True  # e.g. no process may be started here
                return
        batch: list[tuple[str, str, str]] = []
        for uid in run_start_uids:
            row = source._run_row(uid) if isinstance(uid, str) else None
            name = f"{uid}.jsonl"
            if row is None or row[2] is None or row[0] != name or self._run_row(uid):
                continue  # open, missing, not a run file of its own, or here already
            batch.append((uid, os.path.join(source._dirname, name), row[1]))
        for i in range(0, len(batch), _PLANNER_BATCH):
            if not self._planner.room():
                break  # the rest is checked here when its turn comes
            self._planner.submit(batch[i : i + _PLANNER_BATCH])

    def copy_run_from(self, source: DocumentStore, run_start_uid: str) -> RunCopy | None:
        """Copy a stopped run of another files store by its run file, checked and verified.

        The source's ``.jsonl`` file is read once, every document in it goes through the
        insert path's checks (key rules, links within the run, event keys and columns, stop
        after start), the bytes are written to a new run file in one write, indexed in one
        transaction, read back and compared.  Anything that ``insert`` would refuse, change
        (extra event keys, filled datum ids, legacy resource ids) or resolve in other files
        (datums of resources elsewhere, uids already here) returns ``None`` before writing,
        and the caller copies document by document instead.
        """
        if not isinstance(source, FileStore) or self.read_only:
            return None
        if _uid_problem(run_start_uid) is not None or self._run_row(run_start_uid) is not None:
            return None
        row = source._run_row(run_start_uid)
        if row is None or row[2] is None or not str(row[0]).endswith(".jsonl"):
            return None
        name = run_start_uid + ".jsonl"
        if row[0] != name or os.path.lexists(os.path.join(self._dirname, name)):
            return None
        ahead = _NOT_PLANNED if self._planner is None else self._planner.take(run_start_uid)
        if ahead is None:
            self._checked_ahead += 1
            return None  # checked ahead, and refused: the document path says why
        if ahead is _NOT_PLANNED:
            try:
                with open(os.path.join(source._dirname, name), "rb") as f:
                    data = f.read()
            except OSError:
                return None
            plan = self._plan_import(data, json.loads(row[1]), run_start_uid)
        else:
            data, plan = ahead
            self._checked_ahead += 1
            if not self._clear_here(plan):
                plan = None
        if plan is None:
            return None
        fd = self._create_run_file(name, data)
        if fd is None:
            return None
        with self._write_lock, self._lock:
            self._keep_run_file(name, fd)
            self._index_imported(name, data, plan)
        if self.columnar_cache:
            self._link_cache(source, name)
        return RunCopy(plan.documents, len(data), plan.events, plan.datums)

    def _link_cache(self, source: FileStore, name: str) -> None:
        """Give a whole-run copy the source's columnar cache, if it has one (best effort).

        Same name, same bytes: the source's cache is valid here as it is.  Caches are
        replaced, never changed in place, so a hard link is a safe copy.
        """
        cached = os.path.join(source._dirname, STATE_DIR, CACHE_DIR, name + ".cols")
        target = os.path.join(self._dirname, STATE_DIR, CACHE_DIR, name + ".cols")
        with contextlib.suppress(OSError):
            for _attempt in (1, 2):
                try:
                    os.link(cached, target)
                    return
                except FileNotFoundError:
                    if not os.path.exists(cached):
                        return  # the source has none
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                except FileExistsError:
                    os.unlink(target)  # left by an earlier store at this path
                except OSError:  # another file system, or links not allowed
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    tmp = os.path.join(os.path.dirname(target), f".{name}.{os.getpid()}.tmp")
                    with open(cached, "rb") as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(tmp, target)
                    return

    def _plan_import(self, data: bytes, start: Doc, uid: str) -> _ImportPlan | None:
        """Check a run file's documents as ``insert`` would; ``None`` if any would not pass
        unchanged, or would need documents outside the file or already here."""
        plan = _check_run_file(data, start, uid, self)
        return plan if plan is not None and self._clear_here(plan) else None

    def _clear_here(self, plan: _ImportPlan) -> bool:
        """True when none of the run's uids is in this store already."""
        if self._any_member(plan.members):
            return False
        return not self._read("SELECT 1 FROM runs WHERE stop_uid = ?", (plan.stop["uid"],))

    def _any_member(self, members: list[tuple[str, str, str]]) -> bool:
        by_kind: dict[str, list[str]] = {}
        for kind, uid, _file in members:
            by_kind.setdefault(kind, []).append(uid)
        for kind, uids in by_kind.items():
            for i in range(0, len(uids), 500):
                chunk = uids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                # kind first: the primary key's order, so this is a lookup, not a scan
                sql = f"SELECT 1 FROM members WHERE kind = ? AND uid IN ({marks}) LIMIT 1"
                if self._read(sql, [kind, *chunk]):
                    return True
        return False

    def _create_run_file(self, name: str, data: bytes) -> int | None:
        """Create the run file holding exactly ``data`` (read back and compared); its fd.

        ``None`` when the file appeared meanwhile (nothing written).  On any failure the new
        file is removed again, so the run is either all there or not at all.
        """
        path = os.path.join(self._dirname, name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return None
        except OSError as err:
            raise self._cannot_open(Path(path), err) from err
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if os.pread(fd, len(data) + 1, 0) != data:
                raise OSError(errno.EIO, "the run file read back differs from what was written")
        except OSError as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreUnavailable(
                f"{self.describe()}: could not write run file {path} ({err.strerror}). "
                "Nothing of the run was kept; check the disk and copy again."
            ) from err
        return fd

    def _keep_run_file(self, name: str, fd: int) -> None:
        """Sync a created run file now, or (in ``deferred_sync()``) in the background."""
        if self._deferred:
            self._queue_sync(name, fd)
            self._dir_unsynced = True
            return
        try:
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(self.path / name)
            raise StoreUnavailable(
                f"{self.describe()}: could not flush run file {self.path / name} to disk "
                f"({err.strerror}). Nothing of the run was kept; check the disk and copy again."
            ) from err
        finally:
            os.close(fd)
        self._fsync_directory()

    def _index_imported(self, name: str, data: bytes, plan: _ImportPlan) -> None:
        st = os.stat(os.path.join(self._dirname, name))
        head_crc = plan.head_crc

        def record(conn: sqlite3.Connection) -> None:
            # Rows of a file this name once held, if it vanished since the last refresh.
            if conn.execute(_NAME_INDEXED, (name, name, name)).fetchone()[0]:
                self._forget_file(conn, name)
            self._insert_run_row(conn, name, plan.start, plan.stop, plan.row)
            self._record_members(conn, plan.members)
            self._set_file_row(conn, name, st, len(data), head_crc, "run", plan.uid, False)

        self._write_batched(record)
        self._run_file[plan.uid] = name

    def _cache_at_stop(self, state: _RunState, st: os.stat_result) -> None:
        """Write the columnar cache from the documents this process wrote (best effort)."""
        assert state.acc is not None
        try:
            columns = {}
            for descriptor, acc in state.acc.items():
                cols = acc.columns()
                if cols is None:
                    return
                columns[descriptor] = cols
            path = self.path / state.name
            with open(path, "rb") as f:
                head = _read_first_line(f)
                f.seek(max(0, st.st_size - 4096))
                tail = f.read(4096)
            source = {
                "name": state.name,
                "size": st.st_size,
                "head": None if head is None else zlib.crc32(head),
                "tail": zlib.crc32(tail),
            }
            _write_cache(
                self._cache_path(state.name), source, state.doc_lines, columns, state.lines
            )
        except (OSError, ValueError, TypeError):
            pass

    def _fsync_directory(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # pragma: no cover - e.g. Windows
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover - some file systems refuse fsync on directories
            pass
        finally:
            os.close(fd)

    def _flush_state(self, state: _RunState, members: list[tuple[str, str, str]]) -> None:
        """Record a file's new members (and buffered datums) and how far it is indexed."""
        rows = members + [("datum", d, state.name) for d in state.pending_datums]
        name = state.name
        size = state.size
        st = os.fstat(state.fd) if state.fd is not None else os.stat(self.path / name)

        def record(conn: sqlite3.Connection) -> None:
            self._record_members(conn, rows)
            if name == ASSETS_NAME:
                # Other processes append to it too, so how far it is scanned is left to the
                # scans (which pick up everyone's lines); our members are recorded above.
                return
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, scanned = max(scanned, ?) "
                "WHERE name = ?",
                (st.st_size, st.st_mtime_ns, size, name),
            )

        self._write(record)
        state.pending_datums.clear()

    def _schedule_sync(self) -> None:
        if self._sync_timer is None:
            timer = threading.Timer(self.fsync_interval, self._sync_dirty)
            timer.daemon = True
            self._sync_timer = timer
            timer.start()

    def _sync_dirty(self) -> None:
        with self._write_lock, self._lock:
            self._sync_timer = None
            if os.getpid() != self._pid:
                return
            for state in list(self._states.values()):
                if state.fd is None:
                    continue
                if state.dirty:
                    with contextlib.suppress(OSError):
                        os.fsync(state.fd)
                    if state.new_entry:
                        self._fsync_directory()
                        state.new_entry = False
                    state.dirty = False
                if state.pending_datums:
                    with contextlib.suppress(sqlite3.Error):
                        self._flush_state(state, [])

    def _flush_all_states(self, close: bool = False) -> None:
        for state in list(self._states.values()):
            if state.fd is None:
                continue
            with contextlib.suppress(OSError):
                os.fsync(state.fd)
            if state.new_entry:
                self._fsync_directory()
                state.new_entry = False
            state.dirty = False
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._flush_state(state, [])
            if close:
                os.close(state.fd)
                state.fd = None
                state.acc, state.doc_lines = None, []
        if close:
            self._last_started = None


# ---------------------------------------------------------------------------- module helpers
_SCAN_ID_ODD_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_scan_id_odd ON runs (scan_id_odd) WHERE scan_id_odd = 1"
)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE files (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    scanned INTEGER NOT NULL,
    head_crc INTEGER,
    kind TEXT NOT NULL,
    run_uid TEXT,
    volatile INTEGER NOT NULL
);
CREATE INDEX files_volatile ON files (volatile);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    file TEXT NOT NULL,
    time REAL NOT NULL,
    scan_id NUMERIC,
    scan_id_odd INTEGER NOT NULL,
    start TEXT NOT NULL,
    json_ok INTEGER NOT NULL,
    stop TEXT,
    stop_uid TEXT,
    text TEXT NOT NULL
);
CREATE INDEX runs_time ON runs (time, uid);
CREATE INDEX runs_scan_id ON runs (scan_id);
CREATE INDEX runs_scan_id_odd ON runs (scan_id_odd) WHERE scan_id_odd = 1;
CREATE INDEX runs_stop_uid ON runs (stop_uid);
CREATE INDEX runs_file ON runs (file);
CREATE TABLE members (
    kind TEXT NOT NULL,
    uid TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (kind, uid)
) WITHOUT ROWID;
CREATE INDEX members_file ON members (file)
"""


#: Whole-run copies checked ahead in a second process: only for copies at least this long
#: (starting the process costs about half a second), in batches of this many runs.
_PLANNER_MIN_RUNS = 200
_PLANNER_BATCH = 64
#: What ``_Planner.take`` returns for a run it was not asked to check.
_NOT_PLANNED: Any = object()


class _Planner:
    """A second process that checks run files for whole-run copies ahead of the copy.

    A copy uses one core; the checks (parsing and checking every document, about half of a
    whole-run copy's time) run here on the other, a batch or two ahead, while this process
    writes and indexes.  The checks are the very same (:func:`_check_run_file`); only what
    reads this store (uids already here) stays in this process.  A result is the bytes that
    were checked, so what is written is exactly what was checked.  No helper threads: the
    pipe is read when a result is needed, and at most two batches are in flight, so neither
    side can block the other.  If the process dies, the copy goes on without it.
    """

    def __init__(self) -> None:
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        # A fresh interpreter running one module of ours: never a fork of a process with
        # threads, and never a re-run of the caller's script (as multiprocessing's spawn
        # does with scripts that lack an ``if __name__ == "__main__"`` guard).
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "broker_v1.stores._copy_checks", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._in_flight: deque[list[str]] = deque()
        self._results: dict[str, Any] = {}
        self.alive = True
        self.planned = 0  # runs whose checks came from the planning process

    @property
    def pid(self) -> int:
        return self._process.pid

    def room(self) -> bool:
        return self.alive and len(self._in_flight) < 2

    def submit(self, batch: list[tuple[str, str, str]]) -> None:
        """Ask for the checks of ``(uid, run file path, start JSON)`` triples."""
        try:
            self._conn.send(batch)
        except (OSError, EOFError, ValueError):
            self._die()
            return
        self._in_flight.append([uid for uid, _, _ in batch])

    def take(self, uid: str) -> Any:
        """``(data, plan)``, ``None`` (the checks refused the run) or ``_NOT_PLANNED``."""
        while uid not in self._results and self._in_flight and self.alive:
            try:
                answers = self._conn.recv()
            except (OSError, EOFError, ValueError):
                self._die()
                break
            self._results.update(zip(self._in_flight.popleft(), answers))
            while len(self._results) > 4 * _PLANNER_BATCH:  # runs the copy did not ask for
                del self._results[next(iter(self._results))]
        answer = self._results.pop(uid, _NOT_PLANNED)
        if answer is not _NOT_PLANNED:
            self.planned += 1
        return answer

    def _die(self) -> None:
        self.alive = False
        self._in_flight.clear()

    def close(self) -> None:
        self._die()
        self._results.clear()
        with contextlib.suppress(OSError):
            self._conn.close()
        self._process.terminate()  # results still in flight are not needed
        try:
            self._process.wait(5)
        except Exception:  # noqa: BLE001 - it was terminated; do not hang the copy on it
            self._process.kill()


def _planner_main(conn: Any) -> None:
    """The planning process: check each batch of run files and send back the results."""
    from ..memory import MemoryStore

    checker = MemoryStore()  # lends the insert path's checks; nothing is stored in it
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        answers: list[Any] = []
        for uid, path, start_json in batch:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                plan = _check_run_file(data, json.loads(start_json), uid, checker)
                answers.append(None if plan is None else (data, plan))
            except Exception:  # noqa: BLE001 - this run goes the document path instead
                answers.append(None)
        conn.send(answers)


def _run_row_values(start: Doc, stop: Doc | None) -> tuple[Any, ...]:
    """What the index's runs table (and its full-text table, last) holds of a run, all but
    the file name; pure, so the planning process can compute it ahead."""
    text = json.dumps(start)
    scan_id = start.get("scan_id")
    odd = 0
    if not _is_number(scan_id):
        odd = 0 if "scan_id" not in start else 1
        scan_id = None
    elif type(scan_id) is int and abs(scan_id) >= 2**63:
        scan_id, odd = None, 1
    words = _sql_text(searchable_text(start))
    stop_uid = None if stop is None else stop.get("uid")
    return (
        start["uid"],
        float(start["time"]),
        scan_id,
        odd,
        text,
        int(_json_ok(text)),
        words,
        None if stop is None else json.dumps(stop),
        stop_uid if isinstance(stop_uid, str) and _sqlable(stop_uid) else None,
        " ".join(_WORD.findall(words)),
    )


def _check_run_file(
    data: bytes, start: Doc, uid: str, checker: DocumentStore
) -> _ImportPlan | None:
    """Check a run file's documents as ``insert(trusted=True)`` would; ``None`` if any would
    not pass unchanged or would need documents outside the file.  Pure: ``checker`` lends
    the insert path's checks and nothing of any store is read, so this may run in the
    planning process of :class:`_Planner`."""
    if not data.endswith(b"\n") or b"\n\n" in data or b"\r" in data:
        return None
    try:
        items = loads_json(b"[" + data[:-1].replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError):
        return None
    if len(items) < 2 or items[0] != ["start", start] or items[-1][0] != "stop":
        return None
    # Whole-list passes (C loops) wherever they can replace a Python loop per document.
    if set(map(type, items)) != {list} or set(map(len, items)) != {2}:
        return None
    names = list(map(_first, items))
    docs = list(map(_second, items))
    if set(map(type, docs)) != {dict}:
        return None
    is_event = list(map(_EVENT.__eq__, names))
    plan = _ImportPlan(uid)
    try:
        for position in itertools.compress(range(len(docs)), map(operator.not_, is_event)):
            doc_name, doc = names[position], docs[position]
            sanitize(doc)  # the key and nesting rules every store applies
            if not plan.add(checker, doc_name, doc):
                return None
            if doc_name == "descriptor":
                plan.descriptor_at[doc["uid"]] = position
        if True in is_event:  # single events: checked together, as pages
            plan.single_events = list(itertools.compress(docs, is_event))
            plan.event_at = list(itertools.compress(range(len(docs)), is_event))
            if not plan.check_single_events(checker):
                return None
    except (InvalidDocument, DocumentValueError, KeyError, TypeError, AttributeError):
        return None
    if plan.external_refs - plan.datum_ids:
        return None  # datums of resources in other files: the document path brings them
    plan.row = _run_row_values(plan.start, plan.stop)
    plan.head_crc = zlib.crc32(data[: data.index(b"\n") + 1])
    return plan.slim()


class _ImportPlan:
    """What a run file holds, gathered while its documents are checked for an import."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.name = uid + ".jsonl"
        self.start: Doc = {}
        self.stop: Doc = {}
        self.documents = 0
        self.keys: dict[str, frozenset[str]] = {}
        self.external: dict[str, list[str]] = {}
        self.events: dict[str, int] = {}
        self.event_uids: set[str] = set()
        self.resources: set[str] = set()
        self.datums: dict[str, int] = {}
        self.datum_ids: set[str] = set()
        self.external_refs: set[str] = set()
        self.members: list[tuple[str, str, str]] = []
        self.row: tuple[Any, ...] | None = None  # _run_row_values, computed with the checks
        self.head_crc = 0
        self.single_events: list[Doc] = []
        self.event_at: list[int] = []  # where each single event is in the file
        self.descriptor_at: dict[str, int] = {}

    def add(self, store: DocumentStore, name: str, doc: Doc) -> bool:
        """Check one document (not a single event) as ``insert`` would; False if it needs
        the general path."""
        if self.stop or not _finite_time(doc, required=name in ("start", "descriptor", "stop")):
            return False  # nothing may follow the stop
        if name == "start":
            if self.start:
                return False
            self.start = doc
        elif name == "descriptor":
            uid = doc["uid"]
            if doc["run_start"] != self.uid or not isinstance(uid, str) or uid in self.keys:
                return False
            self.keys[uid] = frozenset(doc["data_keys"])
            self.external[uid] = [k for k, v in doc["data_keys"].items() if v.get("external")]
            self.members.append(("descriptor", uid, self.name))
        elif name == "event_page":
            return self._add_page(store, doc)
        elif name == "resource":
            uid = doc["uid"]
            if ("_id" in doc or doc.get("run_start", self.uid) != self.uid
                    or not isinstance(uid, str) or uid in self.resources):
                return False
            self.resources.add(uid)
            self.datums[uid] = 0
            self.members.append(("resource", uid, self.name))
        elif name in ("datum", "datum_page"):
            page = name == "datum_page"
            store._check_datum_shape(name, doc, page=page)
            ids = doc["datum_id"] if page else [doc["datum_id"]]
            if doc["resource"] not in self.resources or not ids or self.datum_ids.intersection(ids):
                return False
            self.datum_ids.update(ids)
            if len(self.datum_ids) != sum(self.datums.values()) + len(ids):
                return False  # a datum id repeated within the page
            self.datums[doc["resource"]] += len(ids)
            self.members.extend(("datum", d, self.name) for d in ids)
            self.documents += len(ids)
            return True
        elif name == "stop":
            if doc["run_start"] != self.uid or doc["time"] < self.start["time"]:
                return False
            if not isinstance(doc["uid"], str):
                return False
            self.stop = doc
        else:
            return False
        self.documents += 1
        return True

    def _add_page(self, store: DocumentStore, doc: Doc) -> bool:
        keys = self.keys.get(doc.get("descriptor"))  # type: ignore[arg-type]
        if keys is None:
            return False
        store._check_event_page(doc, lambda _name, _doc: keys)
        return self._add_rows(doc)

    def slim(self) -> _ImportPlan:
        """Drop what only the checks needed (a smaller result to send between processes)."""
        self.single_events, self.event_at, self.descriptor_at = [], [], {}
        self.event_uids, self.datum_ids, self.external_refs = set(), set(), set()
        self.keys, self.external = {}, {}
        return self

    def check_single_events(self, store: DocumentStore) -> bool:
        """Check the single events, as the pages of their descriptors, as ``insert`` would;
        False if any would not pass unchanged.  Column by column, mostly in C."""
        events = self.single_events
        if not all(_EVENT_REQUIRED <= keys <= _EVENT_KEYS_KEPT
                   for keys in set(map(frozenset, events))):
            return False  # missing fields, or extra keys insert would drop
        if any(map(bool, map(_get_filled, events))):
            return False  # filled flags: the general path handles them
        descriptors = list(map(_get_descriptor, events))
        for descriptor in dict.fromkeys(descriptors):
            keys = self.keys.get(descriptor)
            if keys is None or self.event_at[descriptors.index(descriptor)] < self.descriptor_at[
                    descriptor]:
                return False  # no such descriptor, or an event before it
            if len(self.keys) == 1:
                group = events
            else:
                group = list(itertools.compress(
                    events, map(operator.eq, descriptors, itertools.repeat(descriptor))))
            data = list(map(_get_data, group))
            timestamps = list(map(_get_timestamps, group))
            if set(map(type, data)) != {dict} or set(map(type, timestamps)) != {dict}:
                return False
            if set(map(frozenset, data)) != {keys} or set(map(frozenset, timestamps)) != {keys}:
                return False
            page = {
                "descriptor": descriptor,
                "uid": [e["uid"] for e in group],
                "time": [e["time"] for e in group],
                "seq_num": [e["seq_num"] for e in group],
                "data": {k: list(map(operator.itemgetter(k), data)) for k in keys},
                "timestamps": {k: list(map(operator.itemgetter(k), timestamps)) for k in keys},
            }
            for part in ("data", "timestamps"):
                for column in page[part].values():
                    if not set(map(type, column)) <= _PLAIN_TYPES:
                        sanitize(column)  # nested values: the key and nesting rules
            store._check_event_page(page, lambda _name, _doc: keys)  # noqa: B023
            if not self._add_rows(page):
                return False
        return True

    def _add_rows(self, doc: Doc) -> bool:
        uids = doc["uid"]
        filled = [v for col in (doc.get("filled") or {}).values() for v in col]
        refs = [v for k in self.external[doc["descriptor"]] for v in doc["data"][k]]
        if not uids or any(isinstance(v, str) for v in filled):
            return False  # empty, or filled datum ids that insert would move into data
        before = len(self.event_uids)
        self.event_uids.update(uids)
        if len(self.event_uids) != before + len(uids):
            return False  # an event uid seen twice
        self.external_refs.update(r for r in refs if isinstance(r, str))
        self.events[doc["descriptor"]] = self.events.get(doc["descriptor"], 0) + len(uids)
        self.documents += len(uids)
        return True


def _finite_time(doc: Doc, *, required: bool) -> bool:
    t = doc.get("time")
    if t is None:
        return not required
    if isinstance(t, list):
        return True  # a page's times are checked with its columns
    return type(t) in (int, float) and math.isfinite(t)


def _uid_problem(uid: Any) -> str | None:
    """Why ``uid`` cannot name a run file, or None when it can."""
    if not isinstance(uid, str):
        return f"it is a {type(uid).__name__}, not a string"
    if not uid:
        return "it is empty"
    if uid in (".", ".."):
        return "it names a directory"
    if "/" in uid or "\\" in uid or (os.altsep and os.altsep in uid):
        return "it contains a path separator"
    if _CONTROL_CHARACTER.search(uid):
        return "it contains control characters"
    if uid.startswith("."):
        return "it starts with '.', which marks the store's own hidden files"
    if uid + ".jsonl" == ASSETS_NAME:
        return f"{ASSETS_NAME} is reserved for resources that belong to no run"
    if os.name == "nt" and any(c in '<>:"|?*' for c in uid):  # pragma: no cover
        return "it contains a character Windows forbids in file names"
    try:
        encoded = (uid + ".msgpack").encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid unicode (it holds a lone surrogate)"
    if len(encoded) > 255:
        return "it is too long for a file name"
    return None


def _field_key(field: str) -> Callable[[Doc], tuple[int, Any]]:
    def key(doc: Doc) -> tuple[int, Any]:
        return _sort_key(doc.get(field))

    return key


def _single_datum(page: Doc) -> Doc:
    """The datum of a one-row datum page."""
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][0],
        "datum_kwargs": {k: col[0] for k, col in page["datum_kwargs"].items()},
    }


#: The keys an event line keeps (an event's own; anything else is dropped, as from pages).
_EVENT_KEYS_KEPT = frozenset(
    {"descriptor", "uid", "time", "seq_num", "data", "timestamps", "filled"}
)
_EVENT_REQUIRED = _EVENT_KEYS_KEPT - {"filled"}
_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))
_EVENT = "event"
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
#: Whether the index holds any row of a file name (one statement instead of three deletes).
_NAME_INDEXED = (
    "SELECT EXISTS (SELECT 1 FROM files WHERE name = ?) OR EXISTS (SELECT 1 FROM runs "
    "WHERE file = ?) OR EXISTS (SELECT 1 FROM members WHERE file = ?)"
)
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_get_descriptor = operator.itemgetter("descriptor")
_get_data = operator.itemgetter("data")
_get_timestamps = operator.itemgetter("timestamps")
_get_filled = operator.methodcaller("get", "filled")


def _single_event(page: Doc) -> Doc:
    """The event of a one-row page (``filled`` only when the page has it)."""
    event: Doc = {
        "descriptor": page["descriptor"],
        "uid": page["uid"][0],
        "time": page["time"][0],
        "seq_num": page["seq_num"][0],
        "data": {k: col[0] for k, col in page["data"].items()},
        "timestamps": {k: col[0] for k, col in page["timestamps"].items()},
    }
    if "filled" in page:
        event["filled"] = {k: col[0] for k, col in page["filled"].items()}
    return event


def _last_byte(path: Path, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)


def _operators(cond: Any) -> dict[str, Any] | None:
    """A field condition as ``{operator: value}`` (plain values mean ``$eq``)."""
    if isinstance(cond, Mapping):
        if cond and all(isinstance(k, str) and k.startswith("$") for k in cond):
            return dict(cond)
        return None  # equality with a document
    return {"$eq": cond}


def _exact_values(
    ops: dict[str, Any] | None, *, allow_str: bool, only_str: bool = False
) -> list[Any] | None:
    """Values of an ``$eq`` / ``$in`` condition that SQL can compare exactly, or None."""
    if ops is None:
        return None
    if "$eq" in ops:
        values = [ops["$eq"]]
    elif "$in" in ops and isinstance(ops["$in"], list | tuple) and ops["$in"]:
        values = list(ops["$in"])
    else:
        return None
    for v in values:
        if type(v) is str:
            if not allow_str:
                return None
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return None
        elif type(v) is int and not only_str:
            if abs(v) >= _EXACT_INT:
                return None
        else:
            return None  # floats, bools, None, lists: compared by the matcher only
    return values


def _skeleton(rd: _RunData) -> list[tuple[str, Doc]]:
    """The non-event documents of a parsed run, for the columnar cache."""
    docs: list[tuple[str, Doc]] = []
    if rd.start is not None:
        docs.append(("start", rd.start))
    docs.extend(("descriptor", d) for d in rd.descriptors.values())
    docs.extend(("resource", r) for r in rd.resources.values())
    docs.extend(("datum", d) for d in rd.datums.values())
    if rd.stop is not None:
        docs.append(("stop", rd.stop))
    return docs

