"""Searches: a MongoDB-style query turned into SQL conditions, and keyset paging.

Only conditions certainly equivalent to the query are pushed into SQL (a superset
filter); the :class:`~broker_v1.stores._query.QueryMatcher` decides on every candidate.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .._columns import _sort_key
from .._query import QueryMatcher, split_text
from .._util import valid_unicode as _sqlable
from ..base import DEFAULT_SORT, Doc, Sort
from ._index import _WORD, INDEX_WRITE_ERRORS, _Index, _is_number, _sql_text
from ._text_pending import PENDING_ROWIDS_SQL

_PHRASE = re.compile(r'"([^"]*)"')
_ASCII_WORD = re.compile(r"[a-z0-9_]+")
_EXACT_INT = 2**53
#: Rows asked for by the pages of a time-ordered search, then the last size repeated.  The
#: first page asks for one row: SQLite stops at the first match, where a bigger first page
#: scanned the whole index for a value fewer runs hold than it asked for (160 ms at 100,000
#: runs for ``next(iter(db(plan_name=...)))``).
_PAGE_SIZES = (1, 20, 100, 500, 2000)


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


class _Search:
    """Run searches of one store, answered from its index.

    Parameters
    ----------
    index
        The index searched (its ``fts`` and ``json1`` say which SQL may be used).
    label
        The store's description, for messages.
    refresh
        Brings the index up to date with the files before a search reads it.
    """

    def __init__(self, index: _Index, label: str, refresh: Callable[[], None]) -> None:
        self._index = index
        self._label = label
        self._refresh = refresh

    def describe(self) -> str:
        """The store's description, for messages."""
        return self._label

    def find(
        self, query: dict[str, Any], *, sort: Sort, skip: int, limit: int | None
    ) -> Iterator[Doc]:
        matcher = QueryMatcher(query, store=self.describe())
        where, params = self.pushdown(query)
        self._refresh()
        if split_text(query)[1] is not None:
            self._complete_pending_text()
        sort = tuple(tuple(s) for s in sort)  # type: ignore[misc]
        if sort in (tuple(DEFAULT_SORT), (("time", 1), ("uid", 1))):
            descending = sort[0][1] < 0
            return self._paged(where, params, matcher, skip, limit, descending)
        docs = [d for d in self._all_candidates(where, params) if matcher(d)]
        for field, direction in reversed(sort):
            docs.sort(key=_field_key(field), reverse=direction < 0)
        end = None if limit is None else skip + limit
        return iter(docs[skip:end])

    def _complete_pending_text(self) -> None:
        # Keeps the pending branch of a text search short; searches find pending runs
        # anyway, so a failure to write (a locked or read-only index) is no error.
        with contextlib.suppress(*INDEX_WRITE_ERRORS):
            self._index.write_pending_text()

    def _all_candidates(self, where: list[str], params: list[Any]) -> Iterator[Doc]:
        sql = "SELECT start FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        for (text,) in self._index.read(sql, params):
            yield json.loads(text)

    def _paged(
        self,
        where: list[str],
        params: list[Any],
        matcher: QueryMatcher,
        skip: int,
        limit: int | None,
        descending: bool,
    ) -> Iterator[Doc]:
        # Keyset pagination: short statements, no cursor held open between yields, and the
        # first page one row so the first result arrives as soon as SQLite finds it.
        order = "DESC" if descending else "ASC"
        cmp = "<" if descending else ">"
        base = "SELECT time, uid, start FROM runs"
        last: tuple[float, str] | None = None
        produced = 0
        for page in itertools.count():
            batch = _PAGE_SIZES[min(page, len(_PAGE_SIZES) - 1)]
            conds = list(where)
            args = list(params)
            if last is not None:
                conds.append(f"(time, uid) {cmp} (?, ?)")
                args.extend(last)
            sql = (
                base
                + (" WHERE " + " AND ".join(conds) if conds else "")
                + f" ORDER BY time {order}, uid {order} LIMIT ?"
            )
            rows = self._index.read(sql, [*args, batch])
            for _, _, text in rows:
                doc = json.loads(text)
                if not matcher(doc):
                    continue
                if skip:
                    skip -= 1
                    continue
                yield doc
                produced += 1
                if limit is not None and produced >= limit:
                    return
            if len(rows) < batch:
                return
            last = (rows[-1][0], rows[-1][1])

    def pushdown(self, query: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        """SQL conditions that every run matching ``query`` satisfies (a superset filter;
        the matcher decides).  Only what is certainly equivalent is pushed."""
        rest, text = split_text(query)
        conds: list[str] = []
        params: list[Any] = []
        self._push_fields(rest, conds, params)
        if text is not None:
            words = _fts_words(text) if self._index.fts else None
            if words:
                # Runs whose full-text row is still pending are candidates too.
                conds.append(
                    "(id IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH ?) "
                    f"OR id IN ({PENDING_ROWIDS_SQL}))"
                )
                params.append(" OR ".join('"' + w.replace('"', '""') + '"' for w in words))
            else:
                conds.append("bv1_text(?, text)")
                params.append(_sql_text(text))
        return conds, params

    def _push_fields(self, query: Mapping[str, Any], conds: list[str], params: list[Any]) -> None:
        for key, cond in query.items():
            if key == "$and" and isinstance(cond, list | tuple):
                for sub in cond:
                    if isinstance(sub, Mapping):
                        self._push_fields(sub, conds, params)
                continue
            if key.startswith("$") or not isinstance(key, str):
                continue
            ops = _operators(cond)
            if key == "uid":
                self._push_uid(ops, conds, params)
            elif key == "time":
                self._push_time(ops, conds, params)
            elif key == "scan_id":
                values = _exact_values(ops, allow_str=False)
                if values is not None:
                    marks = ", ".join("?" * len(values))
                    conds.append(f"(scan_id IN ({marks}) OR scan_id_odd = 1)")
                    params.extend(values)
            elif self._index.json1 and "." not in key and '"' not in key and "\\" not in key:
                values = _exact_values(ops, allow_str=True)
                if values is not None:
                    path = f'$."{key}"'
                    marks = ", ".join("?" * len(values))
                    conds.append(
                        f"(CASE WHEN json_ok THEN (json_extract(start, ?) IN ({marks}) OR "
                        "json_type(start, ?) IN ('array', 'object')) ELSE 1 END)"
                    )
                    params.extend([path, *values, path])

    def _push_uid(self, ops: dict[str, Any] | None, conds: list[str], params: list[Any]) -> None:
        if ops is None:
            return
        values = _exact_values(ops, allow_str=True, only_str=True)
        if values is not None:
            conds.append(f"uid IN ({', '.join('?' * len(values))})")
            params.extend(values)
            return
        if set(ops) == {"$regex"}:
            prefix = _regex_prefix(ops["$regex"])
            if prefix and _sqlable(prefix):
                lo, hi = _prefix_bounds(prefix)
                conds.append("uid >= ?")
                params.append(lo)
                if hi is not None:
                    conds.append("uid < ?")
                    params.append(hi)

    def _push_time(self, ops: dict[str, Any] | None, conds: list[str], params: list[Any]) -> None:
        if ops is None:
            return
        sql_ops = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
        for op, value in ops.items():
            if op in sql_ops and _is_number(value) and value == value:
                if type(value) is int and abs(value) >= _EXACT_INT:
                    continue
                conds.append(f"time {sql_ops[op]} ?")
                params.append(value)
