"""Connecting to a tiled server and translating its failures into broker_v1's errors.

Everything that touches tiled's client library directly (``from_uri``, httpx exceptions) is
here, imported only when a store first talks to its server, so importing
:mod:`broker_v1.stores.tiled` stays cheap and needs no optional package.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...errors import (
    ConfigError,
    MissingDependency,
    RunNotFound,
    StoreUnavailable,
    UnsupportedQuery,
)

__all__ = ["API_KEY_ENV", "TiledConnection", "check_uri", "redact_uri"]

#: The environment variable tiled's own command-line tools read the API key from.
API_KEY_ENV = "TILED_API_KEY"

#: The spec a catalog of runs declares on its root node (3.x: SQL layout; 1: Mongo layout).
CATALOG_SPEC = "CatalogOfBlueskyRuns"

_INSTALL_HINT = 'pip install "broker_v1[tiled]"'
_SECRET_PARAM = re.compile(r"(api_key|token|password|secret)=[^&]*", re.IGNORECASE)


def check_uri(uri: Any) -> str:
    """``uri`` if it is an ``http(s)://host[:port][/path]`` URL, else :class:`ConfigError`."""
    if not isinstance(uri, str):
        raise ConfigError(f"store.uri must be a string, got {type(uri).__name__}.",
                          key="store.uri")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"store.uri {redact_uri(uri)!r} is not a tiled server address; write it as "
            "http://host:port or https://host/sub/path.",
            key="store.uri",
        )
    return uri


def profile_uri(name: Any) -> str:
    """The ``uri`` of tiled's client profile ``name``.

    Profiles are found where tiled's own tools look (``tiled profile paths``, the
    ``TILED_PROFILES`` environment variable).  tiled's profiles hold no API key: the key
    still comes from ``api_key`` or ``TILED_API_KEY``.  Unknown names and profiles that run
    a server in-process are :class:`ConfigError`.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"store.profile must be the name of a tiled profile, got {name!r}.",
                          key="store.profile")
    from tiled.profiles import load_profiles, paths

    profiles = load_profiles()
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        where = ", ".join(str(p) for p in paths)
        raise ConfigError(
            f"No tiled profile {name!r} (profiles found: {known}; looked in {where}). Create "
            f"it with `tiled profile create URI --name {name}`, or give store.uri instead.",
            key="store.profile")
    source, content = profiles[name]
    uri = content.get("uri")
    if uri is None:
        raise ConfigError(
            f"tiled profile {name!r} ({source}) names no uri (a profile that runs a server "
            "in-process is not supported); give store.uri instead.", key="store.profile")
    return check_uri(uri)


def redact_uri(uri: str) -> str:
    """The URI with a password in it and secret query parameters replaced by ``***``."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _SECRET_PARAM.sub(lambda m: m.group(1) + "=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class TiledConnection:
    """The catalog client of one store, opened on first use.

    Parameters
    ----------
    uri
        The server (and sub-path) of the catalog.
    api_key
        The key, or ``None`` to use :data:`API_KEY_ENV` (or no key when that is unset).
    label
        The store's description, for messages.
    timeout
        Seconds to wait for the server on each request; ``None``: tiled's defaults.
    """

    def __init__(self, uri: str, api_key: str | None, *, label: str,
                 timeout: float | None = None) -> None:
        self.uri = uri
        self.timeout = timeout
        self.redacted = redact_uri(uri)
        self._api_key = api_key
        self.label = label
        self._catalog: Any = None
        #: "sql" or "mongo", from the root's spec version, known once connected.
        self.layout: str | None = None

    def catalog(self) -> Any:
        """The root client (bluesky-tiled-plugins' ``CatalogOfBlueskyRuns``), connected once."""
        if self._catalog is None:
            try:
                from tiled.client import from_context
                from tiled.client.context import Context
            except ImportError as err:
                raise MissingDependency(
                    f"The tiled store needs tiled's client, which is not installed ({err}). "
                    f"Install it with: {_INSTALL_HINT}"
                ) from err
            api_key = self._api_key or os.environ.get(API_KEY_ENV) or None
            # from_uri's two steps, so the connection is closed when the second fails (a
            # failure inside the first, e.g. a refused connection, leaves tiled's own client
            # to the garbage collector).
            import httpx

            timeout = None if self.timeout is None else httpx.Timeout(self.timeout)
            with self.errors("connect"):
                context, path = Context.from_any_uri(self.uri, api_key=api_key,
                                                     timeout=timeout)
            try:
                with self.errors("connect"):
                    catalog = from_context(context, node_path_parts=path)
                self._check_layout(catalog)
            except BaseException:
                context.close()
                raise
            self._catalog = catalog
        return self._catalog

    def close(self) -> None:
        """Close the HTTP connections (a later read connects again)."""
        catalog, self._catalog = self._catalog, None
        if catalog is not None:
            catalog.context.close()

    def _check_layout(self, catalog: Any) -> None:
        specs = {spec.name: spec.version for spec in getattr(catalog, "specs", [])}
        version = specs.get(CATALOG_SPEC)
        if version is None:
            raise ConfigError(
                f"{self.redacted} is a tiled node but not a catalog of Bluesky runs (its specs "
                f"are {sorted(specs) or 'none'}); point store.uri at the node whose spec is "
                f"{CATALOG_SPEC}.",
                key="store.uri",
            )
        if str(version).startswith("3."):
            self.layout = "sql"
        elif str(version) == "1":
            self.layout = "mongo"
        else:
            raise ConfigError(
                f"{self.redacted} serves {CATALOG_SPEC} version {version}, a layout the tiled "
                "store does not know: it reads version 3.x (SQL catalogs written by "
                "TiledWriter) and version 1 (databroker 2's MongoAdapter). Check that "
                "store.uri names the right server.",
                key="store.uri",
            )
        if "bluesky_tiled_plugins" not in type(catalog).__module__:
            raise MissingDependency(
                f"{self.redacted} is a catalog of Bluesky runs, but bluesky-tiled-plugins is "
                f"not installed, so tiled cannot read it as one. Install it with: "
                f"{_INSTALL_HINT}"
            )

    @contextlib.contextmanager
    def errors(self, action: str, *, uid: str | None = None) -> Iterator[None]:
        """Translate tiled/httpx errors raised while doing ``action`` into broker_v1's errors.

        A 404 while reading a run (``uid`` given) is :class:`RunNotFound`; every other failure
        to talk to the server is :class:`StoreUnavailable` naming the server and what to do.
        """
        import httpx

        try:
            yield
        except httpx.HTTPStatusError as err:
            status = err.response.status_code
            if status == 404 and uid is not None:
                raise RunNotFound(
                    f"No run with uid {uid!r} in {self.label}.", key=uid, store=self.label
                ) from err
            raise StoreUnavailable(self._status_message(action, status, err)) from err
        except httpx.InvalidURL as err:
            # tiled's client puts queries in the URL; httpx refuses one that is too long.
            raise UnsupportedQuery(
                f"{self.label} cannot send this request to {self.redacted} while trying to "
                f"{action}: {err}. Use shorter query values or fewer of them.",
                store=self.label,
            ) from err
        except httpx.TimeoutException as err:
            raise StoreUnavailable(
                f"The tiled server at {self.redacted} did not answer in time while trying to "
                f"{action} ({type(err).__name__}). Check the server's load and the network, "
                "then retry; store.timeout sets the wait (seconds)."
            ) from err
        except httpx.TransportError as err:
            raise StoreUnavailable(
                f"Could not reach the tiled server at {self.redacted} to {action}: "
                f"{self._scrub(str(err))}. Check that the server is running and that store.uri "
                "has the right host and port."
            ) from err
        except RuntimeError as err:
            # tiled's from_uri says so when the server wants a key and none was given.
            if "api key" not in str(err).lower() and "api_key" not in str(err).lower():
                raise
            given = self._api_key or os.environ.get(API_KEY_ENV)
            raise StoreUnavailable(
                f"The tiled server at {self.redacted} "
                + ("did not accept the API key given" if given else
                   "requires an API key and none was given")
                + f". Set store.api_key in the config or the {API_KEY_ENV} environment "
                "variable."
            ) from err

    def _status_message(self, action: str, status: int, err: Exception) -> str:
        where = f"The tiled server at {self.redacted}"
        if status == 401:
            return (f"{where} refused the API key (401) while trying to {action}. Check "
                    f"store.api_key or the {API_KEY_ENV} environment variable.")
        if status == 403:
            return (f"{where} denied access (403) while trying to {action}: the API key may not "
                    "read this catalog. Ask the server's administrators for access.")
        if status == 404:
            return (f"{where} has no node at this address (404) while trying to {action}. "
                    "Check the path in store.uri (the catalog's node, e.g. "
                    "http://host:8000/raw).")
        detail = self._scrub(str(err)).splitlines()[0][:300]
        correlation = err.response.headers.get("x-tiled-request-id") if hasattr(
            err, "response") else None
        return (f"{where} failed ({status}) while trying to {action}: {detail}"
                + (f" (request id {correlation})" if correlation else "")
                + ". Retry later, or report it to the server's administrators.")

    def _scrub(self, text: str) -> str:
        key = self._api_key or os.environ.get(API_KEY_ENV)
        if key:
            text = text.replace(key, "***")
        return _SECRET_PARAM.sub(lambda m: m.group(1) + "=***", text.replace(self.uri,
                                                                            self.redacted))
