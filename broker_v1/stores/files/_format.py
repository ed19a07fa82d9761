"""Run files as they are on disk: the store's layout, lines, torn tails, msgpack.

What a ``.jsonl`` line is (one ``[name, doc]`` JSON array, written as suitcase-jsonl writes
it), how lines are parsed (in bulk, with the line number of a damaged one), how the first
line and the last byte are read, how ``.msgpack`` runs of databroker-pack are decoded (never
unpickling), how an incomplete last line is cut off, and which uids can name a run file.
Nothing here knows the index or the store: every other module of the package builds on it.
"""

from __future__ import annotations

import gc
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import orjson

from ...errors import CorruptRunFile, MissingDependency, StoreUnavailable
from .._util import loads_json
from ..base import Doc

# Derived state lives in one hidden subdirectory, so that SQLite's -wal/-shm files coming and
# going never change the mtime of the run directory (which tells the index a rescan is due).
STATE_DIR = ".broker_v1"
ASSETS_NAME = "_assets.jsonl"
_SUFFIXES = (".jsonl", ".msgpack")


class RunFileWarning(UserWarning):
    """A run file could not be read completely; the message names the file and line."""


class TornRunFileWarning(RunFileWarning):
    """A run file ends with an incomplete line, left by a writer that was interrupted.

    Every complete document before it is read; :meth:`FileStore.repair` removes the tail.
    """


_NAME_RE = re.compile(rb'\s*\[\s*"([A-Za-z_]+)"')
_DESC_RE = re.compile(rb'"descriptor"\s*:\s*"([^"\\]*)"')


#: ``json.dumps`` with its defaults but the check for circular references: the documents
#: written are trees (sanitized copies, or parsed JSON), and the check costs an entry in a
#: dict per container (about 15 % of encoding an event).  The text is the same.
_json_encode = json.JSONEncoder(check_circular=False).encode

#: Subclasses of str, int, dict and list are refused (so they take Python's json, as before).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


def _encode(doc: Any) -> bytes:
    """A document's JSON text, as ASCII bytes: what its run file line and the index hold.

    orjson writes it (about five times faster) whenever its text says exactly what Python's
    json (which suitcase-jsonl uses) would say; otherwise Python's json writes it, as it did
    before.  orjson writes NaN and Infinity as ``null``, so text holding ``null`` is kept
    only if it parses back equal to ``doc``; it refuses integers beyond 64 bits, lone
    surrogates and keys that are not strings (json writes them all); and its text is UTF-8,
    so text that is not ASCII is written by json with its ``\\u`` escapes instead, keeping
    every line ASCII as it always was.
    """
    try:
        out = orjson.dumps(doc, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included
        return _json_encode(doc).encode("ascii")
    if out.isascii() and (b"null" not in out or orjson.loads(out) == doc):
        return out
    return _json_encode(doc).encode("ascii")


#: The opening of a line, by document name (every name insert accepts is a plain word).
_OPENINGS = {
    name: f'["{name}", '.encode("ascii")
    for name in ("start", "descriptor", "event", "event_page", "resource", "datum",
                 "datum_page", "stop")
}


def _line_of(name: str, text: bytes) -> bytes:
    """The run file line of document ``name`` whose JSON text (``_encode(doc)``) is ``text``:
    the writer needs a start's and a stop's text for the index as well, and encodes once."""
    opening = _OPENINGS.get(name)
    if opening is None:  # not a document name insert writes: encode it as json would
        opening = f"[{json.dumps(name)}, ".encode("ascii")
    return opening + text + b"]\n"


def _dump_line(name: str, doc: Any) -> bytes:
    """One suitcase-jsonl line, ``[name, doc]``, that ``json.loads`` reads back equal to
    ``doc`` (NaN and Infinity as the tokens Python's json and suitcase-jsonl write)."""
    return _line_of(name, _encode(doc))


def _plain(value: Any) -> Any:
    """msgpack-numpy values → JSON-like ones (arrays and numpy scalars become lists/numbers)."""
    cls = type(value)
    if cls is dict:
        return {k if type(k) is str else str(k): _plain(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [_plain(v) for v in value]
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _parse_line(line: bytes, path: Path, number: int) -> tuple[str, Doc]:
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
        raise CorruptRunFile(
            f"{path} line {number} is not valid JSON ({err}); the file is corrupt in the middle "
            "(not a torn last line, which would be skipped). Restore the file from a backup or "
            "remove that line by hand.",
            path=str(path),
            line=number,
        ) from None
    return _check_pair(item, path, number)


def _check_pair(item: Any, path: Path, number: int | None) -> tuple[str, Doc]:
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not isinstance(item[0], str)
        or not isinstance(item[1], dict)
    ):
        where = f"line {number}" if number is not None else "an item"
        raise CorruptRunFile(
            f"{path} {where} is not a [name, document] pair as suitcase-jsonl writes "
            f"(got {str(item)[:80]!r}). Restore the file or remove that line by hand.",
            path=str(path),
            line=number,
        )
    return item[0], item[1]


def _parse_lines(lines: list[tuple[int, bytes]], path: Path) -> list[tuple[str, Doc]]:
    if not lines:
        return []
    # One json.loads over many lines is markedly faster than one call per line, and the
    # cyclic collector has nothing to find in fresh JSON (it would walk every new dict).
    enabled = gc.isenabled()
    gc.disable()
    try:
        items = loads_json(b"[" + b",".join(line for _, line in lines) + b"]")
    except (ValueError, RecursionError):
        items = None
    finally:
        if enabled:
            gc.enable()
    if items is None or len(items) != len(lines):
        # Some line is damaged (or holds more than one value): find it, with its number.
        return [_parse_line(line, path, number) for number, line in lines]
    return [_check_pair(item, path, number) for item, (number, _) in zip(items, lines)]


def _read_first_line(f: Any) -> bytes | None:
    chunks = []
    while True:
        chunk = f.read(65536)
        if not chunk:
            return None
        i = chunk.find(b"\n")
        if i >= 0:
            chunks.append(chunk[: i + 1])
            return b"".join(chunks)
        chunks.append(chunk)


def _load_msgpack() -> tuple[Any, Any]:
    try:
        import msgpack
        import msgpack_numpy
    except ImportError as err:
        raise MissingDependency(
            f"Reading .msgpack run files needs {err.name}, which is not installed. "
            "Install it with: pip install msgpack msgpack-numpy"
        ) from err
    return msgpack, msgpack_numpy


def _read_msgpack(path: Path) -> tuple[list[tuple[str, Doc]], int, int]:
    """Every complete ``[name, doc]`` of a msgpack run file, bytes consumed and file size."""
    msgpack, msgpack_numpy = _load_msgpack()
    data = path.read_bytes()

    def decode(obj: dict[Any, Any]) -> Any:
        # msgpack-numpy unpickles arrays of dtype object ({'nd': True, 'kind': b'O'}) and
        # builds other arrays straight from the file's bytes, which for a dtype holding
        # Python objects means pointers chosen by whoever wrote the file.  Neither is ever
        # done: such an item makes the file unreadable (CorruptRunFile), and nothing runs.
        if b"nd" in obj:
            if obj.get(b"kind") == b"O":
                raise ValueError("it holds a pickled object array, which is never unpickled")
            import numpy as np

            unpack = getattr(msgpack_numpy, "_unpack_dtype", np.dtype)
            descr = obj.get(b"type")
            if isinstance(descr, list | tuple):
                descr = [tuple(t.decode() if isinstance(t, bytes) else t for t in d)
                         for d in descr]
            if unpack(descr).hasobject:
                raise ValueError("it holds an array of Python objects, which is never read")
        return msgpack_numpy.decode(obj)

    unpacker = msgpack.Unpacker(
        object_hook=decode, raw=False, strict_map_key=False, max_buffer_size=0
    )
    unpacker.feed(data)
    docs = []
    consumed = 0
    number = 0
    try:
        for item in unpacker:
            number += 1
            docs.append(_check_pair(_plain(item), path, number))
            consumed = unpacker.tell()
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError) as err:
        if isinstance(err, CorruptRunFile):
            raise
        raise CorruptRunFile(
            f"{path} item {number + 1} is not valid msgpack ({err}). Restore the file from its "
            "source catalog.",
            path=str(path),
            line=number + 1,
        ) from None
    return docs, consumed, len(data)


def _uid_problem(uid: Any) -> str | None:
    """Why ``uid`` cannot name a run file, or None when it can."""
    if not isinstance(uid, str):
        return f"it is a {type(uid).__name__}, not a string"
    if not uid:
        return "it is empty"
    if uid in (".", ".."):
        return "it names a directory"
    if "/" in uid or "\\" in uid or (os.altsep and os.altsep in uid):
        return "it contains a path separator"
    if _CONTROL_CHARACTER.search(uid):
        return "it contains control characters"
    if uid.startswith("."):
        return "it starts with '.', which marks the store's own hidden files"
    if uid + ".jsonl" == ASSETS_NAME:
        return f"{ASSETS_NAME} is reserved for resources that belong to no run"
    if os.name == "nt" and any(c in '<>:"|?*' for c in uid):  # pragma: no cover
        return "it contains a character Windows forbids in file names"
    try:
        encoded = (uid + ".msgpack").encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid unicode (it holds a lone surrogate)"
    if len(encoded) > 255:
        return "it is too long for a file name"
    return None


def _single_datum(page: Doc) -> Doc:
    """The datum of a one-row datum page."""
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][0],
        "datum_kwargs": {k: col[0] for k, col in page["datum_kwargs"].items()},
    }


#: The keys an event line keeps (an event's own; anything else is dropped, as from pages).
_EVENT_KEYS_KEPT = frozenset(
    {"descriptor", "uid", "time", "seq_num", "data", "timestamps", "filled"}
)


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def _single_event(page: Doc) -> Doc:
    """The event of a one-row page (``filled`` only when the page has it)."""
    event: Doc = {
        "descriptor": page["descriptor"],
        "uid": page["uid"][0],
        "time": page["time"][0],
        "seq_num": page["seq_num"][0],
        "data": {k: col[0] for k, col in page["data"].items()},
        "timestamps": {k: col[0] for k, col in page["timestamps"].items()},
    }
    if "filled" in page:
        event["filled"] = {k: col[0] for k, col in page["filled"].items()}
    return event


def _last_byte(path: Path, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)


class _Warnings:
    """Warnings about run files, each given once per (file, line) for the store's lifetime."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, int]] = set()

    def forget(self, name: str) -> None:
        """Warn again about ``name`` (it was repaired)."""
        self._warned = {w for w in self._warned if w[0] != name}

    def warn_once(self, name: str, line: int, message: str, category: type[Warning]) -> None:
        key = (name, line)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, category, stacklevel=4)


def _open_directory(path: Path, read_only: bool, label: str) -> None:
    """Check the store directory, creating it when missing (unless ``read_only``)."""
    if path.is_dir():
        if not read_only and not os.access(path, os.W_OK | os.X_OK):
            raise StoreUnavailable(
                f"{label}: the directory is not writable by this user. Open it "
                "with read_only: true to read it, or fix its permissions."
            )
        return
    if path.exists():
        raise StoreUnavailable(
            f"{label}: {path} exists but is not a directory. Point the "
            "files store at a directory."
        )
    if read_only:
        raise StoreUnavailable(
            f"{label}: the directory {path} does not exist, and a read-only "
            "store does not create it. Check the path, or open it with read_only: false to "
            "create an empty store there."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreUnavailable(
            f"{label}: cannot create the directory {path} ({err.strerror})."
        ) from err

def complete_length(fd: int, size: int) -> int:
    """Bytes of the first ``size`` bytes of open file ``fd`` up to and including its last
    newline: what is left of a run file once an incomplete (torn) last line is cut off."""
    pos = size
    while pos > 0:  # backwards in blocks: the newline is almost always in the last one
        step = min(65536, pos)
        pos -= step
        i = os.pread(fd, step, pos).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def _truncate_tail(path: Path, careful: bool, torn_grace: float, label: str) -> int:
    """Cut an incomplete last line off a run file; the number of bytes removed.

    ``careful``: leave alone a file changed within the last ``torn_grace`` seconds.
    """
    try:
        # Never through a symbolic link: it may lead outside the store directory.
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return 0
    except OSError as err:
        if path.is_symlink():
            warnings.warn(
                f"{path} is a symbolic link, so repair() leaves it alone (it never writes "
                "outside the store directory). Repair the file it points to where it lives.",
                RunFileWarning,
                stacklevel=3,
            )
            return 0
        raise StoreUnavailable(
            f"{label}: cannot open {path} to repair it ({err.strerror})."
        ) from err
    try:
        st = os.fstat(fd)
        if careful and time.time() - st.st_mtime < torn_grace:
            return 0
        size = st.st_size
        if size == 0:
            return 0
        keep = complete_length(fd, size)
        if keep == size:
            return 0
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)
