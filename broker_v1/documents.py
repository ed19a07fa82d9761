"""Document hygiene shared by every store: validation on insert and page normalisation.

Two validation policies (spec §11.3):

``compatible`` (default)
    Every field that is present is type-checked against event-model's schemas, but only
    identity, linkage and what readers cannot do without is required, so old data imports.
``strict``
    event-model's schemas unchanged.

Events and datums are checked cheaply against their descriptor or resource (by the store's
insert path) rather than by JSON schema, so inserting keeps up with a RunEngine.  Schemas are
checked by a compiled validator (``jsonschema_rs``, built once per process on first use); a
document it refuses is checked again by ``jsonschema``, whose verdict and message stand, so
what is accepted and how a refusal reads do not depend on the compiled validator.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidDocument

__all__ = [
    "DOCUMENT_NAMES",
    "VALIDATION_POLICIES",
    "describe_doc",
    "doc_uid",
    "event_to_page",
    "datum_to_page",
    "validate_document",
]

#: Every document name ``insert`` accepts.
DOCUMENT_NAMES = (
    "start",
    "descriptor",
    "event",
    "event_page",
    "resource",
    "datum",
    "datum_page",
    "stop",
)

VALIDATION_POLICIES = ("compatible", "strict")

# What readers cannot do without (spec §11.3); everything else is optional but type-checked.
_REQUIRED = {
    "start": ["uid", "time"],
    "descriptor": ["uid", "time", "run_start", "data_keys"],
    "stop": ["uid", "time", "run_start"],
    "resource": ["spec", "root", "resource_path", "resource_kwargs"],
    "event": ["uid", "time", "descriptor", "seq_num", "data", "timestamps"],
    "event_page": ["uid", "time", "descriptor", "seq_num", "data", "timestamps"],
    "datum": ["datum_id", "resource", "datum_kwargs"],
    "datum_page": ["datum_id", "resource", "datum_kwargs"],
}


def _relax(schema: Any, top: bool = True) -> Any:
    """Drop nested ``required`` lists so legacy documents with fewer keys still validate."""
    if isinstance(schema, dict):
        out = {k: _relax(v, top=False) for k, v in schema.items()}
        if not top:
            out.pop("required", None)
        return out
    if isinstance(schema, list):
        return [_relax(v, top=False) for v in schema]
    return schema


@functools.cache
def _schema(name: str, policy: str) -> dict[str, Any]:
    """event-model's schema of ``name`` under ``policy`` (built once per process)."""
    # event-model and jsonschema cost ~0.2 s to import: only writers pay it.
    import event_model

    schema: dict[str, Any] = event_model.schemas[event_model.DocumentNames[name]]
    if policy == "compatible":
        schema = _relax(copy.deepcopy(schema))
        schema["required"] = [k for k in _REQUIRED[name] if k != "uid" or name != "resource"]
    return schema


@functools.cache
def _validator(name: str, policy: str) -> Any:
    """The reference validator (``jsonschema``): its verdicts and messages are the contract."""
    import jsonschema

    schema = _schema(name, policy)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@functools.cache
def _compiled(name: str, policy: str) -> Any:
    """The compiled validator (``jsonschema_rs``) of the same schema, built on first use.

    event-model's schemas name no ``$schema``, which ``jsonschema`` reads as its latest
    draft, 2020-12: the compiled validator is built for that draft too.
    """
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(_schema(name, policy))


def doc_uid(name: str, doc: Mapping[str, Any]) -> Any:
    """The identity of a document: ``datum_id`` for datums, ``uid`` otherwise."""
    if name in ("datum", "datum_page"):
        return doc.get("datum_id")
    return doc.get("uid")


def describe_doc(name: str, doc: Mapping[str, Any]) -> str:
    """``"descriptor 9c1e04aa…"`` style name for messages."""
    uid = doc_uid(name, doc) if isinstance(doc, Mapping) else None
    if isinstance(uid, list):
        uid = f"[{uid[0]!s:.8}… +{len(uid) - 1}]" if uid else "[]"
    elif isinstance(uid, str) and len(uid) > 12:
        uid = uid[:8] + "…"
    return f"{name} {uid}" if uid is not None else f"{name} (no uid)"


def _path(error: Any) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")
        if len(missing) > 1:
            parts.append(missing[1])
    if error.validator == "additionalProperties":
        # event-model's closed schemas refuse keys with '.' or '/': name the offending key.
        quoted = re.findall(r"'([^']*)'", error.message)
        if quoted:
            parts.append(quoted[0])
    return ".".join(parts) or "(top level)"


def validate_document(name: str, doc: Mapping[str, Any], policy: str = "compatible") -> None:
    """Check a (sanitized) document against event-model's schema under ``policy``.

    Raises
    ------
    InvalidDocument
        Naming the document type, its uid and the failing field; nothing has been written.
    """
    if not isinstance(doc, Mapping):
        raise InvalidDocument(
            f"{name} document must be a dict, got {type(doc).__name__}. Nothing was written.",
            name=name,
        )
    if name == "resource" and policy == "compatible" and "uid" not in doc and "_id" not in doc:
        raise InvalidDocument(
            f"{describe_doc(name, doc)} failed validation: 'uid' is required. Nothing was written.",
            name=name,
            field="uid",
        )
    try:
        if _compiled(name, policy).is_valid(doc):
            return
    except Exception:  # noqa: BLE001 - a value it cannot convert: the reference decides
        pass
    # Refused (or not decidable) by the compiled validator: the reference validator gives the
    # verdict and the message, so both are exactly what they always were.
    _check_with_jsonschema(name, doc, policy)


def _check_with_jsonschema(name: str, doc: Mapping[str, Any], policy: str) -> None:
    """:func:`validate_document`'s schema check by the reference validator alone (``doc`` is
    a mapping; the resource uid rule is already applied)."""
    validator = _validator(name, policy)
    import jsonschema

    errors = list(validator.iter_errors(doc))
    # "unevaluated properties" errors only echo a failure inside allOf; report that one.
    specific = [e for e in errors if e.validator != "unevaluatedProperties"]
    error = jsonschema.exceptions.best_match(specific or errors)
    if error is not None:
        field = _path(error)
        raise InvalidDocument(
            f"{describe_doc(name, doc)} failed validation: {field}: {error.message}. "
            "Nothing was written.",
            name=name,
            uid=doc_uid(name, doc),
            field=field,
        )


def event_to_page(event: Mapping[str, Any]) -> dict[str, Any]:
    """A one-row event page from a single event (keys that are absent stay absent)."""
    page: dict[str, Any] = {
        "descriptor": event["descriptor"],
        "time": [event["time"]],
        "seq_num": [event["seq_num"]],
        "uid": [event["uid"]],
        "data": {k: [v] for k, v in event["data"].items()},
        "timestamps": {k: [v] for k, v in event["timestamps"].items()},
    }
    if "filled" in event:
        page["filled"] = {k: [v] for k, v in event["filled"].items()}
    return page


def datum_to_page(datum: Mapping[str, Any]) -> dict[str, Any]:
    """A one-row datum page from a single datum."""
    return {
        "resource": datum["resource"],
        "datum_id": [datum["datum_id"]],
        "datum_kwargs": {k: [v] for k, v in datum["datum_kwargs"].items()},
    }


def unpack_events(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Single events from an event page; ``filled`` appears only if the page has it.

    (event-model's ``unpack_event_page`` always adds ``filled``, which would make a stored
    event differ from the identical one inserted without it.)
    """
    descriptor = page["descriptor"]
    data, timestamps = page["data"], page["timestamps"]
    filled = page.get("filled")
    events = []
    for i, uid in enumerate(page["uid"]):
        event = {
            "descriptor": descriptor,
            "uid": uid,
            "time": page["time"][i],
            "seq_num": page["seq_num"][i],
            "data": {k: col[i] for k, col in data.items()},
            "timestamps": {k: col[i] for k, col in timestamps.items()},
        }
        if filled is not None:
            event["filled"] = {k: col[i] for k, col in filled.items()}
        events.append(event)
    return events


def pack_events(events: list[Mapping[str, Any]]) -> dict[str, Any]:
    """An event page from single events of one descriptor (inverse of :func:`unpack_events`)."""
    first = events[0]
    page: dict[str, Any] = {
        "descriptor": first["descriptor"],
        "time": [e["time"] for e in events],
        "seq_num": [e["seq_num"] for e in events],
        "uid": [e["uid"] for e in events],
        "data": {k: [e["data"][k] for e in events] for k in first["data"]},
        "timestamps": {k: [e["timestamps"][k] for e in events] for k in first["timestamps"]},
    }
    if "filled" in first:
        keys = set().union(*(e.get("filled", {}) for e in events))
        page["filled"] = {k: [e.get("filled", {}).get(k, False) for e in events] for k in keys}
    return page
