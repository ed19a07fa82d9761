"""Small helpers shared by stores: JSON-like copies and numpy sanitizing."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["DocumentValueError", "json_copy", "sanitize"]


def json_copy(value: Any) -> Any:
    """Deep-copy a JSON-like value (dicts, lists, scalars) several times faster than deepcopy."""
    cls = type(value)
    if cls is dict:
        return {k: json_copy(v) if type(v) in (dict, list) else v for k, v in value.items()}
    if cls is list:
        return [json_copy(v) if type(v) in (dict, list) else v for v in value]
    return value


_PLAIN = (str, int, float, bool, type(None))


def sanitize(value: Any) -> Any:
    """Return a JSON-like deep copy: numpy arrays and scalars become lists and numbers.

    Tuples become lists (as they would after a round trip through JSON or BSON), mapping keys
    are kept as given, and the caller's objects are never modified.
    """
    cls = type(value)
    if cls in _PLAIN:
        return value
    if cls is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise DocumentValueError(f"key {k!r} is a {type(k).__name__}; keys must be strings")
            out[k] = v if type(v) in _PLAIN else sanitize(v)
        return out
    if cls is list or cls is tuple:
        return [v if type(v) in _PLAIN else sanitize(v) for v in value]
    np = sys.modules.get("numpy")  # no numpy imported: no numpy values to convert
    if np is not None and isinstance(value, np.ndarray):
        return value.tolist()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return sanitize(dict(value))
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    if isinstance(value, bool | float | int | str):  # subclasses of the plain types
        return value
    raise DocumentValueError(
        f"value {value!r} of type {type(value).__name__} cannot be stored; use numbers, strings, "
        "booleans, None, lists, dicts or numpy arrays"
    )


class DocumentValueError(TypeError):
    """Internal: a document holds a value no store can keep (the insert path reports it)."""
