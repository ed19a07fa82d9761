"""What the server encodes beyond tiled's defaults: a run's documents, a table as HDF5.

``run.documents()``: a run's original documents, streamed as JSON-seq from the store.

tiled's stock exporter for ``BlueskyRun`` rebuilds documents from a catalog's own nodes
(event uids re-made, resources turned into stream resources).  This one replays the store
(``iter_documents``): start, descriptors, events with the resources and datums they use
just before them, stop; every uid as recorded.  Each record is ``\\x1e`` + JSON + ``\\n``
(RFC 7464), which bluesky-tiled-plugins' client reads; datums go as ``datum_page`` (the
client knows no single ``datum``).  It is registered for the
``BlueskyRun`` spec and ``application/json-seq`` in :func:`serialization_registry`.

A table as HDF5: tiled 0.2.20 registers its *container* HDF5 encoder for tables too, which
fails on every table (a 500); here a table is one HDF5 group with a dataset per column.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from tiled.media_type_registration import SerializationRegistry, default_serialization_registry
from tiled.structures.core import StructureFamily
from tiled.utils import SerializationError

if TYPE_CHECKING:
    from event_model.documents import Datum

__all__ = ["JSON_SEQ", "documents_json_seq", "serialization_registry", "table_hdf5"]

JSON_SEQ = "application/json-seq"


def _default(value: Any) -> Any:
    # Stores hand out plain JSON types; numpy values may still come from legacy databases.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def documents_json_seq(mimetype: str, run: Any, metadata: Any,
                       filter_for_access: Any = None) -> Iterator[bytes]:
    """The run's documents, one JSON-seq record each (tiled's serializer signature).

    A generator, so tiled streams the response and reads the store from a worker thread:
    a long run never sits in memory at once.
    """
    for name, doc in _with_datum_pages(run.store.iter_documents(run.uid)):
        yield b"\x1e" + orjson.dumps({"name": name, "doc": doc}, default=_default,
                                     option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _with_datum_pages(documents: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Consecutive datums of one resource as one ``datum_page`` (the plugins' client reads
    pages, not single datums); every other document unchanged."""
    from event_model import pack_datum_page

    pending: list[Datum] = []
    for name, doc in documents:
        if name == "datum" and (not pending or pending[0]["resource"] == doc["resource"]):
            pending.append(doc)
            continue
        if pending:
            yield "datum_page", pack_datum_page(*pending)
            pending = []
        if name == "datum":
            pending.append(doc)
        else:
            yield name, doc
    if pending:
        yield "datum_page", pack_datum_page(*pending)


def table_hdf5(mimetype: str, frame: Any, metadata: Any,
               filter_for_access: Any = None) -> bytes:
    """A table (a pandas DataFrame) as an HDF5 file: one dataset per column."""
    try:
        import h5py
    except ImportError as err:
        raise SerializationError("HDF5 export needs h5py on the server") from err
    buffer = io.BytesIO()
    with h5py.File(buffer, mode="w") as file:
        for column in frame.columns:
            values = frame[column].to_numpy()
            if values.dtype.kind in "OUT":
                values = values.astype(str).astype(h5py.string_dtype())
            try:
                file.create_dataset(str(column), data=values)
            except (TypeError, ValueError) as err:
                raise SerializationError(f"column {column!r} does not fit HDF5: {err}") from err
    return buffer.getvalue()


def serialization_registry() -> SerializationRegistry:
    """tiled's default serializers plus the documents of a ``BlueskyRun``."""
    registry = copy.deepcopy(default_serialization_registry)
    registry.register("BlueskyRun", JSON_SEQ, documents_json_seq)
    registry.register(StructureFamily.table, "application/x-hdf5", table_hdf5)
    return registry
