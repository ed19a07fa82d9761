"""A files store read by databroker 1.2.5's own JSONL catalog (issue 5's interoperability check).

databroker 1.2.5 pins old dependencies, so it lives in its own virtual environment; give its
interpreter in ``BROKER_V1_DATABROKER_PYTHON`` to run this test (``.ci/run`` builds one in
``.ci/databroker-venv``)::

    python3 -m venv /tmp/db125 && /tmp/db125/bin/pip install "databroker==1.2.5" "intake<2"
    BROKER_V1_DATABROKER_PYTHON=/tmp/db125/bin/python python -m pytest tests/stores -k databroker

broker_v1 writes the runs (single events, event pages, numpy values, a run without a stop);
databroker, in a real subprocess, lists them and reads every stream; both sides must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import insert_all, make_run

from broker_v1 import Broker
from broker_v1.stores.files import FileStore

PYTHON = os.environ.get("BROKER_V1_DATABROKER_PYTHON")

READER = textwrap.dedent(
    """
    import json, sys
    from databroker._drivers.jsonl import BlueskyJSONLCatalog

    catalog = BlueskyJSONLCatalog(sys.argv[1] + "/*.jsonl")
    out = {}
    for uid in catalog:
        run = catalog[uid]
        streams = {}
        for name in run:
            data = run[name].read()
            streams[name] = {
                "rows": int(data.sizes["time"]),
                "fields": {k: data[k].values.tolist() for k in data.data_vars
                           if k != "time"},
            }
        stop = run.metadata["stop"]
        out[uid] = {"start": dict(run.metadata["start"]),
                    "stop": None if stop is None else dict(stop),
                    "streams": streams}
    json.dump(out, sys.stdout)
    """
)


@pytest.mark.skipif(not PYTHON, reason="set BROKER_V1_DATABROKER_PYTHON to a databroker 1.2.5 env")
def test_databroker_125_reads_what_broker_v1_wrote(tmp_path: Path) -> None:
    """databroker 1.2.5's JSONL catalog lists every run and reads the same starts, stops and
    table values broker_v1 reads."""
    directory = tmp_path / "runs"
    store = FileStore(path=directory)
    runs = [make_run(t0=1_000.0 + 10 * i, scan_id=i + 1, n_events=4) for i in range(3)]
    runs.append(make_run(t0=1_100.0, scan_id=9, with_stop=False, n_events=2))
    insert_all(store, runs)
    db = Broker(store)
    db.insert("start", {"uid": "paged", "time": 1_200.0, "scan_id": 10,
                        "array_md": np.arange(3)})
    db.insert("descriptor", {"uid": "paged-d", "run_start": "paged", "time": 1_200.1,
                             "name": "primary",
                             "data_keys": {"x": {"source": "sim", "dtype": "number",
                                                 "shape": []}}})
    db.insert("event_page", {"descriptor": "paged-d", "uid": ["p1", "p2", "p3"],
                             "time": [1_201.0, 1_202.0, 1_203.0], "seq_num": [1, 2, 3],
                             "data": {"x": [np.float64(0.5), 1.5, 2.5]},
                             "timestamps": {"x": [1_201.0, 1_202.0, 1_203.0]}})
    db.insert("stop", {"uid": "paged-s", "run_start": "paged", "time": 1_204.0,
                       "exit_status": "success", "num_events": {"primary": 3}})
    store.close()

    done = subprocess.run([PYTHON, "-c", READER, str(directory)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)

    ours = Broker(FileStore(path=directory))
    assert set(theirs) == {h.start["uid"] for h in ours()}
    for h in ours():
        run = theirs[h.start["uid"]]
        assert run["start"] == dict(h.start)
        # v1 headers show a missing stop as {} (databroker's Header did), v2 as None.
        assert (run["stop"] or {}) == dict(h.stop or {})
        assert set(run["streams"]) == set(h.stream_names)
        for name in h.stream_names:
            table = h.table(name)
            assert run["streams"][name]["rows"] == len(table)
            assert set(run["streams"][name]["fields"]) == set(table.columns) - {"time"}
            for field, values in run["streams"][name]["fields"].items():
                assert values == table[field].tolist(), (h.start["uid"], name, field)
