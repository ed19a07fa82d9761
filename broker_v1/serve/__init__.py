"""Any broker_v1 store served over tiled's HTTP API (``broker-v1 serve``; needs the ``serve``
extra: ``pip install "broker_v1[serve]"``).

The tree tiled's own server (``tiled.server.app.build_app``) serves is built from adapters
over the store; nothing is loaded at start-up and every request is answered by the store's
own index.  Unchanged clients read it: ``tiled.client.from_uri`` with bluesky-tiled-plugins
gives a ``CatalogOfBlueskyRuns``; broker_v1's own ``tiled`` store reads it as it reads a
catalog written by TiledWriter.

**Which layout.**  The root presents ``CatalogOfBlueskyRuns`` version 3.0, the layout
bluesky-tiled-plugins' ``TiledWriter`` writes into tiled's SQL catalog (runs ``BlueskyRun``
3.0 with ``{start, stop}``, streams ``BlueskyEventStream`` 3.0 holding an ``internal``
table).  It is the layout new clients and tiled's web UI are built for, the one broker_v1's
own tiled store reads, and the plugins' client answers it with standard tiled queries only
(``Eq`` for scan_ids, ``Like`` for partial uids), which translate one-to-one into the
store's queries.  Version 1 (databroker 2's Mongo layout) would need the plugins' legacy
``partial_uid`` query and holds events in another shape.

Modules, one concern each:

* ``_nodes``: the container protocol tiled's server reads, slicing, error translation;
* ``_catalog``: the root, every run of the store (search, sort, paging, lookup by uid);
* ``_listing``: short-lived snapshots of a search's runs and counts, behind tiled's cursors;
* ``_run``: one run (``{start, stop}``, its streams);
* ``_stream``: one stream (descriptor metadata, the ``internal`` event table, arrays);
* ``_external``: external fields as arrays filled on the server through the handlers;
* ``_queries``: tiled queries -> the store's Mongo-dialect filters;
* ``_serializers``: ``run.documents()`` (the store's own documents as JSON-seq), tables as
  HDF5;
* ``_guards``: unknown or malformed filters answered 400 (tiled would ignore or crash);
* ``_app``: tiled's application over the catalog, with an API key or public access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def build_app(store: Any, *, api_key: str | None = None, public: bool = False,
              metadata: dict[str, Any] | None = None, filler: Any = None,
              fresh_seconds: float = 1.0) -> Any:
    """tiled's ASGI app over ``store`` (see :func:`broker_v1.serve._app.build_app`)."""
    from ._app import build_app as build

    return build(store, api_key=api_key, public=public, metadata=metadata, filler=filler,
                 fresh_seconds=fresh_seconds)
