"""tiled queries -> the store's Mongo-dialect filters, registered for the catalog adapter.

Each query tiled's client sends (``c.search(Key("plan_name") == "scan")``, the plugins'
``c[scan_id]`` and ``c[uid[:8]]``) becomes one condition on the start document
(``start.<field>``) or on the stop document (``stop.<field>``).  The meaning is the store's,
that is MongoDB's: ``NotEq``/``NotIn`` also match runs that lack the field; ``Eq`` on a field
holding a list matches a list containing the value.

A query that cannot be translated is refused with tiled's ``QueryValueError`` (the server
answers 400 with the message) and never ignored: a key outside ``start.``/``stop.``, a
``Comparison`` with another operator, ``FullText`` on a store without text search, a filter
the store itself would refuse.  Query types not registered here (``Specs``,
``StructureFamily``, ...) are refused by tiled itself with a 400 naming the type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tiled.queries import (
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    KeyPresent,
    Like,
    NotEq,
    NotIn,
    QueryValueError,
    Regex,
)
from tiled.query_registration import QueryTranslationRegistry

from ..stores._query import prefix_regex
from ..stores.tiled._queries import MONGO_TO_TILED_COMPARISON

__all__ = ["QUERIES", "like_to_regex"]

#: tiled's Comparison operator names -> MongoDB's (the inverse of the tiled store's table).
_COMPARISON = {tiled: mongo for mongo, tiled in MONGO_TO_TILED_COMPARISON.items()}
#: Documents a key may address, and how a search reaches them.
_DOCUMENTS = ("start", "stop")

#: The translations, keyed by tiled query type; ``QUERIES(query, catalog)`` returns the
#: narrowed catalog.
QUERIES = QueryTranslationRegistry()


def _target(query: Any) -> tuple[str, str]:
    """``(document, field)`` that ``query.key`` addresses, or ``QueryValueError``."""
    key = query.key
    document, _, field = str(key).partition(".")
    if document not in _DOCUMENTS or not field:
        raise QueryValueError(
            f"{type(query).__name__} on key {key!r} cannot be answered: keys name a field of "
            "the start or stop document, as 'start.<field>' or 'stop.<field>' (for example "
            "'start.plan_name'). bluesky-tiled-plugins' client adds 'start.' itself.")
    return document, field


def like_to_regex(pattern: str) -> str:
    """An SQL ``LIKE`` pattern (``%`` any run of characters, ``_`` one) as an anchored regex.

    A plain prefix followed by one ``%`` (how the plugins' client sends a partial uid) becomes
    exactly the prefix regex the stores answer from their uid index.
    """
    if pattern.endswith("%") and not any(c in "%_" for c in pattern[:-1]):
        return prefix_regex(pattern[:-1])
    parts = ["^"]
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    parts.append("$")
    return "".join(parts)


def _register(query_type: type, condition: Callable[[Any, Any], Any]) -> None:
    def translate(query: Any, catalog: Any) -> Any:
        document, field = _target(query)
        return catalog.narrowed(document, {field: condition(query, catalog)},
                                described=repr(query))

    QUERIES.register(query_type, translate)


def _comparison(query: Any, catalog: Any) -> dict[str, Any]:
    operator = _COMPARISON.get(query.operator)
    if operator is None:  # tiled checks this on decoding; an in-process caller may not
        raise QueryValueError(f"Comparison operator {query.operator!r} is not one of "
                              f"{sorted(_COMPARISON)}.")
    return {operator: query.value}


def _list(values: Any, query: Any) -> list[Any]:
    if not isinstance(values, list | tuple):
        raise QueryValueError(f"{type(query).__name__} on {query.key!r} needs a list of "
                              f"values, got {values!r}.")
    return list(values)


def _equal(query: Any, catalog: Any) -> Any:
    # A plain value, as db(field=value) sends it: the server-less stores' matcher does not
    # give '$eq' MongoDB's "a list containing the value" meaning.  '$eq' only for a document
    # value, which would otherwise read as operators.
    return {"$eq": query.value} if isinstance(query.value, dict) else query.value


_register(Eq, _equal)
_register(NotEq, lambda q, c: {"$ne": q.value})
_register(Comparison, _comparison)
# tiled's meaning: the field is a list holding the value.
_register(Contains, lambda q, c: {"$elemMatch": {"$eq": q.value}})
_register(In, lambda q, c: {"$in": _list(q.value, q)})
_register(NotIn, lambda q, c: {"$nin": _list(q.value, q)})
_register(KeyPresent, lambda q, c: {"$exists": bool(q.exists)})
_register(Like, lambda q, c: {"$regex": like_to_regex(q.pattern)})
_register(Regex, lambda q, c: {"$regex": q.pattern} | ({} if q.case_sensitive
                                                         else {"$options": "i"}))


def _full_text(query: Any, catalog: Any) -> Any:
    if not catalog.store.supports_text_search:
        raise QueryValueError(
            f"FullText({query.text!r}) cannot be answered: {catalog.store.describe()} has no "
            "full-text search. Search a field instead, e.g. Key('plan_name') == 'scan', or "
            "serve a MongoDB store with a text index.")
    return catalog.narrowed("start", {"$text": {"$search": query.text}},
                            described=repr(query))


QUERIES.register(FullText, _full_text)
