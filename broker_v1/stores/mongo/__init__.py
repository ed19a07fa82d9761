"""MongoStore: databroker's normalized MongoDB layout, read and written unchanged."""

from __future__ import annotations

from ._client import make_client
from ._indexes import INDEXES as INDEXES
from ._indexes import MissingIndexWarning
from ._store import ASSET_COLLECTIONS as ASSET_COLLECTIONS
from ._store import META_COLLECTIONS as META_COLLECTIONS
from ._store import MongoStore

__all__ = ["MissingIndexWarning", "MongoStore", "make_client"]
