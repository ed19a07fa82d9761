"""MongoStore: databroker's normalized MongoDB layout, read and written unchanged."""

from __future__ import annotations

from ._store import (
    ASSET_COLLECTIONS,
    INDEXES,
    META_COLLECTIONS,
    MissingIndexWarning,
    MongoStore,
    make_client,
)

__all__ = ["MissingIndexWarning", "MongoStore", "make_client"]
