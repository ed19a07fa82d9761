"""Mongo-dialect filters on start documents -> tiled queries the SQL catalog answers.

(The Mongo layout's translation is in ``_mongo_layout``; the helpers here are shared.)

A filter is taken apart into its AND-ed field conditions.  Each one the server answers with
the same meaning as MongoDB becomes a tiled query on ``start.<field>``; the rest is *residual*
and is evaluated here, on the runs the server returned, with the same matcher the server-less
stores use.  The residual check always sees the whole filter, so the server's part only
narrows the candidates and never decides alone.

Sent, then rechecked here (the server may return a few runs too many): comparisons with
numbers, uid prefixes and ``$text`` searches of plain words (one search per word, merged
here: see :func:`full_text_queries` and :attr:`Plan.alternatives`).  MongoDB's equality also
matches a list *containing* the value; the server's does not, unless the store's
``exact_list_equality`` asks for a second search (:func:`_list_equality`, documented).

Equality with ``True``/``False`` is sent and rechecked (SQLite's JSON reads ``true`` as
``1``).  Left residual on purpose (the SQL catalog's answer differs from MongoDB's): paths
with an array index (``detectors.0``), ``$ne``/``$nin``
(the server does not match runs lacking the field), comparisons with non-numbers (MongoDB
compares within a type only), equality with lists or documents (the server fails or compares
differently), ``$regex`` other than an anchored uid prefix (the SQL catalog has no regex),
and ``$or``, ``$nor``, ``$not``, ``$elemMatch``, ``$size``, ``$all``, ``$type``, ``$mod``; and
``$in`` lists longer than :data:`MAX_IN` (they would not fit in a URL).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MONGO_TO_TILED_COMPARISON", "Plan", "conditions", "full_text_prefilter",
           "full_text_queries",
           "is_number", "is_scalar", "plan_query", "tiled_sort", "walk_query"]

#: MongoDB comparison operators and the ``operator`` names of tiled's ``Comparison`` query, the
#: one table both directions use (this store sends them; ``broker_v1.serve`` receives them).
MONGO_TO_TILED_COMPARISON = {"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}
#: Longer ``$in`` lists are checked here: tiled's client sends queries in the URL, which
#: httpx refuses beyond 64 KiB (about 1,500 uids).
MAX_IN = 200
#: Words of a ``$text`` search sent as searches of their own (their answers are merged).
MAX_TEXT_WORDS = 8
# An anchored prefix of plain characters, as broker_v1.stores._query.prefix_regex writes it.
_WORD = re.compile(r"\w+", re.UNICODE)  # a word of MongoDB's $text, as broker_v1 matches it
_PLAIN_WORD = re.compile(r"[a-z0-9]+")  # a bare word to FTS5 and to_tsquery alike
_PREFIX = re.compile(r"^\^((?:[^.^$*+?{}\[\]\\|()]|\\[.^$*+?{}\[\]\\|()])*)$")


@dataclass
class Plan:
    """How one filter is answered: ``queries`` on the server, the rest (if any) here.

    Attributes
    ----------
    queries
        tiled query objects, AND-ed.
    residual
        Operators (or ``field=value`` descriptions) the server cannot answer; non-empty
        means every candidate must be checked here against the whole filter.
    recheck
        Operators the server answers with more runs than MongoDB would, in ways that are
        rare in practice (a uid prefix sent as SQL ``LIKE``, which SQLite compares
        case-insensitively; a number compared with a field that holds a string in some
        runs): the candidates are checked here too, without the bound of a residual, since
        they are normally no more numerous than the answer.
    """

    queries: list[Any] = field(default_factory=list)
    residual: list[str] = field(default_factory=list)
    recheck: list[str] = field(default_factory=list)
    #: tiled queries of which a run must match at least one (tiled ANDs queries, so each
    #: is sent as its own search, AND-ed with ``queries``, and the answers are merged in
    #: sort order here); empty: one search.
    alternatives: list[Any] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """The server's answer is the answer: nothing to check here."""
        return not self.residual and not self.recheck


def is_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_scalar(value: Any) -> bool:
    """None, a string, a bool or a number."""
    return value is None or isinstance(value, str | bool) or is_number(value)


def conditions(query: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(field or operator, condition)`` pairs of a filter, top-level ``$and`` flattened."""
    for key, value in query.items():
        if key == "$and" and isinstance(value, list):
            for part in value:
                yield from conditions(part)
        else:
            yield key, value


def walk_query(query: Mapping[str, Any], plan: Plan, sendable: Callable[[Any], bool]
               ) -> Iterator[tuple[str, str | None, Any]]:
    """The steps both layouts' planners share: walk the AND-ed conditions of ``query``,
    leaving plain equality with a value the server cannot compare as MongoDB does (not
    ``sendable``), and equality with a document, residual.

    Yields what is left to the layout's planner: ``(operator, None, condition)`` for a
    top-level ``$`` key and ``(field, "start.<field>", {op: value})`` for a field's
    operators, plain equality with a ``sendable`` value given as ``{"$eq": value}``.
    """
    for key, condition in conditions(query):
        if key.startswith("$"):
            yield key, None, condition
            continue
        target = f"start.{key}"
        if not isinstance(condition, Mapping):
            if sendable(condition):
                yield key, target, {"$eq": condition}  # as the planner sends $eq
            else:
                plan.residual.append(f"{key}={condition!r}")
        elif not condition or not all(op.startswith("$") for op in condition):
            plan.residual.append(f"{key}={dict(condition)!r}")  # equality with a document
        else:
            yield key, target, condition


def _sql_sendable(value: Any) -> bool:
    # The SQL catalog fails on Eq with a list and matches no null like MongoDB does.
    return is_scalar(value) and value is not None


def _list_element_pattern(value: str) -> str | None:
    """A ``LIKE`` pattern matching the JSON text of a list holding ``value`` (``%"det"%``),
    for values whose JSON form is themselves in quotes (printable ASCII, no quote or
    backslash); else None."""
    if not value.isascii() or not value.isprintable() or '"' in value or "\\" in value:
        return None
    return f'%"{value}"%'


def _list_equality(plan: Plan, key: str, target: str, value: str) -> None:
    """Equality with a string as MongoDB means it: the field equals it or is a list holding
    it.  The first such condition is two searches whose answers are merged (``Eq``, and a
    ``Like`` on the list's JSON text); later ones a ``Like`` of the value anywhere in the
    field (a superset: wildcards and case are rechecked here), narrowed by the first."""
    from tiled.queries import Eq, Like

    pattern = _list_element_pattern(value)
    if pattern is None:
        plan.residual.append(f"{key}={value!r}")
        return
    if not plan.alternatives:
        plan.alternatives = [Eq(target, value), Like(target, pattern)]
    else:
        plan.queries.append(Like(target, f"%{value}%"))
    plan.recheck.append(f"{key}={value!r}")


def plan_query(query: Mapping[str, Any], *, list_equality: bool = False) -> Plan:
    """Split a checked Mongo-dialect filter into tiled queries and a residual.

    Parameters
    ----------
    query
        A filter on start-document fields (already checked by ``check_query``).
    list_equality
        Give equality with a string MongoDB's meaning (the field equals it or is a list
        holding it) at the cost of a second search (:func:`_list_equality`); ``$in`` with
        strings is then checked here.  Without it, equality matches the field's value only.

    Returns
    -------
    Plan
    """
    from tiled.queries import Comparison, Eq, In, KeyPresent, Like

    plan = Plan()
    for key, target, condition in walk_query(query, plan, _sql_sendable):
        if target is None:
            words = full_text_queries(condition) if key == "$text" else None
            if words is None or (len(words) > 1 and plan.alternatives):
                plan.residual.append(key)
                continue
            if len(words) == 1:
                plan.queries.extend(words)
            else:
                plan.alternatives = words  # any word matches: one search per word
            plan.recheck.append(key)
            continue
        if any(part.isdigit() for part in key.split(".")):
            # MongoDB reads "detectors.0" as an array index (and a field name); the
            # catalog's JSON paths do not.
            plan.residual.append(key)
            continue
        for op, value in condition.items():
            if op == "$eq" and list_equality and isinstance(value, str):
                _list_equality(plan, key, target, value)
            elif op == "$eq" and _sql_sendable(value):
                plan.queries.append(Eq(target, value))
                if isinstance(value, bool):
                    plan.recheck.append(f"{key}={value!r}")  # SQLite's JSON true equals 1
            elif op == "$in" and isinstance(value, list) and 0 < len(value) <= MAX_IN and all(
                    is_scalar(v) and v is not None for v in value) and not (
                    list_equality and any(isinstance(v, str) for v in value)):
                plan.queries.append(In(target, list(value)))
                if any(isinstance(v, bool) for v in value):
                    plan.recheck.append(f"{key} $in {value!r}")
            elif op in MONGO_TO_TILED_COMPARISON and is_number(value):
                plan.queries.append(Comparison(MONGO_TO_TILED_COMPARISON[op], target, value))
                # The SQL catalog also matches runs whose field is a string here (MongoDB
                # compares numbers with numbers only): drop those after the server.
                plan.recheck.append(op)
            elif op == "$exists" and isinstance(value, bool):
                plan.queries.append(KeyPresent(target, exists=value))
            elif (op == "$regex" and key == "uid" and "$options" not in condition
                  and isinstance(value, str) and _PREFIX.match(value)):
                prefix = re.sub(r"\\(.)", r"\1", value[1:])
                plan.queries.append(Like(target, prefix + "%"))
                # LIKE may ignore case (SQLite) and '%'/'_' in the prefix stay wildcards.
                plan.recheck.append("$regex")
            else:
                plan.residual.append(op)
    return plan


def full_text_queries(text: Any) -> list[Any] | None:
    """One tiled ``FullText`` query per word of a ``$text`` search, whose answers together
    hold at least the runs the search matches (they are checked again here), or ``None``
    when the search cannot be sent.

    The catalog hands the text to its database's own search syntax over an index of each
    run's metadata: SQLite's FTS5 ``MATCH`` or PostgreSQL's ``to_tsquery`` (which have no
    common way to write "any of these words", and tokenize differently from MongoDB).  So
    each word (exclusions aside, checked here) is sent alone, as a bare word, which both
    read as "runs holding this token", a superset of the runs MongoDB's whole-word match
    gives; MongoDB's "any word" is the union of those searches.  A "quoted phrase" (a
    substring to MongoDB), words with other characters than ASCII letters and digits, or
    more than :data:`MAX_TEXT_WORDS` words are not sent.
    """
    from tiled.queries import FullText

    search = text.get("$search") if isinstance(text, Mapping) else None
    if not isinstance(search, str) or '"' in search:
        return None
    words = sorted({w for token in search.lower().split() if not token.startswith("-")
                    for w in _WORD.findall(token)})
    if not 0 < len(words) <= MAX_TEXT_WORDS or not all(_PLAIN_WORD.fullmatch(w)
                                                       for w in words):
        return None
    return [FullText(word) for word in words]


def full_text_prefilter(text: Any) -> Any:
    """The one ``FullText`` query of a ``$text`` search of one word (see
    :func:`full_text_queries`), else ``None``."""
    queries = full_text_queries(text)
    return queries[0] if queries is not None and len(queries) == 1 else None


def tiled_sort(sort: Any) -> list[tuple[str, int]]:
    """broker_v1's ``(field, direction)`` pairs as tiled sorting on the start document."""
    return [(f"start.{name}", int(direction)) for name, direction in sort]
