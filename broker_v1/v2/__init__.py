"""The migration shim: databroker 1.2's v2 catalog API over broker_v1's stores.

``db.v2`` is a :class:`Catalog` of the Broker's runs; ``from broker_v1 import catalog`` lists
every configured broker.  Runs are :class:`BlueskyRun` objects whose streams read into
``xarray.Dataset`` objects.
"""

from .catalog import Catalog
from .documents import (
    Datum,
    DatumPage,
    Descriptor,
    Document,
    Event,
    EventPage,
    NotMutable,
    Resource,
    Start,
    Stop,
)
from .run import BlueskyRun

__all__ = [
    "BlueskyRun",
    "Catalog",
    "Datum",
    "DatumPage",
    "Descriptor",
    "Document",
    "Event",
    "EventPage",
    "NotMutable",
    "Resource",
    "Start",
    "Stop",
]


def __getattr__(name: str) -> object:
    # The stream class imports xarray; load it only when asked for.
    if name == "BlueskyEventStream":
        from .stream import BlueskyEventStream

        return BlueskyEventStream
    raise AttributeError(f"module 'broker_v1.v2' has no attribute {name!r}")
