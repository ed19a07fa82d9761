"""Mongo-dialect query evaluation shared by every store.

:func:`check_query` guards every store (MongoDB included): it refuses operators that execute
code on a server and malformed shapes before anything is evaluated.  Server-less stores then
evaluate queries with :class:`QueryMatcher`: the ``mongoquery`` library for the Mongo dialect,
answering as a MongoDB server does (:mod:`broker_v1.stores._matching`), plus ``$text`` with
MongoDB's semantics (which mongoquery lacks) evaluated here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mongoquery

from ..errors import InvalidQuery, UnsupportedQuery
from ._matching import MongoSemantics

__all__ = [
    "FORBIDDEN_OPERATORS",
    "MATCHER_OPERATORS",
    "MONGO_OPERATORS",
    "SERVER_ONLY_OPERATORS",
    "QueryMatcher",
    "check_query",
    "prefix_regex",
    "split_text",
    "text_matches",
]

#: Operators that run code on a MongoDB server; refused in every store.
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$expr"})

_LOGICAL = frozenset({"$and", "$or", "$nor"})

#: Every operator of MongoDB's query language (code-executing ones aside); any other key that
#: starts with ``$`` is refused as unknown by every store.
MONGO_OPERATORS = frozenset({
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
    "$and", "$or", "$nor", "$not",
    "$exists", "$type", "$regex", "$options", "$size", "$all", "$elemMatch", "$mod",
    "$text", "$search", "$language", "$caseSensitive", "$diacriticSensitive",
    "$comment", "$jsonSchema",
    "$geoWithin", "$geoIntersects", "$near", "$nearSphere", "$geometry", "$maxDistance",
    "$minDistance", "$box", "$center", "$centerSphere", "$polygon",
    "$bitsAllSet", "$bitsAllClear", "$bitsAnySet", "$bitsAnyClear",
})

#: Operators only a MongoDB server evaluates (geospatial, bitwise, JSON schema, text options).
SERVER_ONLY_OPERATORS = frozenset({
    "$language", "$caseSensitive", "$diacriticSensitive", "$jsonSchema",
    "$geoWithin", "$geoIntersects", "$near", "$nearSphere", "$geometry", "$maxDistance",
    "$minDistance", "$box", "$center", "$centerSphere", "$polygon",
    "$bitsAllSet", "$bitsAllClear", "$bitsAnySet", "$bitsAnyClear",
})

#: The operators server-less stores evaluate (:class:`QueryMatcher`); the others of
#: :data:`MONGO_OPERATORS` raise ``UnsupportedQuery`` there.
MATCHER_OPERATORS = MONGO_OPERATORS - SERVER_ONLY_OPERATORS

_BSON_TYPES = frozenset({
    "double", "string", "object", "array", "binData", "undefined", "objectId", "bool", "date",
    "null", "regex", "dbPointer", "javascript", "symbol", "javascriptWithScope", "int",
    "timestamp", "long", "decimal", "minKey", "maxKey", "number",
})
_BSON_TYPE_CODES = frozenset({*range(1, 20), -1, 127})


def check_query(query: Any, *, store: str = "store") -> None:
    """Refuse a query that is not a Mongo-dialect filter or that could execute code.

    Parameters
    ----------
    query
        The filter dict.
    store
        The store's description, for messages.

    Raises
    ------
    InvalidQuery
        The query is not a mapping, a key is not a string, or ``$and``/``$or`` hold no list.
    UnsupportedQuery
        The query uses ``$where``, ``$function``, ``$accumulator`` or ``$expr``.
    """
    if not isinstance(query, Mapping):
        raise InvalidQuery(
            f"A query must be a dict of conditions on start-document fields, "
            f"got {type(query).__name__}: {query!r}."
        )
    _check_node(query, store, depth=0)
    split_text(query)  # a misplaced, repeated or malformed $text


_JSON_SCALARS = (str, int, float, bool, type(None))
_REGEX_OPTIONS = frozenset("imsxu")


def _check_node(node: Any, store: str, depth: int) -> None:
    if depth > 64:
        raise InvalidQuery("Query is nested more than 64 levels deep.")
    if isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str):
                raise InvalidQuery(f"Query keys must be strings, got {key!r}.")
            if key in FORBIDDEN_OPERATORS:
                raise UnsupportedQuery(
                    f"The query operator {key!r} executes code on the server and is refused by "
                    f"{store}. Express the condition with field operators such as $gt, $in, "
                    "$regex.",
                    operator=key,
                    store=store,
                )
            if key in _LOGICAL and not (
                isinstance(value, list | tuple)
                and value
                and all(isinstance(v, Mapping) for v in value)
            ):
                raise InvalidQuery(f"{key} needs a non-empty list of conditions, got {value!r}.")
            if key.startswith("$"):
                if key not in MONGO_OPERATORS:
                    raise InvalidQuery(
                        f"Unknown query operator {key!r}. Known operators include $eq, $ne, $gt, "
                        "$gte, $lt, $lte, $in, $nin, $exists, $regex, $and, $or, $not."
                    )
                _check_operator(key, value, node)
            _check_node(value, store, depth + 1)
    elif isinstance(node, list | tuple):
        for item in node:
            _check_node(item, store, depth + 1)
    elif type(node) not in _JSON_SCALARS and not isinstance(node, _JSON_SCALARS):
        raise InvalidQuery(
            f"Query value {node!r} is a {type(node).__name__}; queries hold JSON values only "
            "(strings, numbers, booleans, None, lists and dicts). Convert it, e.g. int(value) "
            "or value.timestamp()."
        )


def _check_operator(key: str, value: Any, node: Mapping[str, Any]) -> None:
    """Refuse operator arguments MongoDB would refuse, the same way in every store."""
    def bad(expected: str) -> InvalidQuery:
        return InvalidQuery(f"{key} needs {expected}, got {value!r}.")

    if key in ("$in", "$nin", "$all") and not isinstance(value, list | tuple):
        raise bad("a list of values")
    if key == "$size" and (
        isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        or value != int(value)
    ):
        raise bad("a non-negative whole number")
    if key == "$mod" and not (
        isinstance(value, list | tuple) and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] != 0 and all(math.isfinite(v) for v in value)
    ):
        raise bad("[divisor, remainder], two finite numbers with a non-zero divisor")
    if key in ("$not", "$elemMatch") and not (isinstance(value, Mapping) and value):
        raise bad("a non-empty document of conditions")
    if key == "$regex":
        if not isinstance(value, str):
            raise bad("a pattern string")
        try:
            re.compile(value)
        except re.error as err:
            raise InvalidQuery(
                f"$regex {value!r} is not a valid regular expression: {err}."
            ) from None
    if key == "$type":
        kinds = value if isinstance(value, list | tuple) else [value]
        if not kinds or not all(
            (isinstance(k, str) and k in _BSON_TYPES)
            or (isinstance(k, int) and not isinstance(k, bool) and k in _BSON_TYPE_CODES)
            for k in kinds
        ):
            raise bad("a BSON type name such as 'string', 'number' or 'array' (or its code)")
    if key == "$options":
        if "$regex" not in node:
            raise InvalidQuery("$options needs a $regex beside it.")
        if not isinstance(value, str) or not set(value) <= _REGEX_OPTIONS:
            raise bad("regex flags from 'imsxu'")


def prefix_regex(prefix: str) -> str:
    r"""An anchored ``$regex`` matching strings that start with ``prefix``.

    Only regex metacharacters are escaped: MongoDB answers an anchored prefix of plain
    characters from an index, but not one with needlessly escaped characters such as ``\-``.
    """
    return "^" + re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", prefix)


def split_text(query: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Separate a top-level ``$text`` clause (also inside a top-level ``$and``) from the rest."""
    rest = dict(query)
    text = rest.pop("$text", None)
    found: list[str] = []
    if text is not None:
        found.append(_text_search_string(text))
    if "$and" in rest:
        kept = []
        for clause in rest["$and"]:
            sub, sub_text = split_text(clause)
            if sub_text is not None:
                found.append(sub_text)
            if sub:
                kept.append(sub)
        if kept:
            rest["$and"] = kept
        else:
            del rest["$and"]
    if _contains_text(rest):
        raise InvalidQuery(
            "$text may appear only at the top level of a query or in a top-level $and."
        )
    if len(found) > 1:
        raise InvalidQuery("A query may hold only one $text clause.")
    return rest, (found[0] if found else None)


def _text_search_string(text: Any) -> str:
    if not isinstance(text, Mapping) or not isinstance(text.get("$search"), str):
        raise InvalidQuery(f"$text needs {{'$search': 'words'}}, got {text!r}.")
    return str(text["$search"])


def _contains_text(node: Any) -> bool:
    if isinstance(node, Mapping):
        return any(k == "$text" or _contains_text(v) for k, v in node.items())
    if isinstance(node, list | tuple):
        return any(_contains_text(v) for v in node)
    return False


_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]*)"')


def _strings(value: Any, out: list[str]) -> None:
    """Append every string in ``value`` (depth first, in order) to ``out``."""
    # Exact JSON types first: every start is indexed, and isinstance against the Mapping ABC
    # (plus a generator per container) cost more than the rest of the work.
    cls = type(value)
    if cls is dict:
        items: Iterable[Any] = value.values()
    elif cls is list or cls is tuple:
        items = value
    elif isinstance(value, str):
        out.append(value)
        return
    elif isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return
    for v in items:
        t = type(v)
        if t is str:
            out.append(v)
        elif not (t is float or t is int or t is bool or v is None):
            _strings(v, out)


def searchable_text(doc: Mapping[str, Any]) -> str:
    """Every string value of a document at any depth (never its keys), lower-cased."""
    out: list[str] = []
    _strings(doc, out)
    return "\n".join(out).lower()


def text_matches(search: str, text: str) -> bool:
    """Evaluate a MongoDB ``$text`` search string against lower-cased searchable text.

    Words match whole words, case-insensitively, any of them sufficing; a "quoted phrase" must
    appear as written; ``-word`` excludes.  As on MongoDB, a search holding only exclusions
    matches nothing.
    """
    search = search.lower()
    phrases = [p for p in _PHRASE.findall(search) if p.strip()]
    remainder = _PHRASE.sub(" ", search)
    include: list[str] = []
    exclude: list[str] = []
    for token in remainder.split():
        if token.startswith("-") and len(token) > 1:
            exclude.extend(_WORD.findall(token[1:]))
        else:
            include.extend(_WORD.findall(token))
    if not include and not phrases:
        return False
    words = set(_WORD.findall(text))
    if any(w in words for w in exclude):
        return False
    if any(p not in text for p in phrases):
        return False
    return not include or any(w in words for w in include) or bool(phrases)


class QueryMatcher:
    """A compiled Mongo-dialect filter for documents held in Python.

    Parameters
    ----------
    query
        The filter, already passed through :func:`check_query`.
    store
        The store's description, for messages.
    supports_text
        Whether ``$text`` may be evaluated (the caller's capability).
    """

    def __init__(self, query: Mapping[str, Any], *, store: str, supports_text: bool = True):
        unsupported = _first_operator(query, SERVER_ONLY_OPERATORS)
        if unsupported is not None:
            raise UnsupportedQuery(
                f"{store} cannot evaluate the query operator {unsupported!r} (it needs a MongoDB "
                "server). Express the condition with $eq, $in, $gt, $regex, $exists, ... instead.",
                operator=unsupported,
                store=store,
            )
        rest, self.text = split_text(query)
        if self.text is not None and not supports_text:
            raise UnsupportedQuery(
                f"{store} cannot evaluate '$text' (full-text search). Search a field instead, "
                f"e.g. db(plan_name='scan').",
                operator="$text",
                store=store,
            )
        self.query = rest
        self.match_all = not rest and self.text is None
        self._match: Callable[[Any], bool] = _compile(rest, store)

    def __call__(self, doc: Mapping[str, Any]) -> bool:
        if self.match_all:
            return True
        if self.text is not None and not text_matches(self.text, searchable_text(doc)):
            return False
        return self._match(doc)


def _first_operator(node: Any, operators: frozenset[str]) -> str | None:
    """The first key of ``operators`` found anywhere in a query, or None."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in operators:
                return str(key)
            found = _first_operator(value, operators)
            if found is not None:
                return found
    elif isinstance(node, list | tuple):
        for item in node:
            found = _first_operator(item, operators)
            if found is not None:
                return found
    return None


_SCALARS = (str, int, float)


#: ``$options`` letters as Python's flags ('u' is always on for str patterns).
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "u": 0}


def _with_regex_flags(node: Any) -> Any:
    """``node`` with every ``{"$regex": p, "$options": o}`` as one compiled pattern.

    mongoquery has no ``$options`` (it raises NotImplementedError once the pattern matched),
    but honours a compiled pattern's flags, so the options MongoDB applies are folded in.
    """
    if isinstance(node, Mapping):
        out = {k: _with_regex_flags(v) for k, v in node.items() if k != "$options"}
        if "$options" in node and isinstance(node.get("$regex"), str):
            flags = 0
            for letter in node["$options"]:
                flags |= _REGEX_FLAGS[letter]
            out["$regex"] = re.compile(node["$regex"], flags)
        return out
    if isinstance(node, list):
        return [_with_regex_flags(v) for v in node]
    return node


def _compile(query: Mapping[str, Any], store: str) -> Callable[[Any], bool]:
    if not query:
        return lambda doc: True
    compiled = MongoSemantics(_with_regex_flags(query))

    def match(doc: Any) -> bool:
        try:
            return bool(compiled.match(doc))
        except mongoquery.QueryError as err:
            raise InvalidQuery(f"Invalid query {dict(query)!r}: {err}") from err
        except NotImplementedError as err:
            raise UnsupportedQuery(
                f"{store} cannot evaluate the query {dict(query)!r}: an operator in it is not "
                "supported by server-less stores.",
                store=store,
            ) from err
        except (TypeError, ValueError, AttributeError, ZeroDivisionError, re.error) as err:
            # An argument mongoquery cannot use that check_query did not foresee.
            raise InvalidQuery(f"Invalid query {dict(query)!r}: {err}") from err

    # Plain equality on top-level scalar fields is the commonest search (plan_name='scan');
    # answer it without mongoquery's general machinery, falling back for lists and dicts.
    if all(
        not k.startswith("$") and "." not in k and type(v) in _SCALARS for k, v in query.items()
    ):
        items = tuple(query.items())

        def fast(doc: Any) -> bool:
            for key, wanted in items:
                value = doc.get(key)
                if type(value) in _SCALARS and type(value) is not bool:
                    if value != wanted:
                        return False
                elif not match(doc):
                    return False
            return True

        return fast
    # Validate operators now so a bad query fails before the first document is read.
    try:
        compiled.match({})
    except mongoquery.QueryError as err:
        raise InvalidQuery(f"Invalid query {dict(query)!r}: {err}") from err
    except (NotImplementedError, KeyError, TypeError, AttributeError):
        pass
    return match
