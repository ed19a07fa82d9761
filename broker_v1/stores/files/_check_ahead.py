"""The checking process of whole-run copies between files stores.

Started by ``broker_v1.stores.files._import._CheckingProcess`` as
``python -m broker_v1.stores.files._check_ahead FD`` with one end of a socket pair as descriptor
``FD``; it checks the run files it is sent and answers on the same socket until the socket
closes.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from broker_v1.stores.files._import import _checking_process_main

if __name__ == "__main__":
    _checking_process_main(Connection(int(sys.argv[1])))
