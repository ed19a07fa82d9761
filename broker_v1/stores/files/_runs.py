"""The parsed-run cache: run files read into :class:`_RunData`, least recently used dropped.

A run is re-read only when its file changed, and then only its new lines when it grew
with the same first line; a completed run is read from its columnar cache when that is
current.  An incomplete last line is warned about unless it is a write in progress.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ._cache import CACHE_DIR, _read_cache, _write_cache
from ._format import (
    ASSETS_NAME,
    STATE_DIR,
    TornRunFileWarning,
    _dump_line,
    _read_first_line,
    _read_msgpack,
    _Warnings,
)
from ._rundata import _RunData, _skeleton


class _RunCache:
    """Parsed run files of one store directory, kept in memory (LRU).

    Parameters
    ----------
    path
        The store directory.
    lock
        The store's lock (held while a run is read or its cache consulted).
    columnar_cache, cache_runs, torn_grace
        The store's options of the same names.
    warnings
        Where warnings about run files are given once.

    ``writing(name)`` says whether this process has a file open for writing (an incomplete
    last line is then its own write in progress); the store sets it.
    """

    def __init__(
        self,
        path: Path,
        lock: threading.RLock,
        *,
        columnar_cache: bool,
        cache_runs: int,
        torn_grace: float,
        warnings: _Warnings,
    ) -> None:
        self.path = path
        self._lock = lock
        self.columnar_cache = columnar_cache
        self.cache_runs = cache_runs
        self.torn_grace = torn_grace
        self._warnings = warnings
        #: ``writing(name)``: whether this process has the file open for writing (set by the
        #: store once its writer exists).
        self.writing: Callable[[str], bool] = lambda name: False
        # settle(name): wait for a columnar cache this process is still writing in the
        # background, so a read right after a stop uses it rather than parsing the JSON.
        self.settle: Callable[[str], None] = lambda name: None
        self._lru: OrderedDict[str, _RunData] = OrderedDict()

    def forget(self, name: str) -> None:
        """Drop a file's parsed contents (it vanished or was changed in place)."""
        self._lru.pop(name, None)

    def clear(self) -> None:
        """Drop every parsed run."""
        self._lru.clear()

    def load(self, name: str) -> _RunData | None:
        """The parsed contents of a run file, from the in-memory LRU when still current."""
        with self._lock:
            path = self.path / name
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._lru.pop(name, None)
                return None
            rd = self._lru.get(name)
            if rd is not None and (rd.size, rd.mtime_ns) == (st.st_size, st.st_mtime_ns):
                self._lru.move_to_end(name)
                self._check_tail(rd, path, st)
                return rd
            if name.endswith(".msgpack"):
                rd = self._parse_msgpack(name, path)
            elif rd is not None and st.st_size > rd.size and self._same_head(path, rd):
                with open(path, "rb") as f:
                    f.seek(rd.offset)
                    data = f.read()
                rd.ingest_jsonl(data, path)
            else:
                rd = self._fresh_jsonl(name, path, st)
            if rd is None:
                return None
            rd.size, rd.mtime_ns = st.st_size, st.st_mtime_ns
            self._lru[name] = rd
            self._lru.move_to_end(name)
            self._evict()
            self._check_tail(rd, path, st)
            return rd

    def _same_head(self, path: Path, rd: _RunData) -> bool:
        with open(path, "rb") as f:
            head = _read_first_line(f)
        return head is not None and zlib.crc32(head) == rd.head_crc

    def _fresh_jsonl(self, name: str, path: Path, st: os.stat_result) -> _RunData | None:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        with f:
            head = _read_first_line(f)
            head_crc = None if head is None else zlib.crc32(head)
            if self.columnar_cache and head is not None and name != ASSETS_NAME:
                # A valid columnar copy spares reading (and parsing) the JSON at all.
                self.settle(name)
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - 4096))
                tail = zlib.crc32(f.read())
                source = {"name": name, "size": size, "head": head_crc, "tail": tail}
                cached = _read_cache(self.cache_path(name), source, name)
                if cached is not None:
                    cached.offset = size
                    cached.head_crc = head_crc
                    return cached
            f.seek(0)
            data = f.read()
        rd = _RunData(name, "jsonl")
        rd.head_crc = head_crc
        rd.ingest_jsonl(data, path)
        if self.columnar_cache and rd.stop is not None and rd.tail == 0 and name != ASSETS_NAME:
            self._build_cache(name, rd, data, path)
        return rd

    def cache_path(self, name: str) -> Path:
        return self.path / STATE_DIR / CACHE_DIR / (name + ".cols")

    def _build_cache(self, name: str, rd: _RunData, data: bytes, path: Path) -> None:
        """Write the columnar cache of a completed run read from JSON (best effort)."""
        if not os.access(self.path / STATE_DIR, os.W_OK):
            return
        source = {
            "name": name,
            "size": len(data),
            "head": rd.head_crc,
            "tail": zlib.crc32(data[-4096:]),
        }
        try:
            columns = rd.all_columns(path)
            doc_lines = [_dump_line(n, d) for n, d in _skeleton(rd)]
            _write_cache(self.cache_path(name), source, doc_lines, columns, rd.lines)
        except (OSError, ValueError, TypeError):
            pass  # the cache is an optimisation; reading works without it

    def _parse_msgpack(self, name: str, path: Path) -> _RunData | None:
        try:
            docs, consumed, size = _read_msgpack(path)
        except FileNotFoundError:
            return None
        rd = _RunData(name, "msgpack")
        for doc_name, doc in docs:
            rd.add_doc(doc_name, doc)
        rd.offset = consumed
        rd.lines = len(docs)
        rd.tail = size - consumed
        return rd

    def _check_tail(self, rd: _RunData, path: Path, st: os.stat_result) -> None:
        if not rd.tail:
            return
        if self.writing(rd.name):
            return  # our own write, caught in progress by another thread
        age = time.time() - st.st_mtime
        if rd.stop is None and age < self.torn_grace:
            return  # most likely a line being written right now by another process
        unit = "item" if rd.fmt == "msgpack" else "line"
        self._warnings.warn_once(
            rd.name,
            rd.lines + 1,
            f"{path} {unit} {rd.lines + 1} is incomplete ({rd.tail} bytes; a writer was "
            f"interrupted). The {rd.lines} complete documents before it are read. Call "
            "repair() on a writable store to remove the incomplete tail.",
            TornRunFileWarning,
        )

    def _evict(self) -> None:
        weights = {name: rd.weight() for name, rd in self._lru.items()}
        total = sum(weights.values())
        while len(self._lru) > 1 and (len(self._lru) > self.cache_runs or total > 4_000_000):
            name, _ = self._lru.popitem(last=False)
            total -= weights[name]
