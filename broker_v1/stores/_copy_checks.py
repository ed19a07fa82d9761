"""The planning process of whole-run copies between files stores.

Started by ``broker_v1.stores.files._import._Planner`` as
``python -m broker_v1.stores._copy_checks FD`` with one end of a socket pair as descriptor
``FD``; it checks the run files it is sent and answers on the same socket until the socket
closes.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from broker_v1.stores.files._import import _planner_main

if __name__ == "__main__":
    _planner_main(Connection(int(sys.argv[1])))
