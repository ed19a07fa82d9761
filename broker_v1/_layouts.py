"""Translate every config layout users have into broker_v1's one config shape.

* databroker 0.x files: ``metadatastore:`` / ``assets:`` blocks naming a module and class;
* databroker 1.x intake catalog files: ``sources:`` entries with a bluesky driver, several
  per file (``csx.yml`` with ``raw`` and ``processed``);
* databroker-pack ``catalog.yml`` files (relative paths, root_map relative to the file);
* broker_v1's own layout (passed through).

Nothing falls back silently: a layout broker_v1 cannot serve is a ``ConfigError`` naming the
file, the key and what is supported.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

from .errors import ConfigError

__all__ = ["layout_of", "source_names", "translate"]

# Module names of databroker's (and its predecessors') Mongo classes.
_MONGO_METADATASTORES = {
    "databroker.headersource.mongo",
    "metadatastore.mds",
    "metadatastore.mongo",
}
_MONGO_ASSETS = {
    "databroker.assets.mongo",
    "filestore.fs",
    "filestore.mongo",
}
_FILE_METADATASTORES = {
    "databroker.headersource.sqlite": "a SQLite metadata store",
    "databroker.headersource.mongoquery": "a JSON-file metadata store (run_starts.json, ...)",
    "databroker.headersource.hdf5": "an HDF5 metadata store",
}
_READ_ONLY_CLASSES = {"MDSRO", "RegistryRO", "FileStoreRO"}

_MONGO_DRIVERS = {
    "bluesky-mongo-normalized-catalog",
    "databroker._drivers.mongo_normalized.BlueskyMongoCatalog",
}
_FILE_DRIVERS = {
    "bluesky-jsonl-catalog": ".jsonl",
    "databroker._drivers.jsonl.BlueskyJSONLCatalog": ".jsonl",
    "bluesky-msgpack-catalog": ".msgpack",
    "databroker._drivers.msgpack.BlueskyMsgpackCatalog": ".msgpack",
}


def layout_of(config: Mapping[str, Any]) -> str:
    """``'v0'``, ``'intake'`` or ``'broker_v1'``."""
    if "metadatastore" in config or "assets" in config:
        return "v0"
    if "sources" in config:
        return "intake"
    return "broker_v1"


def source_names(config: Mapping[str, Any]) -> list[str]:
    """The entries of an intake-style file (``[]`` for other layouts)."""
    if layout_of(config) != "intake" or not isinstance(config.get("sources"), Mapping):
        return []
    return list(config["sources"])


def _err(source: str | None, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source or 'config'}: {key}: {message}", source=source, key=key)


def _mongo_uri(block: Mapping[str, Any], key: str, source: str | None) -> str:
    if not isinstance(block, Mapping):
        raise _err(source, key, "must be a mapping with host, port and database.")
    if "uri" in block:
        if "host" in block or "port" in block:
            raise _err(source, key, "give either uri or host/port, not both.")
        uri = str(block["uri"])
        if "database" in block and not urlsplit(uri).path.strip("/"):
            uri = uri.rstrip("/") + "/" + str(block["database"])
        return uri
    if "database" not in block:
        raise _err(source, f"{key}.database", "is required (the MongoDB database name).")
    host = block.get("host", "localhost")
    port = block.get("port", 27017)
    auth = ""
    if block.get("mongo_user") and block.get("mongo_pwd"):
        auth = f"{quote_plus(str(block['mongo_user']))}:{quote_plus(str(block['mongo_pwd']))}@"
    uri = f"mongodb://{auth}{host}:{port}/{block['database']}"
    if block.get("authsource"):
        uri += f"?authSource={block['authsource']}"
    return uri


def _v0_block(config: Mapping[str, Any], key: str, source: str | None) -> Mapping[str, Any]:
    """The ``metadatastore`` or ``assets`` block of a databroker 0.x config."""
    block = config.get(key)
    if not isinstance(block, Mapping) or "module" not in block:
        raise _err(source, key, "must be a mapping with module, class and config.")
    return block


def _translate_v0(config: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    md = _v0_block(config, "metadatastore", source)
    assets = _v0_block(config, "assets", source)
    md_module, assets_module = str(md["module"]), str(assets["module"])
    if md_module in _FILE_METADATASTORES:
        raise _err(
            source,
            "metadatastore.module",
            f"{md_module!r} is {_FILE_METADATASTORES[md_module]}, which broker_v1 cannot open. "
            "Export the runs with databroker 0.13 to a directory of .jsonl files, then use "
            "store: {backend: files, path: DIR}.",
        )
    if md_module not in _MONGO_METADATASTORES:
        raise _err(
            source,
            "metadatastore.module",
            f"{md_module!r} is not a metadata store broker_v1 knows; supported: "
            + ", ".join(sorted(_MONGO_METADATASTORES)) + ".",
        )
    if assets_module not in _MONGO_ASSETS:
        raise _err(
            source,
            "assets.module",
            f"{assets_module!r} is not an asset registry broker_v1 knows; supported: "
            + ", ".join(sorted(_MONGO_ASSETS)) + ".",
        )
    md_config = md.get("config", {})
    store: dict[str, Any] = {
        "backend": "mongo",
        "uri": _mongo_uri(md_config, "metadatastore.config", source),
        "asset_uri": _mongo_uri(assets.get("config", {}), "assets.config", source),
    }
    if md.get("class") in _READ_ONLY_CLASSES or assets.get("class") in _READ_ONLY_CLASSES:
        store["read_only"] = True
    out: dict[str, Any] = {"store": store}
    if config.get("description") is not None:
        out["description"] = config["description"]
    timezone = md_config.get("timezone") if isinstance(md_config, Mapping) else None
    if timezone:
        out["timezone"] = timezone
    for key in ("handlers", "root_map", "transforms", "timezone", "api_version"):
        if key in config:
            out[key] = config[key]
    unknown = set(config) - {"description", "metadatastore", "assets", "handlers", "root_map",
                             "transforms", "timezone", "api_version", "event_sources"}
    if unknown:
        raise _err(source, sorted(unknown)[0], "is not a key of a databroker 0.x config.")
    if config.get("event_sources"):
        raise _err(source, "event_sources",
                   "extra event sources (e.g. the EPICS archiver) are not supported.")
    return out


def _handlers_from_registry(registry: Any, key: str, source: str | None) -> dict[str, Any]:
    if registry is None:
        return {}
    if not isinstance(registry, Mapping):
        raise _err(source, key, "must map specs to dotted class paths.")
    out = {}
    for spec, path in registry.items():
        if not isinstance(path, str) or "." not in path:
            raise _err(source, f"{key}.{spec}", f"must be a dotted class path, got {path!r}.")
        module, _, cls = path.rpartition(".")
        out[spec] = {"module": module, "class": cls}
    return out


def _file_store_path(paths: list[str], suffix: str, key: str, source: str | None) -> str:
    folders = set()
    for pattern in paths:
        if not pattern.endswith(suffix) and not glob.has_magic(pattern):
            folders.add(pattern.rstrip("/"))
            continue
        folders.add(os.path.dirname(pattern) or ".")
    if len(folders) != 1:
        raise _err(source, key,
                   f"the runs must be in one folder for a files store; found {sorted(folders)}.")
    folder = folders.pop()
    if glob.has_magic(folder):
        raise _err(source, key, f"wildcards in folder names ({folder!r}) are not supported.")
    return folder


def _translate_source(
    name: str, entry: Any, config: Mapping[str, Any], source: str | None
) -> dict[str, Any]:
    key = f"sources.{name}"
    if not isinstance(entry, Mapping) or "driver" not in entry:
        raise _err(source, key, "must be a mapping with a driver and args.")
    driver = str(entry["driver"])
    args = entry.get("args") or {}
    if not isinstance(args, Mapping):
        raise _err(source, f"{key}.args", "must be a mapping.")
    base = Path(source).parent if source else None
    out: dict[str, Any] = {}
    if driver in _MONGO_DRIVERS:
        for arg in ("metadatastore_db", "asset_registry_db"):
            if arg not in args:
                raise _err(source, f"{key}.args.{arg}", "is required (a mongodb:// URI).")
            if not urlsplit(str(args[arg])).path.strip("/"):
                raise _err(source, f"{key}.args.{arg}",
                           "the URI names no database. Did you forget to include a database?")
        out["store"] = {"backend": "mongo", "uri": str(args["metadatastore_db"]),
                        "asset_uri": str(args["asset_registry_db"])}
    elif driver in _FILE_DRIVERS:
        suffix = _FILE_DRIVERS[driver]
        metadata = entry.get("metadata") or {}
        relative = metadata.get("relative_paths") if isinstance(metadata, Mapping) else None
        paths: Any
        if relative and base is not None:
            # databroker-pack records paths relative to the catalog file; honour them.
            paths = [os.path.normpath(os.path.join(os.path.abspath(base), p))
                     if not os.path.isabs(p) else p for p in relative]
        else:
            paths = args.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not all(isinstance(p, str) for p in paths):
            raise _err(source, f"{key}.args.paths", "must be a glob or a list of globs.")
        if base is not None:
            paths = [p if os.path.isabs(p) else str(base / p) for p in paths]
        folder = _file_store_path(paths, suffix, f"{key}.args.paths", source)
        store: dict[str, Any] = {"backend": "files", "path": folder}
        if suffix == ".msgpack" or relative:
            store["read_only"] = True  # packed catalogs and msgpack runs are read-only
        out["store"] = store
    else:
        raise _err(
            source,
            f"{key}.driver",
            f"{driver!r} is not a driver broker_v1 can serve; supported: "
            + ", ".join(sorted(_MONGO_DRIVERS | set(_FILE_DRIVERS))) + ".",
        )
    handlers = _handlers_from_registry(args.get("handler_registry"),
                                       f"{key}.args.handler_registry", source)
    if handlers:
        out["handlers"] = handlers
    root_map = args.get("root_map")
    if root_map:
        if not isinstance(root_map, Mapping):
            raise _err(source, f"{key}.args.root_map", "must be a mapping.")
        out["root_map"] = dict(root_map)
    if args.get("transforms"):
        out["transforms"] = dict(args["transforms"])
    description = entry.get("description") or config.get("description")
    if description:
        out["description"] = str(description)
    for extra in ("timezone",):
        if extra in config:
            out[extra] = config[extra]
    return out


def translate(
    config: Mapping[str, Any], *, source: str | None = None, entry: str | None = None
) -> dict[str, Any]:
    """broker_v1's config shape for any supported layout.

    Parameters
    ----------
    config
        The parsed file or dict.
    source
        The file it came from: names it in errors and anchors relative paths.
    entry
        For intake files with several sources, which one (a file with one source needs none).

    Raises
    ------
    ConfigError
        An unsupported layout, driver or module, or an ambiguous intake file.
    """
    layout = layout_of(config)
    if layout == "v0":
        out = _translate_v0(config, source)
    elif layout == "intake":
        sources = config.get("sources")
        if not isinstance(sources, Mapping) or not sources:
            raise _err(source, "sources", "must map entry names to driver/args mappings.")
        if entry is None:
            if len(sources) != 1:
                raise _err(source, "sources",
                           f"holds several catalogs ({', '.join(sources)}); choose one, e.g. "
                           f"Broker.named('NAME.{next(iter(sources))}').")
            entry = next(iter(sources))
        if entry not in sources:
            raise _err(source, "sources",
                       f"has no entry {entry!r} (entries: {', '.join(sources)}).")
        out = _translate_source(entry, sources[entry], config, source)
    else:
        out = dict(config)
    return _anchor_root_map(out, source)


def _anchor_root_map(config: dict[str, Any], source: str | None) -> dict[str, Any]:
    root_map = config.get("root_map")
    if not isinstance(root_map, Mapping):
        return config
    anchored = {}
    for old, new in root_map.items():
        if isinstance(new, str) and not os.path.isabs(new):
            if source is None:
                raise _err(source, f"root_map.{old}",
                           f"{new!r} is relative, but this config has no file to be relative "
                           "to; give an absolute path.")
            new = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(source)), new))
        anchored[old] = new
    return {**config, "root_map": anchored}
