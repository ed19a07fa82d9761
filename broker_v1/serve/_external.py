"""External data (resources and datums) served as arrays, filled on the server.

A field marked ``external`` holds datum ids; when the app is given a filler (the Broker's
handlers and ``root_map``: ``db.reg.filler(db.store)``), the stream gets one array node per
such field, events along the first axis, read through the handlers only when asked for: the
node's shape comes from the descriptor and the number of events, and a read loads only the
frames its slice covers (tiled's client reads small arrays whole, larger ones by blocks of
:data:`FRAMES_PER_BLOCK` frames).  A field whose first frame cannot be read (no handler for
its spec, files missing) is left out of the stream, as without a filler, so the rest of the
stream still reads; a frame that fails later is a 500 whose message names the resource and
the handler (a problem of the server's configuration or files, not of the request).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.core import Spec, StructureFamily

from ..errors import BrokerError
from ._nodes import store_errors

__all__ = ["FRAMES_PER_BLOCK", "ExternalArray"]

#: Frames per block of an external array (tiled's unit of a partial read).
FRAMES_PER_BLOCK = 16


class ExternalArray:
    """One external field of a stream, filled through ``filler`` as it is read.

    Parameters
    ----------
    filler
        broker_v1's data filler (``load_datum_id``).
    datum_ids
        The field's datum ids, one per event in the stream's row order.
    data_key
        The field's data key (``shape`` gives each frame's shape).
    dims
        Dimension names, ``time`` first.
    """

    structure_family = StructureFamily.array
    specs: list[Spec] = []

    def __init__(self, filler: Any, datum_ids: list[Any], data_key: dict[str, Any],
                 dims: tuple[str, ...]) -> None:
        self._filler = filler
        self._ids = datum_ids
        #: Why the field's first frame could not be read (no handler, files missing), or None.
        self.problem: str | None = None
        frame_shape = tuple(int(s) for s in (data_key.get("shape") or ()))
        try:
            dtype = numpy.dtype(data_key.get("dtype_numpy") or "float64")
        except (TypeError, ValueError):  # a structured dtype written as a list
            dtype = numpy.dtype("float64")
        if datum_ids:
            # One frame tells the dtype (and the real frame shape, which the descriptor
            # may get wrong).  If it cannot be read (no handler, files missing), the node is
            # still listed from the descriptor, and reading it says why.
            try:
                first = numpy.asarray(filler.load_datum_id(datum_ids[0]))
            except BrokerError as err:
                self.problem = str(err)
            else:
                frame_shape, dtype = first.shape, first.dtype
        n = len(datum_ids)
        blocks = [FRAMES_PER_BLOCK] * (n // FRAMES_PER_BLOCK)
        if n % FRAMES_PER_BLOCK or not blocks:
            blocks.append(n % FRAMES_PER_BLOCK)
        self._structure = ArrayStructure(
            data_type=BuiltinDtype.from_numpy_dtype(dtype),
            shape=(n, *frame_shape),
            chunks=(tuple(blocks), *((s,) for s in frame_shape)),
            dims=dims[:1 + len(frame_shape)] if len(dims) > len(frame_shape) else None,
        )

    def _load(self, row: int) -> numpy.ndarray:
        with store_errors():
            return numpy.asarray(self._filler.load_datum_id(self._ids[row]))

    def metadata(self) -> dict[str, Any]:
        """No metadata of its own (the stream's descriptor describes the field)."""
        return {}

    def structure(self) -> ArrayStructure:
        """Shape ``(events, *frame)``, blocks of :data:`FRAMES_PER_BLOCK` frames."""
        return self._structure

    @property
    def dims(self) -> tuple[str, ...] | None:
        """Dimension names, ``time`` first."""
        dims: tuple[str, ...] | None = self._structure.dims
        return dims

    def _rows(self, rows: range, rest: tuple[Any, ...]) -> numpy.ndarray:
        frame = self._structure.shape[1:]
        every_row = (slice(None), *rest)
        if not len(rows):
            empty = numpy.zeros((0, *frame), dtype=self._structure.data_type.to_numpy_dtype())
            return numpy.asarray(empty[every_row])
        return numpy.asarray(numpy.stack([self._load(i) for i in rows])[every_row])

    def read(self, slice: Any = ...) -> numpy.ndarray:
        """The frames the slice's first axis covers, loaded now, sliced."""
        parts = tuple(slice) if isinstance(slice, tuple) else (slice,)
        if not parts or parts[0] is Ellipsis:
            first, rest = builtins.slice(None), parts
        else:
            first, rest = parts[0], parts[1:]
        n = self._structure.shape[0]
        if isinstance(first, int):
            return self._rows(range(n)[first:first + 1 or None], rest)[0]
        return self._rows(range(n)[first], rest)

    def read_block(self, block: tuple[int, ...], slice: Any = ...) -> numpy.ndarray:
        """One block: :data:`FRAMES_PER_BLOCK` frames (fewer in the last block)."""
        start = block[0] * FRAMES_PER_BLOCK
        stop = min(start + FRAMES_PER_BLOCK, self._structure.shape[0])
        array = self._rows(range(start, stop), ())
        if slice is Ellipsis or slice is None or (isinstance(slice, tuple) and not slice):
            return array
        selected: numpy.ndarray = array[tuple(slice) if isinstance(slice, tuple) else slice]
        return selected
