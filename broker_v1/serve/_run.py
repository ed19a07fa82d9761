"""One run as a ``BlueskyRun`` (spec 3.0): metadata ``{start, stop}``, one child per stream.

The streams are the run's descriptors grouped by ``name`` (a stream's later descriptors are
configuration updates of its first), read from the store when the run's contents are first
asked for, not when the run is listed in a search page.
"""

from __future__ import annotations

from typing import Any

import anyio
from tiled.structures.core import Spec

from ..stores.base import DocumentStore
from ._nodes import Node, store_errors
from ._stream import StreamAdapter

__all__ = ["RunAdapter"]


class RunAdapter(Node):
    """A run of ``store``: its start and stop documents and its streams, by name.

    Parameters
    ----------
    store
        The store holding the run.
    start, stop
        The run's start document and its stop document (``None`` while the run is open;
        clients see ``stop: None``).
    filler
        broker_v1's data filler for external fields (``None``: they are not served).
    """

    specs = [Spec("BlueskyRun", version="3.0")]

    def __init__(self, store: DocumentStore, start: dict[str, Any],
                 stop: dict[str, Any] | None, *, filler: Any = None) -> None:
        super().__init__(metadata={"start": start, "stop": stop})
        self.store = store
        self.filler = filler
        self.uid: str = start["uid"]
        self._streams: dict[str, list[dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return f"<RunAdapter {self.uid}>"

    def streams(self) -> dict[str, list[dict[str, Any]]]:
        """``{stream name: its descriptors in time order}``, streams sorted by name."""
        if self._streams is None:
            with store_errors():
                descriptors = self.store.get_descriptors(self.uid)
            grouped: dict[str, list[dict[str, Any]]] = {}
            for descriptor in descriptors:
                grouped.setdefault(descriptor.get("name") or "primary", []).append(descriptor)
            self._streams = dict(sorted(grouped.items()))
        return self._streams

    def _entries(self, offset: int, limit: int | None, direction: int
                 ) -> list[tuple[str, Any]]:
        names = list(self.streams())
        if direction < 0:
            names.reverse()
        names = names[offset:] if limit is None else names[offset:offset + limit]
        return [(name, self[name]) for name in names]

    def __len__(self) -> int:
        return len(self.streams())

    async def approx_len(self) -> int | None:
        """The number of streams as the stop document counts them, without reading the run.

        tiled's server asks every run of a search page for its length; a finished run's
        ``num_events`` names its streams, so a page of runs costs no descriptor reads.
        Open runs and stops without ``num_events`` give the exact count (descriptors read).
        """
        stop = self._metadata.get("stop") or {}
        counts = stop.get("num_events")
        if self._streams is None and isinstance(counts, dict) and counts:
            return len(counts)
        if self._streams is None:  # a store read: off the event loop
            await anyio.to_thread.run_sync(self.streams)
        return len(self.streams())

    def __getitem__(self, key: str) -> StreamAdapter:
        descriptors = self.streams().get(key) if isinstance(key, str) else None
        if descriptors is None:
            raise KeyError(key)
        return StreamAdapter(self.store, self.uid, key, descriptors,
                             finished=self._metadata.get("stop") is not None,
                             filler=self.filler)
