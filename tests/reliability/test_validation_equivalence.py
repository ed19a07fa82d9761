"""The compiled schema validator changes nothing: same verdicts, same errors, both policies.

``broker_v1.documents.validate_document`` checks schemas with a compiled validator
(``jsonschema_rs``) and hands whatever it refuses to ``jsonschema``.  The reference here is the
validation as it was before: ``jsonschema`` alone (:func:`reference_validate`, kept in this
module).  Every document of the bad-document corpus (``test_bad_documents.CATALOGUE``: valid
runs composed by event-model, one corruption each) and of hand-picked edge cases goes through
both, under ``compatible`` and ``strict``:

* schema by schema: the same outcome (accepted, or the same error type, message, field, name
  and uid), and the compiled validator never accepts a document the reference refuses;
* store by store: every insert of the case into a memory store gives the same outcome with
  either validation, and the store holds the same documents afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import test_bad_documents as corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_corpus import _corpus_reporter, dump, record, snapshot  # noqa: F401

from broker_v1 import documents
from broker_v1.documents import describe_doc, doc_uid
from broker_v1.errors import BrokerError, InvalidDocument
from broker_v1.stores import _checks
from broker_v1.stores._util import DocumentValueError, sanitize
from broker_v1.stores.memory import MemoryStore

POLICIES = ("compatible", "strict")
SCHEMA_NAMES = ("start", "descriptor", "event", "event_page", "resource", "datum",
                "datum_page", "stop")
EXAMPLES = 8

Doc = dict[str, Any]


def reference_validate(name: str, doc: Any, policy: str = "compatible") -> None:
    """``validate_document`` as it was before the compiled validator: ``jsonschema`` alone."""
    from collections.abc import Mapping

    if not isinstance(doc, Mapping):
        raise InvalidDocument(
            f"{name} document must be a dict, got {type(doc).__name__}. Nothing was written.",
            name=name,
        )
    if name == "resource" and policy == "compatible" and "uid" not in doc and "_id" not in doc:
        raise InvalidDocument(
            f"{describe_doc(name, doc)} failed validation: 'uid' is required. Nothing was written.",
            name=name,
            field="uid",
        )
    validator = documents._validator(name, policy)
    errors = list(validator.iter_errors(doc))
    specific = [e for e in errors if e.validator != "unevaluatedProperties"]
    error = jsonschema.exceptions.best_match(specific or errors)
    if error is not None:
        field = documents._path(error)
        raise InvalidDocument(
            f"{describe_doc(name, doc)} failed validation: {field}: {error.message}. "
            "Nothing was written.",
            name=name,
            uid=doc_uid(name, doc),
            field=field,
        )


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a call did: ``("ok",)`` or the error's type, message and named attributes."""
    try:
        call()
    except BrokerError as err:
        return (type(err).__name__, str(err), getattr(err, "field", None),
                getattr(err, "name", None), getattr(err, "uid", None))
    return ("ok",)


def compare_schema(name: str, doc: Any) -> None:
    """One document, one schema, both policies: new and reference outcomes are identical, and
    the compiled validator alone never accepts what the reference refuses."""
    for policy in POLICIES:
        new = outcome(lambda p=policy: documents.validate_document(name, doc, p))
        old = outcome(lambda p=policy: reference_validate(name, doc, p))
        assert new == old, (name, policy, new, old, repr(doc)[:300])
        if isinstance(doc, dict):
            try:
                fast = documents._compiled(name, policy).is_valid(doc)
            except Exception:  # noqa: BLE001 - undecidable there: the reference decides
                fast = None
            if fast:
                assert documents._validator(name, policy).is_valid(doc), (
                    "the compiled validator accepted what jsonschema refuses", name, policy,
                    repr(doc)[:300])


def sanitized(doc: Any) -> Any:
    """The document as the insert path validates it (None when sanitizing refuses it)."""
    if not isinstance(doc, dict):
        return doc
    try:
        return sanitize(dict(doc))
    except DocumentValueError:
        return None


def run_in_store(policy: str, docs: list[tuple[str, Any]], reference: bool,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[Any, ...]], str]:
    """Insert ``docs`` one by one into a fresh memory store; each outcome and the contents."""
    with monkeypatch.context() as patch:
        if reference:
            patch.setattr(_checks, "validate_document", reference_validate)
        store = MemoryStore(validate=policy)
        results = [outcome(lambda n=n, d=d: store.insert(n, d))
                   for n, d in docs]
    return results, dump(snapshot(store))


def compare_case(docs: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document schema by schema, then the whole sequence in stores, both policies."""
    for name, doc in docs:
        clean = sanitized(doc)
        if clean is not None and name in SCHEMA_NAMES:
            compare_schema(name, clean)
    for policy in POLICIES:
        new = run_in_store(policy, docs, False, monkeypatch)
        old = run_in_store(policy, docs, True, monkeypatch)
        assert new == old, (policy, new[0], old[0])


# ---------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("entry", sorted(corpus.CATALOGUE))
def test_corpus_same_verdicts_and_messages(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each corruption of the bad-document corpus, and the valid run it came from, gives the
    same outcome through the compiled validator as through jsonschema alone."""
    strategy = corpus.CATALOGUE[entry]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(data=st.data(), run=corpus.valid_runs())
    def check(data: Any, run: corpus.Run) -> None:
        case = strategy(data.draw, run)
        compare_case([*case.prefix, (case.name, case.doc)], monkeypatch)
        compare_case(run.docs, monkeypatch)

    check()
    record(f"validation equivalence/{entry}", "memory")


# ---------------------------------------------------------------------- edge cases
def _edge_cases() -> Iterator[tuple[str, str, Doc]]:
    """(label, name, document): values where a compiled validator could disagree."""
    start = {"uid": "s-1", "time": 1.0e9, "plan_name": "scan", "scan_id": 3}
    yield "integral float scan_id", "start", {**start, "scan_id": 3.0}
    yield "bool scan_id", "start", {**start, "scan_id": True}
    yield "bool time", "start", {**start, "time": True}
    yield "nan in metadata", "start", {**start, "md": math.nan}
    yield "inf time", "start", {**start, "time": math.inf}
    yield "nan scan_id", "start", {**start, "scan_id": math.nan}
    yield "huge int", "start", {**start, "md": 2**80, "scan_id": 2**70}
    yield "negative huge int", "start", {**start, "scan_id": -(2**70)}
    yield "lone surrogate", "start", {**start, "plan_name": "\ud800"}
    yield "key ends with newline", "start", {**start, "md\n": 1}
    yield "key with slash", "start", {**start, "a/b": 1}
    yield "key with unicode", "start", {**start, "größe": "groß", "ключ": [1, {"x": None}]}
    yield "empty uid", "start", {**start, "uid": ""}
    yield "time as string", "start", {**start, "time": "1.0"}
    yield "hints wrong", "start", {**start, "hints": {"dimensions": "x"}}
    yield "hints nested", "start", {**start, "hints": {"dimensions": [[["m"], "primary"]]}}
    yield "projections", "start", {**start, "projections": [{"name": 1}]}
    data_keys = {"det": {"source": "SIM:det", "dtype": "number", "shape": []}}
    descriptor = {"uid": "d-1", "time": 1.0e9, "run_start": "s-1", "data_keys": data_keys,
                  "name": "primary"}
    yield "descriptor ok", "descriptor", descriptor
    for key, value in [("dtype", "float"), ("dtype", "NUMBER"), ("shape", [1.5]),
                       ("shape", [2.0]), ("shape", [None]), ("shape", "x"),
                       ("external", "FILESTORE:"), ("external", "filestore:"),
                       ("external", "FILESTORE"), ("external", "x FILESTORE:"),
                       ("dtype_numpy", "<f8"), ("dtype_numpy", "f8"), ("dtype_numpy", "<f8x"),
                       ("dtype_numpy", [["a", "<f8"]]), ("dtype_numpy", [["a", "f8"]]),
                       ("units", None), ("units", 5), ("precision", 2.0), ("precision", "2"),
                       ("limits", {"control": {"low": 0, "high": 1}}), ("limits", 1),
                       ("choices", ["a", 1]), ("object_name", 5), ("source", None)]:
        dk = {"det": {**data_keys["det"], key: value}}
        yield f"data key {key}={value!r}", "descriptor", {**descriptor, "data_keys": dk}
    yield "data key not a dict", "descriptor", {**descriptor, "data_keys": {"det": 5}}
    yield "configuration", "descriptor", {**descriptor, "configuration": {
        "det": {"data": {"g": 1}, "timestamps": {"g": 1.0}, "data_keys": {
            "g": {"source": "x", "dtype": "integer", "shape": []}}}}}
    yield "configuration bad", "descriptor", {**descriptor, "configuration": {
        "det": {"data": 5}}}
    yield "object_keys bad", "descriptor", {**descriptor, "object_keys": {"det": "det"}}
    stop = {"uid": "p-1", "time": 1.0e9 + 5, "run_start": "s-1", "exit_status": "success"}
    for value in ("success", "abort", "fail", "Success", "", None, 1):
        yield f"exit_status {value!r}", "stop", {**stop, "exit_status": value}
    yield "num_events float", "stop", {**stop, "num_events": {"primary": 2.0}}
    yield "num_events bad", "stop", {**stop, "num_events": {"primary": "2"}}
    yield "stop extra key", "stop", {**stop, "extra": {"a": 1}}
    resource = {"uid": "r-1", "spec": "NPY_SEQ", "root": "/", "resource_path": "x",
                "resource_kwargs": {}, "path_semantics": "posix"}
    yield "resource ok", "resource", resource
    yield "resource extra key", "resource", {**resource, "extra": 1}
    yield "resource path_semantics", "resource", {**resource, "path_semantics": "dos"}
    yield "resource no uid", "resource", {k: v for k, v in resource.items() if k != "uid"}
    yield "resource run_start", "resource", {**resource, "run_start": 5}
    event = {"uid": "e-1", "time": 1.0e9 + 1, "descriptor": "d-1", "seq_num": 1,
             "data": {"det": 1.0}, "timestamps": {"det": 1.0e9}, "filled": {}}
    yield "event ok", "event", event
    yield "event extra key", "event", {**event, "extra": 1}
    yield "event seq_num float", "event", {**event, "seq_num": 1.0}
    yield "event filled str", "event", {**event, "filled": {"det": "datum-1"}}
    yield "event filled int", "event", {**event, "filled": {"det": 1}}
    yield "event no filled", "event", {k: v for k, v in event.items() if k != "filled"}
    page = {"uid": ["e-1"], "time": [1.0e9], "descriptor": "d-1", "seq_num": [1],
            "data": {"det": [1.0]}, "timestamps": {"det": [1.0e9]}, "filled": {}}
    yield "page ok", "event_page", page
    yield "page extra key", "event_page", {**page, "extra": 1}
    yield "page seq_num floats", "event_page", {**page, "seq_num": [1.0]}
    yield "page data not lists", "event_page", {**page, "data": {"det": 1.0}}
    datum = {"datum_id": "r-1/0", "resource": "r-1", "datum_kwargs": {"index": 0}}
    yield "datum ok", "datum", datum
    yield "datum extra", "datum", {**datum, "extra": 1}
    yield "datum page", "datum_page", {"datum_id": ["r-1/0"], "resource": "r-1",
                                       "datum_kwargs": {"index": [0]}}
    yield "datum page bad", "datum_page", {"datum_id": "r-1/0", "resource": "r-1",
                                           "datum_kwargs": {"index": 0}}


EDGE_CASES = list(_edge_cases())


@pytest.mark.parametrize(("label", "name", "doc"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_cases_same_verdicts_and_messages(label: str, name: str, doc: Doc) -> None:
    """Values a compiled validator could read differently (integral floats, bools, NaN, huge
    integers, lone surrogates, regex anchors, unevaluated properties) give the same outcome."""
    clean = sanitized(doc)
    assert clean is not None, label
    compare_schema(name, clean)


def test_edge_cases_in_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge cases inserted after a valid start, descriptor and resource (so links hold):
    the same outcome of every insert with either validation."""
    base = [c for c in EDGE_CASES if c[0] in ("descriptor ok", "resource ok")]
    start = ("start", {"uid": "s-1", "time": 1.0e9, "plan_name": "scan", "scan_id": 3})
    for _label, name, doc in EDGE_CASES:
        docs = [start, *((n, d) for _, n, d in base), (name, doc)]
        compare_case(docs, monkeypatch)
    record("validation equivalence/edge cases", "memory", len(EDGE_CASES))


def test_reference_is_the_contract_on_refusal() -> None:
    """A refused document's error comes from jsonschema, so messages name the field as
    before (the compiled validator only says "invalid")."""
    doc = {"uid": "s-1", "time": "yesterday"}
    with pytest.raises(InvalidDocument) as new:
        documents.validate_document("start", doc)
    with pytest.raises(InvalidDocument) as old:
        reference_validate("start", doc)
    assert str(new.value) == str(old.value) and new.value.field == "time"
    assert "time" in str(new.value)
