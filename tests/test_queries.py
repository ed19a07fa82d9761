"""Query composition and human-time parsing (values pinned by databroker's own tests)."""

from __future__ import annotations

import datetime

import pytest

from broker_v1 import InvalidQuery
from broker_v1.queries import build_query, normalize_human_friendly_time

EASTERN = "US/Eastern"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014", 1388552400.0),
        ("2014-02", 1391230800.0),
        ("2014-2-10", 1392008400.0),
        (" 2014-02-10 10 ", 1392044400.0),
        ("2014-02-10 10:1", 1392044460.0),
        ("2015-03-08 03:00:00", 1425798000.0),
        ("2015-11-01 02:00:00", 1446361200.0),
    ],
)
def test_time_strings_pinned_values(text, expected):
    """Strings in every accepted format parse to databroker's pinned epoch values."""
    assert normalize_human_friendly_time(text, EASTERN) == expected


@pytest.mark.parametrize("text", ["2015-04-15 03:", "aardvark", "1700000000.5", "2014-13"])
def test_unparseable_time_strings(text):
    """Strings matching no format raise InvalidQuery listing the formats."""
    with pytest.raises(InvalidQuery, match="failed to parse time.*Accepted formats"):
        normalize_human_friendly_time(text, EASTERN)


def test_dst_gap_and_overlap_are_errors():
    """Local times that do not exist or happen twice are refused with an explanation."""
    with pytest.raises(InvalidQuery, match="does not exist in US/Eastern"):
        normalize_human_friendly_time("2015-03-08 02:00:00", EASTERN)
    with pytest.raises(InvalidQuery, match="ambiguous in US/Eastern"):
        normalize_human_friendly_time("2015-11-01 01:00:00", EASTERN)


def test_numbers_and_datetimes():
    """Numbers pass through; naive datetimes are local to the zone; aware ones convert."""
    assert normalize_human_friendly_time(12.5, EASTERN) == 12.5
    naive = datetime.datetime(2014, 1, 1)
    assert normalize_human_friendly_time(naive, EASTERN) == 1388552400.0
    aware = datetime.datetime(2014, 1, 1, tzinfo=datetime.timezone.utc)
    assert normalize_human_friendly_time(aware, EASTERN) == 1388534400.0
    assert normalize_human_friendly_time("2020-01-01 9:52", "Europe/Amsterdam") == 1577868720.0


def test_build_query_shapes():
    """Criteria, filters, since/until and text combine into one AND-ed Mongo query."""
    assert build_query({}) == {}
    assert build_query({"plan_name": "scan"}) == {"plan_name": "scan"}
    q = build_query({"plan_name": "scan", "since": "2014", "until": 1400000000},
                    filters={"owner": "dan"}, text_search="good", timezone=EASTERN)
    assert q == {"$and": [{"owner": "dan"}, {"plan_name": "scan"},
                          {"time": {"$gte": 1388552400.0, "$lte": 1400000000}},
                          {"$text": {"$search": "good"}}]}
    filters = {"since": "2014"}
    build_query({}, filters=filters, timezone=EASTERN)
    assert filters == {"since": "2014"}


def test_bad_query_inputs():
    """Non-string keys, non-string text and unknown zones are clear errors."""
    with pytest.raises(InvalidQuery, match="keys must be strings"):
        build_query({1: 2})
    with pytest.raises(InvalidQuery, match="text_search"):
        build_query({}, text_search=5)
    with pytest.raises(InvalidQuery, match="Unknown timezone"):
        build_query({"since": "2014"}, timezone="Mars/Olympus")


def _reference_strings(value):
    """What searchable_text collects, written the plain way (every string value, depth
    first, in order, never keys)."""
    from collections.abc import Mapping

    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _reference_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _reference_strings(v)


def test_searchable_text_collects_every_string_value_in_order():
    import collections
    import types

    import numpy as np

    from broker_v1.stores._query import searchable_text

    class Label(str):
        pass

    doc = {
        "uid": "U-1", "plan_name": "Scan", "time": 1.5, "scan_id": 3, "flag": True, "none": None,
        "detectors": ["Det1", "det2"], "motors": ("M1",),
        "hints": {"dimensions": [[["motor"], "primary"]], "gridding": "rectilinear"},
        "ordered": collections.OrderedDict([("b", "Zed"), ("a", "Alpha")]),
        "proxy": types.MappingProxyType({"k": ["Inside", {"deep": "Deeper"}]}),
        "sub": Label("Subclassed"), "np": np.float64(2.0), "bytes": b"not text",
        "empty": {}, "empty_list": [], "keys are not text": 1,
    }
    expected = "\n".join(_reference_strings(doc)).lower()
    assert searchable_text(doc) == expected
    assert "zed\nalpha" in expected and "keys are not text" not in expected
    assert searchable_text({}) == ""


def test_regex_options_inside_not_and_or() -> None:
    """$options are applied wherever a $regex sits (mongomock lacks them inside $not, so
    this is checked on the matcher the server-less stores share)."""
    from broker_v1.stores._query import QueryMatcher

    def matches(query: dict) -> bool:
        return QueryMatcher(query, store="memory")({"a": "abc\nD"})

    assert matches({"a": {"$regex": "^AB", "$options": "i"}})
    assert not matches({"a": {"$regex": "^AB", "$options": ""}})
    assert not matches({"a": {"$not": {"$regex": "^AB", "$options": "i"}}})
    assert matches({"$or": [{"a": {"$regex": "c$", "$options": "m"}}]})
    assert not matches({"$or": [{"a": {"$regex": "c$"}}]})
    assert matches({"a": {"$regex": "a b c", "$options": "x"}})
    assert not matches({"a": {"$regex": "a b c"}})
