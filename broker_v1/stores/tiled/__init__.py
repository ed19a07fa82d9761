"""TiledStore: runs behind a tiled server, read through tiled's client and bluesky-tiled-plugins.

This version reads both layouts a v1 user meets, told apart by the root node's spec: the SQL
catalog written by bluesky-tiled-plugins' ``TiledWriter`` (``CatalogOfBlueskyRuns`` 3.x,
``_layout``) and databroker 2's MongoAdapter over the normalized Mongo layout
(``CatalogOfBlueskyRuns`` 1, ``_mongo_layout``), both behind the one interface of
``_layout_api``.  It records runs into the SQL layout through the same writer (``_writer``: one
TiledWriter run writer per open run, permission asked of the server before the first write,
batched rows sent before this store reads and at the stop).  Design points, and the module of
this package that holds each:

* **The field's own clients, loaded late** (``_client``).  tiled's ``from_uri`` makes every
  request; bluesky-tiled-plugins supplies the catalog/run/stream classes and the descriptor
  reconstruction.  They are imported on the first read, so importing this package needs
  neither (connecting does import pandas and xarray through bluesky-tiled-plugins; the store
  itself hands out plain dicts and lists).  Failures are translated at the boundary:
  unreachable, timeouts, 401/403/404 and 5xx become :class:`~broker_v1.errors.StoreUnavailable`
  naming the server (credentials redacted) and what to do; an unknown uid is
  :class:`~broker_v1.errors.RunNotFound`.
* **Queries are translated or checked here, never ignored** (``_queries``): a tiled server
  silently ignores filters it does not know, so only conditions the SQL catalog answers with
  MongoDB's meaning are sent; the rest is evaluated here on the runs the server returns when
  they are at most ``client_filter_limit``, else refused with
  :class:`~broker_v1.errors.UnsupportedQuery` naming the operator and the server; a
  ``$text`` of one plain word is narrowed by the SQL catalog's ``FullText`` index, then checked.
* **Runs in pages, tables in one request** (``_store``, ``_layout``): searches fetch start
  and stop of 300 runs per request (the server's cap) and remember the run clients; a
  stream's ``internal`` table is read in one Arrow request and turned into one event page;
  a request the server does not answer within ``store.timeout`` is split (a table by
  columns, an array node by rows, ``_paging``).
* **What the SQL layout lost is rebuilt the same way every time** (``_layout``): event uids
  ``event-<descriptor uid>-<seq_num>`` (as tiled's own document export makes them); no
  resources, datums or ``filled``.
* **The Mongo layout's documents come back exact** (``_mongo_layout``): descriptors from the
  stream nodes, events, resources and datums from one ``documents()`` request per run; the
  MongoAdapter answers equality, ``$ne``, ``$in``, ``$nin``, comparisons and ``$regex`` with
  MongoDB's meaning, and the rest (``$exists`` and ``$text`` among them) is checked here as
  above; external data is filled through the client's handlers and ``root_map``.
"""

from __future__ import annotations

from ._store import TiledStore

__all__ = ["TiledStore"]
