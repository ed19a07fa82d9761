"""Events of one descriptor kept column-wise, shared by the memory and files stores.

:class:`_Columns` accumulates event pages column by column and hands out pages in
(``time``, ``seq_num``) order; :func:`_sort_key` orders mixed values as MongoDB groups them.
Both stores keep events this way, so the code lives here rather than in either store.
"""

from __future__ import annotations

import threading
from operator import itemgetter
from typing import Any

from ._util import json_copy
from .base import Doc

_MUTABLE = (dict, list)
_MUTABLE_TYPES = frozenset(_MUTABLE)
#: Single events whose data and timestamps wait to be spread into the columns, at most.
_WAITING_MAX = 64


class _Columns:
    """The events of one descriptor, column-wise, with an order kept by (time, seq_num)."""

    __slots__ = ("time", "seq_num", "uid", "_data", "_timestamps", "filled", "nested",
                 "ordered", "_order", "sealed", "_waiting", "_lock")

    def __init__(self) -> None:
        self.time: list[Any] = []
        self.seq_num: list[int] = []
        self.uid: list[str] = []
        self._data: dict[str, list[Any]] = {}
        self._timestamps: dict[str, list[Any]] = {}
        self.filled: dict[str, list[Any]] | None = None
        self.nested: set[str] = set()  # data keys holding lists/dicts: deep-copied on read
        self.ordered = True
        self._order: list[int] | None = None  # row order by (time, seq_num) when not ordered
        self.sealed = False  # columns kept as tuples (see seal)
        # Single events (their private copies, each with its row) whose data and timestamps
        # are not yet in the columns: a batch is spread one C pass per column (see
        # _spread_waiting), where a loop over every value of every event cost more.
        self._waiting: list[tuple[int, Doc]] = []
        # Held while waiting events are spread: readers take no other lock and may spread
        # from threads of their own.  (The writer only appends to _waiting, taking none.)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.uid)

    @property
    def data(self) -> dict[str, list[Any]]:
        """The ``data`` columns by key, every event in them."""
        if self._waiting:
            self._spread_waiting()
        return self._data

    @data.setter
    def data(self, columns: dict[str, list[Any]]) -> None:
        self._spread_waiting()
        self._data = columns

    @property
    def timestamps(self) -> dict[str, list[Any]]:
        """The ``timestamps`` columns by key, every event in them."""
        if self._waiting:
            self._spread_waiting()
        return self._timestamps

    @timestamps.setter
    def timestamps(self, columns: dict[str, list[Any]]) -> None:
        self._spread_waiting()
        self._timestamps = columns

    def _spread_waiting(self, sealing: bool = False) -> None:
        """Move the waiting events' data and timestamps into the columns (new ones made
        tuples when ``sealing``, as :meth:`seal` would make them)."""
        with self._lock:
            waiting = self._waiting
            taken = waiting[:]  # the writer may append meanwhile: those wait for the next
            if not taken:
                return
            n_first = taken[0][0]
            _spread_rows(self._data, [e["data"] for _, e in taken], n_first, sealing)
            _spread_rows(self._timestamps, [e["timestamps"] for _, e in taken], n_first, sealing)
            # Only now: a reader finding none waiting finds them in the columns.
            del waiting[: len(taken)]

    def seal(self) -> None:
        """Keep every column as a tuple until the next append.

        The garbage collector walks a list element by element at every full collection, and
        stops tracking a tuple of plain values altogether: a memory store seals a run's
        columns at its stop, so its events, most of what it holds, cost collections nothing.
        """
        if self.sealed:
            return
        self._spread_waiting(sealing=True)
        self.time = tuple(self.time)  # type: ignore[assignment]
        self.seq_num = tuple(self.seq_num)  # type: ignore[assignment]
        self.uid = tuple(self.uid)  # type: ignore[assignment]
        for columns in (self._data, self._timestamps, self.filled or {}):
            for key, col in columns.items():
                columns[key] = tuple(col)  # type: ignore[assignment]
        self.sealed = True

    def _unseal(self) -> None:
        self.time, self.seq_num, self.uid = list(self.time), list(self.seq_num), list(self.uid)
        for columns in (self._data, self._timestamps, self.filled or {}):
            for key, col in columns.items():
                columns[key] = list(col)
        self.sealed = False

    def append(self, page: Doc) -> None:
        self._spread_waiting()
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
        self.time.extend(times)
        self.seq_num.extend(seqs)
        self.uid.extend(page["uid"])
        n_after = len(self.uid)
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

    def append_event(self, event: Doc) -> None:
        """:meth:`append` of ``event_to_page(event)``, without building the page (RunEngines
        insert events one at a time: this is the hot path).  ``event`` is kept until its
        values are spread into the columns: it must be the store's private copy."""
        # Built before anything changes, as event_to_page would: a bad filled fails here.
        # (A RunEngine's events carry an empty filled: no comprehension for it.)
        given = event.get("filled")
        filled = None if given is None else {k: [v] for k, v in given.items()} if given else {}
        data = event["data"]
        nested = not _MUTABLE_TYPES.isdisjoint(map(type, data.values()))  # one C pass
        if self.sealed:
            self._unseal()
        self._order = None
        n_before = len(self.uid)
        time, seq_num = event["time"], event["seq_num"]
        if self.ordered and n_before and (time, seq_num) < (self.time[-1], self.seq_num[-1]):
            self.ordered = False
        if nested:
            for key, value in data.items():
                if type(value) in _MUTABLE:
                    self.nested.add(key)
        self._waiting.append((n_before, event))
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
        # The uid last: a reader on another thread counts rows by it, so every other column
        # already holds (or will spread) the row it counts.
        self.uid.append(event["uid"])
        if len(self._waiting) >= _WAITING_MAX:
            self._spread_waiting()

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
            if self._order is None:
                self._order = sorted(
                    range(len(self.uid)), key=lambda i: (self.time[i], self.seq_num[i])
                )
            order = self._order[start:stop]

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


def _spread_rows(
    columns: dict[str, list[Any]], rows: list[dict[str, Any]], n_first: int, sealing: bool
) -> None:
    # Rows with the columns' keys (every RunEngine event: the insert checks them against
    # the descriptor) are transposed in C; any others row by row, as a page would be.
    keys = rows[0].keys()
    names = tuple(keys)
    new: Any = None
    # Rows of as many keys as the first, each holding all of them, have its keys.
    if names and (not columns or columns.keys() == keys) and (
        set(map(len, rows)) == {len(names)}
    ):
        try:
            if len(names) > 1:
                new = zip(*map(itemgetter(*names), rows))
            else:  # itemgetter of one key gives the value, not a 1-tuple
                new = [tuple(map(itemgetter(names[0]), rows))]
        except KeyError:
            pass
    if new is not None:
        for key, values in zip(names, new):
            col = columns.get(key)
            if col is None:
                new_col = values if sealing and not n_first else [None] * n_first + list(values)
                columns[key] = new_col
            else:
                col.extend(values)
        return
    for n, row in enumerate(rows, n_first):
        for key, value in row.items():
            col = columns.get(key)
            if col is None:
                columns[key] = [None] * n + [value]
            else:
                col.append(value)


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
