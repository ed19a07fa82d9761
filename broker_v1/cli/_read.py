"""The read commands: ``ls`` (runs), ``show`` (one run), ``table`` (one stream)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from ._common import CLIError, _header, _plain_hook, _query, open_broker
from ._format import (
    _clip,
    _duration,
    _events_text,
    _json_out,
    _local_time,
    _width,
    render_table,
)

if TYPE_CHECKING:
    from ..broker import Broker


@click.command("ls")
@click.argument("name")
@click.argument("query", nargs=-1)
@click.option("--since", help="Runs started at or after this time (e.g. 2024-05-01).")
@click.option("--until", help="Runs started at or before this time.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many runs (newest first); 0 for all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def ls_(name: str, query: tuple[str, ...], since: str | None, until: str | None, limit: int,
        as_json: bool) -> None:
    """List runs, newest first: scan_id, uid, plan, start, duration, exit, events.

    QUERY terms are key=value on start-document fields; values are typed (5 is an
    int, 2.5 a float, true/false, null, JSON such as {"$gt": 5}, else a string).

    \b
    Examples:
        broker-v1 ls csx
        broker-v1 ls csx plan_name=scan sample.name=Si --since 2024-05-01
        broker-v1 ls ./runs 'num_points={"$gt": 10}' --limit 5 --json
    """
    db = open_broker(name)
    q = _query(db, query, since, until)
    starts = list(db.store.find_run_starts(q, limit=None if limit == 0 else limit + 1))
    more = bool(limit) and len(starts) > limit
    if more:
        starts = starts[:limit]
    stops = db.store.get_run_stops([s["uid"] for s in starts])
    runs = []
    for s in starts:
        stop = stops.get(s["uid"])
        duration = None
        if stop is not None and isinstance(stop.get("time"), int | float):
            duration = stop["time"] - s["time"]
        runs.append({
            "uid": s["uid"],
            "scan_id": s.get("scan_id"),
            "plan_name": s.get("plan_name"),
            "time": s.get("time"),
            "start": _local_time(s.get("time"), db.timezone),
            "duration": duration,
            "exit_status": None if stop is None else stop.get("exit_status"),
            "num_events": None if stop is None else stop.get("num_events"),
        })
    if as_json:
        _json_out(runs)
        return
    if not runs:
        click.echo(f"No runs match in {db.store.describe()}.")
        return
    cells = [[
        "" if r["scan_id"] is None else str(r["scan_id"]),
        r["uid"][:8],
        str(r["plan_name"] or ""),
        r["start"],
        _duration(r["duration"]),
        "-" if r["exit_status"] is None else str(r["exit_status"]),
        _events_text(r["num_events"]),
    ] for r in runs]
    headers = ["SCAN", "UID", "PLAN", "STARTED", "TOOK", "EXIT", "EVENTS"]
    for line in render_table(headers, cells, shrink=[2, 6], minimum={2: 10, 6: 8},
                             right=[0, 4]):
        click.echo(line)
    if more:
        click.echo(f"(newest {limit} shown; --limit N for more, --limit 0 for all)")


def _stream_summary(db: Broker, header: Any, descriptors: list[dict[str, Any]],
                    stop: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    from ..utils import stream_name_of

    counted = (stop or {}).get("num_events") or {}
    streams: dict[str, dict[str, Any]] = {}
    for d in descriptors:
        name = stream_name_of(d)
        entry = streams.setdefault(name, {"name": name, "descriptors": 0, "fields": {},
                                          "events": None})
        entry["descriptors"] += 1
        for key, info in d.get("data_keys", {}).items():
            entry["fields"].setdefault(key, {
                "dtype": info.get("dtype"), "shape": info.get("shape"),
                "source": info.get("source"), "external": info.get("external"),
                "units": info.get("units")})
        if name not in counted:
            n = sum(len(p["uid"]) for p in db.store.iter_event_pages(d["uid"], fields=[]))
            entry["events"] = (entry["events"] or 0) + n
    for name, entry in streams.items():
        if name in counted:
            entry["events"] = counted[name]
    return list(streams.values())


def _value_text(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


# ignore_unknown_options: KEY may be -1, which is not an option.
_KEY_SETTINGS = {"ignore_unknown_options": True}


@click.command(context_settings=_KEY_SETTINGS)
@click.argument("name")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True,
              help="Print the start, descriptors and stop documents as JSON.")
def show(name: str, key: str, as_json: bool) -> None:
    """One run: start metadata, streams with their fields and shapes, stop.

    KEY is what db[...] takes: -1 (most recent), a scan_id, a uid or a uid prefix.

    \b
    Examples:
        broker-v1 show csx -1
        broker-v1 show csx 3f2a91c0
        broker-v1 show ./runs 1234 --json
    """
    db = open_broker(name)
    db.prepare_hook = _plain_hook  # plain dicts, for printing and JSON
    h = _header(db, key)
    start, stop, descriptors = h.start, h.stop or None, h.descriptors
    if as_json:
        _json_out({"start": start, "descriptors": descriptors, "stop": stop})
        return
    width = _width()
    zone = db.timezone
    duration = None if stop is None else stop.get("time", 0) - start["time"]
    click.echo(_clip(f"Run {start['uid']}", width))
    click.echo(_clip(f"  scan_id {start.get('scan_id', '-')}, plan {start.get('plan_name', '-')}"
                     f", exit status {'-' if stop is None else stop.get('exit_status')}", width))
    click.echo(_clip(f"  started {_local_time(start.get('time'), zone)} ({zone}), "
                     f"took {_duration(duration)}", width))
    click.echo("Start")
    keys = [k for k in start if k not in ("uid", "time")]
    stop_keys = [k for k in (stop or {}) if k not in ("uid", "run_start")]
    pad = min(24, max([len(k) for k in keys + stop_keys] + [4]))
    for k in keys:
        click.echo(_clip(f"  {k.ljust(pad)}  {_value_text(start[k])}", width))
    click.echo("Streams")
    streams = _stream_summary(db, h, descriptors, stop)
    if not streams:
        click.echo("  (none)")
    for s in streams:
        extra = f", {s['descriptors']} descriptors" if s["descriptors"] > 1 else ""
        click.echo(f"  {s['name']}: {s['events']} events{extra}")
        external = any(info["external"] for info in s["fields"].values())
        rows = [[field, str(info["dtype"] or ""), json.dumps(info["shape"]),
                 str(info["units"] or "")]
                + (["external" if info["external"] else ""] if external else [])
                + [str(info["source"] or "")]
                for field, info in s["fields"].items()]
        headers = ["field", "dtype", "shape", "units"] + (["data"] if external else [])
        last = len(headers)
        for line in render_table(headers + ["source"], rows, width=width - 4,
                                 shrink=[last, 0, 2], minimum={0: 8, last: 6}):
            click.echo("    " + line)
    click.echo("Stop")
    if stop is None:
        click.echo("  (none: the run is still open, or its writer crashed)")
    else:
        for k in stop_keys:
            value = _local_time(stop[k], zone) if k == "time" else _value_text(stop[k])
            click.echo(_clip(f"  {k.ljust(pad)}  {value}", width))


@click.command(context_settings=_KEY_SETTINGS)
@click.argument("name")
@click.argument("key")
@click.option("--stream", default="primary", show_default=True, help="Which stream.")
@click.option("--fields", help="Comma-separated fields (regular expressions) to include.")
@click.option("--csv", "csv_path", metavar="FILE|-",
              help="Write every row as CSV to FILE ('-' for standard output).")
@click.option("--max-rows", type=click.IntRange(min=0), default=60, show_default=True,
              help="Rows printed (not for --csv); 0 for all.")
def table(name: str, key: str, stream: str, fields: str | None, csv_path: str | None,
          max_rows: int) -> None:
    """A stream of one run as a table (db.get_table), or as CSV.

    \b
    Examples:
        broker-v1 table csx -1
        broker-v1 table csx 3f2a91c0 --stream baseline --fields temp,current
        broker-v1 table ./runs -1 --csv run.csv
        broker-v1 table ./runs -1 --csv - | head
    """
    db = open_broker(name)
    h = _header(db, key)
    field_list = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    streams = db.stream_names_given_header(h)
    if stream not in streams:
        raise CLIError(f"run {h.uid[:8]} has no stream {stream!r} (streams: "
                       f"{', '.join(streams) or 'none'}).")
    df = db.get_table(h, stream_name=stream, fields=field_list)
    if csv_path is not None:
        if csv_path == "-":
            click.echo(df.to_csv(), nl=False)
        else:
            df.to_csv(csv_path)
            click.echo(f"Wrote {len(df)} rows x {len(df.columns)} columns to {csv_path}.",
                       err=True)
        return
    if df.empty:
        click.echo(f"No events in stream {stream!r} of run {h.uid[:8]}.")
        return
    click.echo(df.to_string(line_width=_width(), max_rows=max_rows or None))
