"""Insert validation as plain functions, shared by every store and the copy checker.

:meth:`DocumentStore.insert <broker_v1.stores.base.DocumentStore.insert>` runs these checks
in a fixed order (the first problem found is the one reported, so the order is part of the
behaviour).  Nothing here holds state: what a check needs from a store comes in as arguments
(``lookup`` is the store's ``_get_existing``, ``where`` its ``describe``), so a process that
only checks documents, such as the files store's copy checker, calls them without a store.

Every refusal raises :class:`~broker_v1.errors.InvalidDocument` (or
:class:`~broker_v1.errors.DuplicateDocument`) naming the document and the field, and ends with
"Nothing was written." (checks run before any write).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..documents import DOCUMENT_NAMES, describe_doc, doc_uid, validate_document
from ..errors import DuplicateDocument, InvalidDocument
from ._util import DocumentValueError, copy_scalar_event, sanitize

__all__ = [
    "Doc",
    "KeysOf",
    "Lookup",
    "check_data_key_names",
    "check_datum_shape",
    "check_event",
    "check_event_keys",
    "check_event_page",
    "check_one_stop",
    "check_schema",
    "check_stop_time",
    "datums_to_page",
    "fail",
    "is_new",
    "legacy_resource",
    "prepare",
    "require",
    "rotate_filled",
    "rotate_filled_page",
    "same",
    "same_event",
]

Doc = dict[str, Any]
#: ``(name, key) -> stored document or None``: a store's ``_get_existing``.
Lookup = Callable[[str, str], "Doc | None"]
#: ``(name, doc) -> data keys of the doc's descriptor``; raises when there is none.
KeysOf = Callable[[str, Doc], frozenset[str]]

#: The exact types an event's time (``float``, ``int``; never ``bool``) and seq_num may have.
_NUMBER_TYPES = frozenset((float, int))
_INT_TYPE = frozenset((int,))
_EVENT_FIELDS = ("uid", "time", "descriptor", "seq_num", "data", "timestamps")
_EVENT_FIELD_SET = frozenset(_EVENT_FIELDS)
#: A missing field, told apart from a field that holds None.
_ABSENT = object()


def fail(name: str, doc: Any, field: str, problem: str) -> NoReturn:
    """Refuse ``doc``: an :class:`InvalidDocument` saying ``field`` ``problem``."""
    raise InvalidDocument(
        f"{describe_doc(name, doc)} failed validation: {field} {problem}. Nothing was written.",
        name=name,
        uid=doc_uid(name, doc) if isinstance(doc, dict) else None,
        field=field,
    )


# ---------------------------------------------------------------------- every document
def prepare(name: str, doc: Any) -> Doc:
    """The document ``insert`` works on: a known name, a mapping, sanitized into a private
    JSON-like copy.

    Raises
    ------
    InvalidDocument
        Unknown name, not a mapping, or a value or key no store can keep.
    """
    if name not in DOCUMENT_NAMES:
        raise InvalidDocument(
            f"Unknown document name {name!r}; insert accepts {', '.join(DOCUMENT_NAMES)}. "
            "Nothing was written.",
            name=str(name),
        )
    if type(doc) is not dict and not isinstance(doc, Mapping):
        raise InvalidDocument(
            f"{name} document must be a dict, got {type(doc).__name__}. Nothing was written.",
            name=name,
        )
    if name == "event" and type(doc) is dict:
        clean_event = copy_scalar_event(doc)  # most events: no walk through the document
        if clean_event is not None:
            return clean_event
    try:
        # sanitize copies a dict itself; other mappings become one first.
        clean: Doc = sanitize(doc if type(doc) is dict else dict(doc))
    except DocumentValueError as err:
        where = err.field or ""
        if len(where) > 100:  # e.g. 200 levels of nesting: the ends say enough
            where = where[:60] + "…" + where[-30:]
        where = f"{where}: " if where else ""
        raise InvalidDocument(
            f"{describe_doc(name, doc)} cannot be stored: {where}{err}. Nothing was written.",
            name=name,
            uid=doc_uid(name, doc),
            field=err.field,
        ) from err
    return clean


def check_schema(name: str, doc: Doc, policy: str, *, trusted: bool = False) -> None:
    """event-model's schema under ``policy`` (skipped when ``trusted``), then a finite time."""
    if not trusted:
        validate_document(name, doc, policy)
    t = doc.get("time")
    if isinstance(t, float) and not math.isfinite(t):
        fail(name, doc, "time", "must be a finite number (epoch seconds)")


def is_new(name: str, doc: Doc, lookup: Lookup, where: Callable[[], str]) -> bool:
    """True when ``doc`` must be written; False when an identical one is stored.

    Raises
    ------
    DuplicateDocument
        A different document of this type has the same identity (``where()`` names the store).
    """
    key = doc_uid(name, doc)
    existing = lookup(name, key)
    if existing is None:
        return True
    if same(existing, doc) or (name == "event" and same_event(existing, doc)):
        return False
    store = where()
    raise DuplicateDocument(
        f"A different {name} document with uid {key} is already in {store}. "
        "Documents are immutable; write a new one with a new uid instead.",
        name=name,
        uid=key,
        store=store,
    )


def require(name: str, doc: Doc, field: str, linked: str, lookup: Lookup,
            where: Callable[[], str]) -> Doc:
    """The stored ``linked`` document ``doc[field]`` refers to.

    Raises
    ------
    InvalidDocument
        There is none (``where()`` names the store).
    """
    key = doc[field]
    found = lookup(linked, key) if isinstance(key, str) else None
    if found is None:
        raise InvalidDocument(
            f"{describe_doc(name, doc)} refers to {field}={key!r}, which is not a {linked} "
            f"in {where()}. Insert the {linked} document first. Nothing was written.",
            name=name,
            uid=doc_uid(name, doc),
            field=field,
        )
    return found


# ---------------------------------------------------------------------- by document type
def check_data_key_names(descriptor: Doc) -> None:
    """Data keys MongoDB can store: no ``.``, no leading ``$``."""
    bad = [k for k in descriptor["data_keys"] if "." in k or k.startswith("$")]
    if bad:
        raise InvalidDocument(
            f"{describe_doc('descriptor', descriptor)} has data key {bad[0]!r}: data keys may "
            "not contain '.' or start with '$' (MongoDB cannot store them). Rename the signal. "
            "Nothing was written.",
            name="descriptor",
            uid=descriptor["uid"],
            field=f"data_keys.{bad[0]}",
        )


def check_one_stop(stop: Doc, existing: Doc | None, where: str) -> None:
    """A run has one stop: refuse ``stop`` when the run already has ``existing``."""
    if existing is not None:
        raise DuplicateDocument(
            f"Run {stop['run_start']} already has a stop document (uid {existing['uid']}) in "
            f"{where}; a run has exactly one stop, so stop {stop['uid']} was "
            "refused. Nothing was written.",
            name="stop",
            uid=stop["uid"],
            store=where,
        )


def check_stop_time(stop: Doc, start: Doc) -> None:
    """A stop is not older than its start."""
    if stop["time"] < start["time"]:
        raise InvalidDocument(
            f"{describe_doc('stop', stop)} has time {stop['time']} before its start's time "
            f"{start['time']}. Nothing was written.",
            name="stop",
            uid=stop["uid"],
            field="time",
        )


def legacy_resource(resource: Doc) -> None:
    """A legacy resource is identified by its Mongo ``_id``: make it the uid (in place); the
    ``_id`` never leaks out again."""
    if "_id" in resource:
        legacy_id = resource.pop("_id")
        resource.setdefault("uid", str(legacy_id))


def check_datum_shape(name: str, doc: Doc, *, page: bool) -> None:
    """The fields of a datum (``page=False``) or datum page and their types and lengths."""
    for field in ("datum_id", "resource", "datum_kwargs"):
        if field not in doc:
            fail(name, doc, field, f"'{field}' is required")
    if not isinstance(doc["resource"], str):
        fail(name, doc, "resource", "must be a resource uid string")
    if not isinstance(doc["datum_kwargs"], dict):
        fail(name, doc, "datum_kwargs", "must be a dict")
    if page:
        ids = doc["datum_id"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            fail(name, doc, "datum_id", "must be a list of strings")
        for k, col in doc["datum_kwargs"].items():
            if not isinstance(col, list) or len(col) != len(ids):
                fail(name, doc, f"datum_kwargs.{k}", f"must be a list of {len(ids)} values")
    elif not isinstance(doc["datum_id"], str):
        fail(name, doc, "datum_id", "must be a string")


def check_event(event: Doc, keys_of: KeysOf) -> None:
    """The checks of one event; ``keys_of`` gives its descriptor's data keys (called once the
    event's own fields are known to be there)."""
    if not event.keys() >= _EVENT_FIELD_SET:  # one C pass; the loop names the first missing
        for field in _EVENT_FIELDS:
            if field not in event:
                fail("event", event, field, "is required")
    if not isinstance(event["uid"], str):
        fail("event", event, "uid", "must be a string")
    t = event["time"]
    if type(t) not in _NUMBER_TYPES or not math.isfinite(t):
        fail("event", event, "time", "must be a finite number")
    if type(event["seq_num"]) is not int:
        fail("event", event, "seq_num", "must be an integer")
    check_event_keys("event", event, keys_of("event", event))


def check_event_page(page: Doc, keys_of: KeysOf) -> None:
    """The checks of an event page; ``keys_of`` gives its descriptor's data keys."""
    for field in _EVENT_FIELDS:
        if field not in page:
            fail("event_page", page, field, "is required")
    n = None
    for field in ("uid", "time", "seq_num"):
        col = page[field]
        if not isinstance(col, list):
            fail("event_page", page, field, "must be a list (one value per event)")
        if n is None:
            n = len(col)
        elif len(col) != n:
            fail("event_page", page, field, f"has {len(col)} values but uid has {n}")
    assert n is not None
    # set(map(type, ...)) and map(math.isfinite, ...) run in C: a page is checked at the
    # cost of a few passes over its columns, not a Python loop per value.
    if not all(map(isinstance, page["uid"], itertools.repeat(str))):
        fail("event_page", page, "uid", "must hold strings")
    times = page["time"]
    if not set(map(type, times)) <= _NUMBER_TYPES or not all(map(math.isfinite, times)):
        fail("event_page", page, "time", "must hold finite numbers")
    if not set(map(type, page["seq_num"])) <= _INT_TYPE:
        fail("event_page", page, "seq_num", "must hold integers")
    check_event_keys("event_page", page, keys_of("event_page", page))
    for part in ("data", "timestamps", "filled"):
        for k, col in page.get(part, {}).items():
            if not isinstance(col, list) or len(col) != n:
                fail("event_page", page, f"{part}.{k}", f"must be a list of {n} values")


def check_event_keys(name: str, doc: Doc, keys: frozenset[str]) -> None:
    """``data``, ``timestamps`` and ``filled`` of an event or page against the descriptor's
    data keys."""
    data, timestamps = doc["data"], doc["timestamps"]
    if not isinstance(data, dict):
        fail(name, doc, "data", "must be a dict")
    if not isinstance(timestamps, dict):
        fail(name, doc, "timestamps", "must be a dict")
    if data.keys() != keys:
        extra = sorted(data.keys() - keys)
        missing = sorted(keys - data.keys())
        field = f"data.{extra[0]}" if extra else f"data.{missing[0]}"
        fail(name, doc, field,
             f"does not match the descriptor's data keys (not in descriptor: {extra}, "
             f"missing: {missing})")
    if timestamps.keys() != data.keys():
        diff = sorted(timestamps.keys() ^ data.keys())
        fail(name, doc, f"timestamps.{diff[0]}", "must have exactly the same keys as data")
    # Present means checked: event-model's schema refuses a filled of None too.
    filled = doc.get("filled", _ABSENT)
    if filled is not _ABSENT and (not isinstance(filled, dict) or not filled.keys() <= keys):
        fail(name, doc, "filled", "must map data keys to False or a datum id")


# ---------------------------------------------------------------------- duplicates, filling
def same(a: Any, b: Any) -> bool:
    """Equality of JSON-like values where NaN equals NaN (a stored NaN is a new float)."""
    if a is b:
        return True
    if type(a) is float and type(b) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def same_event(a: Doc, b: Doc) -> bool:
    """:func:`same`, except that an all-False ``filled`` equals no ``filled``: it says
    nothing a reader does not recompute from the descriptor."""
    def strip(e: Doc) -> Doc:
        if any(e.get("filled", {}).values()):
            return e
        return {k: v for k, v in e.items() if k != "filled"}

    return same(strip(a), strip(b))


def rotate_filled(event: Doc) -> None:
    """A filled event carries the datum id in ``filled[k]``: move it to ``data[k]`` (in
    place) and store ``filled[k] = False``, so the id is stored, not the array."""
    filled = event.get("filled")
    if filled:
        for k, v in filled.items():
            if isinstance(v, str):
                event["data"][k] = v
                filled[k] = False


def rotate_filled_page(page: Doc) -> None:
    """:func:`rotate_filled` for every row of an event page that has ``filled``."""
    for k, col in page["filled"].items():
        for i, v in enumerate(col):
            if isinstance(v, str):
                page["data"][k][i] = v
                col[i] = False


def datums_to_page(resource: str, datums: list[Doc]) -> Doc:
    """A datum page of ``resource`` from single datums."""
    from event_model import pack_datum_page

    page = dict(pack_datum_page(*datums))  # type: ignore[arg-type]
    page["resource"] = resource
    return page
