"""``broker-v1 demo``: record a few realistic runs and show what reads them."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import default_store_path

DEMO_LINES = """\
from broker_v1 import Broker
{open_line}
for name, doc in demo_documents(t0):   # or: RE.subscribe(db.insert)
    db.insert(name, doc)
h = db[-1]
h['start']['plan_name'], h['start']['scan_id'], h.stop['exit_status']
[h['start']['scan_id'] for h in db(plan_name='scan', sample='gold')]
db.get_table(h, stream_name='primary')"""


@click.command()
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
    from .. import temp
    from .._demo import demo_documents
    from ..broker import Broker
    from ..errors import MissingDependency, UnknownStoreKind
    from ..stores import get_store_class

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
