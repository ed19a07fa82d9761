"""The SQL-catalog layout (runs written by TiledWriter) read back as bluesky documents.

Per run, a container keyed by the start uid with metadata ``{start, stop}``; per stream a
container whose metadata is the stream's first descriptor (without ``name``, ``object_keys``
and ``run_start``; later descriptors of the stream are kept as ``_config_updates``), holding a
table ``internal`` (``seq_num``, ``time``, one column per scalar or small-array field and
``ts_<field>`` timestamps) and one array node per larger in-event array (rows along the first
dimension).

What the layout does not keep, and what is returned instead (the same on every call):

* **Event uids**: ``event-<descriptor uid>-<seq_num>``, the uids tiled's own document export
  (``run.documents()``) gives, so both readers agree.
* **Which descriptor an event belongs to** when a stream has configuration updates: the last
  descriptor of the stream whose ``time`` is not after the event's ``time`` (also as tiled's
  export does).
* **Resources and datums** (external data): none; an external field holds a placeholder
  datum id per event, ``sr-<uid of the stream's first descriptor>-<field>/<seq_num - 1>``,
  which the store reads through the field's array node (:mod:`._external`).  Its timestamps
  are the events' ``time`` (TiledWriter keeps no others).
* **filled**: absent from pages (nothing is stored as filled).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ._external import ExternalReader, external_keys
from ._layout_api import Layout, StreamRef
from ._paging import read_rows, read_table

__all__ = ["SqlLayout", "descriptors_of_stream", "event_pages", "event_uid"]

Doc = dict[str, Any]

def event_uid(descriptor_uid: str, seq_num: int) -> str:
    """The uid given to an event the layout stored without one."""
    return f"event-{descriptor_uid}-{seq_num}"


def descriptors_of_stream(metadata: Mapping[str, Any], stream_name: str,
                          run_start_uid: str) -> list[Doc]:
    """The descriptor documents of one stream, rebuilt from its node's metadata.

    Uses bluesky-tiled-plugins' own reconstruction (the one its exporter and clients use),
    which restores ``name``, ``run_start`` and ``object_keys`` (from each data key's
    ``object_name``) and unfolds ``_config_updates`` into later descriptors.
    """
    from bluesky_tiled_plugins.exporters import build_descriptor_docs

    return [dict(d) for d in build_descriptor_docs(dict(metadata), stream_name,
                                                   run_start_uid=run_start_uid)]


def _owner(times: Sequence[tuple[float, str]], row_time: float) -> str:
    owner = times[0][1]
    for t, uid in times[1:]:
        if t <= row_time:
            owner = uid
    return owner


def _in_order(times: Sequence[Any], seq: Sequence[Any]) -> bool:
    """True when rows are already ordered by (time, seq_num)."""
    return all(t0 < t1 or (t0 == t1 and s0 <= s1)
               for t0, t1, s0, s1 in zip(times, times[1:], seq, seq[1:]))


def read_columns(stream: Any, descriptor: Mapping[str, Any], fields: Iterable[str] | None,
                 conn: Any, where: str) -> dict[str, list[Any]]:
    """Columns of one stream: the ``internal`` table in one request, plus in-event arrays
    (one request each); a request that times out is split (:mod:`._paging`).

    Returns ``{column: values}`` with ``seq_num``, ``time``, data fields and ``ts_<field>``
    columns, as plain Python values.  ``conn`` translates errors; ``where`` names the stream
    in messages.
    """
    base = stream.base
    parts = set(base)
    data_keys = descriptor["data_keys"]
    wanted = [k for k in data_keys if not data_keys[k].get("external")]
    if fields is not None:
        keep = set(fields)
        wanted = [k for k in wanted if k in keep]
    columns: dict[str, list[Any]] = {}
    if "internal" in parts:
        table_client = base["internal"]
        present = set(table_client.columns)
        names = ["seq_num", "time"] + [c for k in wanted for c in (k, f"ts_{k}")
                                       if c in present]
        columns = read_table(conn, table_client, names, f"the table of {where}")
    for key in wanted:
        if key in columns or key not in parts:
            continue
        # A larger in-event array: its own node, one row per event along the first axis.
        node = base[key]
        rows = int(node.shape[0]) if node.shape else 0
        columns[key] = (read_rows(conn, node, 0, rows, f"the array field {key!r} of {where}")
                        .tolist() if rows else [])
    return columns


def event_pages(columns: Mapping[str, list[Any]], descriptor_uid: str,
                descriptor_times: Sequence[tuple[float, str]],
                data_keys: Iterable[str]) -> Iterator[Doc]:
    """The event page of ``descriptor_uid`` from a stream's columns (nothing if no rows).

    Rows are ordered by (``time``, ``seq_num``); rows that belong to another descriptor of the
    same stream (a configuration update) are left out.
    """
    seq = columns.get("seq_num") or []
    times = columns.get("time") or []
    keys = [k for k in data_keys if k in columns]
    if len(descriptor_times) == 1 and _in_order(times, seq):
        # The common case (one descriptor, rows as written): the columns are the page.
        if not seq:
            return
        yield {
            "descriptor": descriptor_uid,
            "uid": [event_uid(descriptor_uid, n) for n in seq],
            "seq_num": list(seq),
            "time": list(times),
            "data": {k: list(columns[k]) for k in keys},
            "timestamps": {k: list(columns.get(f"ts_{k}") or times) for k in keys},
        }
        return
    rows = [i for i in range(len(seq))
            if _owner(descriptor_times, times[i]) == descriptor_uid]
    if not rows:
        return
    rows.sort(key=lambda i: (times[i], seq[i]))
    page: Doc = {
        "descriptor": descriptor_uid,
        "uid": [event_uid(descriptor_uid, seq[i]) for i in rows],
        "seq_num": [seq[i] for i in rows],
        "time": [times[i] for i in rows],
        "data": {k: [columns[k][i] for i in rows] for k in keys},
        "timestamps": {},
    }
    for k in keys:
        ts = columns.get(f"ts_{k}")
        page["timestamps"][k] = [ts[i] for i in rows] if ts is not None else list(page["time"])
    yield page


class SqlLayout(Layout):
    """The SQL catalog written by TiledWriter (root spec ``CatalogOfBlueskyRuns`` 3.x)."""

    name = "SQL catalog (CatalogOfBlueskyRuns 3.x, written by TiledWriter)"
    answers = ("field equality, $in, $gt/$gte/$lt/$lte on numbers, $exists, since/until, "
               "uid prefixes, text_search of plain words")

    def plan(self, query: Mapping[str, Any]) -> Any:
        from ._queries import plan_query

        return plan_query(query, list_equality=self._list_equality)

    def sort(self, sort: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        from ._queries import tiled_sort

        return tiled_sort(sort)

    def descriptors(self, metadata: Mapping[str, Any], stream_name: str,
                    run_uid: str) -> list[Doc]:
        return descriptors_of_stream(metadata, stream_name, run_uid)

    def __init__(self, external: ExternalReader, conn: Any, *,
                 list_equality: bool = False) -> None:
        self._external = external
        self._conn = conn
        self._list_equality = list_equality

    def event_pages(self, stream: StreamRef,
                    fields: Iterable[str] | None) -> Iterator[Doc]:
        columns = read_columns(stream.client, stream.descriptor, fields, self._conn,
                               f"stream {stream.name!r} of run {stream.run_uid}")
        # The stream's array node is named after its first descriptor, as tiled's export does.
        self._external.add_placeholders(columns, stream.times[0][1],
                                        external_keys(stream.descriptor, fields))
        yield from event_pages(columns, stream.descriptor["uid"], stream.times,
                               list(stream.descriptor["data_keys"]))
