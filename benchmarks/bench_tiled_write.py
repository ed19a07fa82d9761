"""Writing into a tiled server: broker_v1's ``db.insert`` beside TiledWriter alone.

Run: python benchmarks/bench_tiled_write.py [--events N] [--server-venv DIR]

Starts a writable tiled SQL-catalog server (``tests/tiled_server.py``) with its catalog in a
temporary folder on disk, in the server venv (``BROKER_V1_TILED_VENV``, else
``.ci/tiled-venv``), and records one run of ``--events`` events (3 numbers each, plus a
2-event baseline stream) four ways, each into a fresh catalog container:

* **store, batch 1**: ``TiledStore.insert`` with the default ``write_batch_size: 1`` (each
  insert's rows sent before it returns), events inserted one by one as a RunEngine does;
* **floor, batch 1**: bluesky-tiled-plugins' ``TiledWriter(client, batch_size=1)`` given the
  same documents: the writer's own cost, no checks;
* **store, batch 10,000** and **floor, batch 10,000**: the same with rows batched (TiledWriter's
  default; what a bulk copy wants);
* **store, one event_page**: the events inserted as one page (what a copy does), batch 1.

Each figure is the time from the start document to the return of the stop, with the HTTP
requests it made beside it (where the time goes: the server answers each write in tens of
milliseconds).  No assertions: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests"), str(HERE)]


def documents(n_events: int, *, page: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """One run in a RunEngine's order: start, baseline, primary events, baseline, stop."""
    import event_model

    t0 = 1_700_000_000.0
    bundle = event_model.compose_run(time=t0, metadata={"plan_name": "bench_write"})
    base = bundle.compose_descriptor(name="baseline", time=t0, data_keys={
        "temp": {"source": "s", "dtype": "number", "shape": []}})
    primary = bundle.compose_descriptor(name="primary", time=t0 + 0.1, data_keys={
        k: {"source": "s", "dtype": "number", "shape": []} for k in ("x", "y", "z")})
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", bundle.start_doc), ("descriptor", base.descriptor_doc),
        ("event", base.compose_event(data={"temp": 1.0}, timestamps={"temp": t0}, time=t0)),
        ("descriptor", primary.descriptor_doc)]
    events = [primary.compose_event(
        data={"x": float(i), "y": 2.0 * i, "z": -1.0 * i},
        timestamps={k: t0 + 1 + i for k in ("x", "y", "z")}, time=t0 + 1 + i)
        for i in range(n_events)]
    if page:
        docs.append(("event_page", event_model.pack_event_page(*events)))
    else:
        docs.extend(("event", e) for e in events)
    docs.append(("event", base.compose_event(data={"temp": 2.0}, timestamps={"temp": t0 + 9e6},
                                             time=t0 + 9e6)))
    docs.append(("stop", bundle.compose_stop(time=t0 + 9e6 + 1)))
    return docs


def new_catalog(root: Any, server: Any) -> str:
    from tiled.structures.core import Spec

    key = f"bench-{uuid.uuid4().hex[:10]}"
    root.create_container(key=key, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")])
    return f"{server.uri}/api/v1/metadata/{key}"


def record(kind: str, uri: str, key: str, batch: int, docs: list[Any]) -> tuple[float, int]:
    """Seconds from start to the stop's return, and the HTTP requests made."""
    from bench_tiled import count_requests

    if kind == "store":
        from broker_v1.stores.tiled import TiledStore

        store = TiledStore(uri=uri, api_key=key, write_batch_size=batch)
        counter = count_requests(store._conn.catalog().context)
        t0 = time.perf_counter()
        for name, doc in docs:
            store.insert(name, doc)
        elapsed = time.perf_counter() - t0
        store.close()
        return elapsed, counter[0]
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri

    client = from_uri(uri, api_key=key)
    counter = count_requests(client.context)
    writer = TiledWriter(client, batch_size=batch)
    t0 = time.perf_counter()
    for name, doc in docs:
        writer(name, doc)
    elapsed = time.perf_counter() - t0
    client.context.close()
    return elapsed, counter[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--server-venv", default=None)
    args = parser.parse_args(argv)
    import os

    from tiled.client import from_uri
    from tiled_server import API_KEY, TiledServer, server_venv

    if args.server_venv:
        os.environ["BROKER_V1_TILED_VENV"] = args.server_venv
    venv = server_venv()
    if venv is None:
        print("no tiled server venv: set BROKER_V1_TILED_VENV or build .ci/tiled-venv")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-tiled-write-") as folder:
        server = TiledServer(venv, Path(folder))
        server.start()
        root = from_uri(server.uri, api_key=API_KEY)
        try:
            cases = [("floor", 1, False), ("store", 1, False), ("floor", 10_000, False),
                     ("store", 10_000, False), ("store", 1, True)]
            print(f"one run of {args.events} events (+2 baseline) recorded into tiled "
                  f"{server.uri} (server start {server.timings['start']:.1f} s)")
            results = {}
            for kind, batch, page in cases:
                docs = documents(args.events, page=page)
                seconds, requests = record(kind, new_catalog(root, server), API_KEY, batch,
                                           docs)
                results[(kind, batch, page)] = seconds
                label = f"{kind}, batch {batch:,}" + (", one event_page" if page else "")
                floor = results.get(("floor", batch, False))
                beside = f"  ({seconds / floor:.2f}x the floor)" if kind == "store" and floor \
                    else ""
                print(f"  {label:<32} {seconds:8.2f} s  {requests:6d} requests  "
                      f"{args.events / seconds:8.0f} events/s{beside}")
        finally:
            root.context.close()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
