"""MongoDB URIs, the one client factory, and credential redaction.

Everything here runs before (or without) contact with a server: a URI is parsed and checked
when the store is built, and every message, ``describe()`` and ``config()`` shows it redacted.
:class:`_Connection` holds the clients a store opened and closes them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import pymongo
import pymongo.errors
import pymongo.uri_parser

from ...errors import ConfigError, MissingDependency

__all__ = ["make_client"]

_SECRET_OPTION = re.compile(r"password|secret|token|authmechanismproperties", re.IGNORECASE)


@dataclass(frozen=True)
class _MongoUri:
    """The parts of a ``mongodb://``, ``mongodb+srv://`` or ``mongomock://`` URI we need."""

    raw: str
    scheme: str
    username: str | None
    password: str | None
    hosts: str
    database: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str, *, key: str) -> _MongoUri:
        if not isinstance(uri, str):
            raise ConfigError(f"store.{key} must be a string, got {type(uri).__name__}.", key=key)
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in ("mongodb", "mongodb+srv", "mongomock"):
            raise ConfigError(
                f"store.{key} {_redact_text(uri)!r} is not a MongoDB URI; use "
                "mongodb://host:port/database, mongodb+srv://host/database or "
                "mongomock://host/database.",
                key=f"store.{key}",
            )
        rest, _, query = rest.partition("?")
        authority, _, path = rest.partition("/")
        userinfo, at, hosts = authority.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user)
            password = unquote(secret) if colon else None
        database = unquote(path)
        if not hosts or not database:
            missing = "host" if not hosts else "database"
            raise ConfigError(
                f"store.{key} {_redact_uri(scheme, username, password, hosts, path, query)!r} "
                f"names no {missing}; write it as {scheme}://host:27017/database-name.",
                key=f"store.{key}",
            )
        if re.search(r'[/\\. "$\x00]', database):
            raise ConfigError(
                f"store.{key}: {database!r} is not a valid MongoDB database name "
                "(it may not contain / \\ . space \" $).",
                key=f"store.{key}",
            )
        options = {k: v for k, v in parse_qsl(query, keep_blank_values=True)}
        parsed = cls(uri, scheme, username, password, hosts, database, options)
        if scheme == "mongodb":
            # Catch a malformed host list or an unknown option now, not at the first read.
            # (mongodb+srv would need a DNS lookup, so pymongo checks it when connecting.)
            try:
                pymongo.uri_parser.parse_uri(uri)
            except (pymongo.errors.ConfigurationError, ValueError) as err:
                raise ConfigError(
                    f"store.{key} {parsed.redacted!r} is not a usable MongoDB URI: "
                    f"{parsed.scrub(str(err))}",
                    key=f"store.{key}",
                ) from err
        return parsed

    @property
    def redacted(self) -> str:
        """The URI with the password (and secret options) replaced by ``***``."""
        query = "&".join(
            f"{k}={'***' if _SECRET_OPTION.search(k) else v}" for k, v in self.options.items()
        )
        return _redact_uri(self.scheme, self.username, self.password, self.hosts,
                           self.database, query)

    @property
    def location(self) -> str:
        """Where the server is, for messages: ``db.example:27017`` or ``mongomock://host``."""
        if self.scheme == "mongomock":
            return f"mongomock://{self.hosts}"
        return self.hosts + (" (DNS SRV)" if self.scheme == "mongodb+srv" else "")

    def option(self, name: str) -> str | None:
        """A URI option, matched case-insensitively as MongoDB does."""
        for k, v in self.options.items():
            if k.lower() == name.lower():
                return v
        return None

    def scrub(self, text: str) -> str:
        """``text`` with every form of the password removed (pymongo messages may echo it)."""
        for secret in {self.password, _raw_password(self.raw)} - {None, ""}:
            text = text.replace(str(secret), "***")
        return text


def _raw_password(uri: str) -> str | None:
    authority = uri.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo, at, _ = authority.rpartition("@")
    return userinfo.partition(":")[2] or None if at else None


def _redact_uri(scheme: str, username: str | None, password: str | None, hosts: str,
                database: str, query: str) -> str:
    auth = ""
    if username is not None:
        auth = username + (":***" if password is not None else "") + "@"
    return f"{scheme}://{auth}{hosts}/{database}" + (f"?{query}" if query else "")


def _redact_text(uri: str) -> str:
    # For URIs we could not parse: hide whatever sits between '://' and the last '@'.
    return re.sub(r"(://)[^/@]*@", r"\1***@", uri)


# mongomock clients by host, so every store opened on mongomock://host/... sees the same data.
_MOCK_CLIENTS: dict[str, Any] = {}
_MOCK_LOCK = threading.Lock()


def make_client(uri: str) -> Any:
    """The one factory for MongoDB clients (spec §11.1 #15).

    Parameters
    ----------
    uri
        ``mongodb://`` or ``mongodb+srv://`` (credentials and options such as ``replicaSet``,
        ``readPreference``, ``authSource`` come from the URI), or ``mongomock://host/db``.

    Returns
    -------
    pymongo.MongoClient or mongomock.MongoClient
        A ``pymongo.MongoClient`` (looked up at call time, so ``mongomock.patch`` applies)
        or, for ``mongomock://``, the process-wide mongomock client of that host.
    """
    if uri.startswith("mongomock://"):
        try:
            import mongomock
        except ImportError as err:
            raise MissingDependency(
                "The mongomock:// scheme needs mongomock, which is not installed. Install it "
                "with: pip install mongomock"
            ) from err
        host = uri.partition("://")[2].partition("/")[0].rpartition("@")[2]
        with _MOCK_LOCK:
            client = _MOCK_CLIENTS.get(host)
            if client is None:
                client = _MOCK_CLIENTS[host] = mongomock.MongoClient()
        return client
    kwargs: dict[str, Any] = {}
    if "appname=" not in uri.lower():
        kwargs["appname"] = "broker_v1"  # lets a DBA see who is connected
    return pymongo.MongoClient(uri, **kwargs)



class _Connection:
    """The clients and databases of one store, opened on first use.

    Parameters
    ----------
    meta_uri, asset_uri
        The two databases (the same object when they are one database).
    """

    def __init__(self, meta_uri: _MongoUri, asset_uri: _MongoUri) -> None:
        self.meta_uri = meta_uri
        self.asset_uri = asset_uri
        self.clients: list[Any] = []
        self.meta_db: Any = None
        self.asset_db: Any = None
        self.mock = False

    def open(self) -> None:
        """Build the clients (no I/O yet: pymongo connects in the background)."""
        meta_client = make_client(self.meta_uri.raw)
        self.clients = [meta_client]
        if self.asset_uri is self.meta_uri:
            asset_client = meta_client
        else:
            asset_client = make_client(self.asset_uri.raw)
            self.clients.append(asset_client)
        self.mock = type(meta_client).__module__.startswith("mongomock")
        self.meta_db = meta_client[self.meta_uri.database]
        self.asset_db = asset_client[self.asset_uri.database]

    def db(self, which: str) -> Any:
        """The ``"meta"`` or the ``"assets"`` database."""
        return self.meta_db if which == "meta" else self.asset_db

    def server_wait(self) -> float:
        """Seconds a client waits for a server before giving up (for messages)."""
        timeout = None
        for client in self.clients:
            timeout = getattr(getattr(client, "options", None), "server_selection_timeout", None)
        if timeout is None:
            raw = self.meta_uri.option("serverSelectionTimeoutMS")
            timeout = float(raw) / 1000 if raw and raw.isdigit() else 30.0
        return float(timeout)

    def close(self) -> None:
        """Close the clients (shared mongomock clients stay open)."""
        if not self.mock:
            for client in self.clients:
                client.close()
        self.clients = []

    def __del__(self) -> None:
        # A store dropped without close() must not leave pymongo's monitor threads running
        # (pymongo warns about unclosed clients when they are collected).
        try:
            if self.clients and not self.mock:
                for client in self.clients:
                    client.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass
