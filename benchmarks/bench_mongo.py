"""MongoStore figures: db[-1] over many runs, reading and bulk-inserting a large run.

Run::

    python benchmarks/bench_mongo.py                                  # mongomock
    python benchmarks/bench_mongo.py --uri mongodb://127.0.0.1:27017  # a server

Each invocation works in a fresh database (dropped at the end on a server) and prints one
line per figure; nothing is asserted (speed is measured, not tested).  Figures:

* ``db[-1]`` with ``--runs`` runs in the store (median of repeated calls), and ``db[-1]``
  followed by its stop;
* bulk insert of one run of ``--events`` events sent as a single ``event_page`` through
  ``Broker.insert`` (stored one document per event), in documents per second;
* reading that run back the way ``get_table`` does (``iter_event_pages`` of its descriptor,
  columns concatenated), in rows per second, for all fields and projected to one field;
  and ``db.get_table`` itself (pandas frame included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import run_documents  # noqa: E402

from broker_v1 import Broker  # noqa: E402
from broker_v1.stores.mongo import MongoStore  # noqa: E402


def per_call(func: Callable[[], Any], repeat: int) -> float:
    """Median seconds per call over ``repeat`` calls in up to 10 batches."""
    batches = []
    per_batch = max(1, repeat // 10)
    for _ in range(max(1, min(10, repeat))):
        t = time.perf_counter()
        for _ in range(per_batch):
            func()
        batches.append((time.perf_counter() - t) / per_batch)
    return statistics.median(batches)


def seed_runs(store: MongoStore, n_runs: int) -> None:
    """Put ``n_runs`` start and stop documents in place with bulk writes (not timed).

    The documents are exactly what ``insert`` would store; going around the insert path
    keeps seeding fast on slow servers, and ``db[-1]`` is what is measured.
    """
    starts, stops = [], []
    for i in range(n_runs):
        for name, doc in run_documents(i, n_events=0):
            if name == "start":
                starts.append(doc)
            elif name == "stop":
                stops.append(doc)
    store._coll("run_start").insert_many(starts)
    store._coll("run_stop").insert_many(stops)


def columns(store: MongoStore, descriptor: str, fields: list[str] | None = None) -> int:
    """Read a descriptor's events into columns, as get_table does; returns the row count."""
    out: dict[str, list[Any]] = {"time": [], "seq_num": []}
    for page in store.iter_event_pages(descriptor, fields=fields):
        out["time"].extend(page["time"])
        out["seq_num"].extend(page["seq_num"])
        for key, col in page["data"].items():
            out.setdefault(key, []).extend(col)
    return len(out["time"])


def baseline(store: MongoStore, descriptor: str) -> None:
    """The server's own speed for the same work, without the store (for comparison)."""
    events = store._coll("event")
    t = time.perf_counter()
    docs = list(events.find({"descriptor": descriptor}, {"_id": 0}).sort("time", 1))
    elapsed = time.perf_counter() - t
    print(f"baseline: pymongo find      {len(docs) / elapsed:9.0f} docs/s   ({elapsed:.2f} s)")
    scratch = store._coll("event").database["bench_scratch"]
    scratch.create_index([("uid", -1)], unique=True)
    scratch.create_index([("descriptor", -1), ("time", 1)])
    t = time.perf_counter()
    scratch.insert_many(docs, ordered=False)
    elapsed = time.perf_counter() - t
    print(f"baseline: pymongo insert_many {len(docs) / elapsed:7.0f} docs/s   ({elapsed:.1f} s)")
    scratch.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="mongomock://bench",
                        help="server URI without a database (default: mongomock://bench)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store for db[-1]")
    parser.add_argument("--events", type=int, default=100_000, help="events in the large run")
    parser.add_argument("--fields", type=int, default=3, help="number fields per event")
    parser.add_argument("--page-size", type=int, default=None, help="MongoStore page_size")
    parser.add_argument("--repeat", type=int, default=200, help="db[-1] calls to time")
    parser.add_argument("--baseline", action="store_true",
                        help="also time the same reads and writes with pymongo directly")
    args = parser.parse_args()

    db_name = f"bench-{uuid.uuid4().hex[:10]}"
    options: dict[str, Any] = {}
    if args.page_size:
        options["page_size"] = args.page_size
    store = MongoStore(uri=f"{args.uri.rstrip('/')}/{db_name}", **options)
    print(f"store: {store.describe()}, page_size {store.page_size}")
    try:
        store.ensure_indexes()
        t = time.perf_counter()
        seed_runs(store, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - t:.1f} s")
        db = Broker(store, timezone="UTC")
        newest = db[-1].uid
        assert newest == store.find_run_starts({}, limit=1).__next__()["uid"]
        print(f"db[-1]                      {per_call(lambda: db[-1], args.repeat) * 1e3:9.2f} ms"
              f"   ({args.runs} runs)")
        print(f"db[-1] + .stop              "
              f"{per_call(lambda: db[-1].stop, args.repeat) * 1e3:9.2f} ms")

        docs = list(run_documents(args.runs + 1, n_events=args.events, n_fields=args.fields,
                                  pages=True))
        t = time.perf_counter()
        for name, doc in docs:
            db.insert(name, doc)
        elapsed = time.perf_counter() - t
        print(f"insert {args.events}-event run  {args.events / elapsed:9.0f} docs/s"
              f"   ({elapsed:.1f} s, one event_page)")

        descriptor = docs[1][1]["uid"]
        t = time.perf_counter()
        rows = columns(store, descriptor)
        elapsed = time.perf_counter() - t
        assert rows == args.events, rows
        print(f"read all fields             {rows / elapsed:9.0f} rows/s   ({elapsed:.2f} s)")
        t = time.perf_counter()
        rows = columns(store, descriptor, fields=["f1"])
        elapsed = time.perf_counter() - t
        print(f"read one field (projection) {rows / elapsed:9.0f} rows/s   ({elapsed:.2f} s)")
        header = db[-1]
        t = time.perf_counter()
        table = db.get_table(header)
        elapsed = time.perf_counter() - t
        print(f"db.get_table                {len(table) / elapsed:9.0f} rows/s   ({elapsed:.2f} s)")
        if args.baseline:
            baseline(store, descriptor)
    finally:
        if not args.uri.startswith("mongomock://"):
            import pymongo

            with pymongo.MongoClient(args.uri) as client:
                client.drop_database(db_name)
        store.close()


if __name__ == "__main__":
    main()
