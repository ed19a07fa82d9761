"""Long reads in pieces: a request the server does not answer within ``store.timeout`` is
split in two and asked again, rather than failing the whole read.

* **Array nodes** (external frames, larger in-event arrays) take row ranges: a timed-out
  range is read as two halves, down to one row (:func:`read_rows`).
* **A stream's table** (``internal``) cannot be read by rows: tiled 0.2.20's table routes
  take only whole partitions, and the SQL tables TiledWriter writes are one partition.  So a
  timed-out read is split by *columns* instead, each request carrying ``seq_num`` and
  ``time`` so the pieces are put back row by row, down to one data column per request
  (:func:`read_table`).

Only a piece that cannot be split further and still times out is an error:
:class:`~broker_v1.errors.StoreUnavailable` naming the server, what was read and
``store.timeout``.  (tiled's client first retries a timed-out request itself, for up to 45 s;
``TILED_RETRY_ATTEMPTS``/``TILED_RETRY_TIMEOUT`` set that.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ...errors import StoreUnavailable

__all__ = ["read_rows", "read_table"]

_ARROW = "application/vnd.apache.arrow.file"
#: Columns sent with every piece of a table, to put the pieces back together.
_KEYS = ("seq_num", "time")


def _timed_out(err: StoreUnavailable) -> bool:
    import httpx

    return isinstance(err.__cause__, httpx.TimeoutException)


def read_rows(conn: Any, array: Any, lo: int, hi: int, what: str) -> Any:
    """Rows ``lo:hi`` of an array node as a numpy array, in one request; on a timeout, in
    two halves (down to one row).

    Parameters
    ----------
    conn
        The store's :class:`~broker_v1.stores.tiled._client.TiledConnection`.
    array
        tiled's array client.
    lo, hi
        The rows, ``lo < hi``.
    what
        The node, for messages ("the external field 'img' of stream ...").
    """
    import numpy as np

    try:
        with conn.errors(f"read rows {lo}-{hi - 1} of {what}"):
            return np.asarray(array.read(slice=(slice(lo, hi),)))
    except StoreUnavailable as err:
        if hi - lo == 1 or not _timed_out(err):
            raise
    mid = (lo + hi) // 2
    return np.concatenate([read_rows(conn, array, lo, mid, what),
                           read_rows(conn, array, mid, hi, what)])


def read_table(conn: Any, table: Any, columns: Sequence[str], what: str) -> dict[str, list[Any]]:
    """``{column: values}`` of a table node, as plain Python values, in one request; on a
    timeout, the data columns in two halves (each with ``seq_num`` and ``time``), down to one
    data column per request.

    Parameters
    ----------
    conn
        The store's connection (error translation).
    table
        tiled's table client.
    columns
        The columns wanted (``seq_num`` and ``time`` among them when the table has them).
    what
        The table, for messages.
    """
    keys = [c for c in _KEYS if c in columns]
    data = [c for c in columns if c not in keys]
    return _read_columns(conn, table, keys, data, what)


def _fetch(conn: Any, table: Any, columns: list[str], what: str) -> dict[str, list[Any]]:
    import pyarrow.ipc

    buffer = io.BytesIO()
    named = ", ".join(repr(c) for c in columns if c not in _KEYS) or "the row numbers"
    with conn.errors(f"read column{'s' if ',' in named else ''} {named} of {what}"):
        table.export(buffer, columns=columns, format=_ARROW)
    read = pyarrow.ipc.open_file(buffer.getvalue()).read_all()
    return {name: read.column(name).to_pylist() for name in columns
            if name in read.column_names}


def _read_columns(conn: Any, table: Any, keys: list[str], data: list[str],
                  what: str) -> dict[str, list[Any]]:
    try:
        return _fetch(conn, table, keys + data, what)
    except StoreUnavailable as err:
        if len(data) <= 1 or not keys or not _timed_out(err):
            raise
    mid = len(data) // 2
    first = _read_columns(conn, table, keys, data[:mid], what)
    second = _read_columns(conn, table, keys, data[mid:], what)
    return _join(first, second, keys, what)


def _join(first: dict[str, list[Any]], second: dict[str, list[Any]], keys: list[str],
          what: str) -> dict[str, list[Any]]:
    """The columns of two pieces of one table, the second's rows put in the first's order
    (the server normally answers both in the same order; the keys make sure)."""
    rows_a = list(zip(*(first[k] for k in keys)))
    rows_b = list(zip(*(second[k] for k in keys)))
    out = dict(first)
    if rows_a == rows_b:
        out.update((k, v) for k, v in second.items() if k not in keys)
        return out
    where = {row: i for i, row in enumerate(rows_b)}
    if len(where) != len(rows_b) or len(set(rows_a)) != len(rows_a) or set(where) != set(rows_a):
        raise StoreUnavailable(
            f"The pieces of {what} read in separate requests (after a timeout) do not hold the "
            "same rows, so they cannot be put together. Raise store.timeout so the table is "
            "read in one request.")
    order = [where[row] for row in rows_a]
    out.update((k, [v[i] for i in order]) for k, v in second.items() if k not in keys)
    return out
