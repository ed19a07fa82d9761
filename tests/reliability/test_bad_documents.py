"""Bad documents: valid runs composed by event-model, then one corruption each, in every store.

Hypothesis builds a valid run with ``event_model.compose_run`` (random metadata, one or two
streams, events or event pages, optionally a resource and datums), inserts the documents a
corruption needs to stand on, snapshots the store, and inserts the corrupted document.  Each
catalogue entry (one test per entry and store kind, so the entry is in the test id) states what
must happen:

* **refused** -- the specific exception class; ``.name`` and the message name the document
  type; ``.field`` (and the message) name the field; the store, read back through its public
  API and again after reopening, holds exactly what it held before;
* **legal** -- the value is stored and reads back exactly (NaN and infinities in event data,
  moderately deep metadata);
* **legal where the backend can hold it** -- integers beyond 8 bytes and strings that are not
  valid unicode round-trip in memory and files stores; MongoDB cannot hold them, so the mongo
  store refuses them with :class:`InvalidDocument` naming the field, and nothing is written.

Keys: no key at any depth may start with ``$``, contain ``.`` or contain NUL, in any store
(``broker_v1.stores._util.key_problem``); event-model also refuses ``/`` in start keys.

``max_examples`` is small by default; ``-m slow`` runs the long profile (200 examples each).
"""

from __future__ import annotations

import copy
import math
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import event_model
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rel_corpus import (  # noqa: F401  (_corpus_reporter is an autouse fixture)
    STORE_KINDS,
    _corpus_reporter,
    dump,
    fresh_store,
    record,
    require_kind,
    same,
    snapshot,
)

from broker_v1.documents import pack_events
from broker_v1.errors import DuplicateDocument, InvalidDocument

DEFAULT_EXAMPLES = 6
SLOW_EXAMPLES = 200

Doc = dict[str, Any]


# ---------------------------------------------------------------------- valid runs
safe_keys = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(safe_keys, inner, max_size=3)),
    max_leaves=8,
)
metadata = st.dictionaries(safe_keys.map(lambda k: "md_" + k), json_values, max_size=4)


@dataclass
class Run:
    """A valid run: documents in emission order plus handles on the interesting ones."""

    docs: list[tuple[str, Doc]]

    def first(self, name: str) -> int:
        return next(i for i, (n, _) in enumerate(self.docs) if n == name)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.docs)

    def doc(self, name: str) -> Doc:
        return self.docs[self.first(name)][1]

    @property
    def start(self) -> Doc:
        return self.docs[0][1]


@st.composite
def valid_runs(draw: Any) -> Run:
    """A run composed by event-model: start, 1-2 streams, events or pages, maybe external data."""
    t0 = draw(st.floats(min_value=1e9, max_value=2e9))
    md = draw(metadata)
    md.update(plan_name=draw(st.sampled_from(["scan", "count"])),
              scan_id=draw(st.integers(1, 10_000)))
    bundle = event_model.compose_run(time=t0, metadata=md)
    docs: list[tuple[str, Doc]] = [("start", bundle.start_doc)]
    external = draw(st.booleans())
    data_keys: dict[str, Any] = {
        "det": {"source": "SIM:det", "dtype": "number", "shape": []},
        "motor": {"source": "SIM:motor", "dtype": "number", "shape": [], "units": "mm"},
    }
    if external:
        data_keys["img"] = {"source": "SIM:img", "dtype": "array", "shape": [2, 2],
                            "external": "FILESTORE:"}
    primary = bundle.compose_descriptor(
        name="primary", data_keys=data_keys, time=t0 + 0.1,
        object_keys={"det": ["det"], "motor": ["motor"]} | ({"cam": ["img"]} if external else {}),
        configuration={"det": {"data": {"det_gain": 2}, "timestamps": {"det_gain": t0},
                               "data_keys": {"det_gain": {"source": "SIM:gain",
                                                          "dtype": "integer", "shape": []}}}},
    )
    docs.append(("descriptor", primary.descriptor_doc))
    descriptors = [primary]
    if draw(st.booleans()):
        baseline = bundle.compose_descriptor(
            name="baseline", time=t0 + 0.05,
            data_keys={"temp": {"source": "SIM:temp", "dtype": "number", "shape": []}},
            object_keys={"temp": ["temp"]},
        )
        docs.append(("descriptor", baseline.descriptor_doc))
        descriptors.append(baseline)
    resource = None
    if external:
        resource = bundle.compose_resource(spec="NPY_SEQ", root="/data", resource_path="img",
                                           resource_kwargs={"frames": 1})
        docs.append(("resource", resource.resource_doc))
    n_events = draw(st.integers(1, 4))
    as_pages = draw(st.booleans())
    for d in descriptors:
        events = []
        for i in range(n_events):
            t = t0 + 1 + i + (0.5 if d is not primary else 0.0)
            if d is primary:
                data: dict[str, Any] = {"det": draw(st.floats(-1e6, 1e6)), "motor": float(i)}
                if resource is not None:
                    datum = resource.compose_datum(datum_kwargs={"index": i})
                    docs.append(("datum", datum))
                    data["img"] = datum["datum_id"]
            else:
                data = {"temp": 20.0 + i}
            events.append(d.compose_event(
                data=data, timestamps={k: t for k in data}, time=t,
                filled={"img": False} if "img" in data else {}))
        if as_pages:
            docs.append(("event_page", pack_events(events)))
        else:
            docs.extend(("event", e) for e in events)
    docs.append(("stop", bundle.compose_stop(time=t0 + 10 + n_events)))
    return Run(docs)


# ---------------------------------------------------------------------- the catalogue
@dataclass
class Case:
    """One corruption applied to a valid run."""

    prefix: list[tuple[str, Doc]]  # inserted first (must succeed)
    name: str  # the document type inserted last
    doc: Any  # the corrupted document
    exc: type[Exception] = InvalidDocument
    field: str | None = None  # expected ``.field`` (InvalidDocument); None: not checked
    says: list[str] = dc_field(default_factory=list)  # fragments the message must contain
    legal: bool = False  # the value is legal: it must round-trip instead
    mongo_may_refuse: bool = False  # legal, but beyond what MongoDB can hold


Strategy = Callable[[Any, Run], Case]


def _target(draw: Any, run: Run, names: list[str]) -> tuple[int, str, Doc]:
    """Pick a document of one of ``names`` present in ``run``; return index, name, copy."""
    present = [n for n in names if run.has(n)]
    assume(present)
    name = draw(st.sampled_from(present))
    candidates = [i for i, (n, _) in enumerate(run.docs) if n == name]
    i = draw(st.sampled_from(candidates))
    return i, name, copy.deepcopy(run.docs[i][1])


REQUIRED = {
    "start": ["uid", "time"],
    "descriptor": ["uid", "time", "run_start", "data_keys"],
    "event": ["uid", "time", "descriptor", "seq_num", "data", "timestamps"],
    "event_page": ["uid", "time", "descriptor", "seq_num", "data", "timestamps"],
    "stop": ["uid", "time", "run_start"],
    "resource": ["uid", "spec", "root", "resource_path", "resource_kwargs"],
    "datum": ["datum_id", "resource", "datum_kwargs"],
}


def missing_required_key(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, list(REQUIRED))
    key = draw(st.sampled_from(REQUIRED[name]))
    del doc[key]
    return Case(run.docs[:i], name, doc, field=key, says=[name, key])


WRONG_TYPES: dict[str, list[tuple[str, Any]]] = {
    "start": [("time", "yesterday"), ("uid", 5), ("scan_id", "one"), ("time", [1.0])],
    "descriptor": [("data_keys", "det"), ("time", "now"), ("run_start", 5), ("name", 7),
                   ("configuration", [1])],
    "event": [("seq_num", "1"), ("time", "t"), ("data", [1.0]), ("uid", 5), ("seq_num", 1.5),
              ("timestamps", "x")],
    "event_page": [("seq_num", "1"), ("time", 5.0), ("uid", "one"), ("data", [1.0])],
    "stop": [("time", "x"), ("exit_status", 5), ("exit_status", "crashed"), ("uid", 5)],
    "resource": [("spec", 5), ("resource_kwargs", []), ("root", None)],
    "datum": [("datum_kwargs", []), ("datum_id", 5), ("resource", 5)],
}


def wrong_type(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, list(WRONG_TYPES))
    key, value = draw(st.sampled_from(WRONG_TYPES[name]))
    doc[key] = value
    return Case(run.docs[:i], name, doc, field=key, says=[name, key])


def unknown_links(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["descriptor", "event", "event_page", "stop", "datum"])
    key = {"descriptor": "run_start", "stop": "run_start", "datum": "resource"}.get(
        name, "descriptor")
    doc[key] = f"no-such-{uuid.uuid4()}"
    return Case(run.docs[:i], name, doc, field=key, says=[name, key, "Insert the"])


def data_key_not_in_descriptor(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["event", "event_page"])
    extra = draw(st.sampled_from(["extra", "det2", "Det"]))
    page = name == "event_page"
    n = len(doc["uid"]) if page else 1
    doc["data"][extra] = [1.0] * n if page else 1.0
    doc["timestamps"][extra] = [1.0] * n if page else 1.0
    return Case(run.docs[:i], name, doc, field=f"data.{extra}", says=[name, extra])


def data_key_missing(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["event", "event_page"])
    key = draw(st.sampled_from(sorted(doc["data"])))
    del doc["data"][key]
    if draw(st.booleans()):  # with or without its timestamp: data is checked first
        del doc["timestamps"][key]
    return Case(run.docs[:i], name, doc, field=f"data.{key}", says=[name, key])


def timestamps_mismatch(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["event", "event_page"])
    key = draw(st.sampled_from(sorted(doc["timestamps"])))
    del doc["timestamps"][key]
    return Case(run.docs[:i], name, doc, field=f"timestamps.{key}", says=[name, key])


def unequal_page_columns(draw: Any, run: Run) -> Case:
    pages = [i for i, (n, d) in enumerate(run.docs)
             if (n == "event_page" and len(d["uid"]) > 1)]
    datums = [i for i, (n, _) in enumerate(run.docs) if n == "datum"]
    choices = [("event_page", i) for i in pages]
    if len(datums) > 1:
        choices.append(("datum_page", datums[0]))
    assume(choices)
    name, i = draw(st.sampled_from(choices))
    if name == "datum_page":
        rows = [d for n, d in run.docs if n == "datum"]
        page = dict(event_model.pack_datum_page(*rows))
        page["datum_kwargs"]["index"] = page["datum_kwargs"]["index"][:-1]
        return Case(run.docs[:i], "datum_page", page, field="datum_kwargs.index",
                    says=["datum_page", "datum_kwargs.index"])
    doc = copy.deepcopy(run.docs[i][1])
    column = draw(st.sampled_from(["time", "seq_num", "data", "timestamps"]))
    if column in ("data", "timestamps"):
        key = draw(st.sampled_from(sorted(doc[column])))
        doc[column][key] = doc[column][key][:-1]
        expected = f"{column}.{key}"
    else:
        doc[column] = doc[column][:-1]
        expected = column
    return Case(run.docs[:i], name, doc, field=expected, says=["event_page", expected])


def stop_before_start(draw: Any, run: Run) -> Case:
    i = run.first("stop")
    doc = copy.deepcopy(run.docs[i][1])
    doc["time"] = run.start["time"] - draw(st.floats(min_value=0.001, max_value=1e6))
    return Case(run.docs[:i], "stop", doc, field="time", says=["stop", "before its start"])


def second_stop(draw: Any, run: Run) -> Case:
    doc = copy.deepcopy(run.doc("stop"))
    doc["uid"] = str(uuid.uuid4())
    doc["exit_status"] = draw(st.sampled_from(["success", "abort", "fail"]))
    return Case(run.docs, "stop", doc, exc=DuplicateDocument, says=["already has a stop"])


def duplicate_uid_different_content(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run,
                           ["start", "descriptor", "event", "stop", "resource", "datum"])
    if name == "datum":
        doc["datum_kwargs"] = {"index": doc["datum_kwargs"]["index"] + 1000}
    elif name == "resource":
        doc["resource_path"] = doc["resource_path"] + "-other"
    else:
        doc["time"] = doc["time"] + draw(st.floats(min_value=0.001, max_value=10.0))
    key = doc["datum_id"] if name == "datum" else doc["uid"]
    return Case(run.docs, name, doc, exc=DuplicateDocument, says=[name, key[:8], "already in"])


def nonfinite_time(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["start", "descriptor", "event", "event_page", "stop"])
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if name == "event_page":
        doc["time"] = [bad] + doc["time"][1:]
    else:
        doc["time"] = bad
    return Case(run.docs[:i], name, doc, field="time", says=[name, "time"])


def nan_inf_in_data(draw: Any, run: Run) -> Case:
    i, name, doc = _target(draw, run, ["event", "event_page"])
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    key = "det" if "det" in doc["data"] else "temp"
    if name == "event_page":
        doc["data"][key] = [bad] * len(doc["uid"])
    else:
        doc["data"][key] = bad
    return Case(run.docs[:i], name, doc, legal=True)


def huge_integers(draw: Any, run: Run) -> Case:
    big = draw(st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1)))
    where = draw(st.sampled_from(["start", "event"]))
    if where == "start" or not run.has("event"):
        doc = copy.deepcopy(run.start)
        doc["md_big"] = {"value": big}
        return Case([], "start", doc, legal=True, mongo_may_refuse=True, field="md_big.value")
    primary = [i for i, (n, d) in enumerate(run.docs) if n == "event" and "det" in d["data"]]
    if not primary:
        doc = copy.deepcopy(run.start)
        doc["md_big"] = {"value": big}
        return Case([], "start", doc, legal=True, mongo_may_refuse=True, field="md_big.value")
    i = draw(st.sampled_from(primary))
    doc = copy.deepcopy(run.docs[i][1])
    doc["data"]["det"] = big
    return Case(run.docs[:i], "event", doc, legal=True, mongo_may_refuse=True, field="data.det")


def lone_surrogates(draw: Any, run: Run) -> Case:
    doc = copy.deepcopy(run.start)
    text = draw(st.sampled_from(["\ud800", "a\udfffb", "x\udc80"]))
    doc["md_text"] = [text]
    return Case([], "start", doc, legal=True, mongo_may_refuse=True, field="md_text.0")


def _nest(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def deep_nesting(draw: Any, run: Run) -> Case:
    depth = draw(st.integers(min_value=101, max_value=3000))
    doc = copy.deepcopy(run.start)
    doc["md_deep"] = _nest(depth, 1)
    return Case([], "start", doc, field=None, says=["start", "md_deep", "nested more than 100"])


def moderate_nesting(draw: Any, run: Run) -> Case:
    depth = draw(st.integers(min_value=2, max_value=90))
    doc = copy.deepcopy(run.start)
    doc["md_deep"] = _nest(depth, "leaf")
    return Case([], "start", doc, legal=True)


def _where_keys(draw: Any, run: Run) -> tuple[list[tuple[str, Doc]], str, Doc, list[str]]:
    """A document and a path of dict keys inside it where a key can be planted."""
    spots: list[tuple[str, list[str]]] = [
        ("start", []), ("start", ["md_nested"]), ("start", ["md_nested", "inner"]),
        ("descriptor", ["configuration", "det", "data"]), ("descriptor", ["hints"]),
        ("descriptor", ["data_keys", "det"]), ("descriptor", []), ("stop", []),
        ("stop", ["num_events"]), ("resource", ["resource_kwargs"]),
        ("datum", ["datum_kwargs"]),
    ]
    spots = [s for s in spots if run.has(s[0])]
    name, path = draw(st.sampled_from(spots))
    i = run.first(name)
    doc = copy.deepcopy(run.docs[i][1])
    node = doc
    for key in path:
        node = node.setdefault(key, {})
    return run.docs[:i], name, doc, path


def reserved_key_characters(draw: Any, run: Run) -> Case:
    prefix, name, doc, path = _where_keys(draw, run)
    key = draw(st.sampled_from(["$x", "$", "$where", "a.b", ".", "a.", "nul\x00key", "\x00"]))
    node = doc
    for k in path:
        node = node[k]
    node[key] = 1
    return Case(prefix, name, doc, field=".".join([*path, key]), says=[name])


def non_string_keys(draw: Any, run: Run) -> Case:
    prefix, name, doc, path = _where_keys(draw, run)
    key = draw(st.sampled_from([7, 1.5, None, True, (1, 2), b"bytes"]))
    node = doc
    for k in path:
        node = node[k]
    node[key] = 1
    return Case(prefix, name, doc, field=".".join([*path, repr(key)]),
                says=[name, "keys must be strings"])


def non_json_values(draw: Any, run: Run) -> Case:
    value = draw(st.sampled_from([object(), {1, 2}, b"bytes", 1 + 2j, Ellipsis, uuid.uuid4()]))
    doc = copy.deepcopy(run.start)
    doc["md_value"] = {"inner": [value]}
    return Case([], "start", doc, field="md_value.inner.0", says=["start", "cannot be stored"])


def not_a_document(draw: Any, run: Run) -> Case:
    choice = draw(st.sampled_from(["list", "str", "none", "bad name"]))
    if choice == "bad name":
        return Case([], draw(st.sampled_from(["events", "Start", "", "run_start"])),
                    copy.deepcopy(run.start), says=["Unknown document name"])
    doc = {"list": [("uid", "x")], "str": "start", "none": None}[choice]
    return Case([], draw(st.sampled_from(["start", "event", "stop"])), doc,
                says=["must be a dict"])


CATALOGUE: dict[str, Strategy] = {
    "missing_required_key": missing_required_key,
    "wrong_type": wrong_type,
    "unknown_links": unknown_links,
    "data_key_not_in_descriptor": data_key_not_in_descriptor,
    "data_key_missing": data_key_missing,
    "timestamps_mismatch": timestamps_mismatch,
    "unequal_page_columns": unequal_page_columns,
    "stop_before_start": stop_before_start,
    "second_stop": second_stop,
    "duplicate_uid_different_content": duplicate_uid_different_content,
    "nonfinite_time": nonfinite_time,
    "nan_inf_in_data": nan_inf_in_data,
    "huge_integers": huge_integers,
    "lone_surrogates": lone_surrogates,
    "deep_nesting": deep_nesting,
    "moderate_nesting": moderate_nesting,
    "reserved_key_characters": reserved_key_characters,
    "non_string_keys": non_string_keys,
    "non_json_values": non_json_values,
    "not_a_document": not_a_document,
}


# ---------------------------------------------------------------------- checking
def _read_back(store: Any, name: str, doc: Doc) -> Any:
    """The stored form of a just-inserted legal document, comparable with ``doc``."""
    if name == "start":
        return store.get_run_start(doc["uid"])
    events = list(store.iter_events(doc["descriptor"]))
    uids = doc["uid"] if name == "event_page" else [doc["uid"]]
    by_uid = {e["uid"]: e for e in events}
    got = [by_uid[u]["data"] for u in uids]
    if name == "event_page":
        want = [{k: col[j] for k, col in doc["data"].items()} for j in range(len(uids))]
    else:
        want = [doc["data"]]
    return got, want


def check_case(kind: str, entry: str, run: Run, case: Case) -> None:
    """Apply one case to a fresh store of ``kind`` and check the catalogue's promise."""
    with fresh_store(kind) as harness:
        store = harness.store
        for name, doc in case.prefix:
            store.insert(name, doc)
        before = dump(snapshot(store))
        try:
            store.insert(case.name, case.doc)
        except (InvalidDocument, DuplicateDocument) as err:
            if case.legal and not (case.mongo_may_refuse and "MongoDB" in str(err)):
                raise AssertionError(f"{entry}: legal value refused by {kind}: {err}") from err
            if case.legal:
                assert store.backend == "mongo", (kind, err)
            else:
                assert isinstance(err, case.exc), (entry, kind, type(err), err)
            message = str(err)
            assert "Nothing was written" in message or isinstance(err, DuplicateDocument), message
            if case.name in event_model_names():
                assert err.name == case.name, (err.name, case.name)
            for fragment in case.says:
                assert fragment in message, (entry, kind, fragment, message)
            if isinstance(err, InvalidDocument) and case.field is not None:
                assert err.field == case.field, (entry, kind, err.field, case.field, message)
                shown = case.field if len(case.field) <= 100 else case.field[:60]
                assert shown in message, (entry, kind, shown, message)
            if isinstance(err, DuplicateDocument):
                assert err.uid in message
            assert dump(snapshot(store)) == before, f"{entry}: {kind} changed after refusing"
            assert dump(snapshot(harness.reopen())) == before, f"{entry}: {kind} after reopen"
            record(f"documents/{entry}", kind)
            return
        if not case.legal:
            raise AssertionError(f"{entry}: {kind} accepted {case.name} {case.doc!r:.300}")
        if case.name == "start":
            got = _read_back(store, "start", case.doc)
            assert same(got, case.doc), (entry, kind)
            assert same(_read_back(harness.reopen(), "start", case.doc), case.doc)
        else:
            got, want = _read_back(store, case.name, case.doc)
            assert same(got, want), (entry, kind, got, want)
            got, want = _read_back(harness.reopen(), case.name, case.doc)
            assert same(got, want), (entry, kind, got, want)
        record(f"documents/{entry} (legal)", kind)


def event_model_names() -> tuple[str, ...]:
    return ("start", "descriptor", "event", "event_page", "resource", "datum", "datum_page",
            "stop")


def _run_catalogue(kind: str, entry: str, examples: int) -> None:
    require_kind(kind)
    strategy = CATALOGUE[entry]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    @given(data=st.data(), run=valid_runs())
    def check(data: Any, run: Run) -> None:
        case = strategy(data.draw, run)
        check_case(kind, entry, run, case)

    check()


@pytest.mark.parametrize("entry", sorted(CATALOGUE))
@pytest.mark.parametrize("kind", STORE_KINDS)
def test_bad_document(kind: str, entry: str) -> None:
    """Each corruption is refused with its specific error and the store is left unchanged."""
    _run_catalogue(kind, entry, DEFAULT_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(CATALOGUE))
@pytest.mark.parametrize("kind", STORE_KINDS)
def test_bad_document_long_profile(kind: str, entry: str) -> None:
    """The same catalogue with 200 examples per entry and store (``-m slow``)."""
    _run_catalogue(kind, entry, SLOW_EXAMPLES)


def test_reference_store_accepts_every_valid_run() -> None:
    """The generated runs are valid: the memory store takes every document of them."""
    @settings(max_examples=20, deadline=None, database=None)
    @given(run=valid_runs())
    def check(run: Run) -> None:
        with fresh_store("memory") as harness:
            for name, doc in run.docs:
                harness.store.insert(name, doc)
            assert len(snapshot(harness.store)) >= len(run.docs)

    check()
