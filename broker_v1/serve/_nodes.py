"""What every served container shares: tiled's container protocol, slicing, error translation.

tiled's server reads a container adapter through a small protocol: ``structure_family``,
``specs``, ``metadata()``, ``structure()``, ``len()``, ``node[key]`` (``KeyError`` -> 404),
``keys()``/``items()`` sliced by offset, and ``sort(sorting)`` when a client sends ``sort=``.
:class:`Node` gives those over two methods a subclass writes: ``_entries(offset, limit,
direction)`` and ``__getitem__``.

tiled's async routes call a node's sync methods in the event loop (one slow store read would
hold up every other request of the worker), except ``len()`` and ``read()``, which it runs in a
worker thread.  :class:`Node` therefore also offers tiled's async forms, which run the store
reads in a worker thread: ``lookup_adapter`` (path segments, e.g. ``c[uid]``), and the cursor
paging of a listing (``items_page``, ``keys_page``, ``items_range``, ``keys_range``,
``cursor_for_offset``; here the cursor is the offset).  A node an answer will describe is
*warmed* there too (a table builds its frame, which tiled's ``structure()`` would otherwise
build in the loop).

broker_v1's errors never reach tiled's catch-all handler (a bare 500): :func:`store_errors`
turns them into HTTP answers with the message (400 for a query the store refuses, 503 when
the store cannot be reached, 500 naming the store's problem otherwise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException
from tiled.server.core import NoEntry
from tiled.structures.core import Spec, StructureFamily

from ..errors import BrokerError, InvalidQuery, StoreUnavailable, UnsupportedQuery

__all__ = ["Node", "Slice", "in_worker", "store_errors", "warm"]

#: ``(key, adapter)`` pairs of one page; the adapter may be ``None`` when only keys are wanted.
Fetch = Callable[[int, "int | None", int], list[tuple[str, Any]]]


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Translate broker_v1's errors raised inside into ``HTTPException`` with their message."""
    try:
        yield
    except (InvalidQuery, UnsupportedQuery) as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    except StoreUnavailable as err:
        raise HTTPException(status_code=503, detail=str(err)) from err
    except BrokerError as err:
        raise HTTPException(status_code=500, detail=f"{type(err).__name__}: {err}") from err


_Result = TypeVar("_Result")


async def in_worker(function: Callable[..., _Result], *args: Any) -> _Result:
    """``function(*args)`` in a worker thread, so a store read does not hold up the event
    loop (and every other request of the server's worker)."""
    result: _Result = await anyio.to_thread.run_sync(function, *args)
    return result


def warm(node: Any) -> None:
    """Let ``node`` do now (in a worker thread) the reads its description will need."""
    prepare = getattr(node, "warm", None)
    if prepare is not None:
        prepare()


class Slice:
    """``keys()``/``items()``/``values()`` of a node: iterable and sliceable by offset.

    Parameters
    ----------
    fetch
        ``fetch(offset, limit, direction)`` -> ``[(key, adapter)]``.
    pick
        What each pair becomes (the key, the pair or the adapter).
    """

    def __init__(self, fetch: Fetch, pick: Callable[[tuple[str, Any]], Any]) -> None:
        self._fetch = fetch
        self._pick = pick

    def __iter__(self) -> Iterator[Any]:
        return iter([self._pick(entry) for entry in self._fetch(0, None, 1)])

    def __getitem__(self, index: slice | int) -> Any:
        if isinstance(index, int):
            # Negative indexes count from the end: read the reversed order from its start.
            direction = -1 if index < 0 else 1
            offset = -index - 1 if index < 0 else index
            found = self._fetch(offset, 1, direction)
            if not found:
                raise IndexError(index)
            return self._pick(found[0])
        if index.step not in (None, 1):
            raise ValueError("only slices with step 1 are supported")
        start, stop = index.start or 0, index.stop
        if start < 0 or (stop is not None and stop < 0):
            raise ValueError("only slices with non-negative bounds are supported")
        limit = None if stop is None else max(0, stop - start)
        if limit == 0:
            return []
        return [self._pick(entry) for entry in self._fetch(start, limit, 1)]


#: A node of whichever kind: :meth:`Node._copy` returns the kind it copies.
_SomeNode = TypeVar("_SomeNode", bound="Node")


class Node:
    """Base of the served containers (catalog, run, stream).

    Subclasses set ``specs`` and write ``_entries`` and ``__getitem__``; the order of entries
    is the node's own (``sort`` accepts only tiled's default key, reversed or not), unless a
    subclass overrides :meth:`sort`.
    """

    structure_family = StructureFamily.container
    specs: list[Spec] = []
    #: Clients must ask again: runs appear and end while the server runs.
    must_revalidate = True

    def __init__(self, *, metadata: dict[str, Any] | None = None, direction: int = 1) -> None:
        self._metadata = metadata or {}
        self._direction = direction

    # -- what subclasses write
    def _entries(self, offset: int, limit: int | None, direction: int
                 ) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        raise NotImplementedError

    # -- tiled's protocol
    def metadata(self) -> dict[str, Any]:
        """The node's metadata (a run's ``{start, stop}``, a stream's descriptor)."""
        return self._metadata

    def structure(self) -> None:
        """Containers describe their contents by listing, not by a structure."""
        return None

    @property
    def sorting(self) -> list[tuple[str, int]]:
        """The order the client sees (tiled's default key ``""`` for the node's own order)."""
        return []

    def _page(self, offset: int, limit: int | None, direction: int) -> list[tuple[str, Any]]:
        with store_errors():
            return self._entries(offset, limit, direction * self._direction)

    def keys(self) -> Slice:
        """The keys, sliceable."""
        return Slice(self._page, lambda entry: entry[0])

    def items(self) -> Slice:
        """``(key, adapter)`` pairs, sliceable."""
        return Slice(self._page, lambda entry: entry)

    def values(self) -> Slice:
        """The adapters, sliceable."""
        return Slice(self._page, lambda entry: entry[1])

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # -- tiled's async forms: the same answers, store reads in a worker thread
    async def lookup_adapter(self, segments: list[str]) -> Any:
        """The node at ``segments`` below this one (tiled's ``NoEntry``, a 404, if none)."""
        return await in_worker(self._lookup, list(segments))

    def _lookup(self, segments: list[str]) -> Any:
        node: Any = self
        for segment in segments:
            try:
                node = node[segment]
            except (KeyError, TypeError):
                raise NoEntry(segments) from None
        warm(node)
        return node

    async def cursor_for_offset(self, offset: int) -> int:
        """The cursor of the page at ``offset`` (here: the offset)."""
        return offset

    async def items_page(self, cursor: int | None, limit: int
                         ) -> tuple[list[tuple[str, Any]], int | None]:
        """The entries of the page at ``cursor``, and the next page's cursor (or ``None``)."""
        return await in_worker(self._cursor_page, cursor or 0, limit, True)

    async def keys_page(self, cursor: int | None, limit: int
                        ) -> tuple[list[str], int | None]:
        """The keys of the page at ``cursor``, and the next page's cursor (or ``None``)."""
        return await in_worker(self._cursor_page, cursor or 0, limit, False)

    async def items_range(self, offset: int = 0, limit: int | None = None
                          ) -> list[tuple[str, Any]]:
        """The entries at ``offset`` .. ``offset + limit`` (``None``: to the end)."""
        return (await in_worker(self._cursor_page, offset, limit, True))[0]

    async def keys_range(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """The keys at ``offset`` .. ``offset + limit`` (``None``: to the end)."""
        return (await in_worker(self._cursor_page, offset, limit, False))[0]

    def _cursor_page(self, offset: int, limit: int | None, items: bool
                     ) -> tuple[list[Any], int | None]:
        if limit is not None and limit <= 0:
            return [], None
        # One entry more than asked says whether a next page exists.
        entries = self._page(offset, None if limit is None else limit + 1, 1)
        following = None
        if limit is not None and len(entries) > limit:
            following, entries = offset + limit, entries[:limit]
        if not items:
            return [key for key, _ in entries], following
        for _, node in entries:
            warm(node)
        return entries, following

    def __len__(self) -> int:
        return len(self._page(0, None, 1))

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def get(self, key: str, default: Any = None) -> Any:
        """``node[key]``, or ``default`` when there is no such entry."""
        try:
            return self[key]
        except KeyError:
            return default

    def read(self, fields: list[str] | None = None) -> Node:
        """What tiled's exporters (JSON, HDF5 of a whole node) walk: the node itself."""
        if fields:
            raise KeyError(fields[0])
        return self

    def sort(self, sorting: list[tuple[str, int]]) -> Node:
        """The node's own order, or its reverse (``sort=-``); other keys are a 400."""
        direction = 1
        for key, way in sorting:
            if key not in ("", "_"):
                raise HTTPException(
                    status_code=400,
                    detail=f"Sorting by {key!r} is not supported on this node; its entries "
                           "come in their own order (sort by the default key '' only).")
            direction = -1 if way < 0 else 1
        other = self._copy()
        other._direction = direction
        return other

    def _copy(self: _SomeNode) -> _SomeNode:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        return other

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
