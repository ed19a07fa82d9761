"""Fill a tiled server with runs recorded by a real RunEngine (run in the tiled server's venv).

Usage: ``python tiled_fill.py URI API_KEY [EXTERNAL_DIR DOCUMENTS_FILE]``.  Simulated ophyd
devices write through bluesky-tiled-plugins' ``TiledWriter``, as at a beamline; the script
prints one JSON line per run (uid, scan_id, plan_name, streams) so the tests know what was
written.  It uses only bluesky, ophyd, event-model and bluesky-tiled-plugins: nothing of
broker_v1.

With ``EXTERNAL_DIR`` (inside the server's ``readable_storage``) it also records a run of an
external-image detector: ophyd.sim's registry-backed signal writes one ``.npy`` file per frame
there and emits resource and datum documents (spec ``NPY_SEQ``), which TiledWriter turns into
an array node reading those files.  Every document of that run, as the RunEngine emitted it, is
written to ``DOCUMENTS_FILE`` (one JSON ``[name, doc]`` per line) so the tests can hold the same
documents in a MemoryStore.
"""

import json
import os
import sys
import time

import numpy as np
from bluesky import RunEngine
from bluesky.plans import count, list_scan, rel_scan, scan
from bluesky.preprocessors import SupplementalData
from bluesky_tiled_plugins import TiledWriter
from event_model import compose_run, sanitize_doc
from ophyd.sim import SynSignal, SynSignalWithRegistry, det, det1, det2, motor, motor1, motor2
from tiled.client import from_uri


def main(uri: str, api_key: str, external: str | None = None,
         documents: str | None = None) -> None:
    client = from_uri(uri, api_key=api_key)
    RE = RunEngine({})
    writer_token = RE.subscribe(TiledWriter(client))
    baseline = SupplementalData(baseline=[motor1, motor2])
    uids = []
    uids += RE(count([det], num=3), purpose="first count")
    RE.preprocessors.append(baseline)
    uids += RE(scan([det], motor, -1, 1, 20), sample={"name": "gold"}, operator="Dmitri")
    RE.preprocessors.remove(baseline)
    uids += RE(list_scan([det1, det2], motor, [0.0, 0.5, 1.0]), operator="Michael")
    uids += RE(count([det1], num=2), sample={"name": "silicon"}, operator="Dmitri")
    uids += RE(count([det2], num=4, delay=0.01), purpose="last count")
    # In-event arrays of more than 16 values get their own array node (smaller ones would go
    # into the table, which tiled 0.2.20's SQL storage refuses: "Unsupported PyArrow type").
    spectrum = SynSignal(func=lambda: np.arange(20.0) * motor.position, name="spectrum")
    frame = SynSignal(func=lambda: np.arange(32.0).reshape(4, 8) + motor.position, name="frame")
    uids += RE(list_scan([spectrum, frame], motor, [1.0, 2.0, 3.0]), purpose="arrays")
    uids += write_composed(client)
    if external is not None:
        RE.unsubscribe(writer_token)  # that run goes through a writer that shifts its times
        uids += record_images(RE, client, external, documents)
    for uid in uids:
        run = client[uid]
        start = run.metadata["start"]
        print(json.dumps({"uid": uid, "scan_id": start.get("scan_id"),
                          "plan_name": start.get("plan_name"), "streams": sorted(run)}))


#: The image run is recorded as if two days earlier, so the runs above stay the newest.
SHIFT = 2 * 86400.0


def record_images(RE, client, external: str, documents: str) -> list:
    """scan_id 9, a ``rel_scan`` of five points of an external 6x8 image and ``det``."""
    os.makedirs(external, exist_ok=True)
    # float64 frames: the array node's dtype comes from the descriptor's "array" (<f8).
    img = SynSignalWithRegistry(
        func=lambda: np.arange(48.0).reshape(6, 8) * 10 + motor.position, name="img",
        save_path=external, labels={"detectors"})
    writer = TiledWriter(client)
    kept = open(documents, "w")

    def record(name, doc):
        doc = sanitize_doc(dict(doc))
        if name in ("start", "descriptor", "event", "stop"):
            doc["time"] -= SHIFT
        kept.write(json.dumps([name, doc]) + "\n")
        writer(name, doc)

    token = RE.subscribe(record)
    RE.md["scan_id"] = 8
    try:
        uids = RE(rel_scan([img, det], motor, 0, 4, 5), operator="Dmitri",
                  sample={"name": "image"}, purpose="images")
    finally:
        RE.unsubscribe(token)
        kept.close()
    return list(uids)


def write_composed(client) -> list:
    """Two runs a day older than the RunEngine's, built with event_model and given to
    TiledWriter directly: uids sharing the prefix ``abcdef0``; the first with a configuration
    update in its primary stream (a second descriptor), the second left open (no stop)."""
    writer = TiledWriter(client)
    t0 = time.time() - 86400
    md = {"plan_name": "composed", "operator": "Dmitri", "sample": {"name": "composed"}}
    first = compose_run(uid="abcdef01-0000-4000-8000-000000000001", time=t0,
                        metadata={**md, "scan_id": 7})
    writer("start", first.start_doc)
    keys = {"x": {"source": "sim:x", "dtype": "number", "shape": [], "object_name": "x"},
            "gain": {"source": "sim:gain", "dtype": "integer", "shape": [],
                     "object_name": "x"}}

    def configuration(gain, t):
        return {"x": {"data": {"x_gain": gain}, "timestamps": {"x_gain": t},
                      "data_keys": {"x_gain": {"source": "sim:x_gain", "dtype": "integer",
                                               "shape": []}}}}

    before = first.compose_descriptor(name="primary", data_keys=keys, time=t0 + 1,
                                      configuration=configuration(1, t0),
                                      object_keys={"x": ["x", "gain"]})
    writer("descriptor", before.descriptor_doc)
    for seq in (1, 2):
        writer("event", before.compose_event(
            data={"x": 0.5 * seq, "gain": 1}, timestamps={"x": t0 + 1 + seq, "gain": t0},
            time=t0 + 1 + seq, seq_num=seq))
    after = first.compose_descriptor(name="primary", data_keys=keys, time=t0 + 10,
                                     configuration=configuration(2, t0 + 9),
                                     object_keys={"x": ["x", "gain"]})
    writer("descriptor", after.descriptor_doc)
    for seq in (3, 4):
        writer("event", after.compose_event(
            data={"x": 0.5 * seq, "gain": 2}, timestamps={"x": t0 + 10 + seq, "gain": t0 + 9},
            time=t0 + 10 + seq, seq_num=seq))
    writer("stop", first.compose_stop(time=t0 + 20))

    second = compose_run(uid="abcdef02-0000-4000-8000-000000000002", time=t0 + 100,
                         metadata={**md, "scan_id": 8})
    writer("start", second.start_doc)
    stream = second.compose_descriptor(name="primary", data_keys={"x": keys["x"]},
                                       time=t0 + 101, object_keys={"x": ["x"]})
    writer("descriptor", stream.descriptor_doc)
    writer("event", stream.compose_event(data={"x": 1.0}, timestamps={"x": t0 + 102},
                                         time=t0 + 102, seq_num=1))
    return [first.start_doc["uid"], second.start_doc["uid"]]


if __name__ == "__main__":
    main(*sys.argv[1:5])
