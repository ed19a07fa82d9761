"""tiled's own application over a store's catalog, with its authentication.

:func:`build_app` hands the catalog adapter to ``tiled.server.app.build_app`` (tiled's
routes, serializers and error handling; its query types, guarded by ``_guards``).  Access is
either one API key (``single_user_api_key``; anonymous requests get 401) or public
(anonymous reads allowed).

``broker-v1 serve`` (``broker_v1.cli._serve``) passes the store's NAME and the key to its
uvicorn workers through :data:`NAME_ENV`, :data:`PUBLIC_ENV` and :data:`API_KEY_ENV`, so the
key never appears in a command line or a log.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError
from ..stores.base import DocumentStore

__all__ = ["API_KEY_ENV", "NAME_ENV", "PUBLIC_ENV", "build_app", "check_api_key"]

#: The API key clients must present (``--api-key`` sets it for the workers).
API_KEY_ENV = "BROKER_V1_SERVE_API_KEY"
#: The store to serve, as the CLI's NAME (set by ``broker-v1 serve`` for its workers).
NAME_ENV = "BROKER_V1_SERVE_NAME"
#: ``1``: serve without a key (``--public``).
PUBLIC_ENV = "BROKER_V1_SERVE_PUBLIC"

_KEY = re.compile(r"[a-zA-Z0-9]+")


def check_api_key(api_key: str) -> str:
    """``api_key`` if tiled accepts it (letters and digits only), else :class:`ConfigError`."""
    if not isinstance(api_key, str) or not _KEY.fullmatch(api_key):
        raise ConfigError(
            "The API key must be letters and digits only (tiled's rule), at least one; "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            key="api_key")
    return api_key


def build_app(store: DocumentStore, *, api_key: str | None = None, public: bool = False,
              metadata: dict[str, Any] | None = None, filler: Any = None,
              fresh_seconds: float = 1.0) -> Any:
    """A tiled ASGI application serving every run of ``store`` read-only.

    Parameters
    ----------
    store
        Any broker_v1 store.
    api_key
        The single key clients must send (``from_uri(url, api_key=...)``).
    public
        Serve without a key (anonymous reads).  Exactly one of ``api_key`` and ``public``.
    metadata
        Metadata of the root node.
    filler
        A data filler (``db.reg.filler(db.store)``: the Broker's handlers and ``root_map``);
        with one, external fields are served as arrays filled on the server.
    fresh_seconds
        How long a count or a listing's runs, once read from the store, may answer new
        requests (runs written meanwhile appear after at most this long; 0: always ask the
        store).  A listing a client is paging through is continued from what it was shown.

    Returns
    -------
    fastapi.FastAPI

    Raises
    ------
    ConfigError
        Neither or both of ``api_key`` and ``public``, or a key tiled refuses.
    """
    from tiled.config import Authentication
    from tiled.server.app import build_app as tiled_build_app

    from ._catalog import CatalogAdapter
    from ._guards import refuse_unknown_filters, safe_query_registry
    from ._listing import Listings
    from ._serializers import serialization_registry

    if (api_key is None) == (not public):
        raise ConfigError(
            "Serving needs either an API key or public access: give api_key=... (clients "
            "then send it) or public=True (anyone who can reach the port reads every run).",
            key="api_key")
    if public:
        authentication = Authentication(allow_anonymous_access=True)
    else:
        authentication = Authentication(single_user_api_key=check_api_key(api_key or ""),
                                        allow_anonymous_access=False)
    if not isinstance(fresh_seconds, int | float) or not 0 <= fresh_seconds <= 60:
        raise ConfigError(f"fresh_seconds must be a number of seconds from 0 to 60, got "
                          f"{fresh_seconds!r}.", key="fresh_seconds")
    tree = CatalogAdapter(store, metadata=metadata, filler=filler,
                          listings=Listings(fresh=fresh_seconds))
    registry = safe_query_registry()
    app = tiled_build_app(tree, authentication=authentication, query_registry=registry,
                          serialization_registry=serialization_registry())
    refuse_unknown_filters(app, registry)
    return app
