"""The source side of a copy: start documents paged by key, announced ahead to the destination."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..stores.base import Doc, DocumentStore

#: Runs fetched from the source per query.  Small enough that a page is read in well under a
#: second on any store, large enough that the per-query cost disappears.
DEFAULT_PAGE = 500


def iter_run_starts(
    store: DocumentStore, query: Mapping[str, Any] | None = None, *, page_size: int = DEFAULT_PAGE
) -> Iterator[Doc]:
    """Start documents matching ``query``, newest first, fetched page by page by key.

    Each page is a separate ``find_run_starts(..., limit=page_size)`` that continues strictly
    after the last ``(time, uid)`` seen, so no cursor stays open between pages, runs sharing a
    start time are neither skipped nor repeated, and a run inserted meanwhile cannot shift the
    pages (as ``skip`` would).

    Parameters
    ----------
    store
        The store to read.
    query
        Mongo-dialect filter on start documents (``None``: every run).
    page_size
        Runs fetched per query.

    Yields
    ------
    dict
        Start documents, newest first by ``(time, uid)``.
    """
    base = dict(query or {})
    last: tuple[Any, str] | None = None
    while True:
        if last is None:
            q = base
        else:
            t, uid = last
            # time <= t is what a time index serves; the $or breaks ties at time == t by uid.
            after = [{"time": {"$lte": t}},
                     {"$or": [{"time": {"$lt": t}}, {"uid": {"$lt": uid}}]}]
            q = {"$and": ([base] if base else []) + after}
        page = list(store.find_run_starts(q, limit=page_size))
        yield from page
        if len(page) < page_size:
            return
        last = (page[-1]["time"], page[-1]["uid"])


#: Runs announced to the destination (``prepare_copies``) at a time; two such chunks ahead.
ANNOUNCE_CHUNK = 64


def _announced(starts: Iterator[Doc], announce: Callable[[list[str]], Any]) -> Iterator[Doc]:
    """``starts``, each chunk announced two chunks before its turn, so a destination can
    work ahead (the files store checks whole-run copies in a second process)."""
    ahead: deque[Doc] = deque()
    exhausted = False

    def read_chunk() -> None:
        nonlocal exhausted
        chunk = list(itertools.islice(starts, ANNOUNCE_CHUNK))
        if len(chunk) < ANNOUNCE_CHUNK:
            exhausted = True
        if chunk:
            ahead.extend(chunk)
            announce([start["uid"] for start in chunk])

    read_chunk()
    if not exhausted:
        read_chunk()
    while ahead:
        # A chunk's first run is taken: the chunk before it is done, announce the next.
        if not exhausted and len(ahead) == ANNOUNCE_CHUNK:
            read_chunk()
        yield ahead.popleft()
