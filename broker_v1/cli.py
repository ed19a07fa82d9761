"""The ``broker-v1`` command: a thin shell over the Broker and the copy machinery.

Every error becomes one line, ``broker-v1: error: ...``, on stderr and a non-zero exit status
(1 for errors, 2 for usage mistakes, 130 for Ctrl-C); ``--debug`` shows the traceback instead.
Tables fit the terminal (80 columns when output is not a terminal).

Start-up is kept light: pandas is imported only by ``table`` and ``demo``, tqdm only by
``copy``.  (Importing ``broker_v1`` itself still costs what its ``__init__`` imports.)

Where a command takes NAME, it may be a config name (``Broker.named``), a directory (a files
store), a ``mongodb://`` / ``mongomock://`` URI, or ``temp``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._version import __version__
from .errors import BrokerError, RunNotFound

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["default_store_path", "main", "open_broker", "parse_query_terms"]

URI_SCHEMES = ("mongodb://", "mongodb+srv://", "mongomock://")

DEMO_LINES = """\
from broker_v1 import Broker
{open_line}
for name, doc in demo_documents(t0):   # or: RE.subscribe(db.insert)
    db.insert(name, doc)
h = db[-1]
h['start']['plan_name'], h['start']['scan_id'], h.stop['exit_status']
[h['start']['scan_id'] for h in db(plan_name='scan', sample='gold')]
db.get_table(h, stream_name='primary')"""


class CLIError(Exception):
    """An error the CLI reports as one line (exit status 1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- error boundary
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int) -> None:
    click.echo(f"broker-v1: error: {_one_line(message)}", err=True)
    sys.exit(code)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    # Warnings (a torn run file, a deprecated layout) as one line, like errors.
    click.echo(f"broker-v1: warning: {_one_line(str(message))}", err=True)


class _Group(click.Group):
    """Turns every failure into one line and an exit status (``--debug``: the traceback)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        if not debug:
            warnings.showwarning = _show_warning
        try:
            rv = super().main(argv, prog_name=prog_name or "broker-v1",
                              complete_var=complete_var, standalone_mode=False, **extra)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else "broker-v1"
            _fail(f"{err.format_message()} (see '{where} --help')", err.exit_code)
        except click.ClickException as err:
            _fail(err.format_message(), err.exit_code)
        except click.Abort as err:
            if isinstance(err.__context__, KeyboardInterrupt):
                _fail("interrupted", 130)
            _fail("aborted", 1)
        except KeyboardInterrupt:
            if debug:
                raise
            _fail("interrupted", 130)
        except BrokenPipeError:
            # `broker-v1 ls ... | head`: the reader left; say nothing more.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except CLIError as err:
            _fail(str(err), err.exit_code)
        except BrokerError as err:
            if debug:
                raise
            _fail(str(err), 1)
        except Exception as err:
            if debug:
                raise
            # Not a BrokerError: an OS error or a bug; still one line, with its type.
            _fail(f"{type(err).__name__}: {err} (run with --debug for the traceback)", 1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(version=__version__, prog_name="broker-v1")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Look at bluesky runs and manage broker_v1 stores from a terminal.

    NAME arguments accept a config name, a directory (files store), a
    mongodb:// or mongomock:// URI, or 'temp'.

    \b
    Examples:
        broker-v1 demo
        broker-v1 config list
        broker-v1 ls csx plan_name=scan --limit 10
        broker-v1 copy csx /media/usb/csx-copy --since 2024-05-01
    """
    ctx.obj = {"debug": debug}


# --------------------------------------------------------------------------- opening stores
def default_store_path() -> Path:
    """The per-user files store the demo (and ``Broker()`` without config) records into."""
    from .config import default_store_path as path

    return path()


def _looks_like_path(name: str) -> bool:
    return (os.sep in name or (os.altsep is not None and os.altsep in name)
            or name.startswith((".", "~")))


def _files_broker(path: str, *, read_only: bool) -> Broker:
    from .broker import Broker
    from .stores import store_from_config

    full = os.path.abspath(os.path.expanduser(path))
    if read_only and not os.path.isdir(full):
        raise CLIError(f"{full} is not a directory, so it cannot be read as a files store.")
    store = store_from_config({"backend": "files", "path": full, "read_only": read_only})
    return Broker(store, name=path)


def open_broker(name: str, *, read_only: bool = True) -> Broker:
    """The Broker a CLI NAME argument designates.

    Parameters
    ----------
    name
        ``temp``; a ``mongodb://`` / ``mongodb+srv://`` / ``mongomock://`` URI; a path (it has a
        path separator or starts with ``.`` or ``~``: a files store); else a config name, or,
        if no config has that name, a directory of that name.
    read_only
        Open URIs and directories read-only (a config's own ``read_only`` always applies).
        A read-only directory must exist; a writable one is created.
    """
    from .broker import Broker
    from .config import ConfigNotFound, config_search_path

    if name == "temp":
        return Broker.named("temp")
    if name.startswith(URI_SCHEMES):
        from .stores import get_store_class

        options: dict[str, Any] = {"uri": name}
        if read_only:
            options["read_only"] = True
        return Broker(get_store_class("mongo").from_config(options, source=name), name=name)
    if _looks_like_path(name):
        return _files_broker(name, read_only=read_only)
    try:
        db = Broker.named(name)
        # A config with api_version: 2 opens a v2 catalog; the CLI works on its v1 face.
        return db if isinstance(db, Broker) else db.v1
    except ConfigNotFound:
        if os.path.isdir(name):
            return _files_broker(name, read_only=read_only)
        n = len(config_search_path())
        raise CLIError(
            f"{name!r} is neither a config (searched {n} folders; see 'broker-v1 config "
            "paths' and 'broker-v1 config list'), nor a directory, nor a mongodb:// URI. "
            f"For a directory in the current folder write ./{name}."
        ) from None


# --------------------------------------------------------------------------- formatting
def _width() -> int:
    # get_terminal_size falls back to $COLUMNS, then 80, when stdout is not a terminal.
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _ellipsis() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "…".encode(encoding)
        return "…"
    except (UnicodeEncodeError, LookupError):
        return "~"


def _clip(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + _ellipsis()


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    shrink: Sequence[int] = (),
    minimum: Mapping[int, int] | None = None,
    right: Iterable[int] = (),
) -> list[str]:
    """Lines of a plain-text table no wider than ``width``.

    Columns listed in ``shrink`` give up width, in that order, down to ``minimum`` (default 4),
    and their cells are clipped with an ellipsis; ``right`` columns are right-aligned.
    """
    width = _width() if width is None else width
    minimum = dict(minimum or {})
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    for i in shrink:  # in priority order: the first gives up all it can, then the next
        give = min(total - width, widths[i] - minimum.get(i, 4))
        if give > 0:
            widths[i] -= give
            total -= give
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            cell = _clip(cell, widths[i])
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _local_time(t: Any, zone: str) -> str:
    import zoneinfo

    if not isinstance(t, int | float):
        return "?"
    return _dt.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def _events_text(num_events: Mapping[str, Any] | None) -> str:
    if not num_events:
        return "-"
    names = sorted(num_events, key=lambda s: (s != "primary", s))
    return ", ".join(f"{name} {num_events[name]}" for name in names)


def _json_out(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


# --------------------------------------------------------------------------- query terms
_INT = re.compile(r"[+-]?\d+")


def parse_value(text: str) -> Any:
    """A query value typed as the shell cannot: int, float, true/false, null, JSON, else str.

    ``5`` → 5, ``2.5`` → 2.5, ``true`` → True, ``null`` → None, ``{"$gt": 5}`` and ``[1, 2]``
    → parsed JSON, anything else the string itself (``"5"`` in JSON quotes: the string 5).
    """
    if _INT.fullmatch(text):
        return int(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value == value and text.lower() not in ("inf", "-inf", "+inf", "infinity"):
            return value
    if text[:1] in ("{", "[", '"'):
        try:
            return json.loads(text)
        except ValueError as err:
            raise CLIError(f"{text!r} looks like JSON but does not parse: {err}.") from None
    return text


def parse_query_terms(terms: Iterable[str]) -> dict[str, Any]:
    """``["plan_name=scan", "scan_id=5"]`` → ``{"plan_name": "scan", "scan_id": 5}``."""
    out: dict[str, Any] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise CLIError(
                f"query term {term!r} is not key=value (e.g. plan_name=scan, scan_id=5, "
                "sample.name=Si, 'num_points={\"$gt\": 10}')."
            )
        out[key] = parse_value(value)
    return out


def _query(db: Broker, terms: Iterable[str], since: str | None, until: str | None
           ) -> dict[str, Any]:
    kwargs = parse_query_terms(terms)
    for key in ("since", "until"):
        if key in kwargs:
            raise CLIError(f"use --{key} instead of the query term {key}=...")
    if since is not None:
        kwargs["since"] = since
    if until is not None:
        kwargs["until"] = until
    return dict(db(**kwargs).query)


def _key(text: str) -> Any:
    # As db[...]: digits are a scan_id, -N the N-th most recent, anything else a uid (prefix).
    return int(text) if _INT.fullmatch(text) else text


def _header(db: Broker, key: str) -> Any:
    try:
        header = db[_key(key)]
    except RunNotFound:
        # Digits are a scan_id first; a uid prefix copied from `ls` may be all digits too.
        if not key.isdigit():
            raise
        try:
            header = db[key]
        except RunNotFound:
            raise RunNotFound(f"No run with scan_id {key} or uid starting {key!r} in "
                              f"{db.store.describe()}.", key=key,
                              store=db.store.describe()) from None
    if isinstance(header, list):  # pragma: no cover - _key never makes a multi-key
        raise CLIError("KEY must name one run.")
    return header


def _plain_hook(name: str, doc: Any) -> Any:
    return doc


# --------------------------------------------------------------------------- demo
@main.command()
@click.option("--store", "store_path", type=click.Path(file_okay=False),
              help="Directory of the files store to record into (default: a per-user "
                   "data directory).")
def demo(store_path: str | None) -> None:
    """Record a few realistic runs, then show db[-1], a search and a table.

    The runs go into a files store: --store PATH, or a per-user data directory.  Each
    demo adds five runs, with scan_ids continuing from the newest run.

    \b
    Examples:
        broker-v1 demo
        broker-v1 demo --store ./demo-runs && broker-v1 ls ./demo-runs
    """
    from . import temp
    from ._demo import demo_documents
    from .broker import Broker
    from .errors import MissingDependency, UnknownStoreKind
    from .stores import get_store_class

    try:
        get_store_class("files")
        have_files = True
    except (UnknownStoreKind, MissingDependency):
        have_files = False
    path: Path | None = None
    if have_files:
        path = Path(store_path).expanduser().absolute() if store_path else default_store_path()
        config = {"store": {"backend": "files", "path": str(path)}}
        db = Broker.from_config(config, name=str(path))
        open_line = f"db = Broker.from_config({config!r})"
    else:
        click.echo("Note: the files store is not available in this installation, so the demo "
                   "records into memory (--store is ignored).\n")
        db = temp()
        open_line = "db = Broker.named('temp')            # a fresh in-memory store"
    newest = list(db.store.find_run_starts(limit=1))
    last_id = newest[0].get("scan_id") if newest else None
    first_scan_id = last_id + 1 if isinstance(last_id, int) else 1
    # An hour ago, but after any run already there, so db[-1] is this demo's last run.
    t0 = max(time.time() - 3600, newest[0]["time"] + 60 if newest else 0.0)
    n = 0
    for name, doc in demo_documents(t0, first_scan_id=first_scan_id):
        db.insert(name, doc)
        n += 1
    click.echo(f"Recorded {n} documents (5 runs) into {db.store.describe()}.\n")
    h = db[-1]
    click.echo(">>> db[-1]")
    click.echo(repr(h))
    click.echo(f"plan_name={h['start']['plan_name']!r} scan_id={h['start']['scan_id']} "
               f"exit_status={h.stop['exit_status']!r}\n")
    click.echo(">>> [h['start']['scan_id'] for h in db(plan_name='scan', sample='gold')]")
    click.echo(repr([x["start"]["scan_id"] for x in db(plan_name="scan", sample="gold")]) + "\n")
    click.echo(">>> db.get_table(h, stream_name='primary')")
    click.echo(db.get_table(h, stream_name="primary").to_string(max_rows=12) + "\n")
    click.echo("The Python lines that did this:\n")
    click.echo(DEMO_LINES.format(open_line=open_line))
    if path is not None:
        click.echo(f"\nNext: broker-v1 ls {path}")
    db.store.close()


# --------------------------------------------------------------------------- config
@main.group()
def config() -> None:
    """Inspect configuration: the configs found, one config resolved, the search path.

    \b
    Examples:
        broker-v1 config list
        broker-v1 config show csx
        broker-v1 config paths
    """


def _config_rows() -> list[dict[str, Any]]:
    from ._layouts import source_names
    from .config import find_config_file, list_configs, lookup_config
    from .errors import ConfigError

    rows = []
    for name in list_configs():
        path = find_config_file(name)
        try:
            cfg = lookup_config(name)
        except ConfigError as err:
            rows.append({"name": name, "description": None, "file": str(path),
                         "error": _one_line(str(err))})
            continue
        entries = source_names(cfg)
        if len(entries) > 1:
            for entry in entries:
                source = cfg["sources"][entry]
                desc = source.get("description") if isinstance(source, Mapping) else None
                rows.append({"name": f"{name}.{entry}", "description": desc, "file": str(path)})
        else:
            desc = cfg.get("description")
            rows.append({"name": name, "description": None if desc is None else str(desc),
                         "file": str(path)})
    return rows


@config.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def config_list(as_json: bool) -> None:
    """The configs found on the search path, with their descriptions.

    Intake files holding several catalogs are listed once per catalog (NAME.ENTRY).

    \b
    Examples:
        broker-v1 config list
        broker-v1 config list --json
    """
    rows = _config_rows()
    if as_json:
        _json_out(rows)
        return
    if not rows:
        click.echo("No configs found; see 'broker-v1 config paths' for where they are searched.")
        return
    cells = [[r["name"], r.get("error") and "(invalid: see config show)" or
              (r["description"] or ""), r["file"]] for r in rows]
    for line in render_table(["NAME", "DESCRIPTION", "FILE"], cells, shrink=[2, 1, 0],
                             minimum={0: 8, 1: 16, 2: 20}):
        click.echo(line)


def _split_name(name: str) -> tuple[str, str | None]:
    from .config import find_config_file

    if find_config_file(name) is None and "." in name:
        base, _, entry = name.partition(".")
        if find_config_file(base) is not None:
            return base, entry
    return name, None


@config.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def config_show(name: str, as_json: bool) -> None:
    """One config resolved to broker_v1's final shape (any layout translated).

    \b
    Examples:
        broker-v1 config show csx
        broker-v1 config show csx.raw --json
    """
    import yaml

    from ._layouts import layout_of, translate
    from .broker import Broker
    from .config import find_config_file, lookup_config, redact_config, validate_config

    if name == "temp":
        # What Broker.named('temp') opens: a fresh in-memory store (showing it creates nothing).
        final, path, layout = Broker.named("temp").get_config(), None, "built-in"
    else:
        base, entry = _split_name(name)
        raw = lookup_config(base)
        path = find_config_file(base)
        layout = layout_of(raw)
        final = validate_config(translate(raw, source=str(path), entry=entry), source=str(path))
    final = redact_config(final)  # never print a password
    if as_json:
        _json_out({"name": name, "file": None if path is None else str(path), "layout": layout,
                   "config": final})
        return
    click.echo(f"# {name}: {path if path else 'built in'} ({layout} layout)")
    click.echo(yaml.safe_dump(final, sort_keys=False, default_flow_style=False).rstrip())


def _path_sources() -> dict[str, str]:
    sources: dict[str, str] = {}
    sep = ";" if sys.platform.startswith("win") else ":"
    for var in ("BROKER_V1_CONFIG_PATH", "DATABROKER_CONFIG_PATH", "INTAKE_PATH"):
        for p in os.environ.get(var, "").split(sep):
            if p:
                sources.setdefault(str(Path(p)), var)
    return sources


@config.command("paths")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def config_paths(as_json: bool) -> None:
    """The config search path, highest precedence first, with what was found where.

    \b
    Examples:
        broker-v1 config paths
        BROKER_V1_CONFIG_PATH=./configs broker-v1 config paths
    """
    from .config import config_search_path

    sources = _path_sources()
    rows: list[dict[str, Any]] = []
    for folder in config_search_path():
        try:
            files = sorted(p.name for p in folder.iterdir()
                           if p.suffix in (".yml", ".yaml") and p.is_file())
            exists = True
        except OSError:
            files, exists = [], False
        rows.append({"path": str(folder), "exists": exists,
                     "from": sources.get(str(folder), "default"), "files": files})
    if as_json:
        _json_out(rows)
        return
    width = _width()
    click.echo("Config search path (highest precedence first):")
    for i, row in enumerate(rows, 1):
        tag = row["from"] if row["exists"] else f"{row['from']}, missing"
        head = f"{i:2d}. "
        room = width - len(head) - len(tag) - 4
        path = row["path"]
        if len(path) > room:
            path = _ellipsis() + path[-(room - 1):]
        click.echo(f"{head}{path.ljust(room)}  ({tag})")
        if row["files"]:
            click.echo("    " + _clip(", ".join(row["files"]), width - 4))


# --------------------------------------------------------------------------- ls / show / table
@main.command("ls")
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
    from .utils import stream_name_of

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


@main.command(context_settings=_KEY_SETTINGS)
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


@main.command(context_settings=_KEY_SETTINGS)
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


# --------------------------------------------------------------------------- copy
@main.command()
@click.argument("src")
@click.argument("dst")
@click.argument("query", nargs=-1)
@click.option("--since", help="Only runs started at or after this time.")
@click.option("--until", help="Only runs started at or before this time.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N runs (the newest).")
@click.option("--uid", "uids", multiple=True, help="Copy this run (full uid); repeatable.")
@click.option("--copy-files", is_flag=True,
              help="Also copy external files (verified by SHA-256) to --new-root.")
@click.option("--new-root", type=click.Path(file_okay=False),
              help="Where external files go; resource roots are rewritten to it.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def copy(src: str, dst: str, query: tuple[str, ...], since: str | None, until: str | None,
         limit: int | None, uids: tuple[str, ...], copy_files: bool, new_root: str | None,
         progress: bool | None, as_json: bool) -> None:
    """Copy runs from SRC to DST, newest first; safe to repeat and to resume.

    Runs already in DST with the same documents are skipped; a run whose documents
    differ in DST is reported and never overwritten; each copied run is verified by
    counting its documents in DST.  Exits 1 if any run conflicted or failed.

    \b
    Examples:
        broker-v1 copy ./laptop-runs csx
        broker-v1 copy csx ./for-alice proposal_id=12345 --since 2024-05-01
        broker-v1 copy csx ./export --copy-files --new-root ./export/files
    """
    from .copying import CopyInterrupted, copy_runs, handler_registry_of

    if copy_files and not new_root:
        raise click.UsageError("--copy-files needs --new-root (where the files go).")
    if new_root and not copy_files:
        raise click.UsageError("--new-root is used with --copy-files.")
    if uids and (query or since or until):
        raise click.UsageError("give either --uid or a query (terms, --since, --until).")
    source = open_broker(src)
    destination = open_broker(dst, read_only=False)
    q = None if uids else _query(source, query, since, until)
    try:
        report = copy_runs(
            source.store, destination.store, q, uids=list(uids) or None, limit=limit,
            copy_files=copy_files, new_root=new_root, root_map=source.root_map,
            handler_registry=handler_registry_of(source), progress=progress,
        )
    except CopyInterrupted as stop:
        click.echo(stop.report.summary(), err=True)
        raise CLIError("interrupted; run the same command again to resume.", 130) from None
    finally:
        destination.store.close()
        source.store.close()
    if as_json:
        _json_out(report.to_dict())
    else:
        click.echo(report.summary())
    if not report.ok:
        bad = len(report.conflicts) + len(report.failed)
        raise CLIError(f"{bad} run{'' if bad == 1 else 's'} not copied (conflicts or failures "
                       "listed above)"
                       if bad else "some external files were not copied (listed above)")


# --------------------------------------------------------------------------- maintenance
@main.group()
def mongo() -> None:
    """MongoDB store maintenance.

    \b
    Examples:
        broker-v1 mongo ensure-indexes csx
    """


@mongo.command("ensure-indexes")
@click.argument("name")
def mongo_ensure_indexes(name: str) -> None:
    """Create the indexes reads need (idempotent; reads never create them).

    \b
    Examples:
        broker-v1 mongo ensure-indexes csx
        broker-v1 mongo ensure-indexes mongodb://db.example:27017/csx
    """
    db = open_broker(name, read_only=False)
    ensure = getattr(db.store, "ensure_indexes", None)
    if not callable(ensure):
        raise CLIError(f"{name} is a {db.store.describe()}; ensure-indexes applies to MongoDB "
                       "stores only.")
    t0 = time.perf_counter()
    result = ensure()
    elapsed = time.perf_counter() - t0
    click.echo(f"Indexes ensured on {db.store.describe()} in {elapsed:.1f} s.")
    if isinstance(result, Mapping):
        for coll, names in result.items():
            listed = ", ".join(map(str, names)) if isinstance(names, list | tuple) else names
            click.echo(f"  {coll}: {listed}")
    elif isinstance(result, list | tuple):
        for item in result:
            click.echo(f"  {item}")


@main.group()
def files() -> None:
    """Files store maintenance: rebuild the index, repair interrupted writes.

    \b
    Examples:
        broker-v1 files reindex /data/csx
        broker-v1 files repair /data/csx --yes
    """


def _files_store(path: str) -> Any:
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        raise CLIError(f"{full} is not a directory, so it is not a files store.")
    return _files_broker(full, read_only=False).store


@files.command("reindex")
@click.argument("path")
def files_reindex(path: str) -> None:
    """Rebuild a files store's search index from its run files.

    The run files are the truth; the index is derived, so this is always safe.

    \b
    Examples:
        broker-v1 files reindex /data/csx
    """
    store = _files_store(path)
    t0 = time.perf_counter()
    counts = store.reindex()
    elapsed = time.perf_counter() - t0
    runs = counts.get("runs") if isinstance(counts, Mapping) else counts
    n_files = counts.get("files") if isinstance(counts, Mapping) else None
    click.echo(f"Reindexed {store.describe()}: {runs} runs"
               + (f" from {n_files} files" if n_files is not None else "")
               + f" in {elapsed:.1f} s.")
    store.close()


def torn_tails(directory: Path, run_uid: str | None = None) -> list[dict[str, Any]]:
    """What ``repair`` would drop: run files whose last line is incomplete.

    Returns ``[{"file", "size", "keep", "drop", "preview", "age"}]``: ``drop`` bytes after the
    last newline, the first of them as text, and seconds since the file last changed.
    """
    names = ([f"{run_uid}.jsonl"] if run_uid else
             sorted(e.name for e in os.scandir(directory)
                    if e.name.endswith(".jsonl") and not e.name.startswith(".")))
    out = []
    now = time.time()
    for name in names:
        path = directory / name
        try:
            st = path.stat()
            with open(path, "rb") as f:
                size = st.st_size
                pos, keep = size, 0
                while pos > 0:
                    step = min(65536, pos)
                    pos -= step
                    f.seek(pos)
                    block = f.read(step)
                    i = block.rfind(b"\n")
                    if i >= 0:
                        keep = pos + i + 1
                        break
                if keep == size:
                    continue
                f.seek(keep)
                tail = f.read(min(size - keep, 200))
        except OSError:
            continue
        out.append({"file": name, "size": size, "keep": keep, "drop": size - keep,
                    "preview": tail.decode("utf-8", "replace"), "age": now - st.st_mtime})
    return out


@files.command("repair")
@click.argument("path")
@click.option("--run", "run_uid", help="Repair only this run (full start uid).")
@click.option("--yes", is_flag=True, help="Truncate without asking.")
def files_repair(path: str, run_uid: str | None, yes: bool) -> None:
    """Drop the incomplete last line an interrupted writer left in run files.

    Shows what would be dropped first; truncates only with --yes (or after you
    confirm, on a terminal).  Files changed in the last few seconds are left alone
    unless --run names them (another process may still be writing).

    \b
    Examples:
        broker-v1 files repair /data/csx
        broker-v1 files repair /data/csx --yes
        broker-v1 files repair /data/csx --run 3f2a91c0-... --yes
    """
    store = _files_store(path)
    try:
        torn = torn_tails(Path(store.path), run_uid)
        if not torn:
            click.echo(f"Nothing to repair in {store.describe()}: every run file ends with a "
                       "complete line.")
            return
        grace = float(getattr(store, "torn_grace", 0.0))
        click.echo(f"{len(torn)} run files end with an incomplete line:")
        width = _width()
        for t in torn:
            note = (" (changed just now: left alone, a writer may be active)"
                    if run_uid is None and t["age"] < grace else "")
            click.echo(_clip(f"  {t['file']}: drop last {t['drop']} bytes{note}", width))
            click.echo(_clip(f"      {t['preview']!r}", width))
        if not yes:
            if sys.stdin.isatty() and sys.stdout.isatty():
                yes = click.confirm("Truncate these incomplete lines?", default=False)
            if not yes:
                click.echo("Nothing was changed; run again with --yes to truncate.")
                return
        repaired = store.repair(run_uid)
        if not repaired:
            click.echo("Nothing was truncated.")
        for file, removed in sorted(repaired.items()):
            click.echo(f"Repaired {file}: removed {removed} bytes.")
    finally:
        store.close()


if __name__ == "__main__":  # pragma: no cover
    main()
