"""MongoDB's reading of a filter, for stores that evaluate filters in Python.

``mongoquery`` evaluates the Mongo dialect, but where its answers differ from a MongoDB
server's, every server-less store would differ from the Mongo store.  :class:`MongoSemantics`
keeps mongoquery's parsing of a filter and replaces what it gets wrong:

- a dotted path through arrays reaches every document in them (their scalars are skipped),
  and a numeric step is both an index and a field name, as MongoDB resolves paths;
- an operator on an array tests the array and each element, ``$ne``/``$nin``/``$not``
  exclude it when any does;
- a missing field equals null; values of different kinds (``True`` and ``1``, ``'5'`` and
  ``5``) are never equal or ordered; a literal document is compared whole;
- ``$mod``, ``$type``, ``$elemMatch``, ``$size`` and ``$all`` skip what they cannot apply to
  instead of failing the query or walking a string's characters;
- ``$gt``/``$lt`` and friends compare documents with documents and arrays with arrays in
  BSON's order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import mongoquery

__all__ = ["MongoSemantics"]

#: A document on a path that lacks the rest of it (reads as null, has no BSON type).
_MISSING = mongoquery._Undefined()

#: BSON type codes of ``$type`` names ("number" is any of double, int, long, decimal).
_TYPE_CODES = {
    "double": 1, "string": 2, "object": 3, "array": 4, "binData": 5, "undefined": 6,
    "objectId": 7, "bool": 8, "date": 9, "null": 10, "regex": 11, "dbPointer": 12,
    "javascript": 13, "symbol": 14, "javascriptWithScope": 15, "int": 16, "timestamp": 17,
    "long": 18, "decimal": 19, "minKey": -1, "maxKey": 127,
}
_NUMBER_CODES = frozenset({1, 16, 18, 19})
_INT32 = 2**31


class _Candidates(list):  # type: ignore[type-arg]
    """The values a dotted path reaches in one document (one unless it crossed an array)."""


class _Element:
    """An array element tested as it is, its own elements not (``$elemMatch``'s elements,
    and an element a path names by its index)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _is_array(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _resolve(value: Any, parts: list[str]) -> list[Any]:
    """The values ``parts`` reaches from ``value``; :data:`_MISSING` where a document lacks
    the path.  Through an array: its documents (a numeric step also indexes the array; an
    index past the end, with no document to read it as a field name, is missing)."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        return _resolve(value[head], rest) if head in value else [_MISSING]
    if not _is_array(value):
        return [_MISSING]
    found: list[Any] = []
    indexed = head.isdigit() and int(head) < len(value)
    if indexed:
        # An element named by its index is tested as it is: MongoDB does not look into it
        # when it is an array itself.
        item = value[int(head)]
        found += _resolve(item, rest) if rest else [_Element(item)]
    for item in value:
        if isinstance(item, Mapping):
            found += _resolve(item, parts)
    if head.isdigit() and not indexed and not found:
        return [_MISSING]  # an index past the end, and no document with such a field
    return found


def _exists_at(value: Any, parts: list[str]) -> bool:
    """Whether the dotted path ``parts`` leads somewhere in ``value``."""
    return any(v is not _MISSING for v in _resolve(value, parts))


def _bson_code(value: Any) -> int | None:
    """The BSON type code a stored JSON value has in MongoDB (pymongo writes an int as a
    32-bit int when it fits, else a 64-bit one); None when missing."""
    if value is None:
        return 10
    if isinstance(value, bool):
        return 8
    if isinstance(value, int):
        return 16 if -_INT32 <= value < _INT32 else 18
    if isinstance(value, float):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, Mapping):
        return 3
    if _is_array(value):
        return 4
    return None


_SCALAR_KINDS = {str: "string", int: "number", float: "number", bool: "bool",
                 type(None): "null"}
_PLAIN = frozenset(_SCALAR_KINDS)


def _kind(value: Any) -> str:
    """MongoDB's comparison class of a value; missing reads as null."""
    kind = _SCALAR_KINDS.get(type(value))
    if kind is not None:
        return kind
    if value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if _is_array(value):
        return "array"
    return type(value).__name__


def _equal(wanted: Any, value: Any) -> bool:
    """MongoDB's equality: same kind, containers item by item, document fields in order."""
    kind = _kind(wanted)
    if kind != _kind(value):
        return False
    if kind == "null":
        return True
    if kind == "array":
        return len(wanted) == len(value) and all(map(_equal, wanted, value))
    if kind == "object":
        return list(wanted) == list(value) and all(_equal(wanted[k], value[k]) for k in wanted)
    return bool(wanted == value)


#: BSON's order of the kinds a JSON value can have (MongoDB compares values of different kinds
#: inside documents and arrays by it).
_KIND_ORDER = {"null": 1, "number": 2, "string": 3, "object": 4, "array": 5, "bool": 6}


def _sign(a: Any, b: Any) -> int:
    sign: int = (a > b) - (a < b)
    return sign


def _kind_rank(value: Any) -> int:
    return _KIND_ORDER.get(_kind(value), 9)


def _compare(a: Any, b: Any) -> int:
    """BSON's order of two values: -1, 0 or 1.  Kinds first; documents pair by pair (the
    value's kind, then the field name, then the value); arrays element by element; a prefix
    before what extends it."""
    order = _sign(_kind_rank(a), _kind_rank(b))
    if order or a is None or a is _MISSING:
        return order
    if isinstance(a, Mapping):
        for (name_a, value_a), (name_b, value_b) in zip(a.items(), b.items(), strict=False):
            order = (_sign(_kind_rank(value_a), _kind_rank(value_b)) or _sign(name_a, name_b)
                     or _compare(value_a, value_b))
            if order:
                return order
        return _sign(len(a), len(b))
    if _is_array(a):
        for value_a, value_b in zip(a, b, strict=False):
            order = _compare(value_a, value_b)
            if order:
                return order
        return _sign(len(a), len(b))
    return _sign(a, b)


def _ordered(test: Callable[[Any, Any], bool], *, or_equal: bool
             ) -> Callable[[Any, Any], bool]:
    """``$gt``-like comparison within one kind (documents and arrays in BSON's order); null is
    only ever equal to null (``$gte: None`` matches null and missing fields)."""

    def compare(wanted: Any, value: Any) -> bool:
        kind = _kind(wanted)
        if kind != _kind(value):
            return False
        if kind == "null":
            return or_equal
        if kind in ("object", "array"):
            return test(_compare(value, wanted), 0)
        return test(value, wanted)

    return compare


def _mod(condition: Any, value: Any) -> bool:
    """``$mod`` of numbers (a double truncated toward zero, the remainder signed as the
    dividend, as in MongoDB); nothing else matches."""
    if _kind(value) != "number" or not math.isfinite(value):
        return False
    divisor, remainder = (int(v) for v in condition)
    dividend = int(value)
    rest = abs(dividend) % abs(divisor)
    return (-rest if dividend < 0 else rest) == remainder


def _type(condition: Any, value: Any) -> bool:
    code = _bson_code(value)
    if code is None:
        return False
    for name in condition if _is_array(condition) else [condition]:
        if name == "number" and code in _NUMBER_CODES:
            return True
        if (_TYPE_CODES.get(name) if isinstance(name, str) else name) == code:
            return True
    return False


def _in(condition: Any, value: Any) -> bool:
    return any(
        bool(item.search(value)) if isinstance(item, re.Pattern) and isinstance(value, str)
        else _equal(item, value)
        for item in condition
    )


def _regex(condition: Any, value: Any) -> bool:
    return isinstance(value, str) and bool(mongoquery.Query._regex(condition, value))


def _size(condition: Any, value: Any) -> bool:
    return _is_array(value) and len(value) == condition


def _values(entry: Any, *, elements: bool) -> list[Any]:
    """What an operator tests for ``entry``: each value a path reached and, with
    ``elements``, the elements of those that are arrays."""
    reached = entry if isinstance(entry, _Candidates) else [entry]
    out: list[Any] = []
    for value in reached:
        if isinstance(value, _Element):
            out.append(value.value)
            continue
        out.append(value)
        if elements and _is_array(value):
            out.extend(value)
    return out


def _on_values(base: Callable[[Any, Any], bool], *, elements: bool = True
               ) -> Callable[[Any, Any, Any], bool]:
    """``base(condition, value)`` true for any value the field holds (see :func:`_values`)."""

    def matches(self: Any, condition: Any, entry: Any) -> bool:
        if type(entry) in _PLAIN:  # the commonest case, without building a list
            return base(condition, entry)
        return any(base(condition, v) for v in _values(entry, elements=elements))

    return matches


class MongoSemantics(mongoquery.Query):  # type: ignore[misc]  # mongoquery has no hints
    """``mongoquery.Query`` answering as a MongoDB server does (see the module's text).

    Parameters
    ----------
    definition
        The filter, already checked by :func:`broker_v1.stores._query.check_query`.
    """

    _eq = _on_values(_equal)
    _gt = _on_values(_ordered(lambda a, b: a > b, or_equal=False))
    _gte = _on_values(_ordered(lambda a, b: a >= b, or_equal=True))
    _lt = _on_values(_ordered(lambda a, b: a < b, or_equal=False))
    _lte = _on_values(_ordered(lambda a, b: a <= b, or_equal=True))
    _in = _on_values(_in)
    _regex = _on_values(_regex)
    _type = _on_values(_type)
    _mod = _on_values(_mod)
    _size = _on_values(_size, elements=False)

    def _ne(self, condition: Any, entry: Any) -> bool:
        return not self._eq(condition, entry)

    def _nin(self, condition: Any, entry: Any) -> bool:
        return not self._in(condition, entry)

    def _all(self, condition: Any, entry: Any) -> bool:
        return bool(condition) and all(
            self._match(item, entry) if isinstance(item, Mapping) and "$elemMatch" in item
            else self._eq(item, entry)
            for item in condition
        )

    def _elemMatch(self, condition: Any, entry: Any) -> bool:  # noqa: N802 (MongoDB's name)
        return any(
            _is_array(value) and any(
                super(MongoSemantics, self)._match(condition, _Element(item))
                if all(str(k).startswith("$") for k in condition)
                # Field conditions look into the array's documents only.
                else isinstance(item, Mapping) and super(MongoSemantics, self)._match(
                    condition, item)
                for item in value
            )
            for value in _values(entry, elements=False)
        )

    def _process_condition(self, operator: Any, condition: Any, entry: Any) -> bool:
        if not isinstance(operator, str) or operator.startswith("$"):
            return bool(super()._process_condition(operator, condition, entry))
        if isinstance(entry, _Element):
            entry = entry.value
        if (isinstance(condition, Mapping) and condition
                and str(next(iter(condition))).startswith("$")):
            if "$exists" not in condition and "." not in operator and isinstance(entry, Mapping):
                # A top-level field under operators: the commonest case, resolved directly.
                return bool(super()._match(condition, entry.get(operator, _MISSING)))
        elif "." not in operator and isinstance(entry, Mapping):
            value = entry.get(operator, _MISSING)
            return bool(self._eq(condition, value))  # a value, or a literal document (whole)
        parts = operator.split(".")
        if isinstance(condition, Mapping) and "$exists" in condition:
            if _exists_at(entry, parts) != bool(condition["$exists"]):
                return False
            condition = {k: v for k, v in condition.items() if k != "$exists"}
            if not condition:
                return True
        reached = _Candidates(_resolve(entry, parts))
        if isinstance(condition, Mapping) and not (
                condition and str(next(iter(condition))).startswith("$")):
            return bool(self._eq(condition, reached))  # a literal document: compared whole
        return self._match(condition, reached)

    def _match(self, condition: Any, entry: Any) -> bool:
        if isinstance(condition, Mapping):
            return bool(super()._match(condition, entry))
        if isinstance(condition, re.Pattern):
            return bool(self._regex(condition, entry))
        return bool(self._eq(condition, entry))
