"""Event and datum pages written as single documents in one bulk write, all or nothing.

Duplicates are found by the unique index when there is one: identical re-inserts surface as
duplicate-key errors and are compared with what is stored (identical: a no-op; different: the
batch is undone and :class:`~broker_v1.errors.DuplicateDocument` is raised).  Without a unique
index (mongomock, or an old database whose index could not be built) the store looks the keys
up before writing.
"""

from __future__ import annotations

from typing import Any

import pymongo.errors
from bson import ObjectId

from ...errors import StoreUnavailable
from ..base import Doc, _same_event
from ._errors import _ErrorTranslator
from ._layout import _datum
from ._paging import _chunks


def _insert_rows(
    coll: Any, name: str, key_field: str, rows: list[Doc], *, errors: _ErrorTranslator
) -> None:
    """Insert single documents in one unordered bulk write, all or nothing.

    Parameters
    ----------
    coll
        The collection (``event`` or ``datum``).
    name
        The document kind, for messages: ``"event"`` or ``"datum"``.
    key_field
        The field the unique index is on: ``"uid"`` or ``"datum_id"``.
    rows
        Single documents; each is given a new ``_id``.
    errors
        The store's error translator.

    Raises
    ------
    DuplicateDocument
        A row's key is stored with different contents (nothing of the batch is kept).
    """
    for row in rows:
        row["_id"] = ObjectId()  # known ids, so a failed batch can be undone
    try:
        with errors(f"insert {name}", writing=True, doc=rows):
            coll.insert_many(rows, ordered=False)
    except pymongo.errors.BulkWriteError as err:
        refused = err.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in refused):
            _undo(coll, rows)
            raise StoreUnavailable(
                f"{errors.label} failed to insert {name} documents: "
                f"{errors.scrub(err)[:500]}. Nothing was written."
            ) from err
        _resolve_duplicates(coll, name, key_field, rows, [e["index"] for e in refused], errors)
    except BaseException:
        _undo(coll, rows)
        raise


def _resolve_duplicates(
    coll: Any, name: str, key_field: str, rows: list[Doc], indices: list[int],
    errors: _ErrorTranslator,
) -> None:
    # Rows the unique index refused: identical to what is stored is fine (an idempotent
    # re-insert); anything else undoes the whole batch.
    keys = [rows[i][key_field] for i in indices]
    stored: dict[str, Doc] = {}
    try:
        for chunk in _chunks(list(dict.fromkeys(keys))):
            with errors(f"read {coll.name}"):
                for doc in coll.find({key_field: {"$in": chunk}}):
                    if doc["_id"] not in {rows[i]["_id"] for i in indices}:
                        stored.setdefault(doc[key_field], doc)
        for i in indices:
            new = {k: v for k, v in rows[i].items() if k != "_id"}
            old = stored.get(new[key_field])
            old = None if old is None else {k: v for k, v in old.items() if k != "_id"}
            if old is not None and name == "datum":
                old = _datum(old)
            if old is None or not (old == new or (name == "event" and _same_event(old, new))):
                raise errors.duplicate(name, new[key_field])
    except BaseException:
        _undo(coll, rows)
        raise


def _undo(coll: Any, rows: list[Doc]) -> None:
    # Delete by the _ids given before the write, whichever rows reached the server.
    ids = [r["_id"] for r in rows if "_id" in r]
    try:
        for chunk in _chunks(ids):
            coll.delete_many({"_id": {"$in": chunk}})
    except pymongo.errors.PyMongoError:  # best effort; the original error matters more
        pass
