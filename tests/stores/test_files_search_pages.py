"""A time-ordered search of the files store reads its index in pages, the first of one row.

``next(iter(db(plan_name=...)))`` must not scan the whole index when fewer runs hold the
value than a page asks for: SQLite stops at the first match only if the first page asks for
one row.  Work is counted in SQLite virtual-machine steps (a progress handler), not timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from files_harness import index_statements

from broker_v1 import Broker
from broker_v1.stores.files import FileStore

T0 = 1_700_000_000.0
RUNS = 1_500


def _store_with_one_rare_run(path: Path) -> FileStore:
    store = FileStore(path=path)
    with store.deferred_sync():
        for i in range(RUNS):
            plan = "rare" if i == RUNS - 1 else "count"
            uid = f"run-{i:05d}"
            store.insert("start", {"uid": uid, "time": T0 + i, "scan_id": i + 1,
                                   "plan_name": plan})
            # Stopped: the runs still open would be looked at by every refresh.
            store.insert("stop", {"uid": uid + "-stop", "run_start": uid, "time": T0 + i + 1,
                                  "exit_status": "success"})
    return store


def _steps(store: FileStore, action: Callable[[], object]) -> int:
    """Hundreds of SQLite virtual-machine steps ``action`` took on the store's connection."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    conn = store._index.conn()
    conn.set_progress_handler(count, 100)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 100)
    return counted[0]


def test_the_first_match_of_a_rare_value_is_found_without_scanning_every_run(
    tmp_path: Path,
) -> None:
    with _store_with_one_rare_run(tmp_path) as store:
        db = Broker(store, timezone="UTC")
        # An hour-old directory mtime is trusted, so no refresh below lists the directory.
        old = time.time() - 3600
        os.utime(tmp_path, (old, old))
        db[-1]
        first = _steps(store, lambda: next(iter(db(plan_name="rare"))))
        every = _steps(store, lambda: list(db(plan_name="rare")))
        assert next(iter(db(plan_name="rare"))).start["uid"] == f"run-{RUNS - 1:05d}"
        assert [h.start["uid"] for h in db(plan_name="rare")] == [f"run-{RUNS - 1:05d}"]
        # The whole list must look at every run; the first result at the newest only.
        assert every > 20 * max(first, 1)


def test_pages_grow_and_every_match_is_found_once_in_order(tmp_path: Path) -> None:
    with FileStore(path=tmp_path) as store:
        with store.deferred_sync():
            for i in range(700):
                store.insert("start", {"uid": f"run-{i:05d}", "time": T0 + i // 2,
                                       "scan_id": i + 1, "plan_name": "scan" if i % 3 else "count"})
        db = Broker(store, timezone="UTC")
        with index_statements(store) as statements:
            found = [h.start["uid"] for h in db(plan_name="scan")]
    expected = sorted((f"run-{i:05d}" for i in range(700) if i % 3),
                      key=lambda u: (T0 + int(u[4:]) // 2, u), reverse=True)
    assert found == expected
    limits = [int(s.rsplit("LIMIT", 1)[1]) for s in statements if "FROM runs" in s
              and "LIMIT" in s]
    assert limits[:4] == [1, 20, 100, 500]
