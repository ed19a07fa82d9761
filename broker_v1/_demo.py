"""Realistic demo runs: what a RunEngine would record for a few scans and counts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import event_model

__all__ = ["demo_documents"]


def _scan(t0: float, scan_id: int, sample: str, center: float) -> Iterator[tuple[str, Any]]:
    bundle = event_model.compose_run(time=t0, metadata={
        "scan_id": scan_id, "plan_name": "scan", "plan_type": "generator",
        "detectors": ["det"], "motors": ["motor"], "sample": sample, "operator": "demo",
        "plan_args": {"start": -5, "stop": 5, "num": 11},
        "hints": {"dimensions": [[["motor"], "primary"]]},
    })
    yield "start", bundle.start_doc
    baseline = bundle.compose_descriptor(
        name="baseline", time=t0 + 0.01,
        data_keys={"ring_current": {"source": "SR:current", "dtype": "number", "shape": [],
                                    "units": "mA"},
                   "temperature": {"source": "SAMPLE:temp", "dtype": "number", "shape": [],
                                   "units": "K"}},
        object_keys={"ring_current": ["ring_current"], "temperature": ["temperature"]},
    )
    yield "descriptor", baseline.descriptor_doc
    yield "event", baseline.compose_event(
        data={"ring_current": 400.2, "temperature": 295.1},
        timestamps={"ring_current": t0 + 0.02, "temperature": t0 + 0.02}, time=t0 + 0.02)
    primary = bundle.compose_descriptor(
        name="primary", time=t0 + 0.03,
        data_keys={"motor": {"source": "XF:motor", "dtype": "number", "shape": [], "units": "mm",
                             "precision": 3},
                   "motor_setpoint": {"source": "XF:motor_sp", "dtype": "number", "shape": []},
                   "det": {"source": "XF:det", "dtype": "number", "shape": [], "units": "cts"}},
        object_keys={"motor": ["motor", "motor_setpoint"], "det": ["det"]},
        configuration={"det": {"data": {"det_exposure": 0.1},
                               "timestamps": {"det_exposure": t0},
                               "data_keys": {"det_exposure": {"source": "XF:exp",
                                                              "dtype": "number", "shape": []}}}},
    )
    yield "descriptor", primary.descriptor_doc
    for i in range(11):
        x = -5.0 + i
        t = t0 + 1.0 + i
        counts = round(1000 * math.exp(-((x - center) ** 2) / 2.0) + 20, 1)
        yield "event", primary.compose_event(
            data={"motor": x, "motor_setpoint": x, "det": counts},
            timestamps={"motor": t, "motor_setpoint": t, "det": t}, time=t)
    yield "event", baseline.compose_event(
        data={"ring_current": 399.8, "temperature": 295.3},
        timestamps={"ring_current": t0 + 13, "temperature": t0 + 13}, time=t0 + 13)
    yield "stop", bundle.compose_stop(time=t0 + 14, exit_status="success")


def _count(t0: float, scan_id: int, sample: str) -> Iterator[tuple[str, Any]]:
    bundle = event_model.compose_run(time=t0, metadata={
        "scan_id": scan_id, "plan_name": "count", "plan_type": "generator",
        "detectors": ["det"], "sample": sample, "operator": "demo", "num_points": 3,
    })
    yield "start", bundle.start_doc
    primary = bundle.compose_descriptor(
        name="primary", time=t0 + 0.01,
        data_keys={"det": {"source": "XF:det", "dtype": "number", "shape": [], "units": "cts"}},
        object_keys={"det": ["det"]},
    )
    yield "descriptor", primary.descriptor_doc
    for i in range(3):
        t = t0 + 1 + i
        yield "event", primary.compose_event(data={"det": 100.0 + i}, timestamps={"det": t},
                                             time=t)
    yield "stop", bundle.compose_stop(time=t0 + 5, exit_status="success")


def demo_documents(t0: float, first_scan_id: int = 1) -> Iterator[tuple[str, Any]]:
    """Documents of five runs (three scans, two counts) starting at epoch ``t0``."""
    yield from _count(t0, first_scan_id, "silicon")
    yield from _scan(t0 + 60, first_scan_id + 1, "silicon", center=0.5)
    yield from _scan(t0 + 120, first_scan_id + 2, "gold", center=-1.0)
    yield from _count(t0 + 180, first_scan_id + 3, "gold")
    yield from _scan(t0 + 240, first_scan_id + 4, "gold", center=1.5)
