"""What the files store's index writes per run: only the pages its lookups need.

``runs_stop_uid`` holds stopped runs only (a partial index), so a start adds nothing to it
and a stop deletes no NULL entry; an index made before is changed in place at open, never
rebuilt.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from broker_v1.errors import DuplicateDocument
from broker_v1.stores.files import FileStore

T0 = 1_700_000_000.0


def run_docs(uid: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("start", {"uid": uid, "time": T0, "scan_id": 1, "plan_name": "count"}),
        ("stop", {"uid": f"{uid}-stop", "run_start": uid, "time": T0 + 1,
                  "exit_status": "success"}),
    ]


def index_file(directory: Path) -> Path:
    return directory / ".broker_v1" / "index.sqlite"


def stop_uid_index_sql(directory: Path) -> str:
    conn = sqlite3.connect(index_file(directory))
    try:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'runs_stop_uid'").fetchone()
        return str(sql)
    finally:
        conn.close()


def test_only_stopped_runs_are_in_the_stop_uid_index(tmp_path: Path) -> None:
    store = FileStore(path=tmp_path)
    for name, doc in run_docs("stopped"):
        store.insert(name, doc)
    store.insert(*run_docs("running")[0])
    store.close()
    assert stop_uid_index_sql(tmp_path).endswith("WHERE stop_uid IS NOT NULL")
    conn = sqlite3.connect(index_file(tmp_path))
    entries = conn.execute(
        "SELECT count(*) FROM runs INDEXED BY runs_stop_uid WHERE stop_uid IS NOT NULL"
    ).fetchone()
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT stop FROM runs WHERE stop_uid = ?", ("stopped-stop",)
    ).fetchall()
    conn.close()
    assert entries == (1,)
    assert any("USING INDEX runs_stop_uid" in row[-1] for row in plan)


def test_an_older_index_is_changed_in_place(tmp_path: Path) -> None:
    store = FileStore(path=tmp_path)
    for name, doc in run_docs("old"):
        store.insert(name, doc)
    store.close()
    # The index as broker_v1 made it before: every run in runs_stop_uid.  A row of our own
    # shows whether the index is rebuilt (it would be gone) or changed in place.
    conn = sqlite3.connect(index_file(tmp_path))
    conn.execute("DROP INDEX runs_stop_uid")
    conn.execute("CREATE INDEX runs_stop_uid ON runs (stop_uid)")
    conn.execute("INSERT INTO meta (key, value) VALUES ('test-sentinel', 'kept')")
    conn.commit()
    conn.close()

    store = FileStore(path=tmp_path)
    assert store.get_run_stop("old")["uid"] == "old-stop"
    store.insert(*run_docs("other")[0])
    with pytest.raises(DuplicateDocument):  # the stop uid is found through runs_stop_uid
        store.insert("stop", dict(run_docs("old")[1][1], run_start="other", time=T0 + 5))
    store.close()
    assert stop_uid_index_sql(tmp_path).endswith("WHERE stop_uid IS NOT NULL")
    conn = sqlite3.connect(index_file(tmp_path))
    assert conn.execute(
        "SELECT value FROM meta WHERE key = 'test-sentinel'").fetchone() == ("kept",)
    conn.close()
