""":func:`copy_runs`: checks the arguments, then copies run after run with progress, under the
destination's deferred syncs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..errors import ReadOnlyStore
from ..stores.base import Doc, DocumentStore
from ._copier import _Copier
from ._report import CopyInterrupted, CopyProgress, CopyReport, _open_bar, _rates
from ._source import DEFAULT_PAGE, _announced, iter_run_starts


def copy_runs(
    src_store: DocumentStore,
    dst_store: DocumentStore,
    query: Mapping[str, Any] | None = None,
    *,
    uids: Iterable[str] | None = None,
    limit: int | None = None,
    copy_files: bool = False,
    new_root: str | os.PathLike[str] | None = None,
    root_map: Mapping[str, str] | None = None,
    handler_registry: Mapping[str, Any] | None = None,
    file_rename_hook: Callable[[str, str], Any] | None = None,
    progress: bool | Callable[[CopyProgress], Any] | None = None,
    page_size: int = DEFAULT_PAGE,
) -> CopyReport:
    """Copy runs from one store to another, newest first; idempotent and resumable.

    Parameters
    ----------
    src_store, dst_store
        Any two stores; the destination must be writable.
    query
        Mongo-dialect filter on start documents (``None``: every run).
    uids
        Copy exactly these runs (by full start uid) instead of a query.
    limit
        Copy at most this many runs (the newest matching).
    copy_files
        Also copy the external files of every resource to ``new_root`` and write the resources
        with ``root`` replaced by ``new_root``; data behind datum ids the source resolves
        itself (tiled's SQL layout) is written there as ``NPY_SEQ`` files with resources and
        datums.
    new_root
        Where external files go; required with ``copy_files``.
    root_map
        ``{old_root: new_root}`` saying where the source's files really are (the source
        Broker's ``root_map``).
    handler_registry
        ``{spec: handler class}`` used to list a resource's files; default: handlers advertised
        by installed packages (``databroker.handlers`` entry points).
    file_rename_hook
        Called as ``hook(old_path, new_path)`` for every file copied; its errors are ignored
        (databroker's ``copy_files`` contract).
    progress
        ``True``: a progress bar on stderr (runs, documents/s, bytes/s); ``False``: none;
        ``None``: a bar when stderr is a terminal; a callable: called with a
        :class:`CopyProgress` after each run.
    page_size
        Runs fetched from the source per query.

    Returns
    -------
    CopyReport
        Per-run outcomes, files copied, totals.  Conflicts and failures are reported there,
        not raised, so one bad run does not stop a long copy.

    Raises
    ------
    ReadOnlyStore
        The destination is read-only; raised before anything is read or written.
    StoreUnavailable
        A store stopped answering; the report so far is lost but the copy can be resumed.
    ValueError
        ``copy_files`` without ``new_root`` (or the reverse), or both ``query`` and ``uids``.
    """
    if dst_store.read_only or not dst_store.supports_writes:
        raise ReadOnlyStore(
            f"{dst_store.describe()} is read-only, so nothing was copied into it. "
            + ("Open it with read_only: false to copy into it." if dst_store.supports_writes
               else f"The {dst_store.backend} backend cannot write."),
            store=dst_store.describe(),
        )
    if copy_files and new_root is None:
        raise ValueError("copy_files=True needs new_root: the directory the files go to.")
    if new_root is not None and not copy_files:
        raise ValueError("new_root rewrites resource roots only together with copy_files=True "
                         "(the files must be where the new root says).")
    if uids is not None and query:
        raise ValueError("Give either query or uids, not both.")
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}.")
    report = CopyReport(src_store.describe(), dst_store.describe(), copy_files=copy_files)
    copier = _Copier(
        src_store, dst_store, report, copy_files=copy_files,
        new_root=None if new_root is None else os.fspath(new_root),
        root_map=root_map or {}, handler_registry=handler_registry,
        file_rename_hook=file_rename_hook,
    )
    if uids is not None:
        uid_list = list(dict.fromkeys(uids))
        if limit is not None:
            uid_list = uid_list[:limit]
        total: int | None = len(uid_list)
        # Resolved first, so an unknown uid fails before anything is written.
        starts: Iterator[Doc] = iter([src_store.get_run_start(u) for u in uid_list])
    else:
        total = None if progress is False else src_store.count_runs(query)
        if total is not None and limit is not None:
            total = min(total, limit)
        starts = iter_run_starts(src_store, query, page_size=page_size)
    callback = progress if callable(progress) else None
    bar = None
    if not callable(progress) and progress is not False:
        bar = _open_bar(total, always=progress is True)
    t0 = time.perf_counter()
    last_postfix = 0.0
    if not copy_files:
        starts = _announced(starts, lambda uids: dst_store.prepare_copies(src_store, uids))
    try:
        # Syncs to disk overlap with copying the next runs; leaving the block waits for all
        # of them, so the report is returned only once everything copied is durable.
        with dst_store.deferred_sync():
            for i, start in enumerate(starts):
                if limit is not None and i >= limit:
                    break
                result = copier.copy_run(start)
                report.runs.append(result)
                report.documents += result.documents
                report.elapsed = time.perf_counter() - t0
                if callback is not None:
                    callback(CopyProgress(len(report.runs), total, report.documents,
                                          report.bytes, report.elapsed, result))
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - last_postfix > 0.5:
                        last_postfix = now
                        bar.set_postfix_str(_rates(report), refresh=False)
    except KeyboardInterrupt:
        report.interrupted = True
        report.elapsed = time.perf_counter() - t0
        raise CopyInterrupted(report) from None
    finally:
        if bar is not None:
            bar.set_postfix_str(_rates(report), refresh=False)
            bar.close()
    report.elapsed = time.perf_counter() - t0
    return report
