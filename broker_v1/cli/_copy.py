"""``broker-v1 copy``: runs from one store to another (the machinery: :mod:`broker_v1.copying`)."""

from __future__ import annotations

import os

import click

from ._common import CLIError, _query, open_broker
from ._format import _json_out


@click.command()
@click.argument("src")
@click.argument("dst")
@click.argument("query", nargs=-1)
@click.option("--since", help="Only runs started at or after this time.")
@click.option("--until", help="Only runs started at or before this time.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N runs (the newest).")
@click.option("--uid", "uids", multiple=True, help="Copy this run (full uid); repeatable.")
@click.option("--copy-files", is_flag=True,
              help="Also copy external files (verified by SHA-256) to --new-root; data the "
                   "source reads itself (tiled's array nodes) is written as NPY_SEQ files.")
@click.option("--new-root", type=click.Path(file_okay=False),
              help="Where external files go (default for a files store DST: DST/files); "
                   "resource roots are rewritten to it.")
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
        broker-v1 copy http://tiled.example.org:8000/raw ./portable --copy-files
    """
    from ..copying import CopyInterrupted, copy_runs, handler_registry_of

    if new_root and not copy_files:
        raise click.UsageError("--new-root is used with --copy-files.")
    if uids and (query or since or until):
        raise click.UsageError("give either --uid or a query (terms, --since, --until).")
    source = open_broker(src)
    destination = open_broker(dst, read_only=False)
    if copy_files and not new_root:
        # A files store keeps them inside itself, so the copy stays portable as one folder.
        inside = getattr(destination.store, "path", None)
        if inside is None:
            destination.store.close()
            source.store.close()
            raise click.UsageError("--copy-files needs --new-root (where the files go) unless "
                                   "DST is a files store (they then go to DST/files).")
        new_root = os.path.join(os.fspath(inside), "files")
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
