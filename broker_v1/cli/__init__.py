"""The ``broker-v1`` command: a thin shell over the Broker and the copy machinery.

Every error becomes one line, ``broker-v1: error: ...``, on stderr and a non-zero exit status
(1 for errors, 2 for usage mistakes, 130 for Ctrl-C); ``--debug`` shows the traceback instead.
Tables fit the terminal (80 columns when output is not a terminal).

Start-up is kept light: pandas is imported only by ``table`` and ``demo``, tqdm only by
``copy``.  (Importing ``broker_v1`` itself still costs what its ``__init__`` imports.)

Where a command takes NAME, it may be a config name (``Broker.named``), a directory (a files
store), a ``mongodb://`` / ``mongomock://`` URI, or ``temp``.

The modules of this package:

* ``_root``: the root group :func:`main` and the error boundary every command runs inside;
* ``_common``: :class:`CLIError`, NAME -> Broker (:func:`open_broker`), query terms and run keys;
* ``_format``: text output (tables that fit the terminal, times, durations, JSON);
* one module per command group: ``_demo`` (``demo``), ``_config`` (``config list|show|paths``),
  ``_read`` (``ls``, ``show``, ``table``), ``_copy`` (``copy``), ``_maintenance``
  (``mongo ensure-indexes``, ``files reindex|repair``) and ``_serve`` (``serve``, needs the
  ``serve`` extra).

This module puts the commands on :func:`main`.
"""

from __future__ import annotations

# Besides __all__, the public helpers ("X as X") stay importable from here, as when the
# command was one module.
from ._common import URI_SCHEMES as URI_SCHEMES
from ._common import CLIError as CLIError
from ._common import default_store_path, open_broker, parse_query_terms
from ._common import parse_value as parse_value
from ._config import config
from ._copy import copy
from ._demo import DEMO_LINES as DEMO_LINES
from ._demo import demo
from ._format import render_table as render_table
from ._maintenance import files, mongo
from ._maintenance import torn_tails as torn_tails
from ._read import ls_, show, table
from ._root import main
from ._serve import serve

__all__ = ["default_store_path", "main", "open_broker", "parse_query_terms"]

for _command in (demo, config, ls_, show, table, copy, mongo, files, serve):
    main.add_command(_command)
del _command
