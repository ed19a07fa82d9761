"""Recording runs into a tiled catalog with bluesky-tiled-plugins' TiledWriter machinery.

The store hands every checked document to a :class:`RunRecorder`, which gives each open run
the pair of callbacks ``TiledWriter`` builds for a run: its ``RunNormalizer`` (documents
brought to the current schema; legacy resources and datums turned into stream resources)
feeding its ``_RunWriter`` (containers, the ``internal`` table, zarr arrays, external data
sources, the stop in the run's metadata).  The pair is built here rather than through
``TiledWriter``'s run router so that the store can

* flush the rows the writer batches before the store reads them back (TiledWriter itself
  writes them when a batch fills and at the stop), and
* know which run each descriptor and resource belongs to.

What the caller may write is asked of the server before the first write (see
:meth:`RunRecorder.check_writable`), so a key that may only read is refused before anything
is sent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...errors import DuplicateDocument, InvalidDocument, MissingDependency, ReadOnlyStore
from ._client import API_KEY_ENV, TiledConnection

__all__ = ["DEFAULT_BATCH_SIZE", "RunRecorder", "layout_descriptor"]

Doc = dict[str, Any]

#: Event rows kept before they are sent: 1 means each insert's rows are sent before it
#: returns, so a refused row is reported by the insert that brought it (TiledWriter's own
#: default, for bulk writing, is 10,000).
DEFAULT_BATCH_SIZE = 1

#: The batch given to TiledWriter's run writer when this module decides when rows are sent.
_NEVER = 2**62

#: Scopes a tiled key needs to record runs (containers, tables, arrays, metadata updates).
WRITE_SCOPES = frozenset({"create:node", "write:metadata", "write:data"})

_INSTALL_HINT = 'pip install "broker_v1[tiled]"'


def _plugins() -> Any:
    """bluesky-tiled-plugins' writing module, or :class:`MissingDependency`."""
    try:
        from bluesky_tiled_plugins.writing import tiled_writer
    except ImportError as err:
        raise MissingDependency(
            f"Writing to a tiled server needs bluesky-tiled-plugins ({err}). Install it with: "
            f"{_INSTALL_HINT}"
        ) from err
    return tiled_writer


def layout_descriptor(descriptor: Mapping[str, Any]) -> Doc:
    """The descriptor as the SQL layout gives it back after TiledWriter has written it.

    TiledWriter's normalizer adds ``dtype_numpy`` and ``object_name`` to data keys, the
    stream's metadata keeps the descriptor without ``name``, ``object_keys`` and
    ``run_start`` (with large numbers clamped) and the reader rebuilds those.  The insert
    path compares a re-inserted descriptor with the stored one in this form.
    """
    plugins = _plugins()
    import jsonschema
    from bluesky_tiled_plugins.exporters import build_descriptor_docs
    from bluesky_tiled_plugins.utils import truncate_json_overflow

    emitted: list[Doc] = []
    normalizer = plugins.RunNormalizer()
    normalizer.subscribe(lambda name, doc: emitted.append(doc), "descriptor")
    try:
        normalizer("descriptor", copy.deepcopy(dict(descriptor)))
        doc = emitted[0]
        metadata = truncate_json_overflow(
            {k: v for k, v in doc.items() if k not in {"name", "object_keys", "run_start"}})
        return dict(build_descriptor_docs(metadata, doc["name"],
                                          run_start_uid=doc["run_start"])[0])
    except jsonschema.ValidationError as err:
        field = ".".join(str(p) for p in err.absolute_path) or "descriptor"
        raise InvalidDocument(
            f"TiledWriter would refuse the descriptor {descriptor.get('uid', '')!s}: "
            f"{err.message} (at {field}); it checks every document against event-model's "
            "schema. Nothing was written.",
            name="descriptor", uid=descriptor.get("uid"), field=field,
        ) from err


class _OpenRun:
    """The callbacks recording one run, and what it holds so far."""

    def __init__(self, plugins: Any, client: Any, batch_size: int) -> None:
        # Write-through (batch 1): the rows of one insert are sent together, after it.
        self.write_through = batch_size == 1
        self.writer = plugins._RunWriter(client, batch_size=_NEVER if self.write_through
                                         else batch_size)
        self.normalizer = plugins.RunNormalizer()
        self.normalizer.subscribe(self.writer)

    def __call__(self, name: str, doc: Doc) -> None:
        self.normalizer(name, doc)

    def pending(self) -> bool:
        return any(self.writer._internal_data_cache.values())

    def flush(self) -> None:
        """Send the batched event rows (what ``_RunWriter.stop`` does first).

        Rows the server's table or Arrow refuses are dropped (never retried at every later
        read) and reported as :class:`InvalidDocument`.
        """
        import pyarrow

        writer = self.writer
        for stream, rows in writer._internal_data_cache.items():
            if not rows:
                continue
            try:
                self._check_types(stream, rows)
                writer._write_internal_data(rows, desc_node=writer._desc_nodes[stream])
            except (pyarrow.ArrowException, TypeError, ValueError) as err:
                seq = [row.get("seq_num") for row in rows]
                raise InvalidDocument(
                    f"The events with seq_num {seq[0]}..{seq[-1]} of stream {stream!r} could "
                    f"not be stored in the stream's table: {err}. The SQL layout keeps one "
                    "type per column (and numbers a double holds exactly). Nothing of these "
                    "events was written.",
                    name="event_page", field="data",
                ) from err
            finally:
                rows.clear()


    def _check_types(self, stream: str, rows: list[Doc]) -> None:
        """Raise ``ArrowInvalid`` here when the stream's table cannot hold ``rows`` exactly
        (the server answers such an append with a 500, which TiledWriter retries)."""
        import pyarrow

        table_client = self.writer._internal_tables.get(stream)
        if table_client is None:
            return  # the first rows make the table: their own types
        schema = table_client.structure().arrow_schema_decoded
        new = pyarrow.Table.from_pylist(rows)
        for name in schema.names:
            if name in new.column_names:
                # A safe cast refuses precision loss (2**53 + 1 into a double) and wrong kinds.
                new.column(name).cast(schema.field(name).type, safe=True)


class RunRecorder:
    """The runs a store is recording into its catalog, one writer per open run.

    Parameters
    ----------
    conn
        The store's connection (its catalog client is the parent of every run).
    label
        The store's description, for messages.
    batch_size
        Event rows kept per stream before they are sent.
    """

    def __init__(self, conn: TiledConnection, *, label: str,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.conn = conn
        self.label = label
        self.batch_size = batch_size
        self._open: dict[str, _OpenRun] = {}
        self._descriptor_runs: dict[str, str] = {}
        self._resource_runs: dict[str, str] = {}
        self._writable: bool | None = None

    # ------------------------------------------------------------------ permission
    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyStore` unless the server lets this caller record runs.

        Asked once per store, before the first write: in single-user mode (no
        authentication providers) the single key may write and an anonymous caller may only
        read; with authentication providers, the scopes of the key in use
        (``/auth/apikey``) or of the logged-in principal (``/auth/whoami``) must include
        :data:`WRITE_SCOPES`.
        """
        if self._writable:
            return
        catalog = self.conn.catalog()
        if self.conn.layout == "mongo":
            raise ReadOnlyStore(
                f"The tiled server at {self.conn.redacted} serves databroker's Mongo layout "
                "through databroker 2's MongoAdapter, which cannot record runs. Write into that "
                "MongoDB database with broker_v1's mongo store (backend: mongo) instead. "
                "Nothing was sent.",
                store=self.label,
            )
        context = catalog.context
        with self.conn.errors("ask the server what this key may do"):
            scopes = self._scopes(context)
        missing = sorted(WRITE_SCOPES - scopes) if scopes is not None else []
        if scopes is None:
            reason = ("it answers anonymous callers with read access only and no API key was "
                      f"given. Set store.api_key in the config or the {API_KEY_ENV} "
                      "environment variable to a key that may write")
        elif missing:
            reason = (f"the API key in use lacks the scopes {', '.join(missing)}. Ask the "
                      "server's administrators for a key with them")
        else:
            self._writable = True
            return
        raise ReadOnlyStore(
            f"The tiled server at {self.conn.redacted} would refuse to record runs: {reason}. "
            "Nothing was sent.",
            store=self.label,
        )

    @staticmethod
    def _scopes(context: Any) -> frozenset[str] | None:
        """The caller's scopes; ``None`` for an anonymous caller (read-only by tiled's rules)."""
        from tiled.client.utils import handle_error

        providers = context.server_info.authentication.providers
        if not providers:
            # Single-user mode: the one key has every scope; without it, public scopes only.
            if context.api_key:
                return WRITE_SCOPES
            return None
        client = context.http_client
        if context.api_key:
            info = handle_error(client.get(f"{context.api_uri}auth/apikey")).json()
            scopes = set(info.get("scopes", []))
            if "inherit" not in scopes:
                return frozenset(scopes)
        who = handle_error(client.get(f"{context.api_uri}auth/whoami")).json()
        if not who:
            return None
        return frozenset(s for role in who.get("roles", []) for s in role.get("scopes", []))

    # ------------------------------------------------------------------ routing
    def is_open(self, run_start_uid: str) -> bool:
        """Whether this recorder started the run and has not stopped it."""
        return run_start_uid in self._open

    def run_of_descriptor(self, descriptor_uid: str) -> str | None:
        """The run of a descriptor this recorder wrote, or None."""
        return self._descriptor_runs.get(descriptor_uid)

    def pending(self) -> bool:
        """Whether some event rows are batched and not on the server yet."""
        return any(run.pending() for run in self._open.values())

    def flush(self) -> None:
        """Send every batched event row, so a read sees it."""
        for uid, run in list(self._open.items()):
            if run.pending():
                with self.conn.errors(f"write the events of run {uid}"):
                    run.flush()

    def _open_run(self, name: str, run_start_uid: str, uid: str) -> _OpenRun:
        run = self._open.get(run_start_uid)
        if run is None:
            raise InvalidDocument(
                f"{self.label} cannot add the {name} {uid!r} to run {run_start_uid}: TiledWriter "
                "records a run from its start to its stop in one writer, and this store did "
                "not start that run or has already stopped it. Nothing was written; insert the "
                "whole run, from its start document, through one store.",
                name=name, uid=uid, field="run_start",
            )
        return run

    # ------------------------------------------------------------------ writing
    def write(self, name: str, doc: Doc) -> None:
        """Record one checked document (``start``, ``descriptor``, ``event_page``,
        ``resource``, ``datum_page`` or ``stop``).

        Raises
        ------
        InvalidDocument
            TiledWriter validates every document against event-model's JSON schema (also
            those inserted with ``trusted=True``), and the stream's table refuses rows of
            another type.
        """
        import jsonschema

        try:
            getattr(self, "_" + name)(doc)
        except jsonschema.ValidationError as err:
            field = ".".join(str(p) for p in err.absolute_path) or name
            raise InvalidDocument(
                f"TiledWriter refused the {name} {doc.get('uid', '')!s}: {err.message} (at "
                f"{field}); it checks every document against event-model's schema. Nothing "
                "was written.",
                name=name, uid=doc.get("uid"), field=field,
            ) from err

    def _start(self, doc: Doc) -> None:
        import httpx

        plugins = _plugins()
        self.check_writable()
        client = self.conn.catalog().include_data_sources()
        run = _OpenRun(plugins, client, self.batch_size)
        try:
            with self.conn.errors(f"create run {doc['uid']}"):
                try:
                    run("start", doc)
                except httpx.HTTPStatusError as err:
                    if err.response.status_code != 409:
                        raise
                    raise DuplicateDocument(
                        f"A start document with uid {doc['uid']} is already in {self.label} "
                        "(the server answered 409 Conflict). Documents are immutable; write a "
                        "new one with a new uid instead.",
                        name="start", uid=doc["uid"], store=self.label,
                    ) from err
        except BaseException:
            run.writer.root_node = None
            raise
        self._open[doc["uid"]] = run

    def _descriptor(self, doc: Doc) -> None:
        run = self._open_run("descriptor", doc["run_start"], doc["uid"])
        with self.conn.errors(f"write descriptor {doc['uid']}"):
            run("descriptor", doc)
        self._descriptor_runs[doc["uid"]] = doc["run_start"]

    def _event_page(self, page: Doc) -> None:
        run_uid = self._descriptor_runs.get(page["descriptor"], "")
        run = self._open_run("event_page", run_uid, page["uid"][0])
        with self.conn.errors(f"write events of run {run_uid}"):
            run("event_page", page)
            if run.write_through:
                run.flush()

    def _resource(self, doc: Doc) -> None:
        run_uid = doc.get("run_start")
        if run_uid is None:
            if len(self._open) != 1:
                raise InvalidDocument(
                    f"The resource {doc['uid']!r} names no run_start and {len(self._open)} "
                    f"runs are being recorded into {self.label}, so it cannot be given to "
                    "the right run's writer. Nothing was written; add run_start to it.",
                    name="resource", uid=doc["uid"], field="run_start",
                )
            run_uid = next(iter(self._open))  # legacy resources name no run: the open one
        run = self._open_run("resource", run_uid, doc["uid"])
        run("resource", doc)
        self._resource_runs[doc["uid"]] = run_uid or ""

    def _datum_page(self, page: Doc) -> None:
        run_uid = self._resource_runs.get(page["resource"], "")
        run = self._open_run("datum_page", run_uid, page["datum_id"][0])
        run("datum_page", page)

    def _stop(self, doc: Doc) -> None:
        run_uid = doc["run_start"]
        run = self._open_run("stop", run_uid, doc["uid"])
        with self.conn.errors(f"write the stop of run {run_uid}"):
            run("stop", doc)
        self.forget(run_uid)

    def forget(self, run_start_uid: str) -> None:
        """Stop routing documents to a run (after its stop)."""
        self._open.pop(run_start_uid, None)
        self._descriptor_runs = {d: r for d, r in self._descriptor_runs.items()
                                 if r != run_start_uid}
        self._resource_runs = {d: r for d, r in self._resource_runs.items()
                               if r != run_start_uid}

    def close(self) -> None:
        """Send batched rows of open runs, then forget them (a later insert must restart)."""
        try:
            self.flush()
        finally:
            self._open.clear()
            self._descriptor_runs.clear()
            self._resource_runs.clear()
