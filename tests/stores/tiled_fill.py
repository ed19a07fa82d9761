"""Fill a tiled server with runs recorded by a real RunEngine (run in the tiled server's venv).

Usage: ``python tiled_fill.py URI API_KEY``.  Simulated ophyd devices write through
bluesky-tiled-plugins' ``TiledWriter``, as at a beamline; the script prints one JSON line per
run (uid, scan_id, plan_name, streams) so the tests know what was written.  It uses only
bluesky, ophyd and bluesky-tiled-plugins: nothing of broker_v1.
"""

import json
import sys

import numpy as np
from bluesky import RunEngine
from bluesky.plans import count, list_scan, scan
from bluesky.preprocessors import SupplementalData
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import SynSignal, det, det1, det2, motor, motor1, motor2
from tiled.client import from_uri


def main(uri: str, api_key: str) -> None:
    client = from_uri(uri, api_key=api_key)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
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
    for uid in uids:
        run = client[uid]
        start = run.metadata["start"]
        print(json.dumps({"uid": uid, "scan_id": start.get("scan_id"),
                          "plan_name": start.get("plan_name"), "streams": sorted(run)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
