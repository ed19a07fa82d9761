"""Event pages → ``pandas.DataFrame``: the v1 ``get_table`` (spec §4.1).

The table is built column-wise: each event page's lists become numpy arrays once, pages and
descriptors are concatenated per column, and one DataFrame is made at the end without copying
the columns.  No per-event dict is built on this path.  Runs are read one at a time, so only
the finished columns of earlier runs are held in memory.

Representation decisions (v1 compatibility first):

* string columns (including datum ids of unfilled external fields) are ``object`` dtype, as
  in every databroker release, not pandas 3's ``str`` dtype: v1 code puts arrays into datum
  id columns (``fill_table``) and compares cells with ``is None``; ``str`` columns refuse the
  first and turn ``None`` into ``NaN``.  The same on pandas 2 and 3.
* inline array fields are one ``object`` column holding one numpy array per row (0.13).
* ``time`` is ``datetime64[ns]`` (pandas 3 would otherwise pick microseconds).

This is the only module of broker_v1 outside ``v2`` that imports pandas.
"""

from __future__ import annotations

import array
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .replay import (
    Filler,
    _check_filler,
    compile_fields,
    descriptors_of_stream,
    extra_data,
    keys_to_fill,
)
from .stores._util import json_copy
from .utils import ALL, stream_name_of

__all__ = ["empty_table", "get_table"]

_NS_PER_S = 1_000_000_000


def empty_table() -> pd.DataFrame:
    """The empty result: no columns, no rows, index named ``'seq_num'``."""
    df = pd.DataFrame()
    df.index.name = "seq_num"
    return df


class _Block(NamedTuple):
    """The rows of one descriptor: numpy columns in output order."""

    seq_num: np.ndarray
    time: np.ndarray  # float64 epoch seconds
    columns: dict[str, np.ndarray]


def get_table(
    store: Any,
    runs: Iterable[Any],
    *,
    stream_name: Any = "primary",
    fields: Iterable[str] | str | None = None,
    fill: Any = False,
    filler: Filler | None = None,
    convert_times: bool = True,
    timezone: str | None,
    localize_times: bool = True,
) -> pd.DataFrame:
    """One stream of one or more runs as a ``pandas.DataFrame`` (databroker's v1 shape).

    Parameters
    ----------
    store
        A :class:`~broker_v1.stores.base.DocumentStore`.
    runs
        :class:`~broker_v1._run.RunDocs` of each run; their tables are concatenated in the
        order given (the index then repeats).  Read lazily, one run at a time.
    stream_name
        The stream; descriptors without a name count as ``'primary'`` (spec §9 #21).
        ``ALL`` is not supported by v1 tables and gives the empty frame.
    fields
        Regular expressions full-matched against names (``'det'`` does not select
        ``'det2'``).  Matching event fields are kept; matching names in the descriptor's
        ``configuration[*]['data']``, then the start, then the stop document are appended as
        constant columns.  ``None`` keeps every event field and adds no constant column.
    fill
        Which external fields to load: a list/tuple/set of names, or anything judged by
        truthiness (spec §11.1 #5).  Not filled, external columns hold datum ids.
    filler
        Loads external data (see :class:`~broker_v1.replay.Filler`); needed when ``fill``
        selects an external field of the stream.
    convert_times
        Convert ``time`` from epoch seconds to ``datetime64[ns]``.
    timezone
        IANA zone name for ``localize_times`` (the Broker passes its configured zone);
        ``None`` means the machine's local zone.
    localize_times
        Express ``time`` as naive wall-clock time in ``timezone`` (the 0.13 behaviour, spec
        §9 #4); implies conversion.  With ``convert_times=True, localize_times=False`` the
        result is naive UTC; with both False, float epoch seconds.

    Returns
    -------
    pandas.DataFrame
        Index: the events' ``seq_num`` (named ``'seq_num'``, also when empty).  Columns:
        ``'time'``, then the data keys in the descriptor's ``data_keys`` order, then constant
        columns.  Several descriptors of the stream are concatenated in ascending descriptor
        time (union of columns, ``NaN`` where a descriptor lacks one); events within a
        descriptor in ascending ``time``.  No matching descriptor, no events or no selected
        event field gives ``empty_table()``.

    Warns
    -----
    UserWarning
        No run has a stream named ``stream_name``; the message names the streams that exist.

    Raises
    ------
    ValueError
        ``fill`` selects external fields and ``filler`` is None; an invalid ``fields`` regular
        expression; an unknown ``timezone``.
    """
    if stream_name is ALL:
        return empty_table()
    convert = bool(convert_times or localize_times)
    if localize_times:
        timezone = _check_timezone(timezone)
    match = compile_fields(fields)
    filtered = fields is not None
    blocks: list[_Block] = []
    streams_seen: set[str] = set()
    found = False
    any_run = False
    for run in runs:
        any_run = True
        descriptors = descriptors_of_stream(run.descriptors, stream_name)
        if not descriptors:
            streams_seen.update(stream_name_of(d) for d in run.descriptors)
            continue
        found = True
        # Ascending descriptor time (spec §9 #8); stable for equal times.
        for descriptor in sorted(descriptors, key=lambda d: d.get("time", 0)):
            block = _read_descriptor(store, run, descriptor, match, filtered, fill, filler)
            if block is not None:
                blocks.append(block)
    if any_run and not found:
        existing = ", ".join(repr(s) for s in sorted(streams_seen)) or "none (no descriptors)"
        warnings.warn(
            f"No stream named {stream_name!r} in the run(s) asked for, so the table is empty. "
            f"Streams that exist: {existing}.",
            UserWarning,
            stacklevel=2,
        )
    if not blocks:
        return empty_table()
    return _assemble(blocks, convert=convert, localize=localize_times, timezone=timezone)


def _check_timezone(timezone: str | None) -> Any:
    if timezone is None:
        import tzlocal

        return tzlocal.get_localzone_name()
    try:
        pd.Timestamp(0, tz="UTC").tz_convert(timezone)
    except Exception as err:  # pandas raises different types per zone library
        raise ValueError(
            f"timezone {timezone!r} is not a time zone pandas knows; use an IANA name such as "
            "'US/Eastern' or 'Europe/Amsterdam'."
        ) from err
    return timezone


# --------------------------------------------------------------------------- one descriptor
def _read_descriptor(
    store: Any,
    run: Any,
    descriptor: Mapping[str, Any],
    match: Any,
    filtered: bool,
    fill: Any,
    filler: Filler | None,
) -> _Block | None:
    data_keys = descriptor["data_keys"]
    keys = [k for k in data_keys if match(k)]
    if not keys:
        return None  # only a time column would be left (spec §4.1 "Empty results")
    to_fill = [k for k in keys_to_fill(descriptor, fill) if k in keys]
    _check_filler(filler, descriptor, to_fill)
    as_arrays = {
        k for k in keys if data_keys[k].get("dtype") == "array" and not data_keys[k].get("external")
    }
    times: list[np.ndarray] = []
    seq_nums: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    projection = keys if filtered else None
    for page in store.iter_event_pages(descriptor["uid"], fields=projection):
        # Drop what a table never shows before converting, to keep the peak low.
        page.pop("timestamps", None)
        page.pop("uid", None)
        page.pop("filled", None)
        n = len(page["seq_num"])
        times.append(_float_column(page.pop("time")))
        seq_nums.append(_int_column(page.pop("seq_num")))
        data = page["data"]
        for k in keys:
            values = data.pop(k, None)
            if values is None:  # a store that lost a column: the cells read as missing
                parts[k].append(np.full(n, np.nan))
            else:
                parts[k].append(_to_column(values, k in as_arrays))
            del values
    total = sum(len(t) for t in times)
    if total == 0:
        return None
    columns: dict[str, np.ndarray] = {}
    for k in keys:
        columns[k] = _concat(parts.pop(k))
    for k in to_fill:
        assert filler is not None  # checked above
        ids = columns[k].tolist()
        loaded = filler.fill_column(descriptor, k, ids)
        if len(loaded) != len(ids):
            raise ValueError(
                f"The filler returned {len(loaded)} values for {len(ids)} datum ids of {k!r} "
                f"(descriptor {descriptor['uid']}); it must return one per datum id."
            )
        columns[k] = _object_cells(loaded)
    if filtered:
        # The table's own time column is never replaced by a start/stop 'time'.
        values, _ = extra_data(run.start, run.stop, descriptor, match, [*keys, "time"])
        for k, v in values.items():
            columns[k] = _constant(v, total)
    return _Block(_concat(seq_nums), _concat(times), columns)


# --------------------------------------------------------------------------- columns
def _float_column(values: list[Any]) -> np.ndarray:
    try:
        return np.frombuffer(array.array("d", values), dtype=np.float64)
    except (TypeError, OverflowError):
        return np.asarray(values, dtype=np.float64)


def _int_column(values: list[Any]) -> np.ndarray:
    try:
        return np.frombuffer(array.array("q", values), dtype=np.int64)
    except (TypeError, OverflowError):
        return np.asarray(values)


def _to_column(values: list[Any], as_arrays: bool) -> np.ndarray:
    """One page's values of one field as a 1-d numpy array (one cell per event)."""
    if as_arrays:
        return _object_cells([np.asarray(v) for v in values])
    if not values:
        return np.empty(0, dtype=object)
    first = type(values[0])
    # Fast paths: array.array converts a list of Python numbers in C, several times faster
    # than np.asarray's type discovery, and refuses (TypeError) anything it would mangle.
    if first is float:
        try:
            return np.frombuffer(array.array("d", values), dtype=np.float64)
        except TypeError:
            pass
    elif first is int:
        try:
            return np.frombuffer(array.array("q", values), dtype=np.int64)
        except OverflowError:
            pass
        except TypeError:  # ints mixed with floats: float, as numpy and pandas infer
            try:
                return np.frombuffer(array.array("d", values), dtype=np.float64)
            except TypeError:
                pass
    elif first is str:
        return _object_cells(values)
    return _infer_column(values)


def _infer_column(values: list[Any]) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # ragged lists
        return _object_cells([np.asarray(v) if isinstance(v, list) else v for v in values])
    if arr.ndim != 1:
        # Lists under a data key not declared 'array': still one array per cell.
        return _object_cells(list(arr))
    kind = arr.dtype.kind
    if kind in "US":
        # numpy turns [1, 'a'] into strings; keep the values as they were.
        return _object_cells(values)
    if kind == "O":
        # Numbers with gaps read as float with NaN, as pandas infers them (all-None stays).
        nones = sum(v is None for v in values)
        if 0 < nones < len(values) and all(type(v) in (int, float) or v is None for v in values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return arr


def _object_cells(values: Sequence[Any]) -> np.ndarray:
    # fromiter stores each item as one cell (np.array would broadcast nested sequences).
    return np.fromiter(values, dtype=object, count=len(values))


def _constant(value: Any, n: int) -> np.ndarray:
    if type(value) in (bool, int, float):
        return np.full(n, value)
    if isinstance(value, dict | list):
        return _object_cells([json_copy(value) for _ in range(n)])  # no shared mutable cells
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# --------------------------------------------------------------------------- assembly
def _assemble(
    blocks: list[_Block], *, convert: bool, localize: bool, timezone: Any
) -> pd.DataFrame:
    names: dict[str, None] = {}  # union of columns in order of first appearance
    for b in blocks:
        names.update(dict.fromkeys(b.columns))
    seq_num = _concat([b.seq_num for b in blocks])
    time = _concat([b.time for b in blocks])
    series: dict[str, pd.Series] = {"time": _time_series(time, convert, localize, timezone)}
    del time
    for name in names:
        parts: list[np.ndarray | int] = []
        for b in blocks:
            col = b.columns.pop(name, None)
            parts.append(len(b.seq_num) if col is None else col)
        col = _concat_with_gaps(parts)
        # An explicit dtype keeps object columns object on pandas 3 (no str inference).
        series[name] = pd.Series(col, dtype=col.dtype, copy=False)
    df = pd.DataFrame(series, copy=False)
    df.index = pd.Index(seq_num, name="seq_num")
    return df


def _concat_with_gaps(parts: list[np.ndarray | int]) -> np.ndarray:
    """Concatenate column parts; an int stands for that many missing cells (``NaN``)."""
    present = [p for p in parts if not isinstance(p, int)]
    if len(present) == len(parts):
        return _concat(present)
    if all(p.dtype.kind in "iuf" for p in present):
        dtype = np.result_type(np.float64, *present)
        return np.concatenate(
            [np.full(p, np.nan, dtype=dtype) if isinstance(p, int) else p for p in parts]
        )
    # Anything else (strings, bools, arrays) becomes object with NaN gaps, as pandas.concat does.
    pieces = []
    for p in parts:
        if isinstance(p, int):
            gap = np.empty(p, dtype=object)
            gap.fill(np.nan)
            pieces.append(gap)
        else:
            pieces.append(p.astype(object, copy=False))
    return np.concatenate(pieces)


def _time_series(time: np.ndarray, convert: bool, localize: bool, timezone: Any) -> pd.Series:
    if not convert:
        return pd.Series(time, dtype=np.float64, copy=False)
    # Split whole and fractional seconds so the nanoseconds are those of the float itself
    # (multiplying by 1e9 first would round to ~256 ns at today's epoch).
    finite = np.isfinite(time)
    if not finite.all():  # a NaN time (legacy data) becomes NaT instead of garbage
        time = np.where(finite, time, 0.0)
    whole = np.floor(time)
    nanos = np.rint((time - whole) * _NS_PER_S).astype(np.int64)
    nanos += whole.astype(np.int64) * _NS_PER_S
    if not finite.all():
        nanos[~finite] = np.iinfo(np.int64).min  # NaT
    index = pd.DatetimeIndex(nanos.view("datetime64[ns]"))
    if localize:
        index = index.tz_localize("UTC").tz_convert(timezone).tz_localize(None)
    values = index.as_unit("ns").to_numpy()
    return pd.Series(values, dtype=values.dtype, copy=False)
