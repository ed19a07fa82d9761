"""The v1 API on top of :func:`copy_runs`: ``Broker.export`` and ``Broker.export_size``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import BrokerError, DatumNotFound, DuplicateDocument
from ..replay import external_keys
from ._copy import copy_runs
from ._files import _datum_kwargs, _handler_registry, resource_files


def _header_uids(headers: Any) -> list[str]:
    from ..header import Header

    if isinstance(headers, Header):
        headers = [headers]
    out = []
    for h in headers:
        if isinstance(h, Header):
            out.append(h.uid)
        elif isinstance(h, Mapping) and "start" in h:
            out.append(h["start"]["uid"])
        else:
            raise TypeError(
                f"export needs Headers (from db[...] or db(...)), got {type(h).__name__}.")
    return out


def handler_registry_of(db: Any) -> dict[str, Any] | None:
    """``{spec: handler class}`` of a Broker's ``db.reg`` (``None`` if it has none).

    Parameters
    ----------
    db
        A Broker, or any object with a ``reg.handler_reg`` mapping.
    """
    reg = getattr(db, "reg", None)
    view = getattr(reg, "handler_reg", None)
    return dict(view) if view is not None else None


def export(
    db: Any,
    headers: Any,
    other_db: Any,
    new_root: str | os.PathLike[str] | None = None,
    copy_kwargs: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """``Broker.export``: copy runs into another Broker (databroker 1.2 semantics).

    Every document of every run is copied (all streams, resources and datums with the same
    uids); with ``new_root`` the external files are copied there and the resources written
    with ``root`` replaced.  Runs already in ``other_db`` are skipped (the copy is idempotent).

    Parameters
    ----------
    db
        The source Broker.
    headers
        A Header or an iterable of Headers.
    other_db
        The destination Broker.
    new_root
        Directory for the external files; ``None`` copies documents only.
    copy_kwargs
        ``file_rename_hook`` (called with ``(old, new)`` per file, errors ignored) and
        ``progress`` (see :func:`copy_runs`).  ``verify`` is accepted and ignored: files are
        always verified by SHA-256.

    Returns
    -------
    list of (str, str)
        ``(old_path, new_path)`` of every file copied.

    Raises
    ------
    DuplicateDocument
        A run conflicts with a different document in ``other_db`` (nothing was overwritten).
    BrokerError
        A run failed to copy or verify; the message names it.
    """
    kwargs = dict(copy_kwargs or {})
    kwargs.pop("verify", None)
    allowed = {"file_rename_hook", "progress"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"copy_kwargs accepts {', '.join(sorted(allowed | {'verify'}))}; "
                        f"got {', '.join(sorted(unknown))}.")
    report = copy_runs(
        db.store, other_db.store, uids=_header_uids(headers),
        copy_files=new_root is not None, new_root=new_root,
        root_map=getattr(db, "root_map", None) or {}, handler_registry=handler_registry_of(db),
        file_rename_hook=kwargs.get("file_rename_hook"), progress=kwargs.get("progress", False),
    )
    for r in report.conflicts:
        raise DuplicateDocument(f"export: run {r.uid}: {r.message}", name="start", uid=r.uid,
                                store=other_db.store.describe())
    if report.failed:
        r = report.failed[0]
        raise ExportFailed(f"export: run {r.uid} was not copied: {r.message}")
    return report.file_pairs()


class ExportFailed(BrokerError, RuntimeError):
    """A run could not be exported (the message names it and says why)."""


def export_size(db: Any, headers: Any) -> float:
    """``Broker.export_size``: gigabytes (bytes x 1e-9) of the external files of the runs.

    Files are listed through each resource's handler (``get_file_list``), as in databroker;
    without a handler the file ``root/resource_path`` is counted if it exists, and otherwise
    the resource is skipped with a ``UserWarning`` naming it.  Each file counts once.

    Parameters
    ----------
    db
        The Broker holding the runs.
    headers
        A Header or an iterable of Headers.

    Returns
    -------
    float
        The size in gigabytes.
    """
    store = db.store
    root_map = getattr(db, "root_map", None) or {}
    registry = _handler_registry(handler_registry_of(db))
    seen_files: set[str] = set()
    total = 0
    for uid in _header_uids(headers):
        resources: set[str] = set()
        for d in store.get_descriptors(uid):
            keys = external_keys(d)
            if not keys:
                continue
            for page in store.iter_event_pages(d["uid"], fields=keys):
                ids = {v for k in keys for v in page["data"].get(k, ()) if isinstance(v, str)}
                for datum_id in ids:
                    try:
                        resources.add(store.get_datum(datum_id)["resource"])
                    except DatumNotFound:
                        continue
        for res_uid in sorted(resources):
            resource = store.get_resource(res_uid)
            kwargs = _datum_kwargs(store.iter_datum_pages(res_uid))
            files, how = resource_files(resource, kwargs, handler_registry=registry,
                                        root_map=root_map)
            if files is None:
                warnings.warn(f"export_size: resource {res_uid} of run {uid} not counted: {how}.",
                              UserWarning, stacklevel=2)
                continue
            for path in files:
                if path not in seen_files and os.path.isfile(path):
                    seen_files.add(path)
                    total += os.path.getsize(path)
    return total * 1e-9
