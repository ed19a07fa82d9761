"""The root group ``main`` and the error boundary every command runs inside."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click

from .._version import __version__
from ..errors import BrokerError
from ._common import CLIError
from ._format import _one_line


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
