"""Bad lookups and queries: every store refuses them the same way, before evaluating anything.

Catalogues (each entry is in the test id):

* ``db[key]`` with keys of no supported form, bad slices, uids and scan_ids no run has;
* ``db(...)`` / ``find_run_starts`` / ``count_runs`` with malformed queries, unknown operators,
  operator arguments MongoDB refuses, non-JSON values, unparseable ``since``/``until`` and bad
  paging;
* operators that execute code on a server (``$where``, ``$function``, ``$accumulator``,
  ``$expr``) anywhere in a query: refused before the store evaluates anything -- for MongoDB,
  before any client is built or any collection is touched.

Queries a store cannot evaluate (values MongoDB cannot encode, geo operators) must be either
answered exactly as the memory store answers them or refused with ``UnsupportedQuery``.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import math
import uuid
from typing import Any

import numpy as np
import pytest
from conftest import insert_all, sample_runs
from rel_corpus import _corpus_reporter, dump, record, snapshot  # noqa: F401

from broker_v1 import Broker
from broker_v1.errors import (
    AmbiguousUid,
    BrokerError,
    InvalidQuery,
    RunIndexError,
    RunNotFound,
    UnsupportedQuery,
)
from broker_v1.stores.memory import MemoryStore

CODE_OPERATORS = ["$where", "$function", "$accumulator", "$expr"]


@pytest.fixture
def loaded(db: Broker) -> Broker:
    """A Broker (over each kind of store) holding the sample runs."""
    insert_all(db, sample_runs())
    return db


@pytest.fixture
def kind(store_harness: Any) -> str:
    """The kind of store under test (for the tally only; tests never branch on it)."""
    return str(store_harness.kind)


# ---------------------------------------------------------------------- db[key]
BAD_KEYS: list[tuple[str, Any, type[Exception], str]] = [
    ("none", None, ValueError, "not a valid run key"),
    ("float", 1.5, ValueError, "not a valid run key"),
    ("numpy_float", np.float64(-1.0), ValueError, "not a valid run key"),
    ("nan", math.nan, ValueError, "not a valid run key"),
    ("inf", -math.inf, ValueError, "not a valid run key"),
    ("true", True, ValueError, "not a valid run key"),
    ("bytes", b"abcdef01", ValueError, "not a valid run key"),
    ("dict", {"uid": "abcdef01"}, ValueError, "not a valid run key"),
    ("object", object(), ValueError, "not a valid run key"),
    ("complex", 1 + 1j, ValueError, "not a valid run key"),
    ("decimal", decimal.Decimal(1), ValueError, "not a valid run key"),
    ("datetime", datetime.datetime(2023, 11, 14), ValueError, "not a valid run key"),
    ("ellipsis", Ellipsis, ValueError, "not a valid run key"),
    ("empty_string", "", ValueError, "empty string"),
    ("unknown_uid", "zzzz", RunNotFound, "No run with uid starting 'zzzz'"),
    ("path_escape", "../../etc/passwd", RunNotFound, "No run with uid"),
    ("regex_anchor", "^abc", RunNotFound, "No run with uid"),
    ("regex_any", ".*", RunNotFound, "No run with uid"),
    ("regex_broken", "abc(", RunNotFound, "No run with uid"),
    ("bracket", "[", RunNotFound, "No run with uid"),
    ("operator_name", "$where", RunNotFound, "No run with uid"),
    ("nul", "abc\x00def", RunNotFound, "No run with uid"),
    ("lone_surrogate", "abc\ud800", RunNotFound, "No run with uid"),
    ("upper_case", "ABCDEF01", RunNotFound, "No run with uid"),
    ("ambiguous_prefix", "abcdef", AmbiguousUid, "matches 2 runs"),
    ("unknown_scan_id", 99, RunNotFound, "No run with scan_id 99"),
    ("numpy_scan_id", np.int64(98), RunNotFound, "No run with scan_id 98"),
    ("huge_scan_id", 2**70, RunNotFound, f"No run with scan_id {2**70}"),
    ("deep_recency", -10**6, RunIndexError, "holds only 5 runs"),
    ("huge_recency", -(2**70), RunIndexError, "holds only 5 runs"),
    ("slice_all", slice(None), ValueError, "db[:N] is not supported"),
    ("slice_head", slice(None, 3), ValueError, "db[:N] is not supported"),
    ("slice_positive_start", slice(0, None), ValueError, "start must be negative"),
    ("slice_positive_stop", slice(-2, 5), ValueError, "stop must be negative"),
    ("slice_zero_step", slice(-3, None, 0), ValueError, "step must be positive"),
    ("slice_negative_step", slice(-3, None, -1), ValueError, "step must be positive"),
    ("slice_float_step", slice(-3, None, 1.5), ValueError, "step must be an integer"),
    ("slice_str_start", slice("a", None), ValueError, "start must be an integer"),
    ("slice_bool_start", slice(True, None), ValueError, "start must be an integer"),
    ("list_with_unknown", [-1, "zzzz"], RunNotFound, "No run with uid"),
    ("list_with_none", [-1, None], ValueError, "not a valid run key"),
    ("nested_list_with_float", [[-1], [1.5]], ValueError, "not a valid run key"),
]


@pytest.mark.parametrize(("key", "exc", "says"), [b[1:] for b in BAD_KEYS],
                         ids=[b[0] for b in BAD_KEYS])
def test_bad_lookup_key(loaded: Broker, kind: str, key: Any, exc: type[Exception],
                        says: str) -> None:
    """A bad db[key] raises the specific error with a message naming the key; nothing changes."""
    before = dump(snapshot(loaded.store))
    with pytest.raises(exc) as info:
        loaded[key]
    assert says in str(info.value)
    assert dump(snapshot(loaded.store)) == before
    record("lookups/db[key]", kind)


@pytest.mark.parametrize(
    ("key", "count"),
    [(slice(-(2**70), None), 5), (slice(-3, -(2**70)), 0), (slice(-1, None, 2**70), 1),
     ([], 0), ((), 0), (set(), 0), ([[]], 0), (frozenset([-1]), 1)],
    ids=["huge_negative_start", "huge_negative_stop", "huge_step", "empty_list", "empty_tuple",
         "empty_set", "nested_empty", "frozenset"],
)
def test_extreme_but_valid_lookup_keys(loaded: Broker, kind: str, key: Any, count: int) -> None:
    """Extreme slices and empty collections are answered, identically in every store."""
    assert len(loaded[key]) == count
    record("lookups/extreme keys (answered)", kind)


# ---------------------------------------------------------------------- malformed queries
OBJ = object()
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_operator", {"plan_name": {"$nosuch": 1}}, ""),
    ("unknown_top_level_operator", {"$nosuch": [{"a": 1}]}, ""),
    ("or_empty", {"$or": []}, "$or needs a non-empty list"),
    ("or_not_list", {"$or": {"a": 1}}, "$or needs a non-empty list"),
    ("nor_of_scalars", {"$nor": [1]}, "$nor needs a non-empty list"),
    ("and_of_strings", {"$and": ["plan_name"]}, "$and needs a non-empty list"),
    ("in_scalar", {"scan_id": {"$in": 5}}, "$in needs a list"),
    ("nin_string", {"scan_id": {"$nin": "abc"}}, "$nin needs a list"),
    ("all_scalar", {"detectors": {"$all": "det"}}, "$all needs a list"),
    ("size_string", {"detectors": {"$size": "a"}}, "$size needs"),
    ("size_negative", {"detectors": {"$size": -1}}, "$size needs"),
    ("mod_zero_divisor", {"scan_id": {"$mod": [0, 0]}}, "$mod needs"),
    ("mod_string", {"scan_id": {"$mod": "a"}}, "$mod needs"),
    ("mod_three", {"scan_id": {"$mod": [2, 0, 1]}}, "$mod needs"),
    ("not_scalar", {"scan_id": {"$not": 5}}, "$not needs"),
    ("not_empty", {"scan_id": {"$not": {}}}, "$not needs"),
    ("elem_match_scalar", {"detectors": {"$elemMatch": 5}}, "$elemMatch needs"),
    ("regex_unbalanced", {"plan_name": {"$regex": "("}}, "not a valid regular expression"),
    ("regex_not_string", {"plan_name": {"$regex": 5}}, "$regex needs"),
    ("regex_bad_options", {"plan_name": {"$regex": "s", "$options": "z"}}, "$options needs"),
    ("options_alone", {"plan_name": {"$options": "i"}}, "$options needs a $regex"),
    ("type_unknown", {"scan_id": {"$type": "nosuchtype"}}, ""),
    ("text_nested", {"a": {"$text": {"$search": "x"}}}, "$text may appear only"),
    ("text_not_dict", {"$text": "gold"}, "$text needs"),
    ("text_search_not_string", {"$text": {"$search": 5}}, "$text needs"),
    ("text_twice", {"$and": [{"$text": {"$search": "a"}}, {"$text": {"$search": "b"}}]},
     "only one $text"),
    ("object_value", {"scan_id": OBJ}, "queries hold JSON values only"),
    ("object_in_operator", {"scan_id": {"$gt": OBJ}}, "queries hold JSON values only"),
    ("object_in_list", {"scan_id": {"$in": [1, OBJ]}}, "queries hold JSON values only"),
    ("decimal_value", {"scan_id": decimal.Decimal(1)}, "queries hold JSON values only"),
    ("datetime_value", {"time": {"$gt": datetime.datetime(2020, 1, 1)}},
     "queries hold JSON values only"),
    ("bytes_value", {"plan_name": b"scan"}, "queries hold JSON values only"),
    ("set_value", {"scan_id": {"$in": [{1, 2}]}}, "queries hold JSON values only"),
    ("numpy_int_value", {"scan_id": np.int64(2)}, "queries hold JSON values only"),
    ("uuid_value", {"uid": uuid.UUID(int=1)}, "queries hold JSON values only"),
]


def _deep_query(levels: int) -> dict[str, Any]:
    query: dict[str, Any] = {"plan_name": "scan"}
    for _ in range(levels):
        query = {"$and": [query]}
    return query


MALFORMED.append(("nested_200_levels", _deep_query(200), "nested more than 64 levels"))


def _queries_of(query: dict[str, Any]) -> list[tuple[str, Any]]:
    return [("find", lambda s: list(s.find_run_starts(query))),
            ("count", lambda s: s.count_runs(query)),
            ("stop", lambda s: s.find_run_stop_uids(query))]


@pytest.mark.parametrize(("query", "says"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_query(db: Broker, kind: str, query: dict[str, Any], says: str) -> None:
    """A malformed query raises InvalidQuery, from every entry point, in every store."""
    loaded = db
    store = loaded.store
    before = dump(snapshot(store))
    for where, call in _queries_of(query):
        with pytest.raises(InvalidQuery) as info:
            call(store)
        assert says in str(info.value), (where, str(info.value))
    with pytest.raises(InvalidQuery):
        store.check_query(query)
    if all(isinstance(k, str) and not k.startswith("$") for k in query):
        with pytest.raises(InvalidQuery):
            loaded(**query)  # refused at the call, not at the first iteration
        with pytest.raises(InvalidQuery):
            loaded(**{f"stop.{k}": v for k, v in query.items()})
    assert dump(snapshot(store)) == before
    record("queries/malformed", kind, 3)


BAD_TIMES: list[tuple[str, dict[str, Any], str]] = [
    ("words", {"since": "yesterday"}, "failed to parse time"),
    ("impossible_date", {"until": "2024-13-45"}, "failed to parse time"),
    ("trailing_garbage", {"since": "2024-01-01 12:00 tomorrow"}, "failed to parse time"),
    ("object", {"since": OBJ}, "since/until must be a time"),
    ("list", {"since": [1]}, "since/until must be a time"),
    ("dict", {"until": {"$gt": 1}}, "since/until must be a time"),
    ("nan", {"since": math.nan}, "since/until must be a time"),
    ("bool", {"until": True}, "since/until must be a time"),
    ("dst_gap", {"since": "2024-03-10 02:30"}, "does not exist in US/Eastern"),
    ("dst_ambiguous", {"until": "2024-11-03 01:30"}, "ambiguous in US/Eastern"),
]


@pytest.mark.parametrize(("kwargs", "says"), [b[1:] for b in BAD_TIMES],
                         ids=[b[0] for b in BAD_TIMES])
def test_unparseable_since_until(loaded: Broker, kind: str, kwargs: dict[str, Any],
                                 says: str) -> None:
    """since/until that are no time raise InvalidQuery naming the value, in every store."""
    with pytest.raises(InvalidQuery, match=None) as info:
        loaded(**kwargs)
    assert says in str(info.value)
    record("queries/since-until", kind)


@pytest.mark.parametrize(
    "text", [5, b"gold", ["gold"], {"$search": "gold"}], ids=["int", "bytes", "list", "dict"])
def test_text_search_that_is_not_text(loaded: Broker, kind: str, text: Any) -> None:
    """text_search must be a string of words; anything else is InvalidQuery in every store."""
    with pytest.raises(InvalidQuery, match="text_search must be a string"):
        loaded(text_search=text)
    record("queries/text_search", kind)


BAD_PAGING: list[tuple[str, dict[str, Any]]] = [
    ("negative_skip", {"skip": -1}),
    ("negative_limit", {"limit": -1}),
    ("float_skip", {"skip": 1.5}),
    ("float_limit", {"limit": 1.5}),
    ("string_limit", {"limit": "2"}),
    ("none_skip", {"skip": None}),
    ("bool_skip", {"skip": True}),
    ("sort_string", {"sort": "time"}),
    ("sort_none", {"sort": None}),
    ("sort_empty", {"sort": []}),
    ("sort_direction_2", {"sort": [("time", 2)]}),
    ("sort_direction_word", {"sort": [("time", "up")]}),
    ("sort_single", {"sort": [("time",)]}),
    ("sort_field_int", {"sort": [(5, 1)]}),
]


@pytest.mark.parametrize("kwargs", [b[1] for b in BAD_PAGING], ids=[b[0] for b in BAD_PAGING])
def test_bad_paging(loaded: Broker, kind: str, kwargs: dict[str, Any]) -> None:
    """Bad skip, limit or sort arguments raise InvalidQuery (never a TypeError) everywhere."""
    with pytest.raises(InvalidQuery, match="skip and limit|sort must be"):
        list(loaded.store.find_run_starts({}, **kwargs))
    record("queries/paging", kind)


# ---------------------------------------------------------------------- evaluate or refuse
EVALUATE_OR_REFUSE: list[tuple[str, dict[str, Any]]] = [
    ("int_beyond_8_bytes", {"scan_id": 2**70}),
    ("int_beyond_8_bytes_in", {"scan_id": {"$in": [1, -(2**64)]}}),
    ("lone_surrogate", {"plan_name": "sc\ud800an"}),
    ("geo_near", {"sample.position": {"$near": [0, 0]}}),
    ("bits_all_set", {"scan_id": {"$bitsAllSet": 1}}),
    ("json_schema", {"$jsonSchema": {"required": ["operator"]}}),
    ("nan_bound", {"scan_id": {"$gt": math.nan}}),
    ("infinite_bound", {"time": {"$lt": math.inf}}),
    ("empty_key", {"": 1}),
    ("dotted_empty_segment", {"sample..name": "gold"}),
    ("comment", {"$comment": "who ran this", "plan_name": "scan"}),
]


@pytest.mark.parametrize("query", [e[1] for e in EVALUATE_OR_REFUSE],
                         ids=[e[0] for e in EVALUATE_OR_REFUSE])
def test_evaluate_exactly_or_refuse(loaded: Broker, kind: str, query: dict[str, Any]) -> None:
    """A query a store may not support is answered as the memory store answers it, or refused
    with UnsupportedQuery / InvalidQuery -- never a raw error, never a different answer."""
    reference = MemoryStore()
    insert_all(reference, sample_runs())
    expected: Any
    if "$jsonSchema" in query:  # server-only operators: what MongoDB answers
        expected = [s["uid"] for s in reference.find_run_starts({"operator": {"$exists": True}})]
    elif "$bitsAllSet" in str(query):
        expected = [s["uid"] for s in reference.find_run_starts({"scan_id": {"$in": [1, 3]}})]
    elif "$near" in str(query):
        expected = []  # nothing is a point (a real server wants a geo index: it refuses)
    else:
        expected = [s["uid"] for s in reference.find_run_starts(copy.deepcopy(query))]
    try:
        got: Any = [s["uid"] for s in loaded.store.find_run_starts(query)]
        count: Any = loaded.store.count_runs(query)
    except (InvalidQuery, UnsupportedQuery) as err:
        assert isinstance(err, BrokerError) and str(err)
        record("queries/refused by capability", kind)
        return
    assert got == expected, (got, expected)
    assert count == len(expected)
    record("queries/evaluated exactly", kind)


# ---------------------------------------------------------------------- code execution
def _code_queries(op: str) -> list[tuple[str, dict[str, Any]]]:
    js = "function() { return sleep(10000) || true; }"
    return [
        ("top", {op: js}),
        ("field", {"plan_name": {op: js}}),
        ("in_or", {"$or": [{"scan_id": 1}, {op: js}]}),
        ("in_and", {"$and": [{"scan_id": 1}, {op: js}]}),
        ("in_nor", {"$nor": [{op: js}]}),
        ("in_not", {"scan_id": {"$not": {op: js}}}),
        ("in_elem_match", {"detectors": {"$elemMatch": {op: js}}}),
        ("in_eq_value", {"sample": {"$eq": {op: js}}}),
        ("as_document", {op: {"body": js, "args": [], "lang": "js"}}),
        ("deep", _deep_query(30) | {"$or": [{op: js}]}),
    ]


CODE_CASES = [(op, name, q) for op in CODE_OPERATORS for name, q in _code_queries(op)]


class _Exploding:
    """Stands in for anything that would reach the data: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the query reached the backend ({name})")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the query reached the backend")


@pytest.mark.parametrize(("query"), [c[2] for c in CODE_CASES],
                         ids=[f"{c[0]}-{c[1]}" for c in CODE_CASES])
def test_code_execution_refused_before_evaluation(db: Broker, kind: str, query: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """$where/$function/$accumulator/$expr anywhere are refused before the store evaluates."""
    loaded = db
    store = loaded.store
    # Whatever evaluates queries in each store now fails the test if it is reached.
    monkeypatch.setattr(store, "_find_run_starts", _Exploding())
    for attr in ("_coll", "_read", "_starts"):
        if attr in vars(type(store)) or attr in vars(store):
            monkeypatch.setattr(store, attr, _Exploding())
    entry_points = [
        lambda: list(store.find_run_starts(query)),
        lambda: store.count_runs(query),
        lambda: store.find_run_stop_uids(query),
        lambda: store.check_query(query),
    ]
    if all(not k.startswith("$") for k in query):
        entry_points += [lambda: loaded(**query), lambda: loaded(**{"stop.x": query})]
    for call in entry_points:
        with pytest.raises(UnsupportedQuery, match="executes code") as info:
            call()
        assert info.value.operator in CODE_OPERATORS
    record("queries/code execution", kind, len(entry_points))


@pytest.mark.parametrize("operator", CODE_OPERATORS)
def test_code_execution_never_builds_a_mongo_client(operator: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A MongoStore refuses code operators without building a client (so nothing is sent)."""
    from broker_v1.stores import mongo as mongo_module
    from broker_v1.stores.mongo import _client

    def no_client(uri: str) -> Any:
        raise AssertionError(f"a MongoDB client was built for {uri}")

    monkeypatch.setattr(_client, "make_client", no_client)
    store = mongo_module.MongoStore(uri="mongodb://db.invalid:27017/csx")
    db = Broker(store, timezone="US/Eastern")
    calls = 0
    for _, query in _code_queries(operator):
        for call in (lambda q=query: list(store.find_run_starts(q)),
                     lambda q=query: store.count_runs(q),
                     lambda q=query: store.find_run_stop_uids(q)):
            with pytest.raises(UnsupportedQuery, match="executes code"):
                call()
            calls += 1
        if all(not k.startswith("$") for k in query):
            with pytest.raises(UnsupportedQuery, match="executes code"):
                db(**query)
            calls += 1
    assert not store._connected
    record("queries/code execution (no client)", "mongo", calls)
