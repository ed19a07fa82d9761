"""The raw documents that summarise one run, shared by the Header and the read paths."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["RunDocs"]


class RunDocs(NamedTuple):
    """A run's start, stop (``None`` if it has none) and descriptors (ascending ``time``).

    Plain dicts as the store returned them, before any ``prepare_hook``; consumers must not
    mutate them (the Header caches them).
    """

    start: dict[str, Any]
    stop: dict[str, Any] | None
    descriptors: list[dict[str, Any]]
