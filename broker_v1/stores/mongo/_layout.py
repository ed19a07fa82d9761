"""databroker's normalized layout: its collections and how documents map onto them.

One MongoDB document per start, stop, descriptor, event, resource and datum, exactly as
databroker 0.13 and 1.2 (suitcase-mongo) wrote them.  Event and datum pages exist only in
broker_v1: they are split into single documents on the way in and assembled on the way out.
"""

from __future__ import annotations

import math
from typing import Any

from bson import ObjectId

from ..base import Doc

__all__ = ["ASSET_COLLECTIONS", "META_COLLECTIONS"]

#: Collections of the metadata database and of the assets database.
META_COLLECTIONS = ("run_start", "run_stop", "event_descriptor", "event")
ASSET_COLLECTIONS = ("resource", "datum")


def _number(value: Any) -> float:
    # Sort key for times: numbers as they are; anything else (legacy junk) sorts first.
    if type(value) in (int, float) and not (type(value) is float and math.isnan(value)):
        return float(value)
    return -math.inf


def _start_key(doc: Doc) -> tuple[float, str]:
    uid = doc.get("uid")
    return _number(doc.get("time")), uid if isinstance(uid, str) else ""


def _event_key(doc: Doc) -> tuple[float, Any]:
    seq = doc.get("seq_num")
    return _number(doc.get("time")), seq if type(seq) is int else -1


def _is_object_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value)


def _event_projection(wanted: list[str] | None) -> dict[str, Any]:
    """The server-side projection reading only the ``wanted`` data keys of events (all of
    them when a key cannot be named in a projection: the caller then filters)."""
    projection: dict[str, Any] = {"_id": 0}
    if wanted is not None and all("." not in f and not f.startswith("$") for f in wanted):
        projection.update({"time": 1, "seq_num": 1, "uid": 1})
        for f in wanted:
            projection[f"data.{f}"] = projection[f"timestamps.{f}"] = 1
            projection[f"filled.{f}"] = 1
    return projection


def _rows_to_event_page(descriptor: str, rows: list[Doc]) -> Doc:
    """One event page from event documents already in (time, seq_num) order."""
    page: Doc = {
        "descriptor": descriptor,
        "time": [r["time"] for r in rows],
        "seq_num": [r["seq_num"] for r in rows],
        "uid": [r["uid"] for r in rows],
    }
    for part in ("data", "timestamps"):
        columns: dict[str, list[Any]] = {}
        keys = list(rows[0].get(part, {})) if rows else []
        try:  # the usual case: every event has the keys of the first one
            for k in keys:
                columns[k] = [r[part][k] for r in rows]
            if any(len(r.get(part, ())) != len(keys) for r in rows):
                raise KeyError(part)
        except (KeyError, TypeError):  # legacy events with varying keys: None where absent
            seen: dict[str, None] = {}
            for r in rows:
                seen.update(dict.fromkeys(r.get(part) or {}))
            columns = {k: [(r.get(part) or {}).get(k) for r in rows] for k in seen}
        page[part] = columns
    if any("filled" in r for r in rows):
        seen = {}
        for r in rows:
            seen.update(dict.fromkeys(r.get("filled") or {}))
        page["filled"] = {k: [(r.get("filled") or {}).get(k, False) for r in rows] for k in seen}
    return page


def _datum(doc: Doc) -> Doc:
    """A stored datum as broker_v1 hands it out: no ``_id``, the resource link a str."""
    doc.pop("_id", None)
    if isinstance(doc.get("resource"), ObjectId):
        doc["resource"] = str(doc["resource"])
    return doc


def _rows_to_datum_page(resource_uid: str, rows: list[Doc]) -> Doc:
    """One datum page from datum documents (kwargs missing from some rows become None)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r.get("datum_kwargs") or {}))
    return {
        "resource": resource_uid,
        "datum_id": [r["datum_id"] for r in rows],
        "datum_kwargs": {
            k: [(r.get("datum_kwargs") or {}).get(k) for r in rows] for k in keys
        },
    }


def _datum_page_to_rows(page: Doc) -> list[Doc]:
    """The datum documents of a datum page, one per ``datum_id``."""
    kwargs = page["datum_kwargs"]
    return [
        {"resource": page["resource"], "datum_id": datum_id,
         "datum_kwargs": {k: col[i] for k, col in kwargs.items()}}
        for i, datum_id in enumerate(page["datum_id"])
    ]
