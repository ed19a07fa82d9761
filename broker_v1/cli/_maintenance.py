"""Store maintenance: ``mongo ensure-indexes``, ``files reindex`` and ``files repair``."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ._common import CLIError, _files_broker, open_broker
from ._format import _clip, _width


@click.group()
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


@click.group()
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
    from ..stores.files._format import complete_length  # loaded for this command only

    names = ([f"{run_uid}.jsonl"] if run_uid else
             sorted(e.name for e in os.scandir(directory)
                    if e.name.endswith(".jsonl") and not e.name.startswith(".")))
    out = []
    now = time.time()
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            size = st.st_size
            keep = complete_length(fd, size)
            if keep == size:
                continue
            tail = os.pread(fd, min(size - keep, 200), keep)
        except OSError:
            continue
        finally:
            os.close(fd)
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
