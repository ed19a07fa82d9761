"""FileStore: a crash-safe, indexed directory of run files.

Layout of a store directory::

    <path>/<start uid>.jsonl          one run, one [name, doc] JSON array per line
    <path>/<start uid>.msgpack        a run from suitcase-msgpack / databroker-pack (read only)
    <path>/_assets.jsonl              resources (and their datums) that belong to no run
    <path>/.broker_v1/index.sqlite    the search index (derived; rebuilt when missing or corrupt)
    <path>/.broker_v1/cache/          columnar copies of completed runs' events (derived)

The ``.jsonl`` files are exactly what suitcase-jsonl writes and databroker's JSONL catalog reads:
the first line is the start document, then descriptors, events, resources and datums in the
order they were inserted, the stop last.  Floats that JSON cannot express are written as the
``NaN`` / ``Infinity`` tokens Python's ``json`` module (and suitcase-jsonl) use.

The index (SQLite, WAL mode, so several processes can write different runs at once) holds
what search needs: every start document, its time, scan_id, uid, stop, the file's size and
mtime and the text for ``$text``.  It also maps descriptor, resource and datum ids to their file.
It is a cache of the files: it is refreshed incrementally (a ``stat`` of the directory and of
the few runs still open; a names-only listing when the directory changed in a way our own
writers' links in the index do not explain) so runs written by
another process or copied in by hand appear in an open store, and it is rebuilt from the files
whenever it is missing, corrupt or of another schema version.

One concern per module, each given what it needs (the directory, the store's label and lock,
the index, callbacks) rather than calling back into the store:

* ``_format``: the layout's names, run-file lines, msgpack runs, torn tails, uid rules, the
  warnings.
* ``_index``: the SQLite index (schema, opening and rebuilding, transactions, rows).
* ``_scan``: bringing the index up to date with the directory.
* ``_search``: queries turned into SQL, keyset paging.
* ``_rundata`` and ``_runs``: one parsed run file, and the cache of parsed runs.
* ``_cache``: the columnar cache of completed runs.
* ``_lookup``: where a descriptor, resource or datum is; the insert path's lookups.
* ``_writer`` and ``_syncs``: appending documents, fsync, deferred syncs, the background
  thread for what a stop need not wait for.
* ``_import``: whole-run copies and their checking process.
* ``_store``: :class:`FileStore`, the facade over the above.
"""

from __future__ import annotations

from ._format import ASSETS_NAME as ASSETS_NAME
from ._store import FileStore, RunFileWarning, TornRunFileWarning

__all__ = ["FileStore", "RunFileWarning", "TornRunFileWarning"]
