"""Copying runs between stores: the machinery behind ``broker-v1 copy`` and ``Broker.export``.

:func:`copy_runs` copies whole runs from one :class:`~broker_v1.stores.base.DocumentStore` to
another through the abstract store interface only, so every pair of backends works (memory,
files, MongoDB, third-party).  It is

* **idempotent**: a run already in the destination with the same start, stop, descriptors and
  event counts is skipped; identical documents are never written twice (the store's insert path
  treats them as no-ops);
* **resumable**: a run left incomplete by an interrupted copy (its start is there, its stop or
  some events are not) is completed on the next copy, without duplicates;
* **safe**: a run whose start, descriptor or stop exists in the destination with *different*
  content is reported as a conflict and never overwritten; a read-only destination is refused
  before anything is written;
* **verified**: after each run, the descriptors, the events per descriptor, the datums per
  resource and the presence of the stop are counted in the destination and compared;
* **whole runs where the destination can**: each run not yet in the destination is first
  offered to ``dst.copy_run_from(src, uid)`` (the files store takes a stopped run of another
  files store as its file, checked as ``insert`` would and read back); any other run, or one
  the store declines, is copied document by document;
* **short-lived on the source**: the source is read in pages of runs selected by key (start
  time, then uid, the stores' sort order), each page a separate short query, so no server
  cursor is held for the length of the copy (databroker's exports died on cursor timeouts).

With ``copy_files=True`` the external files behind each resource are copied under ``new_root``
(their path relative to the resource's ``root`` is kept), verified by SHA-256, and the resource
is written with ``root`` replaced by ``new_root`` (same uid, as databroker 1.2's ``export``).
Which files belong to a resource is asked of the handler registered for its ``spec``
(``handler.get_file_list(datum_kwargs)``).  Limitation: without a handler for a spec, only the
file ``root/resource_path`` itself can be found; a resource whose files cannot be listed
either way is copied unchanged (root not rewritten) and listed in the report, so a missing
handler never silently produces a resource that points at nothing.

Datum ids with no datum in the source (a source that resolves its own ids, such as the tiled
store's SQL layout) are, with ``copy_files=True``, resolved through the source's
``read_external`` and written as ``NPY_SEQ`` files under ``new_root`` with a resource and
datums whose ids are the events' own (``_frames``); without it they are copied as they are and
counted in :attr:`CopyReport.unresolved`, which the summary explains.

The modules of this package: ``_copy`` (:func:`copy_runs`: the loop over runs, progress,
deferred syncs), ``_copier`` (one run: write, resume, compare, verify), ``_source`` (start
documents paged by key, announced ahead to the destination), ``_files`` (external files:
listing through handlers, SHA-256-verified copies), ``_frames`` (data the source reads itself,
written as files), ``_report`` (:class:`CopyReport` and the
per-run and per-file results) and ``_export`` (``Broker.export`` and ``Broker.export_size``).
"""

from __future__ import annotations

from ._copy import copy_runs
from ._export import ExportFailed as ExportFailed
from ._export import export, export_size, handler_registry_of
from ._files import resource_files
from ._report import CopyInterrupted as CopyInterrupted
from ._report import CopyProgress, CopyReport, FileCopy, FileProblem, RunResult
from ._source import DEFAULT_PAGE as DEFAULT_PAGE
from ._source import iter_run_starts

__all__ = [
    "CopyProgress",
    "CopyReport",
    "FileCopy",
    "FileProblem",
    "RunResult",
    "copy_runs",
    "export",
    "export_size",
    "handler_registry_of",
    "iter_run_starts",
    "resource_files",
]
