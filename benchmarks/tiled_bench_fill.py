"""Fill a tiled SQL catalog for ``bench_tiled.py`` (run in the tiled server's venv).

Usage: ``python tiled_bench_fill.py URI API_KEY RUNS LONG_EVENTS [FRAMES EXTERNAL_DIR]``.
Documents are composed
with event-model and handed to bluesky-tiled-plugins' ``TiledWriter`` (no RunEngine, so
thousands of runs take seconds, not minutes): ``RUNS`` short runs (plan ``bench_scan``,
scan_ids 1..RUNS, start and stop documents; the newest 20 also
10 events x 3 numbers), then one long run (plan ``bench_long``,
``LONG_EVENTS`` events x 10 numbers, sent as event pages of 10,000 as TiledWriter batches
them); with ``FRAMES``, one run of an external image detector (``FRAMES`` 512x512 uint16
frames, one ``.npy`` file each in ``EXTERNAL_DIR``, resource spec ``NPY_SEQ`` and one datum
per event, as ophyd.sim's registry-backed signals write them; TiledWriter makes an array node
reading the files).  Prints one JSON line: the uids, the long and image runs' uids and how
long writing took.  Uses only event-model, numpy, tiled and bluesky-tiled-plugins: nothing of
broker_v1.
"""

import json
import os
import sys
import time

import numpy as np
from bluesky_tiled_plugins import TiledWriter
from event_model import compose_run
from tiled.client import from_uri

SHORT_KEYS = ["det", "motor", "I0"]
#: Only the newest short runs get a primary stream (10 events x 3 numbers): a stream costs the
#: SQL catalog ~0.3 s per run to create, and searches read start and stop documents only.
EVENTFUL = 20
LONG_KEYS = [f"f{i}" for i in range(10)]


def _keys(names):
    return {k: {"source": f"sim:{k}", "dtype": "number", "shape": [], "object_name": k}
            for k in names}


def short_run(writer, i, t0, with_events):
    run = compose_run(time=t0, metadata={"plan_name": "bench_scan", "scan_id": i + 1,
                                         "operator": "bench", "sample": f"s{i % 7}"})
    writer("start", run.start_doc)
    if with_events:
        stream = run.compose_descriptor(name="primary", data_keys=_keys(SHORT_KEYS), time=t0,
                                        object_keys={k: [k] for k in SHORT_KEYS})
        writer("descriptor", stream.descriptor_doc)
        n = 10
        times = [t0 + 0.01 * (j + 1) for j in range(n)]
        data = {k: [float(j * (m + 1)) for j in range(n)] for m, k in enumerate(SHORT_KEYS)}
        writer("event_page", stream.compose_event_page(
            data=data, timestamps={k: times for k in SHORT_KEYS}, time=times,
            seq_num=list(range(1, n + 1))))
    writer("stop", run.compose_stop(time=t0 + 1))
    return run.start_doc["uid"]


def long_run(writer, events, t0, scan_id):
    run = compose_run(time=t0, metadata={"plan_name": "bench_long", "scan_id": scan_id})
    writer("start", run.start_doc)
    stream = run.compose_descriptor(name="primary", data_keys=_keys(LONG_KEYS), time=t0,
                                    object_keys={k: [k] for k in LONG_KEYS})
    writer("descriptor", stream.descriptor_doc)
    page = 10_000
    rng = np.random.default_rng(0)
    for first in range(0, events, page):
        n = min(page, events - first)
        times = (t0 + 0.001 * np.arange(first + 1, first + n + 1)).tolist()
        data = {k: rng.random(n).tolist() for k in LONG_KEYS}
        writer("event_page", stream.compose_event_page(
            data=data, timestamps={k: times for k in LONG_KEYS}, time=times,
            seq_num=list(range(first + 1, first + n + 1))))
    writer("stop", run.compose_stop(time=t0 + 0.001 * events + 1))
    return run.start_doc["uid"]


FRAME_SHAPE = (512, 512)


def image_run(writer, frames, external, t0, scan_id):
    os.makedirs(external, exist_ok=True)
    run = compose_run(time=t0, metadata={"plan_name": "bench_images", "scan_id": scan_id})
    writer("start", run.start_doc)
    keys = {"img": {"source": "sim:img", "dtype": "array", "dtype_numpy": "<u2",
                    "shape": list(FRAME_SHAPE), "external": "FILESTORE:",
                    "object_name": "img"},
            "motor": {"source": "sim:motor", "dtype": "number", "shape": [],
                      "object_name": "motor"}}
    stream = run.compose_descriptor(name="primary", data_keys=keys, time=t0,
                                    object_keys={"img": ["img"], "motor": ["motor"]})
    writer("descriptor", stream.descriptor_doc)
    stem = "frames"
    resource = run.compose_resource(spec="NPY_SEQ", root=external, resource_path=stem,
                                    resource_kwargs={})
    writer("resource", resource.resource_doc)
    rng = np.random.default_rng(1)
    for i in range(frames):
        np.save(os.path.join(external, f"{stem}_{i}.npy"),
                rng.integers(0, 4096, FRAME_SHAPE, dtype=np.uint16), allow_pickle=False)
        datum = resource.compose_datum(datum_kwargs={"index": i})
        writer("datum", datum)
        t = t0 + 0.1 * (i + 1)
        writer("event", stream.compose_event(
            data={"img": datum["datum_id"], "motor": float(i)}, timestamps={"img": t, "motor": t},
            time=t, seq_num=i + 1, filled={"img": False}))
    writer("stop", run.compose_stop(time=t0 + 0.1 * frames + 1))
    return run.start_doc["uid"]


def main(uri, api_key, runs, long_events, frames=0, external=None):
    begin = time.monotonic()
    client = from_uri(uri, api_key=api_key)
    t0 = time.time() - 10 * 86400
    # One writer, one run at a time: concurrent writers make the SQLite catalog answer 500
    # (locked), and TiledWriter's retry may then duplicate rows.
    writer = TiledWriter(client)
    uids = [short_run(writer, i, t0 + 10.0 * i, i >= runs - EVENTFUL) for i in range(runs)]
    short_s = time.monotonic() - begin
    long_uid = long_run(writer, long_events, t0 + 10.0 * runs + 100, runs + 1)
    image_uid = (image_run(writer, frames, external, t0 + 10.0 * runs + 50, runs + 2)
                 if frames else None)
    print(json.dumps({"uids": uids, "long_uid": long_uid, "image_uid": image_uid,
                      "short_s": short_s, "total_s": time.monotonic() - begin}))


if __name__ == "__main__":
    extra = (int(sys.argv[5]), sys.argv[6]) if len(sys.argv) > 6 else ()
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *extra)
