"""Header: the four keys, dict behaviour, streams, fields, display, prepare_hook."""

from __future__ import annotations

import copy
import pickle

import doct
import pytest
from conftest import make_run, sample_runs

from broker_v1 import ALL, Broker, DeprecatedDoct, wrap_in_deprecated_doct, wrap_in_doct
from broker_v1.utils import DOCT_NAMES, get_fields

RUNS = sample_runs()


def test_start_stop_descriptors(filled_db):
    """h.start / h['start'], h.stop and h.descriptors hold the run's documents."""
    h = filled_db[RUNS[2].uid]
    assert h["start"] == h.start
    assert dict(h.start) == RUNS[2].start
    assert dict(h.stop) == RUNS[2].docs[-1][1]
    assert [d["name"] for d in h.descriptors] == ["baseline", "primary"]
    assert h.uid == RUNS[2].uid


def test_run_without_stop_has_empty_stop(filled_db):
    """A run with no stop has h.stop == {} and still prints and renders."""
    h = filled_db[RUNS[3].uid]
    assert h.stop == {} and h["stop"] == {}
    assert h.stop.get("exit_status") is None
    with pytest.raises(KeyError):
        h.stop["exit_status"]
    assert "no stop document" in repr(h)
    assert "no stop document" in h._repr_html_()


def test_dict_behaviour_and_equality(filled_db):
    """A header is a read-only mapping of four keys, equal to another of the same run."""
    h = filled_db[-1]
    assert list(h) == ["start", "descriptors", "stop", "ext"]
    assert list(h.keys()) == ["start", "descriptors", "stop", "ext"]
    assert [k for k, _ in h.items()] == list(h.keys())
    assert len(list(h.values())) == 4 and len(h) == 4
    assert h.get("start") == h.start and h.get("nope", 5) == 5
    with pytest.raises(KeyError, match="not a key of a Header"):
        h["events"]
    assert h == filled_db[RUNS[4].uid] and h != filled_db[-2] and h != "x"
    with pytest.raises(TypeError):
        hash(h)
    name, payload = h.to_name_dict_pair()
    assert name == "header" and payload["start"]["uid"] == h.uid


def test_stream_names_fields_devices_config(filled_db):
    """stream_names, fields(), devices() and config_data() describe the run's descriptors."""
    h = filled_db[RUNS[2].uid]
    assert sorted(h.stream_names) == ["baseline", "primary"]
    assert h.fields() == {"motor", "motor_setpoint", "det", "img", "temp"}
    assert h.fields("baseline") == {"temp"}
    assert h.fields(ALL) == h.fields()
    assert h.devices() == {"motor", "det", "cam", "temp"}
    assert h.devices("baseline") == {"temp"}
    assert h.config_data("det") == {"primary": [{"det_exposure": 0.1}]}
    assert h.config_data("nobody") == {}
    assert get_fields(h, "primary") == {"motor", "motor_setpoint", "det", "img"}
    assert filled_db.get_fields(h) == h.fields()
    assert sorted(filled_db.stream_names_given_header(h)) == ["baseline", "primary"]


def test_nameless_descriptor_counts_as_primary(db):
    """Legacy descriptors without a name belong to 'primary'."""
    run = make_run(t0=1e9, with_baseline=False)
    for name, doc in run.docs:
        if name == "descriptor":
            doc = {k: v for k, v in doc.items() if k != "name"}
        db.insert(name, doc)
    h = db[-1]
    assert h.stream_names == ["primary"]
    assert h.fields("primary") == {"motor", "motor_setpoint", "det"}


def test_repr_and_html(filled_db):
    """repr and _repr_html_ show plan, scan_id, uid, start time, duration and exit status."""
    h = filled_db[RUNS[1].uid]
    text = repr(h)
    assert "scan_id=2" in text and "plan='scan'" in text and RUNS[1].uid[:8] in text
    assert "2023-11-14" in text and "exit_status=success" in text
    assert "ago" in text and "seconds" in text
    html = h._repr_html_()
    assert "<table>" in html and RUNS[1].uid in html and "success" in html


def test_default_prepare_hook_warns_on_dot_access(filled_db):
    """Documents come as read-only DeprecatedDoct: item access is silent, dot access warns."""
    start = filled_db[-1].start
    assert isinstance(start, DeprecatedDoct)
    assert start["plan_name"] == "scan"
    with pytest.warns(UserWarning, match=r"Use \['plan_name'\] instead of .plan_name"):
        assert start.plan_name == "scan"
    with pytest.raises(doct.DocumentIsReadOnly):
        start["plan_name"] = "x"
    with pytest.raises(AttributeError):
        _ = start.no_such_key
    with pytest.warns(UserWarning, match="_name"):
        assert start._name == "Run Start"


def test_prepare_hook_choices(filled_db):
    """prepare_hook can be wrap_in_doct (no warnings), deepcopy (plain dicts) or identity."""
    filled_db.prepare_hook = wrap_in_doct
    start = filled_db[-1].start
    assert isinstance(start, doct.Document) and not isinstance(start, DeprecatedDoct)
    assert start.plan_name == "scan"
    filled_db.prepare_hook = lambda name, doc: copy.deepcopy(doc)
    plain = filled_db[-1].start
    assert type(plain) is dict
    plain["plan_name"] = "changed"
    assert filled_db[-1].start["plan_name"] == "scan"


def test_wrappers_pickle_and_names():
    """Wrapped documents pickle; page types have no doct name (KeyError, as databroker)."""
    doc = wrap_in_deprecated_doct("stop", {"uid": "u", "exit_status": "success"})
    again = pickle.loads(pickle.dumps(doc))
    assert again == doc and isinstance(again, DeprecatedDoct)
    assert DOCT_NAMES["descriptor"] == "Event Descriptor"
    with pytest.raises(KeyError):
        wrap_in_doct("event_page", {})


def test_external_fetchers(filled_db):
    """external_fetchers results appear on h.ext."""
    filled_db.external_fetchers["n_keys"] = lambda start, stop: len(start) + len(stop)
    h = filled_db[RUNS[3].uid]
    assert h.ext.n_keys == len(RUNS[3].start)
    assert h["ext"] is h.ext


def test_transforms_apply_on_read_not_on_store():
    """Config transforms change what readers see, never what is stored."""
    db = Broker.from_config({"store": {"backend": "memory"},
                             "transforms": {"start": "tests_transforms.add_flag"}})
    run = make_run(t0=1e9)
    for name, doc in run.docs:
        db.insert(name, doc)
    assert db[-1].start["transformed"] is True
    assert "transformed" not in db.store.get_run_start(run.uid)


def test_wrapped_documents_are_freed_without_the_cyclic_gc():
    """Wrapped documents hold no reference cycle, so filled frames are freed at once."""
    import gc
    import sys

    import numpy as np

    frame = np.ones(3)
    before = sys.getrefcount(frame)
    gc.disable()
    try:
        for wrap in (wrap_in_doct, wrap_in_deprecated_doct):
            doc = wrap("event", {"data": {"img": frame}})
            assert sys.getrefcount(frame) > before
            del doc
            assert sys.getrefcount(frame) == before
    finally:
        gc.enable()
