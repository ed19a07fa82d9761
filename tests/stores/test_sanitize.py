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
