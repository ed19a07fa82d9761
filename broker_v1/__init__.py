"""broker_v1: databroker's v1 API over interchangeable document stores.

>>> from broker_v1 import Broker
>>> db = Broker.named('temp')
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .broker import Broker, Results, temp, temp_config
from .config import ConfigNotFound, describe_configs, list_configs, lookup_config
from .errors import (
    AmbiguousUid,
    BrokerError,
    ConfigError,
    CorruptRunFile,
    DatumNotFound,
    DuplicateDocument,
    ExternalDataError,
    InvalidConfig,
    InvalidDocument,
    InvalidQuery,
    MissingDependency,
    MissingHandler,
    ReadOnlyStore,
    ResourceNotFound,
    RunIndexError,
    RunNotFound,
    StoreUnavailable,
    UnknownStoreKind,
    UnsafeUid,
    UnsupportedQuery,
)
from .header import Header
from .utils import ALL, DeprecatedDoct, wrap_in_deprecated_doct, wrap_in_doct

__all__ = [
    "ALL",
    "AmbiguousUid",
    "Broker",
    "BrokerError",
    "ConfigError",
    "ConfigNotFound",
    "CorruptRunFile",
    "DatumNotFound",
    "DeprecatedDoct",
    "DuplicateDocument",
    "ExternalDataError",
    "Header",
    "InvalidConfig",
    "InvalidDocument",
    "InvalidQuery",
    "MissingDependency",
    "MissingHandler",
    "ReadOnlyStore",
    "ResourceNotFound",
    "Results",
    "RunIndexError",
    "RunNotFound",
    "StoreUnavailable",
    "UnknownStoreKind",
    "UnsafeUid",
    "UnsupportedQuery",
    "__version__",
    "catalog",
    "describe_configs",
    "list_configs",
    "lookup_config",
    "temp",
    "temp_config",
    "wrap_in_deprecated_doct",
    "wrap_in_doct",
]


def __getattr__(name: str) -> Any:
    # `catalog` is built on first use: discovery reads the config folders.
    if name == "catalog":
        from .v2.discovery import ConfigCatalog

        return ConfigCatalog()
    raise AttributeError(f"module 'broker_v1' has no attribute {name!r}")
