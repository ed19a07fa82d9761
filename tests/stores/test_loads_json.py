"""``loads_json`` (the files store's parser) answers exactly as ``json.loads`` does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_v1.stores._util import loads_json


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types (1 is not 1.0), NaN equal to NaN, -0.0 not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too, where orjson would give a float
    st.integers(min_value=-(2**64), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN, Infinity: Python's json writes them
    st.text(),  # lone surrogates included
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_loads_json_reads_what_python_json_wrote_exactly_as_json_loads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8; ensure_ascii escapes it
            continue
        assert same(loads_json(data), json.loads(data))


@pytest.mark.parametrize("text", [
    b"18446744073709551615",  # the largest integer orjson keeps exact
    b"18446744073709551616",  # the first it would turn into a float
    b"-9223372036854775809",
    b"[1e400, -1e400]",
    b'"\\ud800"',
    b"[NaN, Infinity, -Infinity]",
    b"0.30000000000000004",
    b'{"a": 1, "a": 2}',
])
def test_loads_json_edge_cases(text: bytes) -> None:
    assert same(loads_json(text), json.loads(text))


@pytest.mark.parametrize("text", [b"", b"[1,", b"{'a': 1}", b"[1] [2]", b'"\xff"'])
def test_loads_json_refuses_what_json_refuses(text: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(type(expected.value)):
        loads_json(text)
