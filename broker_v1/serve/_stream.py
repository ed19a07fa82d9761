"""One stream of a run as TiledWriter lays it out (``BlueskyEventStream`` 3.0, ``composite``).

* **Metadata**: the stream's first descriptor without ``name``, ``object_keys`` and
  ``run_start``; each data key carries ``object_name`` (how bluesky-tiled-plugins rebuilds
  ``object_keys``); later descriptors of the stream (configuration updates) are kept as
  ``_config_updates`` entries ``{uid, time, configuration}``.
* **``internal``**: a table (served as Arrow) with ``seq_num``, ``time``, one column per
  scalar field or small array (at most :data:`MAX_TABLE_ARRAY` elements, as TiledWriter
  keeps them) and ``ts_<field>`` timestamps, rows ordered by (``time``, ``seq_num``).
* **One array per larger in-event array**, events along the first axis; dimensions
  ``time, dim_int_1, ...`` named by size as TiledWriter names them.

Fields marked ``external`` are served as arrays filled on the server when the app has a
filler (``_external``), else not at all.  Fields named ``time`` or ``seq_num`` would collide
with the table's own columns: they are served as ``time_`` and ``seq_num_`` (in the table, its
``ts_`` columns and the metadata's ``data_keys``), TiledWriter's renaming, with one more
``_`` while the name is taken by another field of the stream (:func:`served_names`).  The
documents (``run.documents()``) keep the recorded names.  The table is
built from the store's event pages when it is read or listed, not before; a finished run's
tables are kept for the next request in a small cache (:data:`FRAMES`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy
import pandas
from tiled.adapters.array import ArrayAdapter
from tiled.structures.core import Spec, StructureFamily
from tiled.structures.table import TableStructure

from ..stores.base import DocumentStore
from ._nodes import Node, store_errors

__all__ = ["FRAMES", "MAX_TABLE_ARRAY", "EventTable", "StreamAdapter", "served_names",
           "stream_metadata"]

#: In-event arrays with at most this many elements stay in the table (TiledWriter's default).
MAX_TABLE_ARRAY = 16
_RESERVED = frozenset({"time", "seq_num"})
#: Column dtypes of an empty table, from the descriptor's JSON dtype.
_EMPTY_DTYPES: dict[Any, str] = {"number": "float64", "integer": "int64", "boolean": "bool",
                                 "string": "str"}

Doc = dict[str, Any]


def served_names(data_keys: Mapping[str, Any]) -> dict[str, str]:
    """``{served name: recorded name}`` of a stream's fields, in the descriptor's order.

    A field named ``time`` or ``seq_num`` is served as ``time_``/``seq_num_`` (as TiledWriter
    writes it), with more ``_`` while that name is another field's; other names unchanged.
    """
    names: dict[str, str] = {}
    for key in data_keys:
        served = key
        if key in _RESERVED:
            served = f"{key}_"
            while served in data_keys or served in names:
                served += "_"
        names[served] = key
    return names


def stream_metadata(descriptors: list[Doc]) -> Doc:
    """The stream node's metadata from its descriptors (first, then configuration updates);
    ``data_keys`` are named as served (:func:`served_names`)."""
    first = descriptors[0]
    metadata = {k: v for k, v in first.items() if k not in ("name", "object_keys", "run_start")}
    recorded = first.get("data_keys", {})
    names = served_names(recorded)
    data_keys = {served: dict(recorded[key]) for served, key in names.items()}
    as_served = {key: served for served, key in names.items()}
    for object_name, keys in (first.get("object_keys") or {}).items():
        for key in keys:
            if key in as_served:
                data_keys[as_served[key]]["object_name"] = object_name
    metadata["data_keys"] = data_keys
    updates = []
    for later in descriptors[1:]:
        update: Doc = {"uid": later["uid"], "time": later["time"]}
        if later.get("configuration"):
            update["configuration"] = later["configuration"]
        updates.append(update)
    if updates:
        metadata["_config_updates"] = updates
    return metadata


def stream_data_keys(descriptor: Doc, names: Mapping[str, str]) -> dict[str, Doc]:
    """The descriptor's data keys under their served names."""
    recorded = descriptor.get("data_keys", {})
    return {served: recorded[key] for served, key in names.items()}


def _in_table(data_key: Mapping[str, Any]) -> bool:
    if data_key.get("dtype") != "array":
        return True
    shape = data_key.get("shape") or []
    if any(s is None for s in shape):
        return False
    return bool(math.prod(shape) <= MAX_TABLE_ARRAY)


class StreamAdapter(Node):
    """A stream: its descriptors as metadata, its events as a table plus larger arrays.

    Parameters
    ----------
    store
        The store holding the run.
    run_uid, name
        The run and the stream's name.
    descriptors
        The stream's descriptors in time order (at least one).
    finished
        Whether the run has stopped (its tables may then be kept in :data:`FRAMES`).
    filler
        broker_v1's data filler; with one, external fields are served as arrays.
    """

    specs = [Spec("BlueskyEventStream", version="3.0"), Spec("composite")]

    def __init__(self, store: DocumentStore, run_uid: str, name: str,
                 descriptors: list[Doc], *, finished: bool = False,
                 filler: Any = None) -> None:
        super().__init__(metadata=stream_metadata(descriptors))
        self.store = store
        self.filler = filler
        #: The run has a stop: its events no longer change (tables may be cached).
        self.finished = finished
        self.run_uid = run_uid
        self.name = name
        self.descriptors = descriptors
        #: ``{served name: recorded name}`` of every field; the lists below hold served names.
        self.names = served_names(descriptors[0].get("data_keys", {}))
        data_keys = self.data_keys = stream_data_keys(descriptors[0], self.names)
        served = [k for k, v in data_keys.items() if not v.get("external")]
        self.table_fields = [k for k in served if _in_table(data_keys[k])]
        self.array_fields = [k for k in served if not _in_table(data_keys[k])]
        # External fields become arrays only when there is a filler to read them with.
        self.external_fields = [] if filler is None else [
            k for k, v in data_keys.items() if v.get("external")]
        self._externals: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<StreamAdapter {self.name!r} of {self.run_uid}>"

    def _keys(self) -> list[str]:
        readable = [k for k in self.external_fields if self._external(k).problem is None]
        return ["internal", *self.array_fields, *readable]

    def _external(self, key: str) -> Any:
        """The external field's array node, built once per request."""
        if key not in self._externals:
            from ._external import ExternalArray

            data_key = self.data_keys[key]
            ndim = len(data_key.get("shape") or ())
            dims = ("time", *(f"{key}_dim_{i}" for i in range(1, ndim + 1)))
            self._externals[key] = ExternalArray(self.filler, self.columns([key])[key],
                                                 data_key, dims)
        return self._externals[key]

    def _entries(self, offset: int, limit: int | None, direction: int
                 ) -> list[tuple[str, Any]]:
        keys = self._keys()
        if direction < 0:
            keys.reverse()
        keys = keys[offset:] if limit is None else keys[offset:offset + limit]
        return [(key, self[key]) for key in keys]

    def __len__(self) -> int:
        return len(self._keys())

    def __getitem__(self, key: str) -> Any:
        if key == "internal":
            return EventTable(self)
        if key in self.array_fields:
            return self._array(key)
        if key in self.external_fields and self._external(key).problem is None:
            return self._external(key)
        raise KeyError(key)

    def columns(self, fields: Iterable[str]) -> dict[str, list[Any]]:
        """``seq_num``, ``time`` and, per field (served names), values and timestamps of
        every event."""
        fields = list(fields)
        recorded = [self.names.get(k, k) for k in fields]
        out: dict[str, list[Any]] = {"seq_num": [], "time": []}
        out.update({k: [] for k in fields})
        stamps: dict[str, list[Any]] = {k: [] for k in fields}
        with store_errors():
            for descriptor in self.descriptors:
                for page in self.store.iter_event_pages(descriptor["uid"], fields=recorded):
                    n = len(page["seq_num"])
                    out["seq_num"].extend(page["seq_num"])
                    out["time"].extend(page["time"])
                    for k, r in zip(fields, recorded):
                        out[k].extend(page["data"].get(r, [None] * n))
                        stamps[k].extend(page["timestamps"].get(r, [None] * n))
        if len(self.descriptors) > 1:
            # Pages come per descriptor; the stream's rows go by (time, seq_num).
            order = sorted(range(len(out["seq_num"])),
                           key=lambda i: (out["time"][i], out["seq_num"][i]))
            out = {k: [v[i] for i in order] for k, v in out.items()}
            stamps = {k: [v[i] for i in order] for k, v in stamps.items()}
        out.update({f"ts_{k}": v for k, v in stamps.items()})
        return out

    def _array(self, key: str) -> ArrayAdapter:
        values = self.columns([key])[key]
        shape = tuple(self.data_keys[key].get("shape") or ())
        array = numpy.asarray(values) if values else numpy.zeros((0, *shape))
        return ArrayAdapter.from_array(array, dims=self._dims(array.shape))

    def _dims(self, shape: tuple[int, ...]) -> tuple[str, ...]:
        # Axes of equal length share a name across the stream's arrays (TiledWriter's rule),
        # so they line up in the client's xarray.Dataset.
        sizes: dict[int, str] = {}
        for key in self.array_fields:
            for size in (self.data_keys[key].get("shape") or ()):
                sizes.setdefault(size, f"dim_int_{len(sizes) + 1}")
        return ("time", *(sizes.get(size, f"dim_{axis}")
                          for axis, size in enumerate(shape[1:], start=1)))


def _column(values: list[Any]) -> Any:
    """Numbers and booleans as one numpy array (pandas infers lists far more slowly); any
    other column (strings, small arrays, mixed) as the list, for pandas to infer."""
    if isinstance(values[0], bool | int | float):
        try:
            array = numpy.asarray(values)
        except (ValueError, TypeError):
            return values
        if array.ndim == 1 and array.dtype.kind in "biuf":
            return array
    return values


class _FrameCache:
    """Tables of finished runs kept between requests, up to :attr:`budget` bytes.

    A client reading a stream asks twice (the listing gives the table's columns, then the
    data); a finished run's events no longer change, so the second answer reuses the first
    table.  Open runs are never cached.  Least recently used tables go first.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._frames: OrderedDict[Any, tuple[pandas.DataFrame, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> pandas.DataFrame | None:
        with self._lock:
            found = self._frames.get(key)
            if found is None:
                return None
            self._frames.move_to_end(key)
            return found[0]

    def put(self, key: Any, frame: pandas.DataFrame) -> None:
        size = int(frame.memory_usage(deep=False).sum())
        if size > self.budget:
            return
        with self._lock:
            self._frames[key] = (frame, size)
            while sum(s for _, s in self._frames.values()) > self.budget:
                self._frames.popitem(last=False)


#: The process's table cache (256 MB; each uvicorn worker has its own).
FRAMES = _FrameCache(256 * 2**20)


class EventTable:
    """A stream's ``internal`` table, built from the store's event pages on first use."""

    structure_family = StructureFamily.table
    specs: list[Spec] = []

    def __init__(self, stream: StreamAdapter) -> None:
        self._stream = stream
        self._frame: pandas.DataFrame | None = None

    def __repr__(self) -> str:
        return f"<EventTable of stream {self._stream.name!r} of {self._stream.run_uid}>"

    def metadata(self) -> dict[str, Any]:
        """No metadata of its own (the stream holds the descriptor)."""
        return {}

    def warm(self) -> None:
        """Build the table now (tiled's ``structure()`` needs it; see ``_nodes.warm``)."""
        self.frame()

    def frame(self) -> pandas.DataFrame:
        """The whole table (built once per request, or taken from :data:`FRAMES`)."""
        if self._frame is None:
            stream = self._stream
            key = (stream.run_uid, stream.name, tuple(d["uid"] for d in stream.descriptors))
            cached = FRAMES.get(key) if stream.finished else None
            self._frame = cached if cached is not None else self._build()
            if cached is None and stream.finished:
                FRAMES.put(key, self._frame)
        return self._frame

    def _build(self) -> pandas.DataFrame:
        fields = self._stream.table_fields
        columns = self._stream.columns(fields)
        data_keys = self._stream.data_keys
        frame: dict[str, Any] = {}
        for name, values in columns.items():
            if values:
                frame[name] = _column(values)
            else:  # no events: a typed empty column
                dtype = ("int64" if name == "seq_num" else "float64"
                         if name == "time" or name.startswith("ts_")
                         else _EMPTY_DTYPES.get(data_keys[name].get("dtype"), "float64"))
                frame[name] = pandas.Series([], dtype=dtype)
        return pandas.DataFrame(frame)

    def __getitem__(self, column: str) -> ArrayAdapter:
        """One column as an array (tiled's whole-node exporters read tables this way)."""
        frame = self.frame()
        if column not in frame.columns:
            raise KeyError(column)
        return ArrayAdapter.from_array(frame[column].to_numpy())

    def structure(self) -> TableStructure:
        """Columns and Arrow schema, one partition."""
        return TableStructure.from_pandas(self.frame())

    def read(self, fields: list[str] | None = None) -> pandas.DataFrame:
        """The table, or some of its columns."""
        frame = self.frame()
        return frame if fields is None else frame[list(fields)]

    def read_partition(self, partition: int, fields: list[str] | None = None
                       ) -> pandas.DataFrame:
        """The table's only partition (``partition`` 0)."""
        if partition != 0:
            from fastapi import HTTPException

            raise HTTPException(status_code=400,
                                detail=f"This table has one partition (0), not {partition}.")
        return self.read(fields)
