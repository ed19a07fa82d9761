"""``sanitize``'s fast path (dicts whose keys are all known good, lists of plain values) gives
exactly what the checking loop gives: the same copy, the same refusals, the same error paths.

Each case runs twice: once with the cache of good keys empty (the loop) and once after the
same keys were seen (the fast path), and both answers must be equal.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker_v1.stores import _util
from broker_v1.stores._util import DocumentValueError, sanitize


class Key(str):
    """A str subclass: equal to (and hashing like) a plain key, but not a plain key."""


class Opaque:
    """A value no store can keep."""

    def __repr__(self) -> str:
        return "Opaque()"


def both_ways(value: Any) -> tuple[Any, Any]:
    """``sanitize(value)`` with no key known, then with every key of ``value`` known."""
    _util._KEYS_OK.clear()
    cold = _outcome(value)
    _learn_keys(value)
    warm = _outcome(value)
    return cold, warm


def _learn_keys(value: Any) -> None:
    if isinstance(value, dict):
        _util._KEYS_OK.update(k for k in value if type(k) is str and not _util.key_problem(k))
        for v in value.values():
            _learn_keys(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _learn_keys(v)


def _outcome(value: Any) -> Any:
    try:
        return ("ok", sanitize(value))
    except DocumentValueError as err:
        return ("refused", str(err), err.field)


EVENT = {"descriptor": "d", "uid": "u", "time": 1.5, "seq_num": 1,
         "data": {"x": 1.0, "y": "s", "z": None, "b": True}, "timestamps": {"x": 1.0, "y": 1.0},
         "filled": {}}

CASES = {
    "event": EVENT,
    "nested lists and tuples": {"a": [1, (2, 3), [4, {"b": (5,)}]], "shape": []},
    "str subclass key": {"x": {Key("y"): 1}},
    "str subclass key at the top": {Key("uid"): "u"},
    "bad value under good keys": {"data": {"x": 1.0, "y": Opaque()}},
    "bad value in a list under good keys": {"data": {"x": [1, 2, Opaque()]}},
    "dotted key beside good keys": {"data": {"x": 1.0, "a.b": 2.0}},
    "dollar key": {"data": {"$x": 1.0}},
    "int key": {"data": {1: 1.0}},
    "str subclass value kept": {"data": {"x": Key("v")}},
    "deep": {"a": [[[[{"b": [[1]]}]]]]},
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_fast_path_equals_loop(label: str) -> None:
    cold, warm = both_ways(CASES[label])
    assert warm == cold
    if cold[0] == "ok":
        assert type(warm[1]) is dict


def test_str_subclass_key_refused_even_when_its_text_is_known() -> None:
    _util._KEYS_OK.add("y")
    with pytest.raises(DocumentValueError, match="keys must be strings") as info:
        sanitize({"x": {Key("y"): 1}})
    assert info.value.field == "x.'y'"


def test_fast_path_reports_the_field_of_a_bad_value() -> None:
    _util._KEYS_OK.update({"data", "x", "y"})
    with pytest.raises(DocumentValueError, match="Opaque") as info:
        sanitize({"data": {"x": [1.0, Opaque()], "y": 2.0}})
    assert info.value.field == "data.x.1"


def test_depth_limit_holds_on_the_fast_path() -> None:
    deep: Any = 1
    for _ in range(_util.MAX_DEPTH + 1):
        deep = {"k": deep}
    _util._KEYS_OK.add("k")
    with pytest.raises(DocumentValueError, match="nested more than"):
        sanitize(deep)
    deep_list: Any = []
    for _ in range(_util.MAX_DEPTH + 1):
        deep_list = [deep_list]
    with pytest.raises(DocumentValueError, match="nested more than"):
        sanitize(deep_list)


def test_copies_share_nothing_mutable_with_the_input() -> None:
    doc = {"data": {"x": 1.0}, "shape": [1, 2], "t": (1, 2)}
    _learn_keys(doc)
    out = sanitize(doc)
    assert out == {"data": {"x": 1.0}, "shape": [1, 2], "t": [1, 2]}
    assert out["data"] is not doc["data"] and out["shape"] is not doc["shape"]
    doc["data"]["x"] = 2.0
    doc["shape"].append(3)
    assert out == {"data": {"x": 1.0}, "shape": [1, 2], "t": [1, 2]}


def test_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    _util._KEYS_OK.clear()
    monkeypatch.setattr(_util, "_KEYS_OK_MAX", 10)
    for i in range(100):
        sanitize({f"k{i}": 1})
    assert len(_util._KEYS_OK) <= 10
    assert sanitize({"k99": 1}) == {"k99": 1}  # keys beyond the bound are still checked
    with pytest.raises(DocumentValueError, match="contains '.'"):
        sanitize({"k.99": 1})


# --------------------------------------------------------------------- copy_scalar_event
def _same(a: Any, b: Any) -> bool:
    """Equal, with the same type at every level (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (a != a and b != b)  # NaN


NAN = float("nan")
#: Events, and whether the scalar fast path takes them (the others go to sanitize).
EVENTS: dict[str, tuple[dict[str, Any], bool]] = {
    "RunEngine reading": (EVENT, True),
    "no filled": ({k: v for k, v in EVENT.items() if k != "filled"}, True),
    "datum ids in filled": (dict(EVENT, filled={"x": "res/1"}), True),
    "NaN reading": (dict(EVENT, data={"x": NAN}, timestamps={"x": 1.0}), True),
    "bool time": (dict(EVENT, time=True), True),
    "data None": (dict(EVENT, data=None), True),
    "missing fields": ({"uid": "u", "data": {"x": 1.0}}, True),
    "array reading": (dict(EVENT, data={"x": [1.0, 2.0]}), False),
    "tuple reading": (dict(EVENT, data={"x": (1.0, 2.0)}), False),
    "nested dict reading": (dict(EVENT, data={"x": {"y": 1.0}}), False),
    "extra field": (dict(EVENT, extra=1), False),
    "list uid": (dict(EVENT, uid=["u"]), False),
    "str subclass value": (dict(EVENT, data={"x": Key("v")}), False),
    "str subclass data key": (dict(EVENT, data={Key("x"): 1.0}), False),
    "str subclass field": ({Key("uid"): "u", "data": {}}, False),
    "dotted data key": (dict(EVENT, data={"a.b": 1.0}), False),
    "unseen data key": (dict(EVENT, data={"never_seen_before": 1.0}), False),
    "opaque reading": (dict(EVENT, data={"x": Opaque()}), False),
    "opaque uid": (dict(EVENT, uid=Opaque()), False),
    "int data key": (dict(EVENT, data={1: 1.0}), False),
}


@pytest.mark.parametrize("label", sorted(EVENTS))
def test_scalar_event_copy_equals_sanitize(label: str) -> None:
    doc, fast = EVENTS[label]
    _util._KEYS_OK.clear()
    _learn_keys(EVENT)
    copy = _util.copy_scalar_event(doc)
    assert (copy is not None) is fast
    if copy is None:
        return
    assert _same(copy, sanitize(doc))
    for field in ("data", "timestamps", "filled"):
        if isinstance(doc.get(field), dict):
            assert copy[field] is not doc[field]
            doc_before = dict(doc[field])
            copy[field]["added"] = 1  # the copy shares nothing mutable with the input
            assert doc[field] == doc_before


def test_prepare_gives_events_the_same_copy_or_refusal_as_sanitize() -> None:
    """Through the insert path's ``prepare``: every event above is stored as sanitize would
    copy it, or refused with the message sanitize's refusal gives."""
    from broker_v1.errors import InvalidDocument
    from broker_v1.stores._checks import prepare

    _learn_keys(EVENT)
    for label, (doc, _) in EVENTS.items():
        try:
            expected: Any = ("ok", sanitize(doc))
        except DocumentValueError as err:
            expected = ("refused", str(err))
        try:
            got: Any = ("ok", prepare("event", doc))
        except InvalidDocument as err:
            got = ("refused", str(err))
        assert got[0] == expected[0], label
        if got[0] == "ok":
            assert _same(got[1], expected[1]), label
        else:
            assert expected[1] in got[1], label
