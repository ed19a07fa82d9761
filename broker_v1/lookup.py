"""Resolving ``db[key]`` into start documents: pure key logic over store calls.

Key forms (spec §2.1, decisions §9 and §11): negative int → recency; non-negative int → most
recent run with that ``scan_id`` (numpy integers too); string → exact uid, else a unique uid
prefix (digit-only strings are uid prefixes too); slice → a list, newest first; list, tuple or
set → a flattened list.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

from .errors import AmbiguousUid, RunIndexError, RunNotFound
from .stores._query import prefix_regex
from .stores.base import DocumentStore

__all__ = ["is_multi_key", "lookup_many", "lookup_one"]

_USAGE = (
    "Look runs up with db[-1] (most recent), db[scan_id], db['uid or uid prefix'], "
    "db[-5:] (a list, newest first) or db[[key, key, ...]]."
)


def is_multi_key(key: Any) -> bool:
    """True for keys that return a list of headers (slices and collections)."""
    return isinstance(key, slice | list | tuple | set | frozenset)


def lookup_one(store: DocumentStore, key: Any) -> dict[str, Any]:
    """The start document ``key`` names.

    Raises
    ------
    RunNotFound
        No run matches (a ``KeyError`` and a ``ValueError``).
    AmbiguousUid
        A uid prefix matches several runs; up to 10 are named.
    RunIndexError
        ``-N`` reaches past the oldest run.
    ValueError
        The key is of no supported form.
    """
    if isinstance(key, bool) or not isinstance(key, numbers.Integral | str):
        raise ValueError(f"{key!r} ({type(key).__name__}) is not a valid run key. {_USAGE}")
    if isinstance(key, numbers.Integral):
        key = int(key)
        if key < 0:
            return _by_recency(store, key)
        return _by_scan_id(store, key)
    return _by_uid(store, key)


def _by_recency(store: DocumentStore, key: int) -> dict[str, Any]:
    found = next(iter(store.find_run_starts({}, skip=-key - 1, limit=1)), None)
    if found is None:
        count = store.count_runs({})
        raise RunIndexError(
            f"db[{key}] asks for the {_ordinal(-key)} most recent run, but {store.describe()} "
            f"holds only {count} run{'s' if count != 1 else ''}.",
            key=key,
            count=count,
            store=store.describe(),
        )
    return found


def _by_scan_id(store: DocumentStore, key: int) -> dict[str, Any]:
    found = store.find_runs_by_scan_id(key, limit=1)
    if not found:
        raise RunNotFound(
            f"No run with scan_id {key} in {store.describe()}. Check the number, or look the run "
            "up by uid, or search with db(plan_name=...).",
            key=key,
            store=store.describe(),
        )
    return found[0]


def _by_uid(store: DocumentStore, key: str) -> dict[str, Any]:
    if not key:
        raise ValueError(f"An empty string is not a valid run key. {_USAGE}")
    try:
        return store.get_run_start(key)
    except RunNotFound:
        pass
    matches = store.find_runs_by_uid_prefix(key, limit=11)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(
            f"No run with uid starting {key!r} in {store.describe()}. Check the uid "
            "(uids are case-sensitive), or search with db(scan_id=...).",
            key=key,
            store=store.describe(),
        )
    total = (
        len(matches)
        if len(matches) <= 10
        else store.count_runs({"uid": {"$regex": prefix_regex(key)}})
    )
    shown = [m["uid"] for m in matches[:10]]
    listing = ", ".join(u[:8] + "…" for u in shown)
    raise AmbiguousUid(
        f"Partial uid {key!r} matches {total} runs in {store.describe()}: {listing}"
        + (f" ({len(shown)} of {total} shown)" if total > len(shown) else "")
        + ". Provide more characters.",
        key=key,
        matches=shown,
        total=total,
        store=store.describe(),
    )


def _slice_starts(store: DocumentStore, key: slice) -> list[dict[str, Any]]:
    start, stop, step = key.start, key.stop, key.step
    if start is None:
        raise ValueError(
            "db[:N] is not supported because slicing infinitely into the past is not; give a "
            "negative start, e.g. db[-10:]."
        )
    for part, value in (("start", start), ("stop", stop), ("step", step)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise ValueError(f"Slice {part} must be an integer, got {value!r}. {_USAGE}")
    if start >= 0:
        raise ValueError(
            f"Slice start must be negative (counting back from the most recent run), got "
            f"{start}; e.g. db[-10:] for the 10 most recent runs."
        )
    if stop is not None and stop > 0:
        raise ValueError(
            f"Slice stop must be negative, zero or omitted, got {stop}; e.g. db[-10:-2] "
            "skips the 2 most recent runs."
        )
    if step is not None and step <= 0:
        raise ValueError(f"Slice step must be positive, got {step}.")
    newest_first = list(store.find_run_starts({}, limit=-int(start)))
    oldest_first = newest_first[::-1]
    chosen = oldest_first[int(start) : (None if not stop else int(stop)) : step]
    return chosen[::-1]


def _flatten(key: Any) -> Iterator[Any]:
    for item in key:
        if isinstance(item, list | tuple | set | frozenset):
            yield from _flatten(item)
        else:
            yield item


def lookup_many(store: DocumentStore, key: Any) -> list[dict[str, Any]]:
    """The start documents for a slice or a collection of keys, as one flat list.

    Every element of a collection may be any key ``db[...]`` accepts, slices and nested
    collections included; a slice contributes its runs newest first, in its place.
    """
    if isinstance(key, slice):
        return _slice_starts(store, key)
    found: list[dict[str, Any]] = []
    for item in _flatten(key):
        if isinstance(item, slice):
            found.extend(_slice_starts(store, item))
        else:
            found.append(lookup_one(store, item))
    return found


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
