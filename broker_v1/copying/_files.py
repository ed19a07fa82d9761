"""External files: which files a resource holds (through its handler), and copying them
verified by SHA-256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

_CHUNK = 1 << 20  # bytes read at a time when copying and hashing files


def _handler_registry(handler_registry: Mapping[str, Any] | None) -> dict[str, Any]:
    if handler_registry is not None:
        return dict(handler_registry)
    # Handlers advertised by installed packages, as databroker discovers them.
    from importlib.metadata import entry_points

    found: dict[str, Any] = {}
    for ep in entry_points(group="databroker.handlers"):
        try:
            found.setdefault(ep.name, ep.load())
        except Exception:  # a broken plugin must not stop a copy; its spec stays unlisted
            continue
    return found


def _datum_kwargs(pages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``datum_kwargs`` of every datum in these datum pages, in order."""
    return [{k: col[i] for k, col in page["datum_kwargs"].items()}
            for page in pages for i in range(len(page["datum_id"]))]


def _resource_base(resource: Mapping[str, Any], root_map: Mapping[str, str]) -> tuple[str, str]:
    """``(base directory, full path)`` of a resource after ``root_map``.

    A resource without ``root`` (legacy absolute ``resource_path``) is taken relative to
    ``/``, as databroker 0.13's ``export`` did.
    """
    root = resource.get("root") or ""
    mapped = root_map.get(root, root) if root else ""
    base = mapped or "/"
    return base, os.path.join(base, resource.get("resource_path", ""))


def resource_files(
    resource: Mapping[str, Any],
    datum_kwargs: Iterable[Mapping[str, Any]],
    *,
    handler_registry: Mapping[str, Any] | None = None,
    root_map: Mapping[str, str] | None = None,
) -> tuple[list[str] | None, str]:
    """The files holding a resource's data, as absolute paths on this machine.

    Parameters
    ----------
    resource
        The resource document.
    datum_kwargs
        The ``datum_kwargs`` of its datums (handlers list one file per frame for some specs).
    handler_registry
        ``{spec: handler class}``; ``None`` uses handlers advertised by installed packages.
    root_map
        ``{old_root: new_root}`` applied to the resource's ``root`` first.

    Returns
    -------
    files, how
        ``files`` is ``None`` when they cannot be determined; ``how`` says how they were found
        or why not.
    """
    registry = _handler_registry(handler_registry)
    base, full = _resource_base(resource, root_map or {})
    spec = str(resource.get("spec"))
    cls = registry.get(spec)
    problem = f"no handler is registered for spec {spec!r}"
    if cls is not None:
        try:
            handler = cls(full, **dict(resource.get("resource_kwargs") or {}))
            try:
                files = list(handler.get_file_list(list(datum_kwargs)))
            finally:
                close = getattr(handler, "close", None)
                if callable(close):
                    close()
            return [os.path.join(base, f) for f in files], f"{cls.__name__}.get_file_list"
        except Exception as err:  # any handler failure: fall back, and say why
            problem = f"the {cls.__name__} handler could not list the files ({err})"
    if os.path.isfile(full):
        return [full], "root/resource_path"
    return None, f"{problem}, and {full} is not a file"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_file(source: str, destination: str) -> tuple[int, str, str]:
    """Copy with SHA-256 verification; ``(size, sha256, "copied" | "present")``.

    The copy is written beside the destination and renamed into place only after its hash
    matches the source's, so an interrupted copy never leaves a truncated file under the
    final name.  An existing destination with the same hash counts as present; with a
    different hash it is an error and is not overwritten.
    """
    if os.path.exists(destination):
        src_hash, dst_hash = _sha256(source), _sha256(destination)
        if src_hash != dst_hash:
            raise FileExistsError(
                f"{destination} already exists with different content (sha256 {dst_hash[:12]} "
                f"vs {src_hash[:12]} of {source}); not overwritten"
            )
        return os.path.getsize(destination), src_hash, "present"
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    partial = f"{destination}.part-{os.getpid()}"
    h = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as fin, open(partial, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        digest = h.hexdigest()
        written = _sha256(partial)
        if written != digest:
            raise OSError(f"checksum mismatch after copying {source} to {destination}")
        import shutil

        shutil.copystat(source, partial)
        os.replace(partial, destination)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return size, digest, "copied"


def _write_file(data: bytes, destination: str) -> tuple[int, str, str]:
    """Write ``data`` as :func:`_copy_file` copies a file: ``(size, sha256, "copied" |
    "present")``, through a partial file renamed into place, never over different content."""
    digest = hashlib.sha256(data).hexdigest()
    if os.path.exists(destination):
        held = _sha256(destination)
        if held != digest:
            raise FileExistsError(
                f"{destination} already exists with different content (sha256 {held[:12]} "
                f"vs {digest[:12]} of the data to write); not overwritten")
        return len(data), digest, "present"
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    partial = f"{destination}.part-{os.getpid()}"
    try:
        with open(partial, "wb") as fout:
            fout.write(data)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(partial, destination)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return len(data), digest, "copied"
