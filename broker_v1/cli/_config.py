"""``broker-v1 config``: the configs found, one config resolved, the search path."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ._format import _clip, _ellipsis, _json_out, _one_line, _width, render_table


@click.group()
def config() -> None:
    """Inspect configuration: the configs found, one config resolved, the search path.

    \b
    Examples:
        broker-v1 config list
        broker-v1 config show csx
        broker-v1 config paths
    """


def _config_rows() -> list[dict[str, Any]]:
    from .._layouts import source_names
    from ..config import find_config_file, list_configs, lookup_config
    from ..errors import ConfigError

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
    from ..config import find_config_file

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

    from .._layouts import layout_of, translate
    from ..broker import Broker
    from ..config import find_config_file, lookup_config, redact_config, validate_config

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
    from ..config import config_search_path

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
