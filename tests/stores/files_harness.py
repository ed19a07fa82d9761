"""A test harness for :class:`~broker_v1.stores.files.FileStore`.

``make_files_harness(tmp_path)`` gives a fresh writable store in ``tmp_path / "store"``, a way
to open a second store object over the same directory, and a back door (``raw``) that writes
run files directly, the way another program (suitcase-jsonl, a copy by hand) would.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker_v1.stores.files import FileStore


def count_run_docs(uid: str, n_events: int) -> list[tuple[str, dict[str, Any]]]:
    """A ``count`` run's documents in emission order: start, a ``primary`` descriptor with one
    number ``x``, ``n_events`` events (``x`` = 0.0, 1.0, ...), stop (uids derived from ``uid``)."""
    t0 = 1_700_000_000.0
    desc = f"{uid}-primary"
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": t0, "scan_id": 1, "plan_name": "count"}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": t0, "name": "primary",
                        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "sim"}}}),
    ]
    for i in range(n_events):
        docs.append(("event", {"uid": f"{uid}-e{i}", "descriptor": desc, "time": t0 + i,
                               "seq_num": i + 1, "data": {"x": float(i)},
                               "timestamps": {"x": t0 + i}}))
    docs.append(("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": t0 + n_events,
                          "exit_status": "success"}))
    return docs


@contextlib.contextmanager
def index_statements(store: FileStore) -> Iterator[list[str]]:
    """The SQL statements ``store`` runs on its index inside the block, in order (SQLite's
    trace: those an FTS5 table runs for a statement are listed too, prefixed ``--``)."""
    statements: list[str] = []
    conn = store._index.conn()
    conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        conn.set_trace_callback(None)


class RawFiles:
    """Direct access to the run files of a store directory, bypassing the store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, run_uid: str) -> Path:
        """The ``.jsonl`` file of a run."""
        return self.directory / f"{run_uid}.jsonl"

    def put(self, run_uid: str, name: str, doc: dict[str, Any]) -> None:
        """Append one ``[name, doc]`` line to ``<run_uid>.jsonl`` (suitcase-jsonl's format)."""
        with open(self.path(run_uid), "a", encoding="utf-8") as f:
            f.write(json.dumps([name, doc]) + "\n")

    def docs(self, run_uid: str) -> list[tuple[str, dict[str, Any]]]:
        """Every ``(name, doc)`` line of ``<run_uid>.jsonl``, in file order."""
        with open(self.path(run_uid), encoding="utf-8") as f:
            return [tuple(json.loads(line)) for line in f if line.strip()]  # type: ignore[misc]


class FilesHarness:
    """A writable FileStore on a temporary directory, plus ``reopen`` and ``raw``."""

    kind = "files"

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.directory = Path(tmp_path) / "store"
        self.options = options
        self._opened: list[FileStore] = []
        self.store = self.reopen()
        self.raw = RawFiles(self.directory)

    def reopen(self, **options: Any) -> FileStore:
        """A new FileStore object over the same directory (options override the harness's)."""
        store = FileStore(path=self.directory, **{**self.options, **options})
        self._opened.append(store)
        return store

    def close(self) -> None:
        """Close every store this harness opened."""
        for store in self._opened:
            store.close()


def make_files_harness(tmp_path: Path, **options: Any) -> FilesHarness:
    """A :class:`FilesHarness` whose store lives in ``tmp_path / "store"``."""
    return FilesHarness(tmp_path, **options)
