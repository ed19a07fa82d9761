"""The registry of store backends.

Built-in backends are listed here by dotted path and imported only when first used, so a
source checkout works without installing entry points.  Third-party packages add backends
through the ``broker_v1.stores`` entry-point group; they cannot silently replace a built-in.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError, MissingDependency, UnknownStoreKind
from .base import DEFAULT_SORT, DocumentStore

__all__ = [
    "DEFAULT_SORT",
    "DocumentStore",
    "available_stores",
    "get_store_class",
    "register_store",
    "store_from_config",
]

ENTRY_POINT_GROUP = "broker_v1.stores"

# kind -> ("module:Class", install hint or None)
_BUILTIN: dict[str, tuple[str, str | None]] = {
    "memory": ("broker_v1.stores.memory:MemoryStore", None),
    "files": ("broker_v1.stores.files:FileStore", None),
    "mongo": ("broker_v1.stores.mongo:MongoStore", "pip install pymongo"),
    "tiled": ("broker_v1.stores.tiled:TiledStore", 'pip install "broker_v1[tiled]"'),
}
_registered: dict[str, Any] = {}
_loaded: dict[str, type[DocumentStore]] = {}


def _entry_point_kinds() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_stores() -> list[str]:
    """Sorted names of every backend: built-in, registered and from entry points."""
    return sorted(set(_BUILTIN) | set(_registered) | set(_entry_point_kinds()))


def register_store(
    kind: str, cls_or_path: type[DocumentStore] | str, *, replace: bool = False
) -> None:
    """Make a store class available under ``kind`` (a class or a ``"module:Class"`` path).

    Raises
    ------
    ValueError
        ``kind`` is already taken and ``replace`` is False.
    """
    if not replace and (kind in _BUILTIN or kind in _registered):
        current = _registered.get(kind) or _BUILTIN[kind][0]
        raise ValueError(
            f"Store kind {kind!r} is already registered ({current!r}); pass replace=True to "
            f"replace it with {cls_or_path!r}."
        )
    _registered[kind] = cls_or_path
    _loaded.pop(kind, None)


def _import(path: str, kind: str, hint: str | None) -> type[DocumentStore]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if module_name.startswith("broker_v1.") and err.name and err.name.startswith("broker_v1"):
            raise UnknownStoreKind(
                f"The {kind!r} store is not available in this version of broker_v1 "
                f"(module {module_name} is missing). Available: "
                f"{', '.join(k for k in available_stores() if k != kind)}."
            ) from err
        raise MissingDependency(
            f"The {kind!r} store needs {err.name}, which is not installed."
            + (f" Install it with: {hint}" if hint else "")
        ) from err
    return getattr(module, attr)  # type: ignore[no-any-return]


def _importable() -> list[str]:
    out = []
    for kind in available_stores():
        try:
            get_store_class(kind)
        except (UnknownStoreKind, MissingDependency):
            continue
        out.append(kind)
    return out


def get_store_class(kind: str) -> type[DocumentStore]:
    """The store class registered under ``kind``, imported on first use.

    Raises
    ------
    UnknownStoreKind
        No such backend; the message lists the known ones and a close match.
    MissingDependency
        The backend's package is not installed; the message says how to install it.
    """
    if kind in _loaded:
        return _loaded[kind]
    if kind in _registered:
        target = _registered[kind]
        cls = _import(target, kind, None) if isinstance(target, str) else target
    elif kind in _BUILTIN:
        cls = _import(*_BUILTIN[kind][:1], kind, _BUILTIN[kind][1])
    else:
        eps = _entry_point_kinds()
        if kind not in eps:
            known = available_stores()
            close = difflib.get_close_matches(str(kind), known, n=1)
            raise UnknownStoreKind(
                f"{kind!r} is not a known store backend (known: {', '.join(known)})."
                + (f" Did you mean {close[0]!r}?" if close else ""),
                key="store.backend",
            )
        cls = eps[kind].load()
    if not (isinstance(cls, type) and issubclass(cls, DocumentStore)):
        raise ConfigError(f"Store kind {kind!r} resolves to {cls!r}, which is not a DocumentStore.")
    _loaded[kind] = cls
    return cls


def store_from_config(section: Mapping[str, Any], *, source: str | None = None) -> DocumentStore:
    """Build a store from a config's ``store:`` section.

    Parameters
    ----------
    section
        ``{"backend": kind, **options}``.
    source
        Where the config came from, for error messages.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"{source or 'config'}: 'store' must be a mapping with a 'backend' key, "
            f"got {type(section).__name__}.",
            source=source,
            key="store",
        )
    options = dict(section)
    kind = options.pop("backend", None)
    if kind is None or not isinstance(kind, str):
        raise ConfigError(
            f"{source or 'config'}: store.backend is "
            + ("missing" if kind is None else f"{kind!r}, not a name")
            + f"; use one of {', '.join(available_stores())}.",
            source=source,
            key="store.backend",
        )
    try:
        cls = get_store_class(kind)
    except UnknownStoreKind as err:
        raise UnknownStoreKind(f"{source or 'config'}: store.backend {err}", source=source,
                               key="store.backend") from err
    return cls.from_config(options, source=source)
