"""External data (detector files) of the SQL layout: placeholder datum ids and frame reads.

``TiledWriter`` turns a detector's resource and datum documents into one array node per stream
and external field (``<run>/<stream>/<field>``, one row per event) that the server reads from
the original files; the datum ids themselves are not kept.  In their place the store puts a
**placeholder datum id** in each event's external field::

    sr-<uid of the stream's first descriptor>-<field>/<row>

where ``<row>`` is ``seq_num - 1``, the event's row in the array node (TiledWriter's own
mapping).  The part before ``/`` is the resource name tiled's document export
(``run.documents()``) gives the same node, so both readers agree; the ids are the same on
every read and through every store object.

Filling (``fill=True``, ``get_images``, the v2 shim's ``read()``) asks the store to read these
ids (:meth:`ExternalReader.load`): requested rows are grouped per array node and read as
slices, one request per node when the frames fit :data:`REQUEST_BYTES`, more (each at most
that size) when they do not.  A request the server does not answer within the store's
``timeout`` is split in two and retried, down to single frames; only a single frame that times
out is an error (naming the server, the field and ``store.timeout``).  The last rows read of
each node read one frame at a time are kept (that read reads ahead), so filling event by event
(``get_documents(fill=True)``) still makes one request per :data:`REQUEST_BYTES` of frames,
not one per frame.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...errors import DatumNotFound
from ._paging import read_rows

__all__ = ["REQUEST_BYTES", "ExternalReader", "external_keys", "placeholder", "resource_name"]

#: Largest answer asked for in one request (bytes of frames); larger reads are split.
REQUEST_BYTES = 32 * 2**20
#: Rows skipped between two wanted rows that are still read in the same request.
_MAX_GAP = 8
#: Array nodes whose block read ahead (for one frame asked) is kept.
_WINDOWS = 4


def resource_name(descriptor_uid: str, key: str) -> str:
    """The name of one stream's external field (tiled's export calls its resource this)."""
    return f"sr-{descriptor_uid}-{key}"


def placeholder(descriptor_uid: str, key: str, seq_num: int) -> str:
    """The datum id given to the event ``seq_num`` of a field whose datum ids were not kept."""
    return f"{resource_name(descriptor_uid, key)}/{seq_num - 1}"


def external_keys(descriptor: Mapping[str, Any], fields: Iterable[str] | None) -> list[str]:
    """The fields of ``descriptor`` marked ``external`` (among ``fields`` when given)."""
    keep = None if fields is None else set(fields)
    return [k for k, v in descriptor["data_keys"].items()
            if v.get("external") and (keep is None or k in keep)]


def _spans(rows: Sequence[int], per_request: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering the sorted ``rows``, each at most ``per_request`` long;
    rows less than :data:`_MAX_GAP` apart share a range."""
    spans: list[tuple[int, int]] = []
    for row in rows:
        if spans:
            lo, hi = spans[-1]
            if row - hi < _MAX_GAP and row + 1 - lo <= per_request:
                spans[-1] = (lo, row + 1)
                continue
        spans.append((row, row + 1))
    return spans


class ExternalReader:
    """Reads the frames behind placeholder datum ids through the server's array nodes.

    Parameters
    ----------
    connection
        The store's :class:`~broker_v1.stores.tiled._client.TiledConnection` (error
        translation, the server's name).
    find_stream
        ``descriptor uid -> stream`` (an object with ``client``, ``name`` and ``run_uid``),
        or ``None`` when the store has not read that descriptor.
    label
        The store's description, for messages.
    """

    def __init__(self, connection: Any, find_stream: Callable[[str], Any], *,
                 label: str) -> None:
        self._conn = connection
        self._find_stream = find_stream
        self._label = label
        self._lock = threading.Lock()
        # resource name -> (descriptor uid, field), for every external field read.
        self._resources: dict[str, tuple[str, str]] = {}
        # resource name -> (first row, frames) most recently read.
        self._windows: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def clear(self) -> None:
        """Forget the blocks kept and the placeholders handed out."""
        with self._lock:
            self._windows.clear()
            self._resources.clear()

    def add_placeholders(self, columns: dict[str, list[Any]], descriptor_uid: str,
                         keys: Sequence[str]) -> None:
        """Put placeholder ids for ``keys`` into a stream's ``columns`` (one per ``seq_num``)."""
        seq = columns.get("seq_num") or []
        for key in keys:
            with self._lock:
                self._resources[resource_name(descriptor_uid, key)] = (descriptor_uid, key)
            columns[key] = [placeholder(descriptor_uid, key, s) for s in seq]

    def known(self, datum_id: Any) -> tuple[str, int] | None:
        """``(resource name, row)`` of a placeholder this reader handed out, else ``None``."""
        if not isinstance(datum_id, str):
            return None
        name, sep, row = datum_id.rpartition("/")
        if not sep or not row.isdigit():
            return None
        with self._lock:
            return (name, int(row)) if name in self._resources else None

    def load(self, datum_ids: Sequence[str]) -> dict[str, Any] | None:
        """The frame of each placeholder id, or ``None`` if any id is not a placeholder of
        this store (those are read through the client's handlers)."""
        parsed: dict[str, tuple[str, int]] = {}
        for datum_id in datum_ids:
            found = self.known(datum_id)
            if found is None:
                return None
            parsed[datum_id] = found
        wanted: dict[str, set[int]] = {}
        for name, row in parsed.values():
            wanted.setdefault(name, set()).add(row)
        frames = {name: self._rows(name, sorted(rows)) for name, rows in wanted.items()}
        return {d: frames[name][row] for d, (name, row) in parsed.items()}

    def _node(self, name: str) -> tuple[Any, str, str]:
        with self._lock:
            descriptor_uid, key = self._resources[name]
        stream = self._find_stream(descriptor_uid)
        if stream is None:  # pragma: no cover - the store finds streams it has read again
            raise DatumNotFound(f"The stream of {name!r} is no longer known to {self._label}.",
                                datum_id=name, store=self._label)
        where = f"field {key!r} of stream {stream.name!r} of run {stream.run_uid}"
        with self._conn.errors(f"read the external data of {where}"):
            try:
                return stream.client.base[key], key, where
            except KeyError:
                pass
        raise DatumNotFound(
            f"{self._label} has no array node for the external {where}, so its data cannot be "
            "read through the server (TiledWriter writes it as the run's events arrive; a run "
            "recorded without it has none). Read it with fill=False to get the placeholder "
            "datum ids.", datum_id=name, store=self._label)

    def _rows(self, name: str, rows: list[int]) -> dict[int, Any]:
        """``{row: frame}`` for ``rows`` of one array node, from the kept window or the server.

        Frames of a kept window are handed out as copies (callers may change what they get);
        others are views of blocks nothing else holds.
        """
        out: dict[int, Any] = {}
        with self._lock:
            window = self._windows.get(name)
        if window is not None:
            first, block = window
            out = {r: block[r - first].copy() for r in rows
                   if first <= r < first + len(block)}
        missing = [r for r in rows if r not in out]
        if not missing:
            return out
        array, key, where = self._node(name)
        shape = tuple(array.shape)
        frame_bytes = max(1, math.prod(shape[1:]) * array.dtype.itemsize)
        per_request = max(1, REQUEST_BYTES // frame_bytes)
        ahead = len(missing) == 1
        if ahead:
            # One frame asked (event-by-event filling): read ahead as far as one request goes
            # and keep the block for the next frames.
            row = missing[0]
            missing = list(range(row, max(row + 1, min(shape[0], row + per_request))))
        for lo, hi in _spans(missing, per_request):
            if hi > shape[0]:
                raise DatumNotFound(
                    f"Row {hi - 1} of the external {where} is beyond the {shape[0]} rows the "
                    f"server holds ({self._label}).", datum_id=f"{name}/{hi - 1}",
                    store=self._label)
            block = self._read(array, lo, hi, where)
            for r in rows:
                if lo <= r < hi:
                    out[r] = block[r - lo].copy() if ahead else block[r - lo]
            if ahead:
                with self._lock:
                    self._windows[name] = (lo, block)
                    self._windows.move_to_end(name)
                    while len(self._windows) > _WINDOWS:
                        self._windows.popitem(last=False)
        return out

    def _read(self, array: Any, lo: int, hi: int, where: str) -> Any:
        """Rows ``lo:hi`` in one request; on a timeout, in two halves (down to one row)."""
        return read_rows(self._conn, array, lo, hi, f"the external {where}")
