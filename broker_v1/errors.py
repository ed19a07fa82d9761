"""Every public exception of broker_v1, in one hierarchy.

Each class derives from :class:`BrokerError` *and* from the builtin exception that scripts
written for databroker 0.13 or 1.2 catch, so ``except KeyError`` and ``except ValueError``
around ``db[uid]`` both keep working.  Errors carry structured attributes (``key``, ``store``,
``matches``, ``path``, ...) so callers and tests need not parse messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AmbiguousUid",
    "BrokerError",
    "ConfigError",
    "CorruptRunFile",
    "DatumNotFound",
    "DuplicateDocument",
    "ExternalDataError",
    "InvalidConfig",
    "InvalidDocument",
    "InvalidQuery",
    "MissingDependency",
    "MissingHandler",
    "ReadOnlyStore",
    "ResourceNotFound",
    "RunIndexError",
    "RunNotFound",
    "StoreUnavailable",
    "UnknownStoreKind",
    "UnsafeUid",
    "UnsupportedQuery",
]


class BrokerError(Exception):
    """Base class of every error raised by broker_v1."""

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message in quotes.
        return str(self.args[0]) if self.args else ""


class RunNotFound(BrokerError, KeyError, ValueError):
    """No run matches a uid, uid prefix or scan_id.

    Both a ``KeyError`` (databroker 1.2) and a ``ValueError`` (databroker 0.13).
    """

    def __init__(self, message: str, *, key: Any = None, store: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.store = store


class AmbiguousUid(BrokerError, ValueError):
    """A partial uid matches more than one run."""

    def __init__(
        self, message: str, *, key: str, matches: Sequence[str], total: int, store: str
    ) -> None:
        super().__init__(message)
        self.key = key
        self.matches = list(matches)
        self.total = total
        self.store = store


class RunIndexError(BrokerError, IndexError):
    """``db[-N]`` reaches further back than the store's oldest run."""

    def __init__(self, message: str, *, key: int, count: int, store: str) -> None:
        super().__init__(message)
        self.key = key
        self.count = count
        self.store = store


class ResourceNotFound(BrokerError, KeyError):
    """No resource with this uid (or legacy ``_id``)."""

    def __init__(self, message: str, *, uid: str, store: str) -> None:
        super().__init__(message)
        self.uid = uid
        self.store = store


class DatumNotFound(BrokerError, KeyError):
    """No datum with this ``datum_id``."""

    def __init__(self, message: str, *, datum_id: str, store: str) -> None:
        super().__init__(message)
        self.datum_id = datum_id
        self.store = store


class InvalidDocument(BrokerError, ValueError):
    """A document failed validation on insert; nothing was written."""

    def __init__(
        self, message: str, *, name: str, uid: Any = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.uid = uid
        self.field = field


class DuplicateDocument(BrokerError, ValueError):
    """A *different* document with an existing uid was inserted (identical ones are no-ops)."""

    def __init__(self, message: str, *, name: str, uid: Any, store: str) -> None:
        super().__init__(message)
        self.name = name
        self.uid = uid
        self.store = store


class ReadOnlyStore(BrokerError, PermissionError):
    """A write was attempted on a store opened read-only."""

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(message)
        self.store = store


class InvalidQuery(BrokerError, ValueError):
    """A search query is malformed (bad operator, unparseable time, wrong type)."""


class UnsupportedQuery(BrokerError, NotImplementedError):
    """A store cannot evaluate part of a query (for example ``$text`` without an index)."""

    def __init__(self, message: str, *, operator: str | None = None, store: str | None = None):
        super().__init__(message)
        self.operator = operator
        self.store = store


class ConfigError(BrokerError, ValueError):
    """A configuration is malformed or cannot be served."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        super().__init__(message)
        self.source = source
        self.key = key


#: databroker 1.2's name for a malformed configuration.
InvalidConfig = ConfigError


class UnknownStoreKind(ConfigError):
    """``store.backend`` names no registered store."""


class StoreUnavailable(BrokerError, ConnectionError):
    """The store's server or directory cannot be reached."""


class CorruptRunFile(BrokerError, ValueError):
    """A run file holds bytes that are not a valid document stream."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class UnsafeUid(BrokerError, ValueError):
    """A uid cannot be used as a file name (path separators, ``..``, control characters)."""


class MissingDependency(BrokerError, ImportError):
    """An optional package needed by a store or feature is not installed."""


class MissingHandler(BrokerError, KeyError):
    """No handler is registered for a resource's ``spec`` (a ``KeyError``, as databroker)."""

    def __init__(self, message: str, *, spec: str, resource: str, registered: list[str]) -> None:
        super().__init__(message)
        self.spec = spec
        self.resource = resource
        self.registered = registered


class ExternalDataError(BrokerError, OSError):
    """External data could not be read: a missing file or a handler that failed."""

    def __init__(self, message: str, *, spec: str, resource: str, root: str | None,
                 mapped_root: str | None, path: str | None) -> None:
        super().__init__(message)
        self.spec = spec
        self.resource = resource
        self.root = root
        self.mapped_root = mapped_root
        self.path = path
