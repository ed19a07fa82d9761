"""v1 helper names: ``ALL``, document wrappers, ``DOCT_NAMES``, ``DuplicateHandler``."""

from __future__ import annotations

import datetime
import html
import time
import warnings
from collections.abc import Mapping
from typing import Any

import doct
import humanize

__all__ = [
    "ALL",
    "DOCT_NAMES",
    "DeprecatedDoct",
    "DuplicateHandler",  # noqa: F822 (loaded on first use by __getattr__)
    "get_fields",
    "stream_name_of",
    "wrap_in_deprecated_doct",
    "wrap_in_doct",
]


class ALL:
    """Sentinel meaning "every stream"; compared with ``is`` (the class itself, not an instance)."""


#: Display names ``wrap_in_doct`` gives each document type (pages have none, as in databroker).
DOCT_NAMES = {
    "resource": "Resource",
    "datum": "Datum",
    "descriptor": "Event Descriptor",
    "event": "Event",
    "start": "Run Start",
    "stop": "Run Stop",
}


class _Document(doct.Document):  # type: ignore[misc]  # doct has no type hints
    """A ``doct.Document`` without the reference cycle.

    ``doct.Document`` makes itself its own ``__dict__``, so every wrapped document is freed
    only by the cyclic garbage collector: iterating filled images could hold hundreds of
    frames alive between collections.  This subclass keeps doct's behaviour (read-only dict,
    attribute access to keys, hidden ``_name``) with attribute lookup done on demand instead.
    """

    __slots__ = ()

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        dict.__setitem__(self, "_name", name)

    def __getattr__(self, key: str) -> Any:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {key!r}"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        raise doct.DocumentIsReadOnly(f"{key}, {value}")

    def __getstate__(self) -> tuple[str, dict[str, Any]]:
        return dict.__getitem__(self, "_name"), dict(self.items())

    def __setstate__(self, state: tuple[str, dict[str, Any]]) -> None:
        name, payload = state
        dict.update(self, payload)
        dict.__setitem__(self, "_name", name)

    def __reduce__(self) -> Any:
        return (_rebuild_document, (type(self),) + self.__getstate__())

    def to_name_dict_pair(self) -> tuple[str, dict[str, Any]]:
        """``(name, plain dict)``, as ``doct.Document.to_name_dict_pair``."""
        return dict.__getitem__(self, "_name"), dict(self.items())

    def _repr_html_(self) -> str:
        # doct's own renders through jinja2, which is not a dependency, and does not escape
        # the values; this draws the same nested table from the standard library.
        return _html_table(self, top=True)


def _html_table(doc: Mapping[str, Any], *, top: bool = False) -> str:
    rows = []
    for key in sorted(doc, key=str):
        if top and isinstance(key, str) and key.startswith("_"):
            continue  # doct hides _name and other private keys of the document itself
        value = doc[key]
        if isinstance(value, Mapping):
            cell = _html_table(value)
        elif key == "time":
            cell = html.escape(_human_time(value))
        else:
            cell = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _human_time(value: Any) -> str:
    try:
        stamp = float(value)
        when = datetime.datetime.fromtimestamp(stamp).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)
    return f"{humanize.naturaltime(time.time() - stamp)} ({when})"


def _rebuild_document(cls: type[_Document], name: str, payload: dict[str, Any]) -> _Document:
    return cls(name, payload)


def wrap_in_doct(name: str, doc: Mapping[str, Any]) -> doct.Document:
    """Wrap a document in a read-only, dot-accessible ``doct.Document``.

    Parameters
    ----------
    name
        The document type (``start``, ``stop``, ``descriptor``, ``event``, ``resource``,
        ``datum``); page types raise ``KeyError`` as in databroker.
    doc
        The document.
    """
    return _Document(DOCT_NAMES[name], doc)


class DeprecatedDoct(_Document):
    """A ``doct.Document`` whose attribute-style key access warns that it may be removed."""

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        value = super().__getattr__(key)
        if key == "_name":
            message = "The document's _name attribute may be removed in a future release."
        else:
            message = (f"Dot access may be removed in a future version. "
                       f"Use ['{key}'] instead of .{key}")
        warnings.warn(message, UserWarning, stacklevel=2)
        return value


def wrap_in_deprecated_doct(name: str, doc: Mapping[str, Any]) -> DeprecatedDoct:
    """The default ``prepare_hook``: like :func:`wrap_in_doct`, but dot access warns."""
    return DeprecatedDoct(DOCT_NAMES[name], doc)


def stream_name_of(descriptor: Mapping[str, Any]) -> str:
    """A descriptor's stream name; legacy nameless descriptors belong to ``'primary'``."""
    return descriptor.get("name") or "primary"


def get_fields(header: Any, name: str | None = None) -> set[str]:
    """The data keys of a header's descriptors, optionally of one stream only.

    Parameters
    ----------
    header
        A :class:`~broker_v1.Header`.
    name
        A stream name; descriptors without a name count as ``'primary'``.
    """
    fields: set[str] = set()
    for descriptor in header.descriptors:
        if name is None or stream_name_of(descriptor) == name:
            fields.update(descriptor["data_keys"])
    return fields


def __getattr__(name: str) -> Any:
    # event-model is slow to import; its DuplicateHandler is loaded on first use.
    if name == "DuplicateHandler":
        from event_model import DuplicateHandler

        return DuplicateHandler
    raise AttributeError(f"module 'broker_v1.utils' has no attribute {name!r}")
