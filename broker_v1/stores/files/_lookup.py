"""Where a document is: what this process wrote, the index, and a deep refresh on a miss.

Descriptors, resources and datums are found through the writer's record of where this
process put them, then the index's ``members`` table, then (after indexing what the runs
still open elsewhere gained: a writer records a run's descriptors and datums with its stop,
and a reader's lookups read past them) the index again, and for the thorough lookups of the
read path, the index after a full directory scan; their documents are read from the
parsed-run cache.  The insert path's duplicate checks look documents up here too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from .._util import valid_unicode as _sqlable
from ..base import Doc
from ._format import _SUFFIXES, _uid_problem
from ._index import _Index
from ._runs import _RunCache
from ._writer import _Writer


class _Lookup:
    """Finds documents of one store by uid.

    Parameters
    ----------
    path
        The store directory.
    index
        The index (members and runs).
    runs
        The parsed-run cache the documents are read from.
    writer
        The writer: where this process wrote documents, and the files it has open.
    refresh, refresh_file
        The scanner's ``refresh(deep=...)`` and ``refresh_file(name)``.
    """

    def __init__(
        self,
        path: Path,
        index: _Index,
        runs: _RunCache,
        writer: _Writer,
        refresh: Callable[..., None],
        refresh_file: Callable[[str], None],
    ) -> None:
        self.path = path
        self._dirname = os.fspath(path)
        self._index = index
        self._runs = runs
        self._writer = writer
        self._refresh = refresh
        self._refresh_file = refresh_file

    def locate(self, kind: str, uid: str, known: dict[str, str]) -> str | None:
        """File holding a descriptor/resource/datum: this process's writes, the index, and
        (on a miss) the index after a full refresh."""
        name = known.get(uid)
        if name is not None:
            return name
        name = self._writer.member_file(kind, uid)  # descriptors: open runs too
        if name is None and kind != "descriptor" and self._writer.index_open_runs():
            name = self._index.member_file(kind, uid)
        if name is None:
            self._refresh(deep=True)
            name = self._index.member_file(kind, uid)
        return name

    def find_resource(self, uid: str, *, thorough: bool) -> Doc | None:
        for state in self._writer.states.values():
            doc = state.docs.get(("resource", uid))
            if doc is not None:
                return doc
        if thorough:
            name = self.locate("resource", uid, self._writer.res_file)
        else:
            name = self._writer.res_file.get(uid) or self._index.member_file("resource", uid)
        if name is None:
            return None
        rd = self._runs.load(name)
        return None if rd is None else rd.resources.get(uid)

    def find_datum(self, datum_id: str, *, thorough: bool) -> Doc | None:
        name = self._writer.datum_owner.get(datum_id) or self._index.member_file("datum", datum_id)
        if name is None and "/" in datum_id:
            # datum ids are commonly "<resource uid>/<n>": look in that resource's file.
            name = self._writer.res_file.get(datum_id.rsplit("/", 1)[0]) or self._index.member_file(
                "resource", datum_id.rsplit("/", 1)[0]
            )
        if name is not None:
            rd = self._runs.load(name)
            doc = None if rd is None else rd.datums.get(datum_id)
            if doc is not None or not thorough:
                return doc
        if not thorough:
            return None
        # The runs still open elsewhere first: their datums reach the index with their stop
        # (a reader's lookups read past them), and a full scan stats every file.
        name = None
        if self._writer.index_open_runs():
            name = self._index.member_file("datum", datum_id)
        if name is None:
            self._refresh(deep=True)
            name = self._index.member_file("datum", datum_id)
        if name is None:
            return None
        rd = self._runs.load(name)
        return None if rd is None else rd.datums.get(datum_id)

    def event_file(self, uid: str) -> str | None:
        """The run file where the insert path looks for an event of this uid (one this writer
        registered), or None: the event is then new."""
        return self._writer.event_owner.get(uid)

    def existing(self, name: str, key: str) -> Doc | None:
        """The stored document of kind ``name`` with uid ``key``, or None (the insert
        path's duplicate and link checks: see ``DocumentStore._get_existing``)."""
        if not isinstance(key, str):
            return None
        if name == "start":
            start = self._writer.open_start(key)
            if start is not None:
                return start
            row = self._index.run_row(key, deferred_matter=False)
            if row is None and _uid_problem(key) is None:
                # Written by another process and not indexed yet?
                for suffix in _SUFFIXES:
                    # os.path: a pathlib join and is_file cost about 20 µs per start here.
                    if os.path.isfile(os.path.join(self._dirname, key + suffix)):
                        self._refresh_file(key + suffix)
                        row = self._index.run_row(key, deferred_matter=False)
                        break
            return None if row is None else json.loads(row[1])
        if name == "descriptor":
            for state in self._writer.states.values():
                doc = state.docs.get(("descriptor", key))
                if doc is not None:
                    return doc
            file = self._writer.member_file("descriptor", key)
            if file is None:
                return None
            rd = self._runs.load(file)
            return None if rd is None else rd.descriptors.get(key)
        if name == "resource":
            return self.find_resource(key, thorough=False)
        if name == "stop":
            if not _sqlable(key):
                return None
            rows = self._index.read("SELECT stop FROM runs WHERE stop_uid = ?", (key,))
            return json.loads(rows[0][0]) if rows else None
        if name == "datum":
            file = self._writer.datum_owner.get(key) or self._index.member_file("datum", key)
            if file is None:
                return None
            rd = self._runs.load(file)
            return None if rd is None else rd.datums.get(key)
        if name == "event":
            file = self.event_file(key)
            if file is None:
                return None
            rd = self._runs.load(file)
            return None if rd is None else rd.find_event(key, self.path / file)
        raise ValueError(name)
