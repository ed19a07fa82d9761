"""Reads cut into separate queries: pages by ``time``, and ``$in`` lists in chunks.

Order uses only the indexes old databases have: the server sorts by ``time`` (which the
``run_start (time, scan_id)`` and ``event (descriptor, time)`` indexes serve) and the caller's
key breaks ties, so every page holds whole groups of equal ``time``.  Each page is a separate
query continuing from the last ``time`` seen, drained before it is handed out, so user code
between pages cannot let a server cursor time out, and documents inserted meanwhile shift
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..base import Doc
from ._errors import _ErrorTranslator

# Values per $in query (keeps query documents small and server plans simple).
_IN_CHUNK = 1000


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size``, one ``$in`` query each."""
    for i in range(0, len(values), size):
        yield list(values[i:i + size])


def _and(query: Mapping[str, Any], time_condition: Any) -> dict[str, Any]:
    """``query`` AND ``{"time": time_condition}``, keeping a ``$text`` clause at top level."""
    if "time" not in query:
        return {**query, "time": time_condition}
    clauses = list(query.get("$and", []))
    return {**query, "$and": [*clauses, {"time": time_condition}]}


def _time_pages(
    coll: Any,
    query: Mapping[str, Any],
    projection: Mapping[str, Any],
    direction: int,
    first_size: int,
    size: int,
    bound: tuple[str, Any] | None,
    key: Callable[[Doc], Any],
    *,
    errors: _ErrorTranslator,
    hints: dict[tuple[int, int], Any] | None = None,
    hint_key: tuple[int, int] | None = None,
) -> Iterator[list[Doc]]:
    """Documents matching ``query`` in pages sorted by ``key``, each page one query.

    The server sorts by ``time`` only (an index old databases have); a page never splits a
    group of equal ``time``, so sorting each page by ``key`` gives the exact total order.
    A full page holds back its last group, which the next query (``$lte``/``$gte`` that
    time) fetches again; a page that is one group entirely is completed by one more query.

    With ``hints`` and ``hint_key``, the first query is first tried bounded by the time where
    the same first page ended last time (``hints`` remembers it by ``hint_key``).  A full
    answer is then exactly the unbounded one (at least that many documents lie on the near
    side of the bound), so the hint can only save work: servers that read a whole index range
    before applying the limit answer ``db[-1]`` from a handful of keys.  A short answer (runs
    deleted) falls back to no bound.
    """
    inclusive, strict = ("$lte", "$lt") if direction < 0 else ("$gte", "$gt")
    near = "$gte" if direction < 0 else "$lte"
    hinted = None
    if hints is not None and hint_key is not None and bound is None:
        hinted = hints.get(hint_key)
    page = first_size
    first = True
    while True:
        if hinted is not None:
            q = _and(query, {near: hinted})
        else:
            q = dict(query) if bound is None else _and(query, {bound[0]: bound[1]})
        with errors(f"read {coll.name}", query=query):
            rows = list(coll.find(q, projection).sort("time", direction)
                        .limit(page + 1).batch_size(page + 1))
        full = len(rows) > page
        if hinted is not None:
            hinted = None
            if not full:
                continue  # the hint was too narrow: ask again without it
        if first and full and hints is not None and hint_key is not None:
            hints[hint_key] = rows[-1].get("time")
        first = False
        if full:
            last = rows[-1].get("time")
            cut = len(rows) - 1
            while cut > 0 and rows[cut - 1].get("time") == last:
                cut -= 1
            if cut:
                del rows[cut:]
                bound = (inclusive, last)
            else:
                with errors(f"read {coll.name}", query=query):
                    rows = list(coll.find(_and(query, last), projection))
                bound = (strict, last)
        rows.sort(key=key, reverse=direction < 0)
        if rows:
            yield rows
        if not full:
            return
        page = size
