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


#: The devices of a RunEngine-shaped run's primary stream, and their configuration signals.
RE_DEVICES = ("det", "motor", "shutter")
RE_BASELINE = ("ring_current", "hutch_temp", "slit_width", "mono_energy")


def runengine_run_documents(
    index: int, *, n_primary: int = 20, n_fields: int = 10, t0: float = 1_600_000_000.0,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One run as a RunEngine emits a short ``scan`` with a ``baseline`` stream.

    Start; the ``baseline`` descriptor and its first event; the ``primary`` descriptor (with
    ``n_fields`` data keys and ``configuration`` for three devices); ``n_primary`` single
    events; the second baseline event; stop.  With the defaults, 26 documents, each valid
    under event-model's schemas unchanged (``strict``).
    """
    start_uid = str(uuid.uuid4())
    t = t0 + 60.0 * index
    yield "start", {
        "uid": start_uid, "time": t, "scan_id": index + 1, "plan_name": "scan",
        "plan_type": "generator", "plan_args": {"detectors": ["det"], "num": n_primary},
        "detectors": ["det"], "motors": ["motor"], "num_points": n_primary,
        "num_intervals": n_primary - 1, "hints": {"dimensions": [[["motor"], "primary"]]},
        "operator": "bench", "sample": {"name": f"sample-{index % 37}"}, "versions": {
            "ophyd": "1.9.0", "bluesky": "1.13.0"},
    }
    baseline_uid = str(uuid.uuid4())
    yield "descriptor", {
        "uid": baseline_uid, "run_start": start_uid, "time": t + 0.01, "name": "baseline",
        "data_keys": {k: {"source": f"PV:{k}", "dtype": "number", "shape": [],
                          "precision": 3, "units": "a.u.", "object_name": k}
                      for k in RE_BASELINE},
        "object_keys": {k: [k] for k in RE_BASELINE},
        "configuration": {k: {"data": {}, "timestamps": {}, "data_keys": {}}
                          for k in RE_BASELINE},
        "hints": {k: {"fields": [k]} for k in RE_BASELINE},
    }

    def baseline_event(seq_num: int, te: float) -> dict[str, Any]:
        return {"descriptor": baseline_uid, "uid": str(uuid.uuid4()), "time": te,
                "seq_num": seq_num, "data": {k: 1.5 * seq_num for k in RE_BASELINE},
                "timestamps": {k: te for k in RE_BASELINE}, "filled": {}}

    yield "event", baseline_event(1, t + 0.02)
    fields = [f"{RE_DEVICES[i % 3]}_{i}" for i in range(n_fields)]
    configuration = {}
    for device in RE_DEVICES:
        signals = {f"{device}_{s}": v for s, v in (("gain", 2), ("mode", "fast"),
                                                   ("exposure", 0.1))}
        configuration[device] = {
            "data": signals, "timestamps": {s: t for s in signals},
            "data_keys": {s: {"source": f"PV:{s}",
                              "dtype": "string" if isinstance(v, str) else "number",
                              "shape": [], "object_name": device}
                          for s, v in signals.items()},
        }
    primary_uid = str(uuid.uuid4())
    yield "descriptor", {
        "uid": primary_uid, "run_start": start_uid, "time": t + 0.03, "name": "primary",
        "data_keys": {f: {"source": f"PV:{f}", "dtype": "number", "shape": [], "precision": 4,
                          "units": "mm", "lower_ctrl_limit": -10.0, "upper_ctrl_limit": 10.0,
                          "object_name": RE_DEVICES[i % 3]}
                      for i, f in enumerate(fields)},
        "object_keys": {d: [f for f in fields if f.startswith(d + "_")] for d in RE_DEVICES},
        "configuration": configuration,
        "hints": {d: {"fields": [f for f in fields if f.startswith(d + "_")][:1]}
                  for d in RE_DEVICES},
    }
    for i in range(n_primary):
        te = t + 1 + 0.1 * i
        yield "event", {
            "descriptor": primary_uid, "uid": str(uuid.uuid4()), "time": te, "seq_num": i + 1,
            "data": {f: float(i * k) for k, f in enumerate(fields)},
            "timestamps": {f: te for f in fields}, "filled": {},
        }
    yield "event", baseline_event(2, t + 2 + 0.1 * n_primary)
    yield "stop", {
        "uid": str(uuid.uuid4()), "run_start": start_uid, "time": t + 3 + 0.1 * n_primary,
        "exit_status": "success", "reason": "",
        "num_events": {"primary": n_primary, "baseline": 2},
    }
