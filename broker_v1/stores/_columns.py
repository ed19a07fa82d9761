"""Events of one descriptor kept column-wise, shared by the memory and files stores.

:class:`_Columns` accumulates event pages column by column and hands out pages in
(``time``, ``seq_num``) order; :func:`_sort_key` orders mixed values as MongoDB groups them.
Both stores keep events this way, so the code lives here rather than in either store.
"""

from __future__ import annotations

from typing import Any

from ._util import json_copy
from .base import Doc

_MUTABLE = (dict, list)
_MUTABLE_TYPES = frozenset(_MUTABLE)


class _Columns:
    """The events of one descriptor, column-wise, with an order kept by (time, seq_num)."""

    __slots__ = ("time", "seq_num", "uid", "data", "timestamps", "filled", "nested", "ordered",
                 "_order", "sealed")

    def __init__(self) -> None:
        self.time: list[Any] = []
        self.seq_num: list[int] = []
        self.uid: list[str] = []
        self.data: dict[str, list[Any]] = {}
        self.timestamps: dict[str, list[Any]] = {}
        self.filled: dict[str, list[Any]] | None = None
        self.nested: set[str] = set()  # data keys holding lists/dicts: deep-copied on read
        self.ordered = True
        self._order: list[int] | None = None  # row order by (time, seq_num) when not ordered
        self.sealed = False  # columns kept as tuples (see seal)

    def __len__(self) -> int:
        return len(self.uid)

    def seal(self) -> None:
        """Keep every column as a tuple until the next append.

        The garbage collector walks a list element by element at every full collection, and
        stops tracking a tuple of plain values altogether: a memory store seals a run's
        columns at its stop, so its events, most of what it holds, cost collections nothing.
        """
        if self.sealed:
            return
        self.time = tuple(self.time)  # type: ignore[assignment]
        self.seq_num = tuple(self.seq_num)  # type: ignore[assignment]
        self.uid = tuple(self.uid)  # type: ignore[assignment]
        for columns in (self.data, self.timestamps, self.filled or {}):
            for key, col in columns.items():
                columns[key] = tuple(col)  # type: ignore[assignment]
        self.sealed = True

    def _unseal(self) -> None:
        self.time, self.seq_num, self.uid = list(self.time), list(self.seq_num), list(self.uid)
        for columns in (self.data, self.timestamps, self.filled or {}):
            for key, col in columns.items():
                columns[key] = list(col)
        self.sealed = False

    def append(self, page: Doc) -> None:
        if self.sealed:
            self._unseal()
        self._order = None
        n_before = len(self.uid)
        times, seqs = page["time"], page["seq_num"]
        if self.ordered:
            if n_before and (times[0], seqs[0]) < (self.time[-1], self.seq_num[-1]):
                self.ordered = False
            elif len(times) > 1 and any(
                (times[i + 1], seqs[i + 1]) < (times[i], seqs[i]) for i in range(len(times) - 1)
            ):
                self.ordered = False
        n_after = n_before + len(page["uid"])
        _extend_columns(self.data, page["data"], n_before, None)
        _extend_columns(self.timestamps, page["timestamps"], n_before, None)
        for key, col in page["data"].items():
            if key not in self.nested and any(type(v) in _MUTABLE for v in col):
                self.nested.add(key)
        if "filled" in page and self.filled is None:
            self.filled = {}
        if self.filled is not None:
            _extend_columns(self.filled, page.get("filled", {}), n_before, False)
            for col in self.filled.values():
                if len(col) < n_after:
                    col.extend([False] * (n_after - len(col)))
        self.time.extend(times)
        self.seq_num.extend(seqs)
        self.uid.extend(page["uid"])  # last, as in append_event

    def append_event(self, event: Doc) -> None:
        """:meth:`append` of ``event_to_page(event)``, without building the page (RunEngines
        insert events one at a time: this is the hot path)."""
        # Built before anything changes, as event_to_page would: a bad filled fails here.
        # (A RunEngine's events carry an empty filled: no comprehension for it.)
        given = event.get("filled")
        filled = None if given is None else {k: [v] for k, v in given.items()} if given else {}
        if self.sealed:
            self._unseal()
        self._order = None
        n_before = len(self.uid)
        time, seq_num = event["time"], event["seq_num"]
        if self.ordered and n_before and (time, seq_num) < (self.time[-1], self.seq_num[-1]):
            self.ordered = False
        for columns, values in ((self.data, event["data"]),
                                (self.timestamps, event["timestamps"])):
            for key, value in values.items():
                col = columns.get(key)
                if col is None:
                    columns[key] = [None] * n_before + [value]
                else:
                    col.append(value)
        data = event["data"]
        if not _MUTABLE_TYPES.isdisjoint(map(type, data.values())):  # one C pass, usually
            for key, value in data.items():
                if type(value) in _MUTABLE:
                    self.nested.add(key)
        if filled is not None and self.filled is None:
            self.filled = {}
        if self.filled is not None:
            if filled:
                _extend_columns(self.filled, filled, n_before, False)
            for col in self.filled.values():
                if len(col) <= n_before:
                    col.append(False)
        self.time.append(time)
        self.seq_num.append(seq_num)
        # The uid last: readers (on any thread; they take no lock) count rows by it, so
        # every row they count is already in every column.
        self.uid.append(event["uid"])

    def row(self, i: int, descriptor: str) -> Doc:
        event: Doc = {
            "descriptor": descriptor,
            "uid": self.uid[i],
            "time": self.time[i],
            "seq_num": self.seq_num[i],
            "data": {k: json_copy(c[i]) for k, c in self.data.items()},
            "timestamps": {k: c[i] for k, c in self.timestamps.items()},
        }
        if self.filled is not None:
            event["filled"] = {k: c[i] for k, c in self.filled.items()}
        return event

    def page(self, descriptor: str, start: int, stop: int, fields: set[str] | None) -> Doc:
        if self.ordered:
            order = None
            rows = slice(start, stop)

            def take(col: list[Any]) -> list[Any]:
                # A sealed column is a tuple; asked of the column, not of self.sealed, since
                # a reader may be here while another thread seals (reads take no lock).
                got = col[rows]
                return got if type(got) is list else list(got)
        else:
            n = len(self.uid)
            every = self._order
            # Checked against the rows, not only reset by appends: a reader on another
            # thread may have sorted while a row was being appended.
            if every is None or len(every) != n:
                every = self._order = sorted(
                    range(n), key=lambda i: (self.time[i], self.seq_num[i])
                )
            order = every[start:stop]

            def take(col: list[Any]) -> list[Any]:
                return [col[i] for i in order]

        keys = [k for k in self.data if fields is None or k in fields]
        data = {}
        for k in keys:
            col = take(self.data[k])
            data[k] = [json_copy(v) for v in col] if k in self.nested else col
        page: Doc = {
            "descriptor": descriptor,
            "time": take(self.time),
            "seq_num": take(self.seq_num),
            "uid": take(self.uid),
            "data": data,
            "timestamps": {k: take(self.timestamps[k]) for k in keys},
        }
        if self.filled is not None:
            page["filled"] = {k: take(c) for k, c in self.filled.items() if k in keys}
        return page


def _extend_columns(
    columns: dict[str, list[Any]], new: dict[str, list[Any]], n_before: int, missing: Any
) -> None:
    # Keys absent from earlier pages are back-filled so every column stays row-aligned.
    for key, col in new.items():
        existing = columns.get(key)
        if existing is None:
            columns[key] = [missing] * n_before + list(col)
        else:
            existing.extend(col)


def _sort_key(value: Any) -> tuple[int, Any]:
    # Missing values sort first, like MongoDB's null; mixed types group by kind.
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))
