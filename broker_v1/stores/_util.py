"""Small helpers shared by stores: JSON-like copies and numpy sanitizing."""

from __future__ import annotations

import json
import sys
from typing import Any, overload

import orjson

__all__ = [
    "MAX_DEPTH",
    "DocumentValueError",
    "json_copy",
    "key_problem",
    "loads_json",
    "sanitize",
    "valid_unicode",
]

# Bytes to b"0" for digits, b" " for the rest: a run of 19 digits then shows as b"0" * 19.
_DIGITS_ONLY = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_NUMBER = b"0" * 19


def valid_unicode(text: str) -> bool:
    """Whether a string is valid unicode: no lone surrogates.

    SQLite cannot bind such a string and BSON cannot encode it, so the files and Mongo stores
    both ask before handing one over.

    Parameters
    ----------
    text
        The string to check.

    Returns
    -------
    bool
        True when ``text`` encodes as UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads_json(text: bytes) -> Any:
    """``json.loads``, by orjson (about three times faster) wherever that gives the same value.

    orjson turns integers outside [-2**63, 2**64) into floats, and refuses ``NaN``,
    ``Infinity`` and lone surrogates, all of which Python's json writes and reads.  Text with
    a run of 19 or more digits (every such integer has one) goes to ``json`` at once; text
    orjson refuses goes there after it, and raises ``json``'s own error if it is not JSON.
    """
    if _LONG_NUMBER not in text.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


@overload
def json_copy(value: dict[str, Any]) -> dict[str, Any]: ...
@overload
def json_copy(value: list[Any]) -> list[Any]: ...
@overload
def json_copy(value: Any) -> Any: ...


def json_copy(value: Any) -> Any:
    """Deep-copy a JSON-like value (dicts, lists, scalars) several times faster than deepcopy."""
    cls = type(value)
    if cls is dict:
        return {k: json_copy(v) if type(v) in (dict, list) else v for k, v in value.items()}
    if cls is list:
        return [json_copy(v) if type(v) in (dict, list) else v for v in value]
    return value


_PLAIN = (str, int, float, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)
_STR_TYPE = frozenset((str,))

#: Keys already found to pass :func:`key_problem`.  Documents repeat the same few hundred keys
#: (an event's data keys, a descriptor's fields), so a dict whose keys are all here skips the
#: per-key checks: one set lookup per key, in C.  Bounded, so odd inputs cannot grow it.
_KEYS_OK: set[str] = set()
_KEYS_OK_MAX = 50_000

#: Deepest nesting of dicts and lists a document may have (MongoDB's documented BSON limit).
MAX_DEPTH = 100


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a field name in a stored document, or None when it can.

    The rule is the same in every store, so a document one store accepts can be copied into
    any other: no key, at any depth, starts with ``'$'`` (MongoDB reads such keys as
    operators, so they could never be searched, and older servers refuse them), contains
    ``'.'`` (a dotted query path could never address it) or contains a NUL character
    (BSON cannot hold it).
    """
    if key[:1] == "$":
        return f"key {key!r} starts with '$'"
    if "." in key:
        return f"key {key!r} contains '.'"
    if "\x00" in key:
        return f"key {key!r} contains a NUL character"
    return None


def sanitize(value: Any, _depth: int = 0) -> Any:
    """Return a JSON-like deep copy: numpy arrays and scalars become lists and numbers.

    Tuples become lists (as they would after a round trip through JSON or BSON), mapping keys
    are kept as given, and the caller's objects are never modified.

    Raises
    ------
    DocumentValueError
        A value no store can keep, a key that is not a string or breaks :func:`key_problem`,
        or dicts and lists nested more than :data:`MAX_DEPTH` levels deep; ``.field`` says
        where.
    """
    cls = type(value)
    if cls in _PLAIN:
        return value
    if cls is dict:
        if _depth >= MAX_DEPTH:
            raise _too_deep(value)
        # Fast path: every key an exact str (tested first, so no other key's __hash__ or
        # __eq__ runs) already known good, checked in C.  Anything else takes the loop below,
        # which finds and words the problem.
        if _STR_TYPE.issuperset(map(type, value)) and _KEYS_OK.issuperset(value):
            return _copy_known_keys(value, _depth)
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise DocumentValueError(
                    f"key {k!r} is a {type(k).__name__}; keys must be strings", [repr(k)], value
                )
            if k[:1] == "$" or "." in k or "\x00" in k:
                raise DocumentValueError(str(key_problem(k)), [k], value)
            if type(v) in _PLAIN:
                out[k] = v
                continue
            try:
                out[k] = sanitize(v, _depth + 1)
            except DocumentValueError as err:
                err.path.insert(0, k)
                err.last = value
                raise
        if len(_KEYS_OK) < _KEYS_OK_MAX:
            _KEYS_OK.update(out)  # every key of out passed the checks above
        return out
    if cls is list or cls is tuple:
        if _depth >= MAX_DEPTH:
            raise _too_deep(value)
        if _PLAIN_TYPES.issuperset(map(type, value)):
            return list(value)
        try:
            return [v if type(v) in _PLAIN else sanitize(v, _depth + 1) for v in value]
        except DocumentValueError as err:
            # The error path only: find which item failed (by identity, without re-checking).
            index = next((i for i, v in enumerate(value) if v is err.last), None)
            if index is not None:
                err.path.insert(0, str(index))
            err.last = value
            raise
    np = sys.modules.get("numpy")  # no numpy imported: no numpy values to convert
    if np is not None and isinstance(value, np.ndarray):
        if _depth + max(value.ndim, 1) > MAX_DEPTH:
            raise _too_deep(value)
        if value.dtype.kind != "O":
            return value.tolist()
        converted: Any = value.tolist()  # arbitrary objects: check them like any other value
    elif np is not None and isinstance(value, np.generic):
        return value.item()
    elif isinstance(value, dict):
        converted = dict(value)
    elif isinstance(value, list | tuple):
        converted = list(value)
    elif isinstance(value, bool | float | int | str):  # subclasses of the plain types
        return value
    else:
        raise DocumentValueError(
            f"value {value!r} of type {type(value).__name__} cannot be stored; use numbers, "
            "strings, booleans, None, lists, dicts or numpy arrays",
            last=value,
        )
    try:
        return sanitize(converted, _depth)
    except DocumentValueError as err:
        err.last = value
        raise


def _copy_known_keys(value: dict[str, Any], _depth: int) -> dict[str, Any]:
    """:func:`sanitize` of a dict (at ``_depth`` < :data:`MAX_DEPTH`) whose keys are exact
    strs in ``_KEYS_OK``: only its values are left to check."""
    out = value.copy()
    if _PLAIN_TYPES.issuperset(map(type, value.values())):
        return out
    inner = _depth + 1
    for k, v in value.items():
        cls = type(v)
        if cls in _PLAIN:
            continue
        # Flat lists and dicts of known keys (shapes, data, timestamps) are handled here
        # without a call to sanitize; anything else takes the call, which words a problem.
        try:
            if inner < MAX_DEPTH and cls is list and _PLAIN_TYPES.issuperset(map(type, v)):
                out[k] = v.copy()
            elif (inner < MAX_DEPTH and cls is dict and _STR_TYPE.issuperset(map(type, v))
                  and _KEYS_OK.issuperset(v)):
                out[k] = _copy_known_keys(v, inner)
            else:
                out[k] = sanitize(v, inner)
        except DocumentValueError as err:
            err.path.insert(0, k)
            err.last = value
            raise
    return out


#: A single event's fields: scalar ones, and the mappings of data keys to scalars.
_EVENT_SCALARS = ("uid", "time", "seq_num", "descriptor")
_EVENT_MAPPINGS = ("data", "timestamps", "filled")
_EVENT_KEYS = frozenset(_EVENT_SCALARS + _EVENT_MAPPINGS)


def copy_scalar_event(doc: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`sanitize` of a single event that holds plain scalars only (the common case: a
    RunEngine reading of motors and counters), checked and copied in a few C calls, or None
    for any other document, which :func:`sanitize` then copies or refuses.

    The copy equals what :func:`sanitize` returns and shares nothing mutable with ``doc``.
    Keys must be exact strs: at the top an event's own field names, inside ``data``,
    ``timestamps`` and ``filled`` keys :func:`sanitize` has already passed.
    """
    # Key types first, so no str subclass's __eq__ or __hash__ runs.
    if not (_STR_TYPE.issuperset(map(type, doc)) and doc.keys() <= _EVENT_KEYS
            and _PLAIN_TYPES.issuperset(map(type, map(doc.get, _EVENT_SCALARS)))):
        return None
    out = doc.copy()
    for field in _EVENT_MAPPINGS:
        inner: Any = doc.get(field)
        cls = type(inner)
        if cls is dict:
            if not (_STR_TYPE.issuperset(map(type, inner)) and _KEYS_OK.issuperset(inner)
                    and _PLAIN_TYPES.issuperset(map(type, inner.values()))):
                return None
            out[field] = inner.copy()
        elif cls not in _PLAIN:
            return None
    return out


def _too_deep(value: Any) -> DocumentValueError:
    return DocumentValueError(
        f"dicts and lists are nested more than {MAX_DEPTH} levels deep (MongoDB's limit, kept "
        "by every store)",
        last=value,
    )


class DocumentValueError(TypeError):
    """Internal: a document holds a value no store can keep (the insert path reports it).

    ``path`` lists the keys (and list indices) leading to the problem, outermost first.
    """

    def __init__(self, message: str, path: list[str] | None = None, last: Any = None) -> None:
        super().__init__(message)
        self.path: list[str] = list(path or [])
        #: The value being sanitized when the error passed last (locates list items).
        self.last = last

    @property
    def field(self) -> str | None:
        """The dotted location of the problem in the document, or None at the top level."""
        return ".".join(self.path) or None


def datum_page(resource_uid: str, datums: list[dict[str, Any]]) -> dict[str, Any]:
    """One datum page of ``resource_uid`` holding ``datums`` (in order, at least one), with
    private copies of their ``datum_kwargs`` columns (keys: those of the first datum)."""
    keys = list(datums[0]["datum_kwargs"])
    return {
        "resource": resource_uid,
        "datum_id": [d["datum_id"] for d in datums],
        "datum_kwargs": {k: [json_copy(d["datum_kwargs"].get(k)) for d in datums] for k in keys},
    }
