"""Merging the answers of several searches of one catalog, in the order the server sorts.

tiled ANDs the queries of a search, so a condition that is an OR of queries the server answers
(a ``$text`` search of several words: any word matches) is sent as one search per query; each
answer comes sorted by the server, and :func:`merge_runs` merges them into one sorted stream
without duplicates, reading each only as far as needed.

The order is the server's for values of one type, which is what sort fields hold (``time``,
``uid``, ``scan_id``): numbers by value, strings by code point (SQLite's and PostgreSQL's
binary order of UTF-8), missing values first when ascending.  Values of mixed types in one sort
field are ordered missing < booleans and numbers < strings < others here; the server may order
them otherwise, which changes only where such runs appear, never which runs are found.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["merge_runs", "sort_key"]


class _Descending:
    """A value compared in reverse, for a ``-1`` sort direction."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


def _field(doc: Mapping[str, Any], name: str) -> Any:
    value: Any = doc
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _ranked(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def sort_key(sort: Sequence[tuple[str, int]]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A key ordering start documents as the server sorts them by ``sort`` (broker_v1's
    ``(field, direction)`` pairs)."""

    def key(start: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for name, direction in sort:
            ranked = _ranked(_field(start, name))
            parts.append(ranked if direction > 0 else _Descending(ranked))
        return tuple(parts)

    return key


def merge_runs(answers: Iterable[Iterator[tuple[str, Any, Mapping[str, Any]]]],
               sort: Sequence[tuple[str, int]]) -> Iterator[tuple[str, Any, Mapping[str, Any]]]:
    """``(uid, run, start)`` of several sorted answers, merged in ``sort`` order, each run
    once."""
    key = sort_key(sort)
    seen: set[str] = set()
    for uid, run, start in heapq.merge(*answers, key=lambda item: key(item[2])):
        if uid not in seen:
            seen.add(uid)
            yield uid, run, start
