"""What a writer knows about each run file it writes: its descriptor, offsets, the uids in it,
the rows the index has yet to get, and the documents kept for the run's columnar cache."""

from __future__ import annotations

from .._util import loads_json
from ..base import Doc
from ._background import Pending
from ._cache import _ColumnAcc
from ._format import _OPENINGS

_EVENT_LINE = _OPENINGS["event"]
_PAGE_LINE = _OPENINGS["event_page"]


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
        "pending_descriptors",
        "started_here",
        "acc",
        "doc_lines",
        "acc_bytes",
        "columns_from",
        "dir_sync",
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
        # Descriptors of a run this process started, recorded in the index with its stop
        # (or by the fsync timer); until then readers find them in the file (see member_file).
        self.pending_descriptors: list[str] = []
        # This process wrote the run's start and not yet its stop: the index holds the run
        # as open ("volatile"), so other processes' refreshes read the file's new lines.
        self.started_here = False
        # What a run this process created holds, kept for the columnar cache at stop: events
        # column-wise per descriptor, every other document as its JSON line.  While the run
        # is shorter than ``columns_from`` bytes (the store's cache_min_bytes: the writer
        # writes no cache for a shorter run) every line is kept as it is, events too, and
        # the columns are made from them only if it grows past: most runs stay short, and
        # their events are then neither kept as documents nor spread.
        self.acc: dict[str, _ColumnAcc] | None = None
        self.doc_lines: list[bytes] = []
        self.acc_bytes = 0
        self.columns_from = 0
        # The background fsync of the directory entry of a file this process created.
        self.dir_sync: Pending | None = None


def _accumulate(state: _RunState, doc: Doc, *, single: bool) -> None:
    """Keep a written event (or page) column-wise for the run's columnar cache; a document
    whose keys do not match gives the cache up (the run gets one on first read instead).
    Call it after the document's line was appended (see ``_RunState.columns_from``)."""
    if state.acc is None:
        return
    if state.columns_from:
        if state.acc_bytes >= state.columns_from:
            columns_from_kept_lines(state)  # this document's line is among them
        return
    acc = state.acc.get(doc["descriptor"])
    if acc is None:
        acc = state.acc[doc["descriptor"]] = _ColumnAcc(doc)
    if not (acc.add_event(doc) if single else acc.add(doc)):
        state.acc, state.doc_lines = None, []


def columns_from_kept_lines(state: _RunState) -> None:
    """Make the columns of the events whose lines a run kept while it was short (see
    ``_RunState.columns_from``); from now on its events are kept column-wise as written."""
    kept, state.doc_lines = state.doc_lines, []
    state.columns_from = 0
    for line in kept:
        if line.startswith(_EVENT_LINE) or line.startswith(_PAGE_LINE):
            name, doc = loads_json(line)
            _accumulate(state, doc, single=name == "event")
            if state.acc is None:
                return  # given up
        else:
            state.doc_lines.append(line)


def _pending_members(state: _RunState) -> list[tuple[str, str, str]]:
    """The index rows of the descriptors and datums a file got that are not recorded yet."""
    name = state.name
    rows = [("descriptor", uid, name) for uid in state.pending_descriptors]
    rows.extend(("datum", d, name) for d in state.pending_datums)
    return rows
