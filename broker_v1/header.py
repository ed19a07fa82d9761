"""Header: the read-only, lazily loaded summary of one run that ``db[...]`` returns."""

from __future__ import annotations

import datetime as _dt
import html
import re
import time as _time
import types
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import humanize

from ._reading import ReadContext, RunView
from .utils import ALL, stream_name_of

if TYPE_CHECKING:
    import pandas

__all__ = ["Header"]

_KEYS = ("start", "descriptors", "stop", "ext")


class Header:
    """One run: its start, stop and descriptors, plus shortcuts to its data.

    Headers come from ``db[key]`` and from iterating ``db(...)``; build them that way rather
    than directly.  They behave like a read-only mapping with the keys ``'start'``,
    ``'descriptors'``, ``'stop'`` and ``'ext'``, compare equal when they describe the same run
    (same start uid), and are not hashable.

    Every document handed out goes through the Broker's ``prepare_hook``.  ``h.stop`` is an
    empty mapping for a run without a stop document (still running, or crashed).
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, context: ReadContext, run: RunView, fetch_external: Any = None) -> None:
        self._context = context
        self._run = run
        self._start_raw = run.start
        self._fetch_external = fetch_external
        self._ext: types.SimpleNamespace | None = None

    # ------------------------------------------------------------------ raw access
    @property
    def db(self) -> Any:
        """The Broker this header came from."""
        return self._context.owner

    @property
    def run_view(self) -> RunView:
        """The run's documents as the read paths take them (transformed, not prepared)."""
        return self._run

    def _raw_stop(self) -> dict[str, Any] | None:
        return self._run.stop()

    def _raw_descriptors(self) -> list[dict[str, Any]]:
        return self._run.descriptors()

    def _prepare(self, name: str, doc: Any) -> Any:
        return self._context.prepare_hook(name, doc)

    # ------------------------------------------------------------------ the four keys
    @property
    def uid(self) -> str:
        """The run's start uid."""
        return str(self._start_raw["uid"])

    @property
    def start(self) -> Any:
        """The start document (through ``prepare_hook``)."""
        return self._prepare("start", self._start_raw)

    @property
    def stop(self) -> Any:
        """The stop document, or an empty mapping if the run has none."""
        stop = self._raw_stop()
        if stop is None:
            return {}
        return self._prepare("stop", stop)

    @property
    def descriptors(self) -> list[Any]:
        """Every descriptor of the run (all streams), in ascending ``time``."""
        return [self._prepare("descriptor", d) for d in self._raw_descriptors()]

    @property
    def ext(self) -> types.SimpleNamespace:
        """Results of the Broker's ``external_fetchers`` for this run."""
        if self._ext is None:
            fetched = (self._fetch_external(self._start_raw, self._raw_stop() or {})
                       if self._fetch_external is not None else {})
            self._ext = types.SimpleNamespace(**fetched)
        return self._ext

    def __getitem__(self, key: str) -> Any:
        if key not in _KEYS:
            raise KeyError(
                f"{key!r} is not a key of a Header; use one of {', '.join(map(repr, _KEYS))}."
            )
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``h[key]`` when ``key`` is one of the header's keys or attributes, else ``default``."""
        return getattr(self, key, default) if isinstance(key, str) else default

    def keys(self) -> Iterator[str]:
        """``'start'``, ``'descriptors'``, ``'stop'``, ``'ext'``."""
        return iter(_KEYS)

    def values(self) -> Iterator[Any]:
        """The values of :meth:`keys`, in order."""
        return (self[k] for k in _KEYS)

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(key, value)`` pairs of :meth:`keys`."""
        return ((k, self[k]) for k in _KEYS)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)

    def __contains__(self, key: object) -> bool:
        return key in _KEYS

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Header):
            return NotImplemented
        return self.uid == other.uid

    def to_name_dict_pair(self) -> tuple[str, dict[str, Any]]:
        """``('header', {start, stop, descriptors, ext})`` with plain dicts (0.13 spelling)."""
        return "header", {
            "start": dict(self._start_raw),
            "stop": dict(self._raw_stop() or {}),
            "descriptors": [dict(d) for d in self._raw_descriptors()],
            "ext": self.ext,
        }

    # ------------------------------------------------------------------ streams and fields
    @property
    def stream_names(self) -> list[str]:
        """Distinct stream names in order of first appearance; nameless → ``'primary'``."""
        names: dict[str, None] = {}
        for d in self._raw_descriptors():
            names.setdefault(stream_name_of(d), None)
        return list(names)

    def fields(self, stream_name: Any = ALL) -> set[str]:
        """Data keys of every descriptor, or of one stream's descriptors."""
        out: set[str] = set()
        for d in self._raw_descriptors():
            if stream_name is ALL or stream_name_of(d) == stream_name:
                out.update(d["data_keys"])
        return out

    def devices(self, stream_name: Any = ALL) -> set[str]:
        """Names of the devices (``object_keys``) recorded, in every stream or one."""
        out: set[str] = set()
        for d in self._raw_descriptors():
            if stream_name is ALL or stream_name_of(d) == stream_name:
                out.update(d.get("object_keys", {}))
        return out

    def config_data(self, device_name: str) -> dict[str, list[dict[str, Any]]]:
        """``{stream_name: [configuration values, one per descriptor]}`` for one device."""
        out: dict[str, list[dict[str, Any]]] = {}
        for d in self._raw_descriptors():
            config = d.get("configuration", {}).get(device_name)
            if config is None or "data" not in config:
                continue
            out.setdefault(stream_name_of(d), []).append(dict(config["data"]))
        return out

    # ------------------------------------------------------------------ data shortcuts
    def table(
        self,
        stream_name: str = "primary",
        fields: list[str] | None = None,
        fill: Any = False,
        timezone: str | None = None,
        convert_times: bool = True,
        localize_times: bool = True,
        handler_registry: Any = None,
    ) -> pandas.DataFrame:
        """This run's events of one stream as a DataFrame (see :meth:`Broker.get_table`)."""
        return self._context.table(
            [self._run],
            stream_name=stream_name,
            fields=fields,
            fill=fill,
            timezone=timezone,
            convert_times=convert_times,
            localize_times=localize_times,
            handler_registry=handler_registry,
        )

    def events(
        self,
        stream_name: Any = "primary",
        fields: list[str] | None = None,
        fill: Any = False,
        handler_registry: Any = None,
    ) -> Iterator[Any]:
        """Event documents of one stream in time order (see :meth:`Broker.get_events`)."""
        return self._context.events(
            [self._run], stream_name=stream_name, fields=fields, fill=fill,
            handler_registry=handler_registry,
        )

    def documents(
        self,
        stream_name: Any = ALL,
        fields: list[str] | None = None,
        fill: Any = False,
        handler_registry: Any = None,
    ) -> Iterator[tuple[str, Any]]:
        """The run replayed as ``(name, doc)`` pairs (see :meth:`Broker.get_documents`)."""
        return self._context.documents(
            [self._run], stream_name=stream_name, fields=fields, fill=fill,
            handler_registry=handler_registry,
        )

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Deprecated alias of :meth:`documents`."""
        warnings.warn("Header.stream is deprecated; use Header.documents.", UserWarning,
                      stacklevel=2)
        return self.documents(*args, **kwargs)

    def data(
        self, field: str, stream_name: str = "primary", fill: bool = True,
        handler_registry: Any = None,
    ) -> Iterator[Any]:
        """The values of one field, one per event, in time order (filled by default)."""
        for event in self._context.events(
            [self._run], stream_name=stream_name, fields=[re.escape(field)], fill=fill,
            handler_registry=handler_registry,
        ):
            yield event["data"][field]

    # ------------------------------------------------------------------ display
    def _summary(self) -> dict[str, str]:
        start = self._start_raw
        stop = self._raw_stop()
        started = start.get("time")
        when = ago = duration = "?"
        if isinstance(started, int | float):
            tz = self._context.zone()
            when = _dt.datetime.fromtimestamp(started, tz).strftime("%Y-%m-%d %H:%M:%S")
            ago = humanize.naturaltime(_dt.timedelta(seconds=max(0.0, _time.time() - started)))
            if stop and isinstance(stop.get("time"), int | float):
                duration = humanize.naturaldelta(_dt.timedelta(seconds=stop["time"] - started))
        return {
            "plan": str(start.get("plan_name", "?")),
            "scan_id": str(start.get("scan_id", "?")),
            "uid": str(start.get("uid", "?")),
            "start": when,
            "ago": ago,
            "duration": duration if stop else "still running or crashed",
            "exit": str(stop.get("exit_status", "?")) if stop else "no stop document",
        }

    def __repr__(self) -> str:
        s = self._summary()
        return (
            f"<Header scan_id={s['scan_id']} plan={s['plan']!r} uid={s['uid'][:8]!r} "
            f"start={s['start']} ({s['ago']}) duration={s['duration']} exit_status={s['exit']}>"
        )

    def _repr_html_(self) -> str:
        s = self._summary()
        rows = [
            ("plan", s["plan"]),
            ("scan_id", s["scan_id"]),
            ("uid", s["uid"]),
            ("start", f"{s['start']} ({s['ago']})"),
            ("duration", s["duration"]),
            ("exit status", s["exit"]),
            ("streams", ", ".join(self.stream_names) or "none"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>Header</caption>{body}</table>"
