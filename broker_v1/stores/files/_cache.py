"""The columnar cache: a binary copy of a completed run's events, kept beside the index.

A cache file is checked against the run file it was made from (name, size, first line and
last 4 KiB) and is rebuilt when stale or damaged; columns are encoded so that they decode
to exactly the same Python values.  :class:`_ColumnAcc` collects what the writer writes,
so a run this process records gets its cache at ``stop`` without parsing JSON.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._columns import _Columns
from .._util import loads_json
from ..base import Doc
from ._format import _check_pair, _read_first_line
from ._rundata import _RunData

CACHE_DIR = "cache"
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


#: Single events a :class:`_ColumnAcc` keeps before spreading them into its columns.
_WAITING_MAX = 64


class _ColumnAcc:
    """One descriptor's events, column-wise, as this process writes them (for the cache).

    Appending plain values to a few long lists creates no new containers per event, so it
    costs little and does not make the cyclic garbage collector walk every written event.
    """

    __slots__ = ("time", "seq_num", "uid", "data", "timestamps", "filled", "waiting")

    def __init__(self, page: Doc) -> None:
        self.time: list[Any] = []
        self.seq_num: list[Any] = []
        self.uid: list[Any] = []
        self.data: dict[str, list[Any]] = {k: [] for k in page["data"]}
        self.timestamps: dict[str, list[Any]] = {k: [] for k in page["timestamps"]}
        self.filled: dict[str, list[Any]] | None = (
            {k: [] for k in page["filled"]} if "filled" in page else None
        )
        # Single events not yet spread into the columns: that is done a batch at a time, so
        # the events of a short run whose cache is never written are never spread.
        self.waiting: list[Doc] = []

    def add(self, page: Doc) -> bool:
        """Append a page; False when its keys do not match (the cache is then given up)."""
        if not self._spread_waiting():
            return False
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
        """Append one event (kept as it is until a batch is full); False when its keys, or
        those of an earlier event of the batch, do not match (as :meth:`add`)."""
        self.waiting.append(event)
        if len(self.waiting) < _WAITING_MAX:
            return True
        return self._spread_waiting()

    def _spread_waiting(self) -> bool:
        waiting, self.waiting = self.waiting, []
        return all(map(self._spread, waiting))

    def _spread(self, event: Doc) -> bool:
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
        if not self._spread_waiting():
            return None
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


#: Below this many rows, comparing in Python is quicker than numpy's setup (same answer).
_SMALL = 64


def _is_ordered(times: list[Any], seqs: list[Any]) -> bool:
    """Whether rows are already in (time, seq_num) order."""
    if len(times) < 2:
        return True
    if len(times) < _SMALL:
        pairs = list(zip(times, seqs))
        return all(a <= b for a, b in zip(pairs, pairs[1:]))
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


def write_cache_of_writes(
    run_path: Path,
    cache_path: Path,
    accs: Mapping[str, _ColumnAcc],
    doc_lines: list[bytes],
    lines: int,
    st: os.stat_result,
) -> None:
    """Write the columnar cache of the run file at ``run_path`` (``st``: its stat at the
    stop) from what its writer kept while writing it (best effort: any problem leaves the
    run to get its cache on first read)."""
    try:
        columns = {}
        for descriptor, acc in accs.items():
            cols = acc.columns()
            if cols is None:
                return
            columns[descriptor] = cols
        with open(run_path, "rb") as f:
            head = _read_first_line(f)
            f.seek(max(0, st.st_size - 4096))
            tail = f.read(4096)
        source = {
            "name": run_path.name,
            "size": st.st_size,
            "head": None if head is None else zlib.crc32(head),
            "tail": zlib.crc32(tail),
        }
        _write_cache(cache_path, source, doc_lines, columns, lines)
    except (OSError, ValueError, TypeError):
        pass


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    data = b"".join([_CACHE_MAGIC, struct.pack("<Q", len(head)), head, *blobs])
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:  # the first cache of this store
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "wb")
    with f:
        f.write(data)
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
