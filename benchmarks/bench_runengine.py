"""Recording at RunEngine speed: validated single-document inserts of short, real-shaped runs.

Run: python benchmarks/bench_runengine.py [--runs 2000] [--stores memory,strict,files,mongo]
[--mongo-uri mongodb://host:port] [--mongo-runs 50] [--existing-runs 20000] [--reader-poll 0.01]

Each run is ``workload.runengine_run_documents``: start, a ``baseline`` descriptor, a
``primary`` descriptor with 10 data keys and three devices' configuration, 20 primary and 2
baseline single events, stop (26 documents).  They are inserted one by one with
``db.insert(name, doc)``, validation on, into a fresh store per repeat, as
``RE.subscribe(db.insert)`` would.  Prints docs/s per store beside a floor (a private copy of
every document, plus for the files store one JSON line per document and an fsync per run; for
the Mongo store, the same documents inserted one by one with pymongo alone into the same
collections with the same indexes), the time ``insert`` takes per document type, and what
validating one document of each type costs.  The mongo store runs when a server URI is given
(``--mongo-uri`` or ``BROKER_V1_TEST_MONGO_URI``).  Garbage is collected before every timed
pass, so each starts from the same heap.  With ``--existing-runs N`` the files store records
into a store that already holds N such runs (written first, not timed; each repeat adds its
runs, with new uids, to the same store), as a beamline's store does after months: a bigger
directory and index cost more per run than a fresh store shows.  With ``--reader-poll S``
the files store records while a second process polls ``db[-1]`` of the same store every S
seconds (0: back to back), as an analysis process watching a beamline does; its lookups'
median, p95 and maximum are printed too.  No assertions: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from workload import runengine_run_documents  # noqa: E402

Docs = list[tuple[str, dict[str, Any]]]
#: Targets of issue 18, printed beside the figures.
TARGETS = {"memory": 50_000.0, "strict": 20_000.0, "files": 20_000.0}
#: The Mongo store's target: within this factor of pymongo alone.
MONGO_FLOOR_RATIO = 1.3
#: Collection of each document type in the Mongo store's layout.
MONGO_COLLECTIONS = {"start": "run_start", "descriptor": "event_descriptor", "event": "event",
                     "stop": "run_stop"}
DESCRIPTOR_TARGET_US = 50.0
STOP_TARGET_MS = 5.0  # insert('stop') on the files store, its fsync included


def workload(runs: int) -> Docs:
    """``runs`` RunEngine-shaped runs, documents in emission order."""
    return [doc for i in range(runs) for doc in runengine_run_documents(i)]


class CollectorTime:
    """Seconds this process spent in garbage collections while in the block (``seconds``),
    and how many of them were full (``full``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._began = 0.0

    def _track(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        self.full += info["generation"] == 2

    def __enter__(self) -> CollectorTime:
        gc.callbacks.append(self._track)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._track)


def timed_inserts(insert: Callable[[str, dict[str, Any]], None], docs: Docs
                  ) -> tuple[float, dict[str, list[float]]]:
    """Insert every document; the total seconds and the seconds of each call, per name."""
    per_name: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter
    start = clock()
    for name, doc in docs:
        t = clock()
        insert(name, doc)
        per_name[name].append(clock() - t)
    return clock() - start, per_name


def insert_floor(docs: Docs, folder: Path | None) -> float:
    """Seconds for the least any store does: a private copy of each document (an orjson
    round trip); with ``folder``, also one JSON line per document appended to a file per run
    and an fsync when the run stops."""
    import os

    import orjson

    start = time.perf_counter()
    handle = None
    for name, doc in docs:
        line = orjson.dumps([name, doc])
        orjson.loads(line)
        if folder is None:
            continue
        if name == "start":
            handle = open(folder / f"{doc['uid']}.jsonl", "ab")
        assert handle is not None
        handle.write(line + b"\n")
        if name == "stop":
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
    return time.perf_counter() - start


def durable_floor(docs: Docs, folder: Path) -> float:
    """Seconds for the least any files store with broker_v1's guarantees must do, written
    without broker_v1: a private copy of each document (an orjson round trip); event-model's
    schema check of each start, descriptor and stop (compiled, ``jsonschema_rs``) and each
    event's keys checked against its descriptor's; every document one ``os.write`` of its line
    (a killed process loses nothing); a start creates its run file and commits one row to a
    SQLite index (WAL, ``synchronous=NORMAL``: other processes find the run at once) while the
    new directory entry is fsynced on a thread; a stop fsyncs its file, waits for that
    directory fsync and commits its row.  What the store does beyond this (sanitizing keys
    and values, duplicate and link checks, search columns and text, columnar caches) is not
    counted.  If this floor is below a target, no such store reaches it on this disk."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    import event_model
    import jsonschema_rs
    import orjson

    validators = {name: jsonschema_rs.Draft202012Validator(
        event_model.schemas[event_model.DocumentNames[name]])
        for name in ("start", "descriptor", "stop")}
    index = sqlite3.connect(folder / "index.sqlite", isolation_level=None)
    index.execute("PRAGMA journal_mode = WAL")
    index.execute("PRAGMA synchronous = NORMAL")
    index.execute("CREATE TABLE runs (uid TEXT PRIMARY KEY, time REAL, start TEXT, stop TEXT)")
    index.execute("CREATE INDEX runs_time ON runs (time)")
    pool = ThreadPoolExecutor(1)

    def fsync_directory() -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
    keys: dict[str, frozenset[str]] = {}
    fd, dir_sync = -1, None
    start = time.perf_counter()
    for name, doc in docs:
        line = orjson.dumps([name, doc])
        name, copy = orjson.loads(line)
        if name == "event":
            if keys[copy["descriptor"]] != copy["data"].keys():
                raise ValueError("event keys differ from its descriptor's")
        else:
            validators[name].validate(copy)
        if name == "start":
            fd = os.open(folder / f"{copy['uid']}.jsonl", flags, 0o644)
            dir_sync = pool.submit(fsync_directory)
        elif name == "descriptor":
            keys[copy["uid"]] = frozenset(copy["data_keys"])
        os.write(fd, line + b"\n")
        if name == "start":
            index.execute("INSERT INTO runs VALUES (?, ?, ?, NULL)",
                          (copy["uid"], copy["time"], line))
        elif name == "stop":
            os.fsync(fd)
            os.close(fd)
            assert dir_sync is not None
            dir_sync.result()
            index.execute("UPDATE runs SET stop = ? WHERE uid = ?", (line, copy["run_start"]))
    secs = time.perf_counter() - start
    pool.shutdown()
    index.close()
    return secs


def fsync_floor(folder: Path, *, repeat: int = 50) -> float:
    """Median milliseconds of one fsync of a small file just appended to, on ``folder``'s
    disk: the least a durable stop can cost there."""
    times = []
    for i in range(repeat):
        with open(folder / f"fsync-{i}.jsonl", "ab") as handle:
            handle.write(b'["stop", {}]\n' * 26)
            handle.flush()
            t = time.perf_counter()
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def create_cost(folder: Path, *, repeat: int = 200) -> float:
    """Median microseconds to create one empty file (``O_CREAT | O_EXCL``) in a new
    directory ``folder``: what opening a run file costs on this disk at this moment."""
    folder.mkdir()
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fd = os.open(folder / f"{i}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        times.append(time.perf_counter() - t)
        os.close(fd)
    return statistics.median(times) * 1e6


def mongo_uri(base: str, database: str) -> str:
    """``base`` (``mongodb://host:port``, options allowed) pointed at ``database``."""
    head, sep, query = base.partition("?")
    return f"{head.rstrip('/')}/{database}{sep}{query}"


def mongo_floor(docs: Docs, uri: str) -> float:
    """Seconds for pymongo alone to insert the documents one by one (``insert_one`` of a copy,
    events as single documents) into the collections the Mongo store writes, which already
    have the store's indexes (created beforehand, not timed)."""
    import pymongo

    from broker_v1.stores.mongo import MongoStore

    setup = MongoStore(uri=uri)
    setup.ensure_indexes()
    setup.close()
    client: Any = pymongo.MongoClient(uri)
    try:
        database = client.get_default_database()
        collections = {name: database[c] for name, c in MONGO_COLLECTIONS.items()}
        collections["start"].find_one({})  # connected before the clock starts
        start = time.perf_counter()
        for name, doc in docs:
            collections[name].insert_one(dict(doc))  # a copy: insert_one adds _id
        secs = time.perf_counter() - start
        client.drop_database(database.name)
    finally:
        client.close()
    return secs


def make_store(kind: str, folder: Path, mongo: str | None = None) -> Any:
    """A fresh store: ``memory``, ``strict`` (memory, strict policy), ``files`` or ``mongo``
    (on the database of the URI ``mongo``)."""
    if kind == "files":
        from broker_v1.stores.files import FileStore

        shutil.rmtree(folder, ignore_errors=True)
        return FileStore(path=folder)
    if kind == "mongo":
        from broker_v1.stores.mongo import MongoStore

        assert mongo is not None
        return MongoStore(uri=mongo)
    from broker_v1.stores.memory import MemoryStore

    return MemoryStore(validate="strict" if kind == "strict" else "compatible")


def drop_store(kind: str, store: Any, folder: Path, mongo: str | None = None) -> None:
    """Close ``store``; drop a Mongo store's database.  A files store's directory is kept
    until the benchmark ends: on ext4 without a journal (this machine's disk), creating a file
    skips every inode of its group deleted in the last minutes, one check each, so deleting a
    pass's thousands of files would slow the next pass's file creation (seen: 24 -> 208 µs
    per run file over three passes), a cost no recording beamline pays."""
    store.close()
    if kind == "mongo":
        import pymongo

        client: Any = pymongo.MongoClient(mongo)
        client.drop_database(client.get_default_database().name)
        client.close()


#: A second process polling ``db[-1]`` of a files store (argv: folder, pause in seconds)
#: until its stdin closes; then it prints its lookups' times as JSON.
POLLING_READER = r"""
import json, sys, threading, time
from broker_v1 import Broker
from broker_v1.stores.files import FileStore
folder, pause = sys.argv[1], float(sys.argv[2])
db = Broker(FileStore(path=folder), timezone="UTC")
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
times, clock = [], time.perf_counter
while not done.is_set():
    t = clock()
    try:
        db[-1].start
    except IndexError:  # no run recorded yet
        pass
    times.append(clock() - t)
    if pause:
        time.sleep(pause)
print(json.dumps(times))
"""


class PollingReader:
    """A second process polling ``db[-1]`` of the store at ``folder`` every ``pause`` s."""

    def __init__(self, folder: Path, pause: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", POLLING_READER, str(folder), str(pause)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the polling reader did not start")

    def finish(self) -> list[float]:
        """Stop polling; the seconds each lookup took."""
        import json

        out, _ = self.proc.communicate("", timeout=60)
        return [float(t) for t in json.loads(out)]


def prefill(folder: Path, runs: int) -> None:
    """Write ``runs`` RunEngine-shaped runs into a files store at ``folder`` (not timed;
    fsyncs deferred to the end, as a bulk copy would)."""
    from broker_v1 import Broker
    from broker_v1.stores.files import FileStore

    store = FileStore(path=folder)
    db = Broker(store, timezone="UTC")
    with store.deferred_sync():
        for name, doc in workload(runs):
            db.insert(name, doc)
    store.close()


def measure_store(kind: str, docs: Docs, *, repeat: int, scratch: Path,
                  mongo_base: str | None = None, existing: int = 0,
                  reader_poll: float | None = None) -> dict[str, Any]:
    """Median docs/s over ``repeat`` fresh stores, with the floor measured alternately; with
    ``existing`` (files store only), over ``repeat`` passes into one store that held that
    many runs before the first pass (each pass records new runs); with ``reader_poll``
    (files store only), while a second process polls ``db[-1]`` every that many seconds."""
    from broker_v1 import Broker
    from broker_v1.stores.files import FileStore

    if (existing or reader_poll is not None) and kind != "files":
        raise ValueError(f"existing runs and a polling reader apply to the files store only, "
                         f"not {kind!r}")
    lookups: list[float] = []
    rates, floors, fsyncs, per_name, cpus = [], [], [], defaultdict(list), []
    durables: list[float] = []
    creates: list[float] = []
    collected: list[float] = []  # share of each pass spent collecting garbage
    full_collections: list[int] = []
    usages: list[tuple[float, float] | None] = []  # (system share of CPU, switches per run)
    tag = os.urandom(3).hex()

    def database(label: str) -> str | None:
        return None if mongo_base is None else mongo_uri(mongo_base, f"bench_re_{tag}_{label}")

    warm = make_store(kind, scratch / f"{kind}-warm", database("warm"))  # compiles validators
    timed_inserts(Broker(warm, timezone="UTC").insert, docs[:26])
    drop_store(kind, warm, scratch / f"{kind}-warm", database("warm"))
    grown = scratch / f"{kind}-existing"
    if existing:
        prefill(grown, existing)
    for i in range(repeat):
        if existing:
            docs = workload(len(docs) // 26)  # new uids: the store holds the last pass's
            folder, store = grown, FileStore(path=grown)
        else:
            folder = scratch / f"{kind}-{i}"
            store = make_store(kind, folder, database(str(i)))
        db = Broker(store, timezone="UTC")
        reader = None if reader_poll is None else PollingReader(folder, reader_poll)
        gc.collect()  # earlier passes' garbage would be collected on this pass's clock
        cpu = time.process_time()
        usage = _usage()
        with CollectorTime() as collector:
            secs, calls = timed_inserts(db.insert, docs)
        since = _usage_since(usage)
        usages.append(None if since is None else (since[0], since[1] / (len(docs) / 26)))
        collected.append(collector.seconds / secs)
        full_collections.append(collector.full)
        if reader is not None:
            lookups.extend(reader.finish())
        # CPU of every thread of this process (background fsyncs, caches, checkpoints too):
        # unlike wall time, it hardly moves with the disk or with other processes.
        cpus.append(time.process_time() - cpu)
        drop_store(kind, store, folder, database(str(i)))
        del db, store
        rates.append(len(docs) / secs)
        for name, times in calls.items():
            per_name[name].extend(times)
        gc.collect()
        if kind == "mongo":
            uri = database(f"floor{i}")
            assert uri is not None
            floors.append(len(docs) / mongo_floor(docs, uri))
            continue
        floor_dir = scratch / f"{kind}-floor-{i}"
        floor_dir.mkdir()
        floors.append(len(docs) / insert_floor(docs, floor_dir if kind == "files" else None))
        if kind == "files":
            fsyncs.append(fsync_floor(floor_dir))
            durable_dir = scratch / f"{kind}-durable-floor-{i}"
            durable_dir.mkdir()
            durables.append(len(docs) / durable_floor(docs, durable_dir))
            creates.append(create_cost(scratch / f"{kind}-create-{i}"))
    stops = sorted(per_name["stop"])
    return {
        "docs_per_s": statistics.median(rates),
        "floor_docs_per_s": statistics.median(floors),
        "repeats": repeat,
        "insert_us": {n: statistics.median(t) * 1e6 for n, t in sorted(per_name.items())},
        "stop_ms": statistics.median(stops) * 1e3,
        "stop_p95_ms": stops[int(0.95 * (len(stops) - 1))] * 1e3,
        "fsync_ms": statistics.median(fsyncs) if fsyncs else None,
        "durable_floor_docs_per_s": statistics.median(durables) if durables else None,
        "create_us": statistics.median(creates) if creates else None,
        "cpu_us_per_run": statistics.median(cpus) / (len(docs) / 26) * 1e6,
        "system_share": _median_of(u[0] for u in usages if u is not None),
        "switches_per_run": _median_of(u[1] for u in usages if u is not None),
        "collector_share": statistics.median(collected),
        "full_collections": statistics.median(full_collections),
        "lookups": sorted(lookups),
    }


def _usage() -> Any:
    """This process's resource usage now (None where ``resource`` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF)


def _usage_since(before: Any) -> tuple[float, float] | None:
    """The system time's share of the CPU time since ``before`` (:func:`_usage`) and the
    voluntary context switches meanwhile.  They say how much of a run is the kernel's, and
    move with the machine (a busy host, a disk that just deleted files) where the code is the
    same."""
    after = _usage()
    if before is None or after is None:
        return None
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    switches = after.ru_nvcsw - before.ru_nvcsw
    return (system / (user + system) if user + system else 0.0), switches


def _median_of(values: Any) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def validation_costs(docs: Docs, policy: str, *, limit: int = 400) -> dict[str, float]:
    """Median microseconds to validate one start, descriptor, event and stop under ``policy``
    as the insert path does: the schema check (``validate_document``) for start, descriptor
    and stop, and for events the checks against the descriptor's keys (plus the schema
    check under ``strict``)."""
    from broker_v1.documents import validate_document

    try:
        from broker_v1.stores._checks import check_event
    except ImportError:  # before stores/_checks.py (to measure older commits): the method
        from broker_v1.stores.memory import MemoryStore

        check_event = MemoryStore()._check_event
    keys = {d["uid"]: frozenset(d["data_keys"]) for n, d in docs if n == "descriptor"}
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, doc in docs:
        if len(by_name[name]) < limit:
            by_name[name].append(doc)

    def event_check(event: dict[str, Any]) -> None:
        if policy == "strict":
            validate_document("event", event, policy)
        check_event(event, lambda _n, d: keys[d["descriptor"]])

    costs = {}
    for name in ("start", "descriptor", "event", "stop"):
        group = by_name[name]
        check = event_check if name == "event" else (
            lambda d, n=name: validate_document(n, d, policy))
        check(group[0])  # compiles the validator: once per process, not measured
        times = []
        for doc in group:
            t = time.perf_counter()
            check(doc)
            times.append(time.perf_counter() - t)
        costs[name] = statistics.median(times) * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="memory,strict,files,mongo",
                        help="comma-separated subset of memory, strict (memory store, strict "
                             "policy), files and mongo (skipped without a server URI)")
    parser.add_argument("--mongo-uri", default=os.environ.get("BROKER_V1_TEST_MONGO_URI"),
                        help="a MongoDB server for the mongo store (default: "
                             "$BROKER_V1_TEST_MONGO_URI); a database per pass is created "
                             "and dropped")
    parser.add_argument("--existing-runs", type=int, default=0,
                        help="files store only: record into a store already holding this "
                             "many runs (written first, not timed) instead of a fresh one")
    parser.add_argument("--reader-poll", type=float, default=None, metavar="SECONDS",
                        help="files store only: record while a second process polls db[-1] "
                             "of the same store every SECONDS (0: back to back)")
    parser.add_argument("--mongo-runs", type=int, default=50,
                        help="runs for the mongo store and its floor (the wire test server "
                             "takes about 15 ms per write, so 2,000 runs would take an hour)")
    args = parser.parse_args()
    docs = workload(args.runs)
    print(f"{args.runs:,} RunEngine-shaped runs, {len(docs):,} documents, inserted one by one "
          f"with db.insert, median of {args.repeat}")
    scratch = Path(tempfile.mkdtemp(prefix="broker_v1-bench-re-"))
    try:
        for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
            if kind == "mongo" and not args.mongo_uri:
                print("  mongo: skipped (no --mongo-uri and no BROKER_V1_TEST_MONGO_URI)")
                continue
            if kind == "mongo":
                mongo_docs = docs[:26 * args.mongo_runs]
                print(f"  mongo: {args.mongo_runs:,} runs, {len(mongo_docs):,} documents")
                r = measure_store(kind, mongo_docs, repeat=args.repeat, scratch=scratch,
                                  mongo_base=args.mongo_uri)
            elif kind == "files" and (args.existing_runs or args.reader_poll is not None):
                if args.existing_runs:
                    print(f"  files: into a store already holding {args.existing_runs:,} runs")
                if args.reader_poll is not None:
                    print(f"  files: while another process polls db[-1] every "
                          f"{args.reader_poll:g} s" if args.reader_poll else
                          "  files: while another process polls db[-1] back to back")
                r = measure_store(kind, docs, repeat=args.repeat, scratch=scratch,
                                  existing=args.existing_runs, reader_poll=args.reader_poll)
            else:
                r = measure_store(kind, docs, repeat=args.repeat, scratch=scratch)
            label = {"memory": "memory (compatible)", "strict": "memory (strict)",
                     "mongo": "mongo (pymongo floor)"}.get(kind, kind)
            if kind == "mongo":
                ratio = r["floor_docs_per_s"] / r["docs_per_s"]
                target = f"{ratio:.2f}x the floor, target <= {MONGO_FLOOR_RATIO}x"
            else:
                target = f"target >= {TARGETS[kind]:,.0f}"
            print(f"  {label:<20} {r['docs_per_s']:>9,.0f} docs/s   floor "
                  f"{r['floor_docs_per_s']:>9,.0f} docs/s   {target}")
            print("    insert, median per call: " + ", ".join(
                f"{n} {us:.1f} µs" for n, us in r["insert_us"].items()))
            kernel = "" if r["system_share"] is None else (
                f" ({100 * r['system_share']:.0f} % of it in the kernel; "
                f"{r['switches_per_run']:.1f} voluntary context switches per run)")
            print(f"    CPU per run of 26 documents, all threads: {r['cpu_us_per_run']:,.0f} µs"
                  f"{kernel}; garbage collection {100 * r['collector_share']:.1f} % of a pass "
                  f"({r['full_collections']:.0f} full)")
            if r["durable_floor_docs_per_s"] is not None:
                print(f"    floor with the store's guarantees (kill-safe writes, schema checks, "
                      f"an index row at start and stop, directory fsync): "
                      f"{r['durable_floor_docs_per_s']:,.0f} docs/s")
            if r["fsync_ms"] is not None:
                print(f"    insert('stop'): median {r['stop_ms']:.2f} ms, p95 "
                      f"{r['stop_p95_ms']:.2f} ms   target <= {STOP_TARGET_MS:.0f} ms   "
                      f"(one bare fsync on this disk: {r['fsync_ms']:.2f} ms)")
            if r["lookups"]:
                looks = r["lookups"]
                print(f"    the polling reader's db[-1]: median "
                      f"{statistics.median(looks) * 1e3:.3f} ms, p95 "
                      f"{looks[int(0.95 * (len(looks) - 1))] * 1e3:.3f} ms, max "
                      f"{looks[-1] * 1e3:.1f} ms ({len(looks):,} lookups)")
            if r["create_us"] is not None:
                print(f"    creating one file on this disk now: {r['create_us']:.0f} µs "
                      "(more right after many files were deleted)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for policy in ("compatible", "strict"):
        costs = validation_costs(docs, policy)
        print(f"  validation ({policy}), median per document: " + ", ".join(
            f"{n} {us:.1f} µs" for n, us in costs.items())
            + f"   (descriptor target <= {DESCRIPTOR_TARGET_US:.0f} µs)")


if __name__ == "__main__":
    main()
