"""Appending documents to run files: per-file writer state, fsync, deferred syncs.

Every document is one ``os.write`` of a whole line (a partial one is cut off again), so a
killed process loses nothing; fsync (at ``stop``, on a timer, or handed to a few threads
inside ``deferred_sync()``) guards against power loss.
"""

from __future__ import annotations

from ..base import Doc
from ._cache import _ColumnAcc


class _RunState:
    """What this process knows about a run file it writes (or checked duplicates against)."""

    __slots__ = (
        "name",
        "run_uid",
        "fd",
        "size",
        "lines",
        "dirty",
        "new_entry",
        "uids_loaded",
        "event_uids",
        "datum_ids",
        "docs",
        "pending_datums",
        "acc",
        "doc_lines",
        "acc_bytes",
    )

    def __init__(self, name: str, run_uid: str | None) -> None:
        self.name = name
        self.run_uid = run_uid
        self.fd: int | None = None
        self.size = 0
        self.lines = 0
        self.dirty = False
        self.new_entry = False
        self.uids_loaded = False
        self.event_uids: set[str] = set()
        self.datum_ids: set[str] = set()
        self.docs: dict[tuple[str, str], Doc] = {}  # (kind, uid) -> descriptor / resource
        self.pending_datums: list[str] = []
        # What a run this process created holds, kept for the columnar cache at stop: events
        # column-wise per descriptor, every other document as its JSON line.
        self.acc: dict[str, _ColumnAcc] | None = None
        self.doc_lines: list[bytes] = []
        self.acc_bytes = 0


def _accumulate(state: _RunState, doc: Doc, *, single: bool) -> None:
    """Keep a written event (or page) column-wise for the run's columnar cache; a document
    whose keys do not match gives the cache up (the run gets one on first read instead)."""
    if state.acc is None:
        return
    acc = state.acc.get(doc["descriptor"])
    if acc is None:
        acc = state.acc[doc["descriptor"]] = _ColumnAcc(doc)
    if not (acc.add_event(doc) if single else acc.add(doc)):
        state.acc, state.doc_lines = None, []


