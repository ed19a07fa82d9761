"""The layout's indexes: which there are, checking them on first contact, creating them.

No index is created on a read path, because beamline accounts are often read-only: only
:meth:`~broker_v1.stores.mongo.MongoStore.ensure_indexes` or the first write creates them,
with databroker's own specifications, so an existing database already matches and nothing is
rebuilt.  On first contact a store warns once (:class:`MissingIndexWarning`) about indexes
that reads rely on and that existing collections lack.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pymongo.errors

from ...errors import DuplicateDocument, StoreUnavailable, UnsupportedQuery
from ._client import _Connection
from ._errors import _dup_value, _ErrorTranslator

__all__ = ["INDEXES", "MissingIndexWarning"]


class MissingIndexWarning(UserWarning):
    """An existing MongoDB database lacks indexes broker_v1 reads with, or they could not be
    created.  Reads still work, but scan whole collections."""


@dataclass(frozen=True)
class _Index:
    """One index of the layout, in databroker's own spelling so old databases already match."""

    database: str  # "meta" or "assets"
    collection: str
    keys: tuple[tuple[str, Any], ...]
    unique: bool = False
    for_reads: bool = True  # missing from an existing collection -> MissingIndexWarning

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.keys)

    def describe(self) -> str:
        return f"{self.collection} ({', '.join(self.fields)})" + (" unique" if self.unique else "")


INDEXES = (
    _Index("meta", "run_start", (("uid", -1),), unique=True),
    _Index("meta", "run_start", (("time", -1), ("scan_id", -1))),
    _Index("meta", "run_start", (("scan_id", -1),), for_reads=False),
    _Index("meta", "run_stop", (("run_start", 1),), unique=True),
    _Index("meta", "run_stop", (("uid", 1),), unique=True, for_reads=False),
    _Index("meta", "run_stop", (("time", -1),), for_reads=False),
    _Index("meta", "event_descriptor", (("uid", -1),), unique=True),
    _Index("meta", "event_descriptor", (("run_start", -1), ("time", -1))),
    _Index("meta", "event_descriptor", (("time", -1),), for_reads=False),
    _Index("meta", "event", (("uid", -1),), unique=True),
    _Index("meta", "event", (("descriptor", -1), ("time", 1))),
    _Index("assets", "resource", (("uid", 1),)),
    _Index("assets", "datum", (("datum_id", 1),), unique=True),
    _Index("assets", "datum", (("resource", 1),)),
)
_TEXT_INDEX = (("$**", "text"),)

# Warn about one database once per process, however many stores open it.
_WARNED: set[tuple[str, str, str]] = set()


def _index_fields(info: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Field lists of the non-text indexes in an ``index_information()`` answer."""
    out = []
    for spec in info.values():
        keys = spec.get("key", [])
        if any(direction in ("text", "2d", "2dsphere", "hashed") for _, direction in keys):
            continue
        out.append(tuple(name for name, _ in keys))
    return out


def _has_text(info: Mapping[str, Any]) -> bool:
    return any(d == "text" for spec in info.values() for _, d in spec.get("key", []))


def _has_unique(info: Mapping[str, Any], field_name: str) -> bool:
    return any(
        spec.get("unique") and [k for k, _ in spec.get("key", [])] == [field_name]
        for spec in info.values()
    )


def _unique(info_of: Any) -> dict[str, bool]:
    """:attr:`_Indexes.unique` from ``info_of(database, collection)`` (index information)."""
    stops = info_of("meta", "run_stop")
    return {
        "event": _has_unique(info_of("meta", "event"), "uid"),
        "datum": _has_unique(info_of("assets", "datum"), "datum_id"),
        "start": _has_unique(info_of("meta", "run_start"), "uid"),
        "descriptor": _has_unique(info_of("meta", "event_descriptor"), "uid"),
        "stop": _has_unique(stops, "uid") and _has_unique(stops, "run_start"),
    }


class _Indexes:
    """What one store knows of its indexes, and the code that looks at and creates them.

    Parameters
    ----------
    connection
        The store's databases (opened before any method here is called).
    errors
        The store's error translator.
    label
        The store's :meth:`~broker_v1.stores.base.DocumentStore.describe`, for messages.

    Attributes
    ----------
    text_index
        Whether ``run_start`` has a text index (None: not looked at yet).
    text_refused
        The server's reason, when it refused to create a text index.
    unique
        Whether the server refuses a duplicate identity by itself, by document kind:
        ``event.uid``, ``datum.datum_id``, ``run_start.uid`` (``start``),
        ``event_descriptor.uid`` (``descriptor``), and for ``stop`` both ``run_stop.uid`` and
        ``run_stop.run_start`` (a second stop of a run).
    """

    def __init__(self, connection: _Connection, errors: _ErrorTranslator, *, label: str) -> None:
        self._connection = connection
        self._errors = errors
        self._label = label
        self.text_index: bool | None = None
        self.text_refused: str | None = None
        self.unique = dict.fromkeys(("event", "datum", "start", "descriptor", "stop"), False)

    def check(self) -> None:
        """On first contact: what the collections have (never creating anything); warn once
        per database about indexes reads rely on that are missing."""
        conn = self._connection
        # Listing collections is also what first reaches the server (and fails if it cannot).
        existing = {
            "meta": set(conn.meta_db.list_collection_names()),
            "assets": set(conn.asset_db.list_collection_names()),
        }
        infos: dict[tuple[str, str], Mapping[str, Any]] = {}
        missing = []
        for index in INDEXES:
            if index.collection not in existing[index.database]:
                continue
            where = (index.database, index.collection)
            if where not in infos:
                infos[where] = conn.db(index.database)[index.collection].index_information()
            if where == ("meta", "run_start"):
                self.text_index = _has_text(infos[where])
            have = _index_fields(infos[where])
            if index.for_reads and not any(f[:len(index.fields)] == index.fields for f in have):
                missing.append(index.describe())
        self.unique = _unique(lambda database, name: infos.get((database, name), {}))
        if "run_start" not in existing["meta"]:
            self.text_index = False
        key = (conn.meta_uri.location, conn.meta_uri.database, conn.asset_uri.database)
        if missing and key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(
                f"{self._label} lacks indexes that reads rely on: {', '.join(missing)}. "
                "Reads work but scan whole collections. An account allowed to write can create "
                "them with MongoStore.ensure_indexes() (they are also created on the first "
                "write).",
                MissingIndexWarning,
                stacklevel=4,
            )

    def create(self, *, text: bool | None, strict: bool) -> list[str]:
        """Create the missing indexes (see
        :meth:`~broker_v1.stores.mongo.MongoStore.ensure_indexes`).

        ``strict`` raises when an index cannot be created; otherwise (the first write) that
        is a :class:`MissingIndexWarning` and writing goes on without it.
        """
        conn = self._connection
        created = []
        infos: dict[tuple[str, str], Mapping[str, Any]] = {}
        for index in INDEXES:
            coll = conn.db(index.database)[index.collection]
            where = (index.database, index.collection)
            with self._errors(f"read the indexes of {index.collection}", writing=True):
                if where not in infos:
                    infos[where] = coll.index_information()
            if index.fields in _index_fields(infos[where]):
                continue
            try:
                with self._errors(f"create the index {index.describe()}", writing=True):
                    coll.create_index(list(index.keys), unique=index.unique and not conn.mock)
                created.append(index.describe())
            except pymongo.errors.DuplicateKeyError as err:
                # Old data can make a unique index impossible (stops that name their run
                # 'run_start_id' all have run_start null).  Writing still works without it.
                problem = DuplicateDocument(
                    f"Cannot create the unique index {index.describe()} in {self._label}: "
                    f"existing documents share the value {_dup_value(err)}. Reads and writes "
                    "work without it (duplicates are checked by the store); repair the data "
                    "to create it.",
                    name=index.collection, uid=_dup_value(err), store=self._label,
                )
                if strict:
                    raise problem from err
                warnings.warn(str(problem), MissingIndexWarning, stacklevel=5)
            except StoreUnavailable as err:
                if strict:
                    raise
                warnings.warn(f"{self._label}: could not create the index "
                              f"{index.describe()}: {err}", MissingIndexWarning, stacklevel=5)
        if text is not False:
            created += self._create_text(required=bool(text))
        with self._errors("read the indexes", writing=True):
            self.unique = _unique(lambda database, name: conn.db(database)[name]
                                  .index_information())
        return created

    def _create_text(self, *, required: bool) -> list[str]:
        # A server may refuse text indexes; that only matters when the caller required one.
        coll = self._connection.meta_db["run_start"]
        with self._errors("read the indexes of run_start", writing=True):
            if _has_text(coll.index_information()):
                self.text_index = True
                return []
        try:
            coll.create_index(list(_TEXT_INDEX))
        except pymongo.errors.OperationFailure as err:
            if err.code in (13, 18) or "not authorized" in str(err).lower():
                with self._errors("create the text index on run_start", writing=True):
                    raise
            # Servers without text search (the wire-protocol test server) refuse: code 67.
            self.text_refused = self._errors.scrub(err).split(", full error")[0]
            self.text_index = False
            if required:
                raise UnsupportedQuery(
                    f"{self._label} cannot create the text index full-text search needs: "
                    f"{self.text_refused}.",
                    operator="$text",
                    store=self._label,
                ) from err
            return []
        self.text_index = True
        return ["run_start ($** text)"]

    def text_available(self, *, refresh: bool) -> bool:
        """Whether ``$text`` queries work; ``refresh`` looks again if there was no text
        index (someone may have created one since)."""
        if self._connection.mock:
            return False
        if self.text_index is None or (refresh and not self.text_index):
            with self._errors("read the indexes of run_start"):
                names = self._connection.meta_db.list_collection_names()
                self.text_index = "run_start" in names and _has_text(
                    self._connection.meta_db["run_start"].index_information()
                )
        return bool(self.text_index)

    def refuse_text(self) -> UnsupportedQuery:
        """The error for ``$text`` here, saying why it cannot work and what would help."""
        if self._connection.mock:
            why = "mongomock does not evaluate '$text' (full-text search)"
            how = "Run against a MongoDB server with a text index on run_start"
        elif self.text_refused:
            why = (f"this server cannot evaluate '$text' (full-text search): it refuses text "
                   f"indexes ({self.text_refused})")
            how = "Use a MongoDB server for text search"
        else:
            why = "'$text' (full-text search) needs a text index on run_start, which is missing"
            how = ("Create it with MongoStore.ensure_indexes(text=True) (needs write access) or "
                   "in the mongo shell: db.run_start.createIndex({'$**': 'text'})")
        return UnsupportedQuery(
            f"{self._label}: {why}. {how}, or search a field instead, e.g. "
            "db(plan_name='scan').",
            operator="$text",
            store=self._label,
        )
