"""The v1 document and event read path: field selection, stream selection, replay.

Pure functions over a :class:`~broker_v1.stores.base.DocumentStore` and the
:class:`~broker_v1._run.RunDocs` of each run; the Broker applies its ``prepare_hook`` (and any
``transforms``) to what these hand out.  Nothing here imports pandas.

Field selection follows databroker (spec §4.1/§4.2): ``fields`` is a list of regular
expressions, each *full-matched* against names.  Event fields that match are kept; names that
match in the descriptor's ``configuration[*]['data']``, then the start, then the stop document
are merged into every event (``data`` and ``timestamps``) as constants.  Descriptors handed out
with ``fields`` are pruned copies (``data_keys`` restricted to the kept event fields, the 0.13
behaviour chosen in spec §9 #22).

Filling external data is delegated to a *filler*: any object with a
``fill_column(descriptor, key, datum_ids) -> list`` method (see :class:`Filler`).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from .stores._util import json_copy
from .utils import ALL, stream_name_of

__all__ = [
    "Filler",
    "compile_fields",
    "config_data",
    "descriptors_of_stream",
    "external_keys",
    "extra_data",
    "iter_documents",
    "iter_events",
    "keys_to_fill",
]

Doc = dict[str, Any]


class Filler(Protocol):
    """What the read path needs from the external-data layer (the handler registry).

    One method, column-wise so a backend can load many frames of one resource at once.
    """

    def fill_column(
        self, descriptor: Mapping[str, Any], key: str, datum_ids: list[str]
    ) -> Sequence[Any]:
        """Load the data behind ``datum_ids`` (values of the external data key ``key``).

        Parameters
        ----------
        descriptor
            The full (unpruned) descriptor of the events.
        key
            The external data key being filled.
        datum_ids
            One datum id per event, in event order.

        Returns
        -------
        Sequence
            One loaded value (usually a numpy array) per datum id, in the same order.
            A missing handler raises a ``KeyError`` subclass.
        """
        ...


# --------------------------------------------------------------------------- field helpers
def _normalize_fields(fields: Any) -> list[str] | None:
    # A bare string is one pattern, not a list of one-character patterns.
    if fields is None:
        return None
    if isinstance(fields, str):
        return [fields]
    out = list(fields)
    for f in out:
        if not isinstance(f, str):
            raise TypeError(
                f"fields must be a list of regular expressions (strings); got {f!r} "
                f"({type(f).__name__})."
            )
    return out


def compile_fields(fields: Iterable[str] | str | None) -> Callable[[str], bool]:
    """A predicate telling whether a name is selected by ``fields``.

    Parameters
    ----------
    fields
        ``None`` selects every name.  Otherwise a list of regular expressions, each
        full-matched against the name (``'det'`` selects ``'det'`` but not ``'det2'``;
        ``'det.*'`` selects both).  A single string counts as a list of one pattern; an
        empty list selects nothing.

    Returns
    -------
    Callable[[str], bool]

    Raises
    ------
    ValueError
        An entry is not a valid regular expression.
    TypeError
        An entry is not a string.
    """
    patterns = _normalize_fields(fields)
    if patterns is None:
        return _select_all
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as err:
            raise ValueError(
                f"fields entry {p!r} is not a valid regular expression ({err}). Entries are "
                "full-matched against field names, e.g. 'det' or 'det.*'."
            ) from err
    cache: dict[str, bool] = {}

    def match(name: str) -> bool:
        # Names repeat across descriptors and runs; cache the verdicts.
        hit = cache.get(name)
        if hit is None:
            hit = cache[name] = any(c.fullmatch(name) is not None for c in compiled)
        return hit

    return match


def _select_all(name: str) -> bool:
    return True


def descriptors_of_stream(descriptors: Iterable[Doc], stream_name: Any) -> list[Doc]:
    """The descriptors of one stream (``ALL``: every descriptor), order kept.

    Parameters
    ----------
    descriptors
        A run's descriptors.
    stream_name
        A stream name or the :class:`~broker_v1.utils.ALL` sentinel.  Descriptors without a
        ``name`` belong to ``'primary'`` (spec §9 #21).
    """
    if stream_name is ALL:
        return list(descriptors)
    return [d for d in descriptors if stream_name_of(d) == stream_name]


def config_data(descriptors: Iterable[Doc], device: str) -> dict[str, list[dict[str, Any]]]:
    """One device's configuration values, per stream and per descriptor (spec §3).

    Parameters
    ----------
    descriptors
        A run's descriptors.
    device
        A device (object) name, a key of the descriptors' ``configuration``.

    Returns
    -------
    dict
        ``{stream_name: [configuration[device]['data'], ...]}`` in ascending descriptor time
        (a stream whose configuration changed mid-run has several entries).  Descriptors
        without configuration for the device are skipped; an unknown device gives ``{}``.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for d in sorted(descriptors, key=lambda d: d.get("time", 0)):
        conf = (d.get("configuration") or {}).get(device)
        if not isinstance(conf, Mapping) or "data" not in conf:
            continue
        out.setdefault(stream_name_of(d), []).append(json_copy(dict(conf["data"])))
    return out


def external_keys(descriptor: Mapping[str, Any]) -> list[str]:
    """The descriptor's data keys whose values are datum ids (``external`` set).

    Parameters
    ----------
    descriptor
        An event descriptor.
    """
    return [k for k, v in descriptor["data_keys"].items() if v.get("external")]


def keys_to_fill(descriptor: Mapping[str, Any], fill: Any) -> list[str]:
    """The external keys of ``descriptor`` that ``fill`` asks to load (spec §11.1 #5).

    Parameters
    ----------
    descriptor
        An event descriptor.
    fill
        A list, tuple or set of field names (fill those, when external); anything else is
        judged by truthiness (``True`` → every external key; ``'false'`` is truthy).
    """
    keys = external_keys(descriptor)
    if isinstance(fill, list | tuple | set | frozenset):
        wanted = set(fill)
        return [k for k in keys if k in wanted]
    return keys if fill else []


def _check_filler(filler: Filler | None, descriptor: Mapping[str, Any], keys: list[str]) -> None:
    if keys and filler is None:
        raise ValueError(
            f"filling external data needs a handler registry: fill= asks for {keys} of "
            f"descriptor {descriptor['uid']} (stream {stream_name_of(descriptor)!r}), but no "
            "filler was given. Pass fill=False to get the datum ids instead."
        )


def extra_data(
    start: Mapping[str, Any],
    stop: Mapping[str, Any] | None,
    descriptor: Mapping[str, Any],
    match: Callable[[str], bool],
    taken: Iterable[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constant values that ``fields`` pulls from configuration, start and stop.

    Looks in the descriptor's ``configuration[*]['data']`` (devices in order), then the start,
    then the stop document; the first source naming a value wins, and names in ``taken`` (the
    kept event fields) are never replaced.

    Parameters
    ----------
    start, stop
        The run's start and stop (``None`` for a run without one).
    descriptor
        The descriptor whose configuration is searched.
    match
        The predicate from :func:`compile_fields`.
    taken
        Names already used by event fields.

    Returns
    -------
    data, timestamps
        Ordered dicts of the values and their timestamps (the configuration's timestamp, or
        the start's / stop's ``time``).
    """
    data: dict[str, Any] = {}
    stamps: dict[str, Any] = {}
    taken = set(taken)
    for conf in (descriptor.get("configuration") or {}).values():
        if not isinstance(conf, Mapping):
            continue
        conf_ts = conf.get("timestamps") or {}
        for k, v in (conf.get("data") or {}).items():
            if k not in taken and k not in data and match(k):
                data[k] = v
                stamps[k] = conf_ts.get(k, descriptor.get("time"))
    for doc in (start, stop or {}):
        for k, v in doc.items():
            if k not in taken and k not in data and match(k):
                data[k] = v
                stamps[k] = doc.get("time")
    return data, stamps


#: Rows of external data loaded at once on the events path.
_FILL_CHUNK = 16


def _slice_page(page: Doc, start: int, stop: int) -> Doc:
    out = {k: v for k, v in page.items() if k not in ("time", "seq_num", "uid", "data",
                                                       "timestamps", "filled")}
    for key in ("time", "seq_num", "uid"):
        out[key] = page[key][start:stop]
    for part in ("data", "timestamps", "filled"):
        if part in page:
            out[part] = {k: col[start:stop] for k, col in page[part].items()}
    return out


# --------------------------------------------------------------------------- per-descriptor plan
class _Selection:
    """What the read path keeps of one descriptor's events, worked out once per descriptor."""

    __slots__ = (
        "descriptor",
        "uid",
        "keys",
        "projection",
        "pruned",
        "external",
        "fill",
        "extra",
        "extra_ts",
        "extra_mutable",
    )

    def __init__(
        self,
        run_start: Mapping[str, Any],
        run_stop: Mapping[str, Any] | None,
        descriptor: Doc,
        match: Callable[[str], bool],
        filtered: bool,
        fill: Any,
    ) -> None:
        self.descriptor = descriptor
        self.uid: str = descriptor["uid"]
        data_keys = descriptor["data_keys"]
        self.keys = [k for k in data_keys if match(k)]
        # Ask the store for the kept columns only (a hint it may ignore).
        self.projection = list(self.keys) if filtered else None
        if filtered:
            # Same top-level key order as stored; only data_keys is restricted.
            kept_keys = {k: data_keys[k] for k in self.keys}
            self.pruned = json_copy(
                {k: kept_keys if k == "data_keys" else v for k, v in descriptor.items()}
            )
            self.extra, self.extra_ts = extra_data(
                run_start, run_stop, descriptor, match, self.keys
            )
        else:
            self.pruned = json_copy(descriptor)
            self.extra, self.extra_ts = {}, {}
        self.extra_mutable = [k for k, v in self.extra.items() if isinstance(v, dict | list)]
        kept = set(self.keys)
        self.external = [k for k in external_keys(descriptor) if k in kept]
        self.fill = [k for k in keys_to_fill(descriptor, fill) if k in kept]

    @property
    def empty(self) -> bool:
        """Every event would have empty ``data``: skip the descriptor and its events."""
        return not self.keys and not self.extra

    def _add_extra(self, data: Doc, timestamps: Doc) -> None:
        data.update(self.extra)
        for k in self.extra_mutable:  # events must not share mutable values
            data[k] = json_copy(data[k])
        timestamps.update(self.extra_ts)

    def events_of_page(self, page: Doc, filler: Filler | None) -> Iterator[tuple[Doc, Doc]]:
        """``(pruned descriptor, fresh event)`` for each row of one event page.

        Events are pruned to the kept fields, extras merged, external fields filled if asked.
        """
        keys = self.keys
        n = len(page["uid"])
        if self.fill and n > _FILL_CHUNK:
            # Load external data a few rows at a time so memory stays bounded.
            for start in range(0, n, _FILL_CHUNK):
                yield from self.events_of_page(_slice_page(page, start, start + _FILL_CHUNK),
                                               filler)
            return
        columns = [_column(page["data"], k, n) for k in keys]
        ts_columns = [_column(page["timestamps"], k, n) for k in keys]
        filled_cols: list[tuple[str, list[Any]]] = []
        for k in self.fill:
            assert filler is not None  # checked by the caller
            i = keys.index(k)
            ids = columns[i]
            loaded = list(filler.fill_column(self.descriptor, k, list(ids)))
            _check_filled_length(self.descriptor, k, ids, loaded)
            columns[i] = loaded
            filled_cols.append((k, ids))
        rows = zip(
            page["time"],
            page["seq_num"],
            page["uid"],
            zip(*columns) if keys else ((),) * n,
            zip(*ts_columns) if keys else ((),) * n,
        )
        descriptor, descriptor_uid = self.pruned, self.uid
        if not (self.external or self.extra):
            # The common case (scalar streams), kept lean: this loop bounds get_events' speed.
            for time, seq_num, uid, values, stamps in rows:
                yield (
                    descriptor,
                    {
                        "descriptor": descriptor_uid,
                        "uid": uid,
                        "time": time,
                        "seq_num": seq_num,
                        "data": dict(zip(keys, values)),
                        "timestamps": dict(zip(keys, stamps)),
                        "filled": {},
                    },
                )
            return
        filled_template = dict.fromkeys(self.external, False)
        for i, (time, seq_num, uid, values, stamps) in enumerate(rows):
            data = dict(zip(keys, values))
            timestamps = dict(zip(keys, stamps))
            filled = filled_template.copy()
            for k, ids in filled_cols:
                filled[k] = ids[i]
            if self.extra:
                self._add_extra(data, timestamps)
            yield (
                descriptor,
                {
                    "descriptor": descriptor_uid,
                    "uid": uid,
                    "time": time,
                    "seq_num": seq_num,
                    "data": data,
                    "timestamps": timestamps,
                    "filled": filled,
                },
            )

    def reshape(self, event: Doc) -> Doc:
        """A single stored event as the read path hands it out (before filling)."""
        stored, stored_ts = event["data"], event["timestamps"]
        data = {k: stored[k] for k in self.keys if k in stored}
        timestamps = {k: stored_ts[k] for k in self.keys if k in stored_ts}
        if self.extra:
            self._add_extra(data, timestamps)
        return {
            "descriptor": self.uid,
            "uid": event["uid"],
            "time": event["time"],
            "seq_num": event["seq_num"],
            "data": data,
            "timestamps": timestamps,
            "filled": dict.fromkeys(self.external, False),
        }


def _column(columns: Mapping[str, list[Any]], key: str, n: int) -> list[Any]:
    # A store that lost a column (legacy data) still replays: the value reads as None.
    col = columns.get(key)
    return [None] * n if col is None else col


def _check_filled_length(
    descriptor: Mapping[str, Any], key: str, ids: Sequence[Any], loaded: Sequence[Any]
) -> None:
    if len(loaded) != len(ids):
        raise ValueError(
            f"The filler returned {len(loaded)} values for {len(ids)} datum ids of "
            f"{key!r} (descriptor {descriptor['uid']}); it must return one per datum id."
        )


def _selections(
    run: Any,
    stream_name: Any,
    match: Callable[[str], bool],
    filtered: bool,
    fill: Any,
    filler: Filler | None,
) -> list[_Selection]:
    out = []
    for d in descriptors_of_stream(run.descriptors, stream_name):
        sel = _Selection(run.start, run.stop, d, match, filtered, fill)
        if sel.empty and filtered:
            continue  # fields left nothing: the descriptor is not handed out either (0.13)
        _check_filler(filler, d, sel.fill)
        out.append(sel)
    # Ascending descriptor time (spec §9 #8); stable, so equal times keep the run's order.
    out.sort(key=lambda s: s.descriptor.get("time", 0))
    return out


# --------------------------------------------------------------------------- events
def iter_events(
    store: Any,
    runs: Iterable[Any],
    *,
    stream_name: Any = "primary",
    fields: Iterable[str] | str | None = None,
    fill: Any = False,
    filler: Filler | None = None,
) -> Iterator[tuple[Doc, Doc]]:
    """The events of one stream (or all) of several runs, as ``(descriptor, event)`` pairs.

    Parameters
    ----------
    store
        A :class:`~broker_v1.stores.base.DocumentStore`.
    runs
        :class:`~broker_v1._run.RunDocs` of each run, read in the order given.
    stream_name
        A stream name (nameless descriptors count as ``'primary'``) or ``ALL``.
    fields
        Regular expressions full-matched against field names (see :func:`compile_fields`);
        ``None`` keeps every field.  Matching configuration, start and stop values are merged
        into each event as constants.
    fill
        Which external fields to load (see :func:`keys_to_fill`).
    filler
        Loads external data; required when ``fill`` selects an external field.

    Yields
    ------
    descriptor : dict
        The event's descriptor, a copy pruned to the kept fields when ``fields`` is given.
        The same object is yielded with every event of that descriptor.
    event : dict
        A fresh event: ``descriptor`` (uid), ``uid``, ``time``, ``seq_num``, ``data``,
        ``timestamps`` and ``filled`` (``{external_key: False}`` recomputed from the
        descriptor; after filling, ``data[k]`` is the loaded value and ``filled[k]`` the datum
        id).  Values are as stored (JSON lists, not numpy), except filled ones.  Within a run,
        events of all selected descriptors are merged in ascending ``time`` (ties: ``seq_num``,
        then descriptor time).

    Raises
    ------
    ValueError
        ``fill`` selects external fields and ``filler`` is None.
    """
    match = compile_fields(fields)
    for run in runs:
        selections = _selections(run, stream_name, match, fields is not None, fill, filler)
        # Events with empty data are never handed out (a legacy descriptor without keys).
        streams = [_events_of(store, sel, filler) for sel in selections if not sel.empty]
        if len(streams) == 1:
            yield from streams[0]
        elif streams:
            tagged = [
                ((ev["time"], ev["seq_num"], i, d, ev) for d, ev in stream)
                for i, stream in enumerate(streams)
            ]
            # (time, seq_num, i) is unique, so the merge never compares the dicts.
            for _, _, _, descriptor, event in heapq.merge(*tagged):
                yield descriptor, event


def _events_of(store: Any, sel: _Selection, filler: Filler | None) -> Iterator[tuple[Doc, Doc]]:
    for page in store.iter_event_pages(sel.uid, fields=sel.projection):
        yield from sel.events_of_page(page, filler)


# --------------------------------------------------------------------------- documents
def iter_documents(
    store: Any,
    runs: Iterable[Any],
    *,
    stream_name: Any = ALL,
    fields: Iterable[str] | str | None = None,
    fill: Any = False,
    filler: Filler | None = None,
) -> Iterator[tuple[str, Doc]]:
    """Replay runs as ``(name, doc)`` pairs in event-model order (spec §4.2).

    Per run: ``'start'``; the selected descriptors (pruned copies when ``fields`` is given;
    descriptors left with nothing are skipped); single ``'event'`` documents of those
    descriptors merged by time across streams, each ``'resource'`` and ``'datum'`` emitted once,
    just before the first event that references it (spec §9 #12); ``'stop'`` last, only if the
    run has one (spec §11.1 #10).

    Parameters
    ----------
    store
        A :class:`~broker_v1.stores.base.DocumentStore`; its ``iter_documents`` does the
        ordering, so a backend that overrides it for speed speeds this up too.
    runs
        :class:`~broker_v1._run.RunDocs`, replayed in the order given.
    stream_name
        A stream name or ``ALL`` (the default: every stream).
    fields, fill, filler
        As in :func:`iter_events`; events whose ``data`` becomes empty are skipped, and so are
        datums (and resources) that only pruned fields reference.

    Yields
    ------
    name : str
    doc : dict
        A fresh copy; documents have the top-level keys that were inserted, except that every
        event carries a recomputed ``filled``.
    """
    match = compile_fields(fields)
    for run in runs:
        # Selections first, so a fill= that cannot be honoured fails before any output.
        chosen = _selections(run, stream_name, match, fields is not None, fill, filler)
        selections = {s.uid: s for s in chosen}
        yield "start", json_copy(run.start)
        for sel in selections.values():
            yield "descriptor", sel.pruned  # already a private copy
        with_events = {uid: sel for uid, sel in selections.items() if not sel.empty}
        if with_events:
            yield from _run_body(store, with_events, filler)
        if run.stop is not None:
            yield "stop", json_copy(run.stop)


def _run_body(
    store: Any, selections: dict[str, _Selection], filler: Filler | None
) -> Iterator[tuple[str, Doc]]:
    # The store streams only what the kept fields reference: start, descriptors and stop
    # come from the RunDocs (what the Header shows), and datums of pruned fields never come.
    docs = store.iter_run_body(
        [sel.descriptor for sel in selections.values()],
        external_keys={uid: sel.external for uid, sel in selections.items()},
    )
    for name, doc in docs:
        if name != "event":
            yield name, doc
            continue
        sel = selections[doc["descriptor"]]
        event = sel.reshape(doc)
        if not event["data"]:
            continue
        for k in sel.fill:
            assert filler is not None  # checked in _selections
            datum_id = event["data"][k]
            (value,) = filler.fill_column(sel.descriptor, k, [datum_id])
            event["data"][k] = value
            event["filled"][k] = datum_id
        yield "event", event
