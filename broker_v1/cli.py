"""The ``broker-v1`` command: a thin shell over the Broker.

Errors from broker_v1 become a one-line message and exit status 1 (``--debug`` shows the
traceback).  Heavy imports (pandas) stay inside the subcommands that need them.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .errors import BrokerError

DEMO_LINES = """\
from broker_v1 import Broker
{open_line}
for name, doc in demo_documents(t0):   # or: RE.subscribe(db.insert)
    db.insert(name, doc)
h = db[-1]
h['start']['plan_name'], h['start']['scan_id'], h.stop['exit_status']
[h['start']['scan_id'] for h in db(plan_name='scan', sample='gold')]
db.get_table(h, stream_name='primary')"""


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokerError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"broker-v1: error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="broker_v1", prog_name="broker-v1")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Look at bluesky runs and manage broker_v1 stores from a terminal."""
    ctx.obj = {"debug": debug}


@main.command()
def demo() -> None:
    """Record a few realistic runs, then show db[-1], a search and a table.

    \b
    Example:
        broker-v1 demo
    """
    from . import temp
    from ._demo import demo_documents

    db = temp()
    open_line = "db = Broker.named('temp')            # a fresh in-memory store"
    t0 = time.time() - 3600
    n = 0
    for name, doc in demo_documents(t0):
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


if __name__ == "__main__":  # pragma: no cover
    main()
