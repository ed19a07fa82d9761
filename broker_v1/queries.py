"""Building the one Mongo-dialect query every store evaluates, and parsing human times.

``db(plan_name='scan', since='2024-01', until='2024-02-01 12:00')`` becomes
``{'$and': [{'plan_name': 'scan'}, {'time': {'$gte': ..., '$lte': ...}}]}``.  Time strings are
read in one explicit timezone (the Broker's: config ``timezone``, else this machine's).
"""

from __future__ import annotations

import datetime as _dt
import numbers
import warnings
import zoneinfo
from collections.abc import Mapping
from typing import Any

import tzlocal

from .errors import InvalidQuery

__all__ = [
    "TIME_FORMATS",
    "Query",
    "TextQuery",
    "TimeRange",
    "build_query",
    "local_timezone_name",
    "normalize_human_friendly_time",
    "resolve_timezone",
]

#: The string formats ``since``/``until`` accept (unpadded fields allowed, whitespace stripped).
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H",
    "%Y-%m-%d",
    "%Y-%m",
    "%Y",
)


def local_timezone_name() -> str:
    """This machine's IANA timezone name (``UTC`` when it cannot be determined)."""
    try:
        return str(tzlocal.get_localzone_name() or "UTC")
    except Exception:  # a misconfigured machine must not stop searches
        return "UTC"


def resolve_timezone(name: str | None) -> zoneinfo.ZoneInfo:
    """The ``ZoneInfo`` for an IANA name (``None`` → this machine's zone).

    Raises
    ------
    InvalidQuery
        The name is not a known timezone.
    """
    name = name or local_timezone_name()
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as err:
        raise InvalidQuery(
            f"Unknown timezone {name!r}; use an IANA name such as 'US/Eastern' or "
            "'Europe/Berlin'."
        ) from err


def _localize(naive: _dt.datetime, tz: zoneinfo.ZoneInfo, original: Any) -> float:
    early = naive.replace(tzinfo=tz, fold=0)
    late = naive.replace(tzinfo=tz, fold=1)
    if early.utcoffset() != late.utcoffset():
        # Either the wall-clock time happens twice (DST ends) or never (DST starts).
        roundtrip = early.astimezone(_dt.timezone.utc).astimezone(tz).replace(tzinfo=None)
        if roundtrip != naive:
            raise InvalidQuery(
                f"{original!r} does not exist in {tz.key} (the clocks skip it when daylight "
                "saving time starts). Give a time outside the gap or an aware datetime."
            )
        raise InvalidQuery(
            f"{original!r} is ambiguous in {tz.key} (it happens twice when daylight saving "
            "time ends). Give an aware datetime or epoch seconds."
        )
    return early.timestamp()


def normalize_human_friendly_time(value: Any, tz: str | zoneinfo.ZoneInfo | None = None) -> Any:
    """Turn a time given by a person into UTC epoch seconds.

    Parameters
    ----------
    value
        Epoch seconds (returned unchanged), a ``datetime`` (naive ones are read in ``tz``), or
        a string in one of :data:`TIME_FORMATS` (``'2024'``, ``'2024-02-10 10:1'``...).
        Any other object is returned unchanged, as databroker did.
    tz
        The timezone naive values are read in (default: this machine's).

    Raises
    ------
    InvalidQuery
        A string matching no format, or a local time that does not exist or is ambiguous.
    """
    zone = tz if isinstance(tz, zoneinfo.ZoneInfo) else resolve_timezone(tz)
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            return value.timestamp()
        return _localize(value, zone, value)
    if isinstance(value, _dt.date):
        return _localize(_dt.datetime(value.year, value.month, value.day), zone, value)
    if isinstance(value, str):
        text = value.strip()
        for fmt in TIME_FORMATS:
            try:
                parsed = _dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
            return _localize(parsed, zone, value)
        raise InvalidQuery(
            f"failed to parse time: {value!r}. Accepted formats: "
            + ", ".join(repr(f) for f in TIME_FORMATS)
            + " (e.g. '2024-03-01 14:30'), a datetime, or epoch seconds."
        )
    return value


def _time_range(
    query: dict[str, Any], tz: zoneinfo.ZoneInfo
) -> dict[str, Any] | None:
    """Pop since/until (and the deprecated start_time/stop_time) into a ``time`` condition."""
    for new, old in (("since", "start_time"), ("until", "stop_time")):
        if old in query:
            if new in query:
                raise TypeError(
                    f"Give either {new!r} or its deprecated spelling {old!r}, not both."
                )
            warnings.warn(
                f"{old!r} is deprecated; use {new!r} instead.", UserWarning, stacklevel=4
            )
            query[new] = query.pop(old)
    since, until = query.pop("since", None), query.pop("until", None)
    condition = {}
    if since:
        condition["$gte"] = normalize_human_friendly_time(since, tz)
    if until:
        condition["$lte"] = normalize_human_friendly_time(until, tz)
    for bound in condition.values():
        if not isinstance(bound, numbers.Real) or isinstance(bound, bool) or bound != bound:
            raise InvalidQuery(f"since/until must be a time, got {bound!r}.")
    return {"time": condition} if condition else None


def build_query(
    criteria: Mapping[str, Any],
    *,
    text_search: str | None = None,
    filters: Mapping[str, Any] | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """The Mongo-dialect filter for ``db(text_search, **criteria)`` with the Broker's filters.

    Parameters
    ----------
    criteria
        Conditions on start-document fields; may include ``since``/``until``.
    text_search
        Words for a full-text search (``$text``).
    filters
        The Broker's standing filters, AND-ed with the criteria (never modified).
    timezone
        Where naive times are read.

    Returns
    -------
    dict
        ``{}`` when there is nothing to filter on.
    """
    tz = resolve_timezone(timezone)
    clauses: list[dict[str, Any]] = []
    for source in (filters or {}, criteria):
        part = dict(source)  # never rewrite the caller's dicts
        for key in part:
            if not isinstance(key, str):
                raise InvalidQuery(f"Search keys must be strings, got {key!r}.")
        time_clause = _time_range(part, tz)
        if part:
            clauses.append(part)
        if time_clause:
            clauses.append(time_clause)
    if text_search is not None:
        if not isinstance(text_search, str):
            raise InvalidQuery(f"text_search must be a string of words, got {text_search!r}.")
        clauses.append({"$text": {"$search": text_search}})
    if not clauses:
        return {}
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


class Query(Mapping[str, Any]):
    """A search expressed as an object; a read-only mapping over its Mongo-dialect ``query``.

    It can be passed wherever a query dict is accepted and compares equal to that dict.
    ``kwargs`` holds the constructor arguments; :meth:`replace` returns a modified copy.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = dict(kwargs)
        self._query = self._build()

    def _build(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kwargs(self) -> dict[str, Any]:
        """The arguments this query was made with."""
        return dict(self._kwargs)

    @property
    def query(self) -> dict[str, Any]:
        """The Mongo-dialect filter."""
        return dict(self._query)

    def replace(self, **kwargs: Any) -> Query:
        """A copy with some arguments changed (the original is unchanged)."""
        return type(self)(**{**self._kwargs, **kwargs})

    def __getitem__(self, key: str) -> Any:
        return self._query[key]

    def __iter__(self) -> Any:
        return iter(self._query)

    def __len__(self) -> int:
        return len(self._query)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_query, (type(self), self._kwargs))


def _rebuild_query(cls: type[Query], kwargs: dict[str, Any]) -> Query:
    return cls(**kwargs)


class TimeRange(Query):
    """Runs started in ``[since, until)`` (``until`` exclusive, as databroker's v2 API).

    Parameters
    ----------
    since, until
        Epoch seconds, datetimes or strings in :data:`TIME_FORMATS`; either may be omitted.
    timezone
        Where naive values are read (default: this machine's zone).

    Examples
    --------
    >>> TimeRange(since='2020', timezone='US/Eastern')
    TimeRange(since='2020', timezone='US/Eastern')
    >>> dict(TimeRange(since='2020', timezone='US/Eastern'))
    {'time': {'$gte': 1577854800.0}}
    """

    def __init__(self, since: Any = None, until: Any = None, timezone: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if since is not None:
            kwargs["since"] = since
        if until is not None:
            kwargs["until"] = until
        if timezone is not None:
            kwargs["timezone"] = timezone
        super().__init__(**kwargs)

    def _build(self) -> dict[str, Any]:
        tz = self._kwargs.get("timezone")
        condition = {}
        if "since" in self._kwargs:
            condition["$gte"] = normalize_human_friendly_time(self._kwargs["since"], tz)
        if "until" in self._kwargs:
            condition["$lt"] = normalize_human_friendly_time(self._kwargs["until"], tz)
        for bound in condition.values():
            if not isinstance(bound, numbers.Real) or isinstance(bound, bool) or bound != bound:
                raise InvalidQuery(f"TimeRange bounds must be times, got {bound!r}.")
        if "$gte" in condition and "$lt" in condition and condition["$gte"] > condition["$lt"]:
            raise InvalidQuery(
                f"TimeRange since={self._kwargs['since']!r} is after until="
                f"{self._kwargs['until']!r}."
            )
        return {"time": condition} if condition else {}


class TextQuery(Query):
    """Full-text search of start documents (MongoDB ``$text`` semantics, in every store).

    Examples
    --------
    >>> dict(TextQuery('good sample'))
    {'$text': {'$search': 'good sample'}}
    """

    def __init__(self, text_search: str) -> None:
        if not isinstance(text_search, str):
            raise InvalidQuery(f"TextQuery needs a string of words, got {text_search!r}.")
        super().__init__(text_search=text_search)

    def _build(self) -> dict[str, Any]:
        return {"$text": {"$search": self._kwargs["text_search"]}}
