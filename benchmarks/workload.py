"""Workload generator shared by the benchmarks: realistic runs, built fast.

Documents are the shapes a RunEngine emits (start, descriptor, events, stop) with uuid4 uids;
they are built directly (not through event_model.compose_run) so generating 10,000 runs takes
seconds, and they are valid under event-model's schemas.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

PLAN_NAMES = ("scan", "count", "rel_scan", "grid_scan")


def run_documents(
    index: int, *, n_events: int = 0, n_fields: int = 3, t0: float = 1_600_000_000.0,
    pages: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One run: start, a primary descriptor with ``n_fields`` numbers, events, stop.

    ``index`` sets the start time (one run a minute), the scan_id (``index % 5000 + 1``, so
    scan_ids repeat as at a busy beamline) and the plan name (cycling through four).
    """
    start_uid = str(uuid.uuid4())
    t = t0 + 60.0 * index
    yield "start", {
        "uid": start_uid, "time": t, "scan_id": index % 5000 + 1,
        "plan_name": PLAN_NAMES[index % len(PLAN_NAMES)], "plan_type": "generator",
        "detectors": ["det"], "motors": ["motor"], "operator": "bench",
        "sample": {"name": f"sample-{index % 37}", "composition": "Si"},
        "num_points": n_events,
    }
    fields = [f"f{i}" for i in range(n_fields)]
    descriptor_uid = str(uuid.uuid4())
    yield "descriptor", {
        "uid": descriptor_uid, "run_start": start_uid, "time": t + 0.01, "name": "primary",
        "data_keys": {f: {"source": f"SIM:{f}", "dtype": "number", "shape": []} for f in fields},
        "object_keys": {"det": fields}, "configuration": {}, "hints": {},
    }
    if pages and n_events:
        times = [t + 1 + i * 0.001 for i in range(n_events)]
        yield "event_page", {
            "descriptor": descriptor_uid, "uid": [str(uuid.uuid4()) for _ in range(n_events)],
            "time": times, "seq_num": list(range(1, n_events + 1)),
            "data": {f: [float(i * k) for i in range(n_events)] for k, f in enumerate(fields)},
            "timestamps": {f: times for f in fields},
        }
    else:
        for i in range(n_events):
            te = t + 1 + i * 0.001
            yield "event", {
                "descriptor": descriptor_uid, "uid": str(uuid.uuid4()), "time": te,
                "seq_num": i + 1, "data": {f: float(i * k) for k, f in enumerate(fields)},
                "timestamps": {f: te for f in fields}, "filled": {},
            }
    yield "stop", {
        "uid": str(uuid.uuid4()), "run_start": start_uid, "time": t + 2 + n_events * 0.001,
        "exit_status": "success", "reason": "", "num_events": {"primary": n_events},
    }


def image_run_documents(
    root: str, *, frames: int, size: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One run of ``frames`` external ``size`` x ``size`` images in ``root/img_<i>.npy``.

    The documents an area detector writing numpy files would produce: a resource of spec
    ``NPY_SEQ`` (the test suite's handler), one datum and one event per frame, and a stop.
    """
    import event_model

    bundle = event_model.compose_run()
    yield "start", bundle.start_doc
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "img": {"source": "cam", "dtype": "array", "shape": [size, size],
                "external": "FILESTORE:"}})
    yield "descriptor", desc.descriptor_doc
    res = bundle.compose_resource(spec="NPY_SEQ", root=root, resource_path="img",
                                  resource_kwargs={})
    yield "resource", res.resource_doc
    for i in range(frames):
        datum = res.compose_datum(datum_kwargs={"index": i})
        yield "datum", datum
        yield "event", desc.compose_event(data={"img": datum["datum_id"]},
                                          timestamps={"img": 0.0})
    yield "stop", bundle.compose_stop()
