"""Immutable document classes of the v2 API: ``Start``, ``Stop``, ``Descriptor``, ...

Each is a ``dict`` subclass that refuses mutation (``NotMutable``), gives an independent
mutable copy with :meth:`Document.to_dict`, deep-copies and pickles, and has a one-line repr
that evaluates back (``Start({'uid': ..., ...})``).  No dot access, as in databroker 1.2.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn

from ..errors import BrokerError
from ..stores._util import json_copy

__all__ = [
    "DOCUMENT_CLASSES",
    "Datum",
    "DatumPage",
    "Descriptor",
    "Document",
    "Event",
    "EventPage",
    "NotMutable",
    "Resource",
    "Start",
    "Stop",
    "wrap",
]


class NotMutable(BrokerError, TypeError):
    """A v2 document was modified; documents are immutable (use ``to_dict()`` for a copy)."""


class Document(dict[str, Any]):
    """An immutable document; see the module docstring."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotMutable(
            f"{type(self).__name__} documents are immutable; call .to_dict() for a mutable copy."
        )

    __setitem__ = _refuse
    __delitem__ = _refuse
    pop = _refuse
    popitem = _refuse
    clear = _refuse
    setdefault = _refuse
    update = _refuse
    __ior__ = _refuse

    def to_dict(self) -> dict[str, Any]:
        """An independent, mutable deep copy as a plain ``dict``."""
        return copy.deepcopy(dict(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        import pprint

        printer.text(f"{type(self).__name__}(" + pprint.pformat(dict(self)) + ")")

    def __deepcopy__(self, memo: dict[int, Any]) -> Document:
        return type(self)(copy.deepcopy(dict(self), memo))

    def __copy__(self) -> Document:
        return type(self)(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class Start(Document):
    """A run start document."""


class Stop(Document):
    """A run stop document."""


class Descriptor(Document):
    """An event descriptor document."""


class Event(Document):
    """An event document."""


class EventPage(Document):
    """An event page document."""


class Resource(Document):
    """A resource document."""


class Datum(Document):
    """A datum document."""


class DatumPage(Document):
    """A datum page document."""


DOCUMENT_CLASSES: dict[str, type[Document]] = {
    "start": Start,
    "stop": Stop,
    "descriptor": Descriptor,
    "event": Event,
    "event_page": EventPage,
    "resource": Resource,
    "datum": Datum,
    "datum_page": DatumPage,
}


def wrap(name: str, doc: dict[str, Any]) -> Document:
    """The immutable class for ``name`` around a private copy of ``doc``."""
    return DOCUMENT_CLASSES[name](json_copy(doc))
