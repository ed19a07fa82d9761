"""MongoStore: databroker's normalized MongoDB layout, read and written unchanged."""

from __future__ import annotations

from ._store import ASSET_COLLECTIONS as ASSET_COLLECTIONS
from ._store import INDEXES as INDEXES
from ._store import META_COLLECTIONS as META_COLLECTIONS
from ._store import MissingIndexWarning, MongoStore, make_client

__all__ = ["MissingIndexWarning", "MongoStore", "make_client"]
