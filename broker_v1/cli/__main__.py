"""``python -m broker_v1.cli``: the ``broker-v1`` command."""

from . import main

main()
