"""Searches: a MongoDB-style query turned into SQL conditions, and keyset paging.

Only conditions certainly equivalent to the query are pushed into SQL (a superset
filter); the :class:`~broker_v1.stores._query.QueryMatcher` decides on every candidate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .._columns import _sort_key
from ..base import Doc
from ._index import _WORD

_PHRASE = re.compile(r'"([^"]*)"')
_ASCII_WORD = re.compile(r"[a-z0-9_]+")
_EXACT_INT = 2**53


def _prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``uid >= lo AND uid < hi`` selects exactly the strings starting with ``prefix``."""
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix, None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return prefix, prefix[:-1] + chr(nxt)


def _regex_prefix(pattern: Any) -> str | None:
    """The literal prefix of a ``'^' + re.escape(prefix)`` pattern, else None."""
    if not isinstance(pattern, str) or not pattern.startswith("^"):
        return None
    rest = pattern[1:]
    literal = re.sub(r"\\(.)", r"\1", rest, flags=re.DOTALL)
    if re.escape(literal) != rest:
        return None
    return literal


def _fts_words(search: str) -> list[str] | None:
    """Words of a ``$text`` search the FTS prefilter may use, or None to use the exact UDF.

    Only plain ASCII words without phrases: FTS5's tokenizer then yields a superset of what
    :func:`~broker_v1.stores._query.text_matches` accepts, which re-checks every candidate.
    """
    search = search.lower()
    if _PHRASE.search(search):
        return None
    words: list[str] = []
    for token in search.split():
        if token.startswith("-") and len(token) > 1:
            continue
        for word in _WORD.findall(token):
            if not _ASCII_WORD.fullmatch(word):
                return None
            words.append(word)
    return words or None


def _field_key(field: str) -> Callable[[Doc], tuple[int, Any]]:
    def key(doc: Doc) -> tuple[int, Any]:
        return _sort_key(doc.get(field))

    return key


def _operators(cond: Any) -> dict[str, Any] | None:
    """A field condition as ``{operator: value}`` (plain values mean ``$eq``)."""
    if isinstance(cond, Mapping):
        if cond and all(isinstance(k, str) and k.startswith("$") for k in cond):
            return dict(cond)
        return None  # equality with a document
    return {"$eq": cond}


def _exact_values(
    ops: dict[str, Any] | None, *, allow_str: bool, only_str: bool = False
) -> list[Any] | None:
    """Values of an ``$eq`` / ``$in`` condition that SQL can compare exactly, or None."""
    if ops is None:
        return None
    if "$eq" in ops:
        values = [ops["$eq"]]
    elif "$in" in ops and isinstance(ops["$in"], list | tuple) and ops["$in"]:
        values = list(ops["$in"])
    else:
        return None
    for v in values:
        if type(v) is str:
            if not allow_str:
                return None
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return None
        elif type(v) is int and not only_str:
            if abs(v) >= _EXACT_INT:
                return None
        else:
            return None  # floats, bools, None, lists: compared by the matcher only
    return values
