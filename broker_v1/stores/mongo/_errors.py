"""Errors at the boundary: pymongo and mongomock errors become broker_v1 errors.

Unreachable server, authentication, permissions, bad queries, values BSON cannot encode,
mongomock's unimplemented operators.  Every message is scrubbed of the URI's password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymongo.errors
from bson.errors import InvalidDocument as BSONInvalidDocument

from ...errors import (
    ConfigError,
    DuplicateDocument,
    InvalidDocument,
    InvalidQuery,
    ReadOnlyStore,
    StoreUnavailable,
    UnsupportedQuery,
)
from .._util import valid_unicode as _encodable
from ._client import _Connection

# BSON integers are signed 64-bit.
_INT64 = 2**63


def _bson_problem(value: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str] | None:
    """The first place in a document (or list of rows) BSON cannot encode, and why."""
    where = ".".join(path) or None
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            return where, f"the integer {value} does not fit in 8 bytes, MongoDB's limit"
        return None
    if isinstance(value, str):
        if not _encodable(value):
            return where, f"the string {value!r} is not valid unicode (a lone surrogate)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and not _encodable(k):
                return ".".join((*path, k)), f"the key {k!r} is not valid unicode"
            found = _bson_problem(v, (*path, str(k)))
            if found:
                return found
        return None
    if isinstance(value, list):
        rows = not path and all(isinstance(v, dict) for v in value)
        for i, v in enumerate(value):
            found = _bson_problem(v, path if rows else (*path, str(i)))
            if found:
                return found
    return None


def _dup_value(err: pymongo.errors.DuplicateKeyError) -> str:
    """The key a duplicate-key error names, for messages."""
    value = (err.details or {}).get("keyValue")
    return repr(value) if value is not None else "(see the server log)"


class _ErrorTranslator:
    """Translates the errors of one store's MongoDB calls: ``with errors("read runs"):``.

    Parameters
    ----------
    connection
        The store's clients and URIs (for the server's location, the wait, the secrets).
    label
        The store's :meth:`~broker_v1.stores.base.DocumentStore.describe`, for messages.

    Attributes
    ----------
    source
        The config file the store came from, named by configuration errors.
    """

    def __init__(self, connection: _Connection, *, label: str) -> None:
        self._connection = connection
        self._meta_uri = connection.meta_uri
        self._asset_uri = connection.asset_uri
        self.label = label
        self.source: str | None = None

    @contextmanager
    def __call__(
        self, action: str, *, writing: bool = False, query: Any = None, doc: Any = None
    ) -> Iterator[None]:
        """Translate pymongo and mongomock errors raised by ``action`` into broker_v1 errors.

        ``doc`` (the document or rows being written) lets a value BSON cannot encode be named
        by its field.
        """
        try:
            yield
        except (pymongo.errors.DuplicateKeyError, pymongo.errors.BulkWriteError):
            raise  # the write paths resolve these themselves
        except pymongo.errors.ConfigurationError as err:
            if "dns" in str(err).lower():
                raise self.unavailable(action, err) from err
            raise ConfigError(
                f"{self.where()}: the MongoDB URI is not usable: {self.scrub(err)}",
                source=self.source, key="store.uri",
            ) from err
        except (pymongo.errors.ConnectionFailure, pymongo.errors.NetworkTimeout) as err:
            raise self.unavailable(action, err) from err
        except pymongo.errors.OperationFailure as err:
            code = err.code
            if code in (18, 11) or "authentication failed" in str(err).lower():
                user = self._meta_uri.username
                raise StoreUnavailable(
                    f"MongoDB at {self._meta_uri.location} refused the credentials"
                    + (f" of user {user!r}" if user else "")
                    + f" while trying to {action} ({self.where()}). Check the user name, the "
                    "password and authSource in the uri. pymongo said: " + self.scrub(err)
                ) from err
            if code == 13 or "not authorized" in str(err).lower():
                if writing:
                    raise ReadOnlyStore(
                        f"{self.label} refused to {action}: the account may not write here "
                        f"(the server said: {self.scrub(err)}). Open the store with "
                        "read_only: true, or use an account with the readWrite role.",
                        store=self.label,
                    ) from err
                raise StoreUnavailable(
                    f"{self.label} refused to {action}: the account may not read it "
                    f"(the server said: {self.scrub(err)}). Ask for the read role on "
                    f"{self._meta_uri.database}."
                ) from err
            if query is not None:
                raise InvalidQuery(
                    f"{self.label} rejected the query {query!r}: {self.scrub(err)}"
                ) from err
            raise StoreUnavailable(
                f"{self.label} failed to {action}: {self.scrub(err)}"
            ) from err
        except (pymongo.errors.DocumentTooLarge, BSONInvalidDocument, OverflowError,
                UnicodeEncodeError) as err:
            # Values BSON cannot encode: integers beyond 8 bytes, strings that are not valid
            # unicode (lone surrogates), documents over 16 MB.  Nothing reached the server.
            if writing and doc is not None:
                name = action.split()[-1]
                found = _bson_problem(doc)
                field_name, problem = found if found else (None, str(err))
                raise InvalidDocument(
                    f"{name} document cannot be stored in MongoDB: "
                    + (f"{field_name}: " if field_name else "")
                    + f"{problem}. Nothing was written.",
                    name=name,
                    uid=doc.get("uid") if isinstance(doc, dict) else None,
                    field=field_name,
                ) from err
            if query is not None:
                raise UnsupportedQuery(
                    f"{self.label} cannot send the query {query!r} to MongoDB: {err}. "
                    "MongoDB holds no integers beyond 8 bytes and no strings that are not valid "
                    "unicode, so it can neither store nor search them.",
                    store=self.label,
                ) from err
            raise
        except NotImplementedError as err:  # mongomock's unimplemented operators
            if isinstance(err, UnsupportedQuery):
                raise
            raise UnsupportedQuery(
                f"{self.label} (mongomock) cannot evaluate the query {query!r}: {err}. "
                "A real MongoDB server can.",
                store=self.label,
            ) from err

    def where(self) -> str:
        """Where the URI was configured, for messages."""
        return f"store.uri in {self.source}" if self.source else "store.uri"

    def scrub(self, err: BaseException) -> str:
        """The error's text without either URI's password."""
        return self._asset_uri.scrub(self._meta_uri.scrub(str(err)))

    def unavailable(self, action: str, err: BaseException) -> StoreUnavailable:
        """The error for a server that could not be reached to do ``action``."""
        timeout = self._connection.server_wait()
        return StoreUnavailable(
            f"Could not reach MongoDB at {self._meta_uri.location} within {timeout:g} s to "
            f"{action} ({self.where()}). Check that the server is up, that the host, port and "
            "replicaSet in the uri are right, and that this machine may connect to it "
            "(serverSelectionTimeoutMS in the uri sets the wait). pymongo said: "
            + self.scrub(err)[:500]
        )

    def duplicate(self, name: str, key: Any) -> DuplicateDocument:
        """The error for a document whose uid is stored with different contents."""
        return DuplicateDocument(
            f"A different {name} document with uid {key} is already in {self.label}. "
            "Documents are immutable; write a new one with a new uid instead.",
            name=name,
            uid=key,
            store=self.label,
        )
