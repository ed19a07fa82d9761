"""databroker 2's MongoAdapter over the normalized Mongo layout, read back as documents.

The server (root spec ``CatalogOfBlueskyRuns`` version 1) serves the documents MongoDB holds
unchanged: a run's metadata is ``{start, stop, summary}`` (``stop`` is ``None`` while the run
is open); each stream node's metadata is ``{descriptors, stream_name}`` with the stream's
descriptor documents exactly as stored; and the run's ``/documents`` route (the run client's
``documents()``) streams every document of the run, event uids, resources and datums
included.  So nothing is rebuilt here: descriptors come from the stream nodes (one request
per run lists them), and events, resources and datums from one ``documents()`` request per
run, kept for the few runs read last.

Queries.  The adapter turns each tiled query into a MongoDB filter on the ``run_start``
collection (the ``start.`` prefix removed), so equality (lists included), ``$ne``, ``$in``,
``$nin``, comparisons and ``$regex`` keep MongoDB's meaning exactly and are sent.  It has no
translation for ``KeyPresent`` or ``Like`` (a server silently ignores what it does not know,
so ``$exists`` is never sent) and none for ``$or``, ``$nor``, ``$not``, ``$elemMatch``,
``$size``, ``$all``, ``$type``, ``$mod``: those are residual, checked here; so is ``$text``
(``FullText``), which the adapter hands to MongoDB, which answers it only with a text index
on ``run_start`` that databroker does not make.  Sorting names the
start document's fields directly (``time``, not ``start.time``), and only the first sort key
is sent: the adapter pages by cursor on each key separately, which loses runs past its
internal batch of 100 when there are two keys; ties are then in insertion order.

A limit of the server (databroker 2.0.2): its documents route sends events in pages and
sends a page only when another document follows, so a run still open (no stop yet) comes
back without its last page of events (up to 25 events of one stream).  What it sends is
exact; a stopped run is complete.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._layout_api import Layout, StreamRef
from ._queries import MAX_IN, MONGO_TO_TILED_COMPARISON, Plan, is_number, is_scalar, walk_query

__all__ = ["MongoLayout", "plan_mongo_query"]

Doc = dict[str, Any]

#: Runs whose documents are kept (a reader asks for each stream of the run in turn).
_BODY_CACHE = 2



def _sendable(value: Any) -> bool:
    """A value the adapter compares as MongoDB does (documents are left to the matcher)."""
    if isinstance(value, list):
        return all(is_scalar(v) and v is not None for v in value)
    return is_scalar(value) and value is not None


def plan_mongo_query(query: Mapping[str, Any]) -> Plan:
    """Split a checked Mongo-dialect filter into tiled queries the MongoAdapter answers
    exactly and a residual checked here.

    Parameters
    ----------
    query
        A filter on start-document fields (already checked by ``check_query``).

    Returns
    -------
    Plan
        ``recheck`` is always empty: what is sent is answered by MongoDB itself.
    """
    from tiled.queries import Comparison, Eq, In, NotEq, NotIn, Regex

    plan = Plan()
    for key, target, condition in walk_query(query, plan, _sendable):
        if target is None:
            # $text included: the adapter hands it to MongoDB, which answers only with a
            # text index on run_start that databroker never makes (without one it fails).
            plan.residual.append(key)
            continue
        for op, value in condition.items():
            if op == "$options" and "$regex" in condition:
                continue  # sent with its $regex, or that $regex is residual
            if op == "$eq" and _sendable(value):
                plan.queries.append(Eq(target, value))
            elif op == "$ne" and _sendable(value):
                plan.queries.append(NotEq(target, value))
            elif op in ("$in", "$nin") and isinstance(value, list) and (
                    0 < len(value) <= MAX_IN) and all(_sendable(v) for v in value):
                plan.queries.append((In if op == "$in" else NotIn)(target, list(value)))
            elif op in MONGO_TO_TILED_COMPARISON and (is_number(value) or isinstance(value, str)):
                plan.queries.append(Comparison(MONGO_TO_TILED_COMPARISON[op], target, value))
            elif (op == "$regex" and isinstance(value, str)
                  and condition.get("$options", "") in ("", "i")):
                plan.queries.append(Regex(target, value,
                                          case_sensitive=condition.get("$options") != "i"))
            else:
                plan.residual.append(op)
    return plan


@dataclass
class _Body:
    """Everything after the start document of one run, as the server streamed it."""

    pages: dict[str, list[Doc]] = field(default_factory=dict)  # descriptor uid -> pages
    resources: dict[str, Doc] = field(default_factory=dict)
    resource_datums: dict[str, list[Doc]] = field(default_factory=dict)  # by resource uid
    datums: dict[str, Doc] = field(default_factory=dict)  # datum_id -> datum
    stopped: bool = False


def _merge_pages(pages: list[Doc], fields: Iterable[str] | None) -> Doc | None:
    """One event page of a descriptor's pages, rows in (time, seq_num) order."""
    rows = [(t, s, p, i) for p in pages for i, (t, s) in enumerate(zip(p["time"], p["seq_num"]))]
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    keys = list(pages[0]["data"])
    if fields is not None:
        wanted = set(fields)
        keys = [k for k in keys if k in wanted]
    out: Doc = {
        "descriptor": pages[0]["descriptor"],
        "uid": [p["uid"][i] for _, _, p, i in rows],
        "seq_num": [p["seq_num"][i] for _, _, p, i in rows],
        "time": [p["time"][i] for _, _, p, i in rows],
        "data": {k: [p["data"][k][i] for _, _, p, i in rows] for k in keys},
        "timestamps": {k: [p["timestamps"][k][i] for _, _, p, i in rows] for k in keys},
    }
    filled = {k for p in pages for k in (p.get("filled") or {})}
    if filled:
        out["filled"] = {k: [(p.get("filled") or {}).get(k, [False] * len(p["uid"]))[i]
                             for _, _, p, i in rows]
                         for k in keys if k in filled}
    return out


class MongoLayout(Layout):
    """databroker 2's MongoAdapter (root spec ``CatalogOfBlueskyRuns`` version 1).

    Parameters
    ----------
    run_client
        The store's lookup of a run's client by start uid (cached there).
    plain
        Copies tiled's read-only metadata views as plain dicts and lists.
    """

    name = "MongoAdapter (databroker 2, CatalogOfBlueskyRuns 1)"
    answers = ("field equality, $ne, $in, $nin, $gt/$gte/$lt/$lte, $regex, since/until, "
               "uid prefixes")

    def __init__(self, run_client: Callable[[str], Any], plain: Callable[[Any], Any]) -> None:
        self._run_client = run_client
        self._plain = plain
        self._lock = threading.RLock()
        self._bodies: OrderedDict[str, _Body] = OrderedDict()
        # Where documents read before live, so an evicted run's body is fetched again.
        self._resource_runs: dict[str, str] = {}
        self._datum_runs: dict[str, str] = {}

    def plan(self, query: Mapping[str, Any]) -> Plan:
        return plan_mongo_query(query)

    def sort(self, sort: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(name, int(direction)) for name, direction in list(sort)[:1]]

    def descriptors(self, metadata: Mapping[str, Any], stream_name: str,
                    run_uid: str) -> list[Doc]:
        return [self._plain(d) for d in metadata.get("descriptors") or []]

    # ------------------------------------------------------------------ run bodies
    def _fetch(self, run_uid: str) -> _Body:
        body = _Body()
        for name, doc in self._run_client(run_uid).documents():
            doc = self._plain(doc)
            if name == "event_page":
                body.pages.setdefault(doc["descriptor"], []).append(doc)
            elif name == "event":  # the route sends pages; singles are accepted too
                from event_model import pack_event_page

                body.pages.setdefault(doc["descriptor"], []).append(dict(pack_event_page(doc)))
            elif name == "resource":
                body.resources[doc["uid"]] = doc
            elif name in ("datum", "datum_page"):
                from event_model import pack_datum_page, unpack_datum_page

                page: Any = pack_datum_page(doc) if name == "datum" else doc
                for datum in unpack_datum_page(page):
                    if datum["datum_id"] in body.datums:
                        continue  # the route repeats a datum referenced by two events
                    body.datums[datum["datum_id"]] = datum
                    body.resource_datums.setdefault(datum["resource"], []).append(datum)
            elif name == "stop":
                body.stopped = True
        with self._lock:
            for uid in body.resources:
                self._resource_runs[uid] = run_uid
            for datum_id in body.datums:
                self._datum_runs[datum_id] = run_uid
            if body.stopped:  # an open run's body is read again next time
                self._bodies[run_uid] = body
                self._bodies.move_to_end(run_uid)
                while len(self._bodies) > _BODY_CACHE:
                    self._bodies.popitem(last=False)
        return body

    def _body(self, run_uid: str) -> _Body:
        with self._lock:
            body = self._bodies.get(run_uid)
        return body if body is not None else self._fetch(run_uid)

    def event_pages(self, stream: StreamRef,
                    fields: Iterable[str] | None) -> Iterator[Doc]:
        body = self._body(stream.run_uid)
        page = _merge_pages(body.pages.get(stream.descriptor["uid"], []), fields)
        if page is not None:
            yield page

    def get_resource(self, uid: str) -> Doc | None:
        with self._lock:
            run_uid = self._resource_runs.get(uid)
        if run_uid is None:
            return None
        found = self._body(run_uid).resources.get(uid)
        return None if found is None else dict(found)

    def iter_datum_pages(self, resource_uid: str) -> Iterator[Doc]:
        with self._lock:
            run_uid = self._resource_runs.get(resource_uid)
        if run_uid is None:
            return iter(())
        datums = self._body(run_uid).resource_datums.get(resource_uid, [])
        if not datums:
            return iter(())
        from event_model import pack_datum_page

        return iter([dict(pack_datum_page(*datums))])  # type: ignore[arg-type]

    def find_datums(self, datum_ids: Iterable[str], run_uid: str) -> None:
        with self._lock:
            unknown = any(d not in self._datum_runs for d in datum_ids)
        if unknown:
            self._body(run_uid)  # its documents name their resources and datums

    def get_datum(self, datum_id: str) -> Doc | None:
        with self._lock:
            run_uid = self._datum_runs.get(datum_id)
        if run_uid is None:
            return None
        found = self._body(run_uid).datums.get(datum_id)
        return None if found is None else dict(found)

    def forget(self) -> None:
        with self._lock:
            self._bodies.clear()
            self._resource_runs.clear()
            self._datum_runs.clear()
