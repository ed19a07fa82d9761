"""The parsed contents of one run file (:class:`_RunData`), grown in place as it grows.

Event lines stay raw bytes, grouped by descriptor, until a descriptor's events are asked
for; they are then parsed in bulk into :class:`~broker_v1.stores._columns._Columns`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import CorruptRunFile
from .._columns import _Columns
from ..base import Doc
from ._format import _DESC_RE, _NAME_RE, _parse_line, _parse_lines


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
