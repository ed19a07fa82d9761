"""``broker_v1.catalog``: every configured broker, discovered lazily.

``list(catalog)`` names the config files on the search path; ``catalog['csx']`` opens one
(``Broker.named('csx').v2``).  A databroker 1.x intake file with several sources is a nested
catalog: ``catalog['csx']['raw']``, ``catalog['csx', 'raw']``, ``catalog['csx.raw']`` and
``catalog.csx.raw`` all reach the same runs.  Nothing is opened until it is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .._layouts import source_names
from ..config import list_configs, lookup_config

__all__ = ["ConfigCatalog", "EntryCatalog"]


class _Navigable(Mapping[str, Any]):
    """Shared navigation: tuple and dotted keys, attribute access, tab completion."""

    def _open(self, name: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            node: Any = self
            for part in key:
                node = node[part]
            return node
        if not isinstance(key, str):
            raise KeyError(key)
        if key in self._names():
            return self._open(key)
        if "." in key:
            head, _, rest = key.partition(".")
            if head in self._names():
                return self._open(head)[rest]
        available = ", ".join(self._names()) or "none"
        raise KeyError(f"No catalog named {key!r}; available: {available}.")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, key: object) -> bool:
        return key in self._names()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"No catalog named {name!r}.") from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in self._names() if n.isidentifier()})

    def _ipython_key_completions_(self) -> list[str]:
        return self._names()

    def __call__(self, **kwargs: Any) -> Any:
        return self

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


class EntryCatalog(_Navigable):
    """The catalogs of one intake file with several sources (``catalog['csx']``)."""

    def __init__(self, name: str, entries: list[str]) -> None:
        self.name = name
        self._entries = entries

    def _names(self) -> list[str]:
        return list(self._entries)

    def _open(self, entry: str) -> Any:
        from ..broker import Broker

        return Broker.named(f"{self.name}.{entry}").v2

    def __repr__(self) -> str:
        return f"<Catalog {self.name!r} with entries {self._entries}>"


class ConfigCatalog(_Navigable):
    """Every broker configured on the search path (``broker_v1.catalog``)."""

    def _names(self) -> list[str]:
        return list_configs()

    def _open(self, name: str) -> Any:
        from ..broker import Broker

        entries = source_names(lookup_config(name))
        if len(entries) > 1:
            return EntryCatalog(name, entries)
        return Broker.named(name).v2

    def __repr__(self) -> str:
        return f"<Catalog of configured brokers: {', '.join(self._names()) or 'none'}>"
