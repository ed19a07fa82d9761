"""What the commands share: :class:`CLIError`, NAME -> Broker, query terms and run keys."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunNotFound

if TYPE_CHECKING:
    from ..broker import Broker

URI_SCHEMES = ("mongodb://", "mongodb+srv://", "mongomock://")
#: NAMEs that are tiled servers (the API key comes from TILED_API_KEY).
TILED_SCHEMES = ("http://", "https://")


class CLIError(Exception):
    """An error the CLI reports as one line (exit status 1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- opening stores
def default_store_path() -> Path:
    """The per-user files store the demo (and ``Broker()`` without config) records into."""
    from ..config import default_store_path as path

    return path()


def _looks_like_path(name: str) -> bool:
    return (os.sep in name or (os.altsep is not None and os.altsep in name)
            or name.startswith((".", "~")))


def _files_broker(path: str, *, read_only: bool) -> Broker:
    from ..broker import Broker
    from ..stores import store_from_config

    full = os.path.abspath(os.path.expanduser(path))
    if read_only and not os.path.isdir(full):
        raise CLIError(f"{full} is not a directory, so it cannot be read as a files store.")
    store = store_from_config({"backend": "files", "path": full, "read_only": read_only})
    return Broker(store, name=path)


def open_broker(name: str, *, read_only: bool = True) -> Broker:
    """The Broker a CLI NAME argument designates.

    Parameters
    ----------
    name
        ``temp``; a ``mongodb://`` / ``mongodb+srv://`` / ``mongomock://`` URI; an
        ``http(s)://`` URI of a tiled server (its API key from ``TILED_API_KEY``); a path (it has a
        path separator or starts with ``.`` or ``~``: a files store); else a config name, or,
        if no config has that name, a directory of that name.
    read_only
        Open URIs and directories read-only (a config's own ``read_only`` always applies).
        A read-only directory must exist; a writable one is created.
    """
    from ..broker import Broker
    from ..config import ConfigNotFound, config_search_path

    if name == "temp":
        return Broker.named("temp")
    if name.startswith(URI_SCHEMES + TILED_SCHEMES):
        from ..stores import get_store_class

        backend = "tiled" if name.startswith(TILED_SCHEMES) else "mongo"
        options: dict[str, Any] = {"uri": name}
        if read_only:
            options["read_only"] = True
        return Broker(get_store_class(backend).from_config(options, source=name), name=name)
    if _looks_like_path(name):
        return _files_broker(name, read_only=read_only)
    try:
        db = Broker.named(name)
        # A config with api_version: 2 opens a v2 catalog; the CLI works on its v1 face.
        return db if isinstance(db, Broker) else db.v1
    except ConfigNotFound:
        if os.path.isdir(name):
            return _files_broker(name, read_only=read_only)
        n = len(config_search_path())
        raise CLIError(
            f"{name!r} is neither a config (searched {n} folders; see 'broker-v1 config "
            "paths' and 'broker-v1 config list'), nor a directory, nor a mongodb:// or "
            "http(s):// (tiled) URI. "
            f"For a directory in the current folder write ./{name}."
        ) from None


# --------------------------------------------------------------------------- query terms
_INT = re.compile(r"[+-]?\d+")


def parse_value(text: str) -> Any:
    """A query value typed as the shell cannot: int, float, true/false, null, JSON, else str.

    ``5`` → 5, ``2.5`` → 2.5, ``true`` → True, ``null`` → None, ``{"$gt": 5}`` and ``[1, 2]``
    → parsed JSON, anything else the string itself (``"5"`` in JSON quotes: the string 5).
    """
    if _INT.fullmatch(text):
        return int(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value == value and text.lower() not in ("inf", "-inf", "+inf", "infinity"):
            return value
    if text[:1] in ("{", "[", '"'):
        try:
            return json.loads(text)
        except ValueError as err:
            raise CLIError(f"{text!r} looks like JSON but does not parse: {err}.") from None
    return text


def parse_query_terms(terms: Iterable[str]) -> dict[str, Any]:
    """``["plan_name=scan", "scan_id=5"]`` → ``{"plan_name": "scan", "scan_id": 5}``.

    Parameters
    ----------
    terms
        ``key=value`` strings; each value is typed by :func:`parse_value`.

    Raises
    ------
    CLIError
        A term is not ``key=value``, or its value looks like JSON but does not parse.
    """
    out: dict[str, Any] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise CLIError(
                f"query term {term!r} is not key=value (e.g. plan_name=scan, scan_id=5, "
                "sample.name=Si, 'num_points={\"$gt\": 10}')."
            )
        out[key] = parse_value(value)
    return out


def _query(db: Broker, terms: Iterable[str], since: str | None, until: str | None
           ) -> dict[str, Any]:
    kwargs = parse_query_terms(terms)
    for key in ("since", "until"):
        if key in kwargs:
            raise CLIError(f"use --{key} instead of the query term {key}=...")
    if since is not None:
        kwargs["since"] = since
    if until is not None:
        kwargs["until"] = until
    return dict(db(**kwargs).query)


def _key(text: str) -> Any:
    # As db[...]: digits are a scan_id, -N the N-th most recent, anything else a uid (prefix).
    return int(text) if _INT.fullmatch(text) else text


def _header(db: Broker, key: str) -> Any:
    try:
        header = db[_key(key)]
    except RunNotFound:
        # Digits are a scan_id first; a uid prefix copied from `ls` may be all digits too.
        if not key.isdigit():
            raise
        try:
            header = db[key]
        except RunNotFound:
            raise RunNotFound(f"No run with scan_id {key} or uid starting {key!r} in "
                              f"{db.store.describe()}.", key=key,
                              store=db.store.describe()) from None
    if isinstance(header, list):  # pragma: no cover - _key never makes a multi-key
        raise CLIError("KEY must name one run.")
    return header


def _plain_hook(name: str, doc: Any) -> Any:
    return doc
