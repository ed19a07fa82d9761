"""MongoStore: databroker's normalized MongoDB layout, read and written unchanged.

Two databases, which may be one: the *metadata* database (``run_start``, ``run_stop``,
``event_descriptor``, ``event``) and the *assets* database (``resource``, ``datum``), one
document per start, stop, descriptor, event, resource and datum, exactly as databroker 0.13
and 1.2 (suitcase-mongo) wrote them, so existing beamline databases open as they are and what
broker_v1 writes is read by old clients (spec/v1-behaviour.md §6).

Design points, each for a reason, and the module of this package that holds each:

* **One client factory** (``_client``).  Every client is built by :func:`make_client`, which
  looks ``pymongo.MongoClient`` up at call time (so ``mongomock.patch`` and a user's test
  doubles reach it) and serves ``mongomock://host/db`` from an in-process registry of mongomock
  clients keyed by host (so two stores on the same URI share data, like two clients of one
  server).
* **No index is created on a read path** (``_indexes``), because beamline accounts are often
  read-only.  Indexes are created by :meth:`MongoStore.ensure_indexes` or on the first write,
  with databroker's own specifications, so an existing database already matches and nothing
  is rebuilt.  On first contact the store warns once (:class:`MissingIndexWarning`) about
  indexes that reads rely on and that existing collections lack.
* **Order uses only the indexes old databases have** (``_paging``).  Runs are returned newest
  first by (``time``, ``uid``) and events by (``time``, ``seq_num``).  The server sorts by
  ``time`` (which the ``run_start (time, scan_id)`` and ``event (descriptor, time)`` indexes
  serve), and the store breaks ties itself: every page holds whole groups of equal ``time``.
* **Pages by key, never a long-held cursor** (``_paging``).  Each page is a separate query
  continuing from the last ``time`` seen (``$lte``/``$gte`` on the indexed field, the held-back
  group fetched again), drained before it is handed out, so user code between pages cannot let
  a server cursor time out, and runs inserted meanwhile shift nothing.
* **Duplicates by the unique index when there is one** (``_writes``).  Event and datum pages
  are inserted in one unordered bulk write; identical re-inserts surface as duplicate-key
  errors and are compared with what is stored (identical: a no-op; different: the batch is
  undone and :class:`~broker_v1.errors.DuplicateDocument` is raised).  Without a unique index
  (mongomock, or an old database whose index could not be built) the uids are looked up first.
* **Errors are translated at the boundary** (``_errors``): unreachable server,
  authentication, permissions, bad queries, duplicate keys; credentials never appear in a
  message, in :meth:`MongoStore.describe` or in :meth:`MongoStore.config`.

``_layout`` holds the collection names and the mapping between documents and pages;
``_store`` holds :class:`MongoStore` itself.
"""

from __future__ import annotations

from ._client import make_client
from ._indexes import INDEXES as INDEXES
from ._indexes import MissingIndexWarning
from ._layout import ASSET_COLLECTIONS as ASSET_COLLECTIONS
from ._layout import META_COLLECTIONS as META_COLLECTIONS
from ._store import MongoStore

__all__ = ["MissingIndexWarning", "MongoStore", "make_client"]
