"""External data a source store reads itself, written as files beside a copy.

Some stores keep no resource or datum documents for their external fields, only datum ids
they resolve themselves (:meth:`~broker_v1.stores.base.DocumentStore.read_external`): the
tiled store's SQL layout hands out placeholders ``sr-<descriptor uid>-<field>/<row>`` and
reads the frames through the server's array nodes.  A copy of such a run holds those ids and
nothing to resolve them with.  With ``copy_files`` the copier asks the source for the data
and writes it in a standard form any v1 reader can fill, keeping the events unchanged:

* one ``.npy`` file per datum, ``<new_root>/<run uid>/<resource>_<row>.npy``;
* a resource of spec ``NPY_SEQ`` (ophyd.sim's ``NumpySeqHandler`` reads it; the datum's
  ``index`` names the file), whose uid is the part of the id before ``/``;
* one datum per id, the id itself (``<resource uid>/<row>``, databroker's own convention),
  with ``datum_kwargs`` ``{"index": row}``.

Ids that are not ``<name>/<row>`` or that the source does not read stay as they are.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..stores.base import Doc, DocumentStore
from ._files import _write_file
from ._report import FileCopy

#: The spec of the resources written (ophyd.sim.NumpySeqHandler's).
SPEC = "NPY_SEQ"
#: Datums asked of the source at a time (a bound on the frames held in memory).
CHUNK = 32


class FrameWriteFailed(Exception):
    """A file could not be written (``resource``, ``path``, ``message``)."""

    def __init__(self, resource: Doc, path: str, message: str) -> None:
        super().__init__(message)
        self.resource, self.path, self.message = resource, path, message


def split_id(datum_id: str) -> tuple[str, int] | None:
    """``(resource uid, row)`` of an id of the form ``<resource uid>/<row>``, else None."""
    name, sep, row = datum_id.rpartition("/")
    if not sep or not name or not row.isdigit():
        return None
    return name, int(row)


class FrameWriter:
    """Writes the data behind one run's unresolved datum ids into ``NPY_SEQ`` files.

    Parameters
    ----------
    src
        The store the run is copied from (its :meth:`read_external` gives the data).
    new_root
        The directory the files go to (the resources' ``root``).
    insert
        Writes a document into the destination (the copier's checked insert).
    record
        Called with a :class:`FileCopy` for every file written or found already present.
    """

    def __init__(self, src: DocumentStore, new_root: str,
                 insert: Callable[[str, Doc], None], record: Callable[[FileCopy], None]
                 ) -> None:
        self.src = src
        self.new_root = new_root
        self._insert = insert
        self._record = record

    def write(self, run_uid: str, datum_ids: Sequence[str], resources: dict[str, int]
              ) -> list[str]:
        """Write files, resources and datums for the ids the source reads itself.

        ``resources`` (resource uid -> datums written) is updated, so a resource is written
        once per run and the copier can verify the datum counts.  Returns the ids written;
        the others are left to the caller.
        """
        parsed = {d: split_id(d) for d in datum_ids}
        ids = [d for d, where in parsed.items() if where is not None]
        done: list[str] = []
        for lo in range(0, len(ids), CHUNK):
            chunk = ids[lo:lo + CHUNK]
            values = self.src.read_external(chunk)
            if values is None:
                continue  # not ids of this source: they stay unresolved
            pages: dict[str, Doc] = {}
            for datum_id in chunk:
                name, row = parsed[datum_id]  # type: ignore[misc]
                self._write_value(run_uid, name, row, datum_id, values[datum_id])
                if name not in resources:
                    self._insert("resource", self._resource(run_uid, name))
                    resources[name] = 0
                page = pages.setdefault(name, {"resource": name, "datum_id": [],
                                               "datum_kwargs": {"index": []}})
                page["datum_id"].append(datum_id)
                page["datum_kwargs"]["index"].append(row)
            for name, page in pages.items():
                self._insert("datum_page", page)
                resources[name] += len(page["datum_id"])
            done.extend(chunk)
        return done

    def _resource(self, run_uid: str, name: str) -> Doc:
        return {"uid": name, "spec": SPEC, "root": self.new_root,
                "resource_path": f"{run_uid}/{name}", "resource_kwargs": {},
                "path_semantics": "posix", "run_start": run_uid}

    def _write_value(self, run_uid: str, name: str, row: int, datum_id: str,
                     value: Any) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value), allow_pickle=False)
        destination = os.path.join(self.new_root, run_uid, f"{name}_{row}.npy")
        try:
            size, digest, status = _write_file(buffer.getvalue(), destination)
        except OSError as err:
            raise FrameWriteFailed(self._resource(run_uid, name), destination, str(err)) from err
        self._record(FileCopy(name, f"{self.src.describe()}: {datum_id}", destination, size,
                              digest, status))
