"""Mongo-dialect query evaluation shared by every store.

:func:`check_query` guards every store (MongoDB included): it refuses operators that execute
code on a server and malformed shapes before anything is evaluated.  Server-less stores then
evaluate queries with :class:`QueryMatcher`: the ``mongoquery`` library for the Mongo dialect,
plus ``$text`` with MongoDB's semantics (which mongoquery lacks) evaluated here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mongoquery

from ..errors import InvalidQuery, UnsupportedQuery

__all__ = [
    "FORBIDDEN_OPERATORS",
    "QueryMatcher",
    "check_query",
    "prefix_regex",
    "split_text",
    "text_matches",
]

#: Operators that run code on a MongoDB server; refused in every store.
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$expr"})

_LOGICAL = frozenset({"$and", "$or", "$nor"})


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
                    f"{store}. Express the condition with field operators such as $gt, $in, $regex.",
                    operator=key,
                    store=store,
                )
            if key in _LOGICAL and not (
                isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value)
            ):
                raise InvalidQuery(f"{key} needs a non-empty list of conditions, got {value!r}.")
            _check_node(value, store, depth + 1)
    elif isinstance(node, list | tuple):
        for item in node:
            _check_node(item, store, depth + 1)


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
        raise InvalidQuery("$text may appear only at the top level of a query or in a top-level $and.")
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


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def searchable_text(doc: Mapping[str, Any]) -> str:
    """Every string value of a document at any depth (never its keys), lower-cased."""
    return "\n".join(_strings(doc)).lower()


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


_SCALARS = (str, int, float)


def _compile(query: Mapping[str, Any], store: str) -> Callable[[Any], bool]:
    if not query:
        return lambda doc: True
    compiled = mongoquery.Query(query)

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
