"""Catalog: databroker 1.2's v2 catalog of runs over a Broker's store.

``db.v2`` returns one; ``cat.v1`` returns the Broker.  A catalog maps start uids to
:class:`~broker_v1.v2.run.BlueskyRun` objects, newest first, and ``search`` narrows it (searches
of searches are AND-ed).  Nothing is loaded until asked for: ``len`` counts in the store,
iteration pages through start documents lazily.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import Any

from .._reading import ReadContext
from ..errors import AmbiguousUid, InvalidQuery, RunIndexError, RunNotFound
from ..stores._query import check_query, prefix_regex
from .run import BlueskyRun

__all__ = ["Catalog"]


def _and(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    if not a:
        return dict(b)
    if not b:
        return dict(a)
    return {"$and": [dict(a), dict(b)]}


class Catalog(Mapping[str, BlueskyRun]):
    """Runs of one store, optionally restricted by a query, as a mapping of uid → run.

    Parameters
    ----------
    context
        The read context (store, handlers, transforms) of the v1 Broker behind the catalog
        (``db.v2`` passes its own).
    query
        Mongo-dialect restriction (``{}``: every run).
    name
        Shown in the repr; search results are named ``'search results'``.
    """

    def __init__(self, context: ReadContext, query: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        self._context = context
        self._store = context.store
        self._query = dict(query or {})
        self.name = name if name is not None else (
            getattr(context.owner, "name", None) or "catalog")

    # ------------------------------------------------------------------ navigation
    @property
    def v1(self) -> Any:
        """The v1 Broker over the same store."""
        return self._context.owner

    @property
    def v2(self) -> Catalog:
        """This catalog (so code can accept either a Broker or a catalog and call ``.v2``)."""
        return self

    def __call__(self, **kwargs: Any) -> Catalog:
        """An equivalent catalog (intake style: ``cat()[uid]`` works)."""
        return Catalog(self._context, self._query, self.name)

    get = __call__  # type: ignore[assignment]

    @property
    def query(self) -> dict[str, Any]:
        """The Mongo-dialect query restricting this catalog."""
        return dict(self._query)

    def search(self, query: Mapping[str, Any]) -> Catalog:
        """A catalog of the runs here that also match ``query`` (a dict or a Query object).

        Raises
        ------
        InvalidQuery
            ``query`` is not a mapping of conditions.
        """
        if not isinstance(query, Mapping):
            raise InvalidQuery(
                f"search() takes a dict of conditions or a Query object, got {query!r}."
            )
        query = dict(query)
        check_query(query, store=self._store.describe())
        return Catalog(self._context, _and(self._query, query), "search results")

    # ------------------------------------------------------------------ mapping
    def _starts(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self._store.find_run_starts(self._query, **kwargs)

    def __iter__(self) -> Iterator[str]:
        for start in self._starts():
            yield start["uid"]

    def __len__(self) -> int:
        return self._store.count_runs(self._query)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        query = _and(self._query, {"uid": key})
        return next(iter(self._store.find_run_starts(query, limit=1)), None) is not None

    def items(self) -> Iterator[tuple[str, BlueskyRun]]:  # type: ignore[override]
        """``(uid, run)`` pairs, newest first, loading one run at a time."""
        for start in self._starts():
            yield start["uid"], self._run(start)

    def values(self) -> Iterator[BlueskyRun]:  # type: ignore[override]
        """Runs, newest first."""
        for start in self._starts():
            yield self._run(start)

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        """Start uids, newest first."""
        return iter(self)

    def _run(self, start: dict[str, Any]) -> BlueskyRun:
        return BlueskyRun(self._context, self._context.run(start))

    def __getitem__(self, key: Any) -> BlueskyRun:
        """``cat[uid]``, ``cat['3f2a']``, ``cat[scan_id]`` (most recent), ``cat[-1]``.

        Digit-only strings are read as integers (``'42'`` is scan_id 42, ``'-1'`` the newest
        run), as databroker 1.2's catalogs do for client/server use.
        """
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, numbers.Integral | str):
            raise KeyError(
                f"{key!r} is not a run key; use a uid, a uid prefix, a scan_id or -N."
            )
        store = self._store
        where = f"{store.describe()}" + (f" matching {self._query}" if self._query else "")
        if isinstance(key, numbers.Integral):
            key = int(key)
            if key < 0:
                found = list(self._starts(skip=-key - 1, limit=1))
                if not found:
                    count = len(self)
                    raise RunIndexError(
                        f"cat[{key}] asks for run {-key} counting back from the newest, but the "
                        f"catalog ({where}) holds only {count}.",
                        key=key, count=count, store=store.describe(),
                    )
                return self._run(found[0])
            found = list(store.find_run_starts(_and(self._query, {"scan_id": key}), limit=1))
            if not found:
                raise RunNotFound(f"No run with scan_id {key} in {where}.", key=key,
                                  store=store.describe())
            return self._run(found[0])
        exact = list(store.find_run_starts(_and(self._query, {"uid": key}), limit=1))
        if exact:
            return self._run(exact[0])
        prefix = {"uid": {"$regex": prefix_regex(key)}}
        matches = list(store.find_run_starts(_and(self._query, prefix), limit=11))
        if len(matches) == 1:
            return self._run(matches[0])
        if not matches:
            raise RunNotFound(f"No run with uid starting {key!r} in {where}.", key=key,
                              store=store.describe())
        total = len(matches) if len(matches) <= 10 else store.count_runs(
            _and(self._query, prefix))
        shown = [m["uid"] for m in matches[:10]]
        raise AmbiguousUid(
            f"Partial uid {key!r} matches {total} runs in {where}: "
            + ", ".join(u[:8] + "…" for u in shown)
            + (f" ({len(shown)} of {total} shown)" if total > len(shown) else "")
            + ". Provide more characters.",
            key=key, matches=shown, total=total, store=store.describe(),
        )

    def __eq__(self, other: object) -> bool:
        # Mapping's __eq__ would load every run; two catalogs are equal when they select
        # the same runs of the same store.
        if not isinstance(other, Catalog):
            return NotImplemented
        return other._store is self._store and other._query == self._query

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        query = f" query={self._query!r}" if self._query else ""
        return f"<Catalog {self.name!r} on {self._store.describe()}{query}>"

    def _ipython_key_completions_(self) -> list[str]:
        return [s["uid"] for s in self._starts(limit=50)]
