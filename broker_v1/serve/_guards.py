"""Bad searches answered with 400 and a message, where tiled alone would ignore or crash.

Two gaps of tiled's server (0.2.20) that matter for a catalog of runs:

* A ``filter[NAME]...`` parameter whose NAME no query type is registered under is dropped
  by FastAPI, so the search silently matches every run.  :func:`refuse_unknown_filters`
  answers 400 naming the filter and the known ones.
* A filter with a missing or malformed parameter makes the query type's ``decode`` raise
  ``TypeError``/``ValueError``, which tiled turns into a bare 500.  :func:`safe_query_registry`
  registers every query type under its own name again, with a ``decode`` that turns those
  into tiled's ``QueryValueError`` (a 400 with the message).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from tiled.queries import QueryValueError
from tiled.query_registration import QueryRegistry, default_query_registry

__all__ = ["refuse_unknown_filters", "safe_query_registry"]

_FILTER = re.compile(r"filter\[([^\]]*)\]")


def _safe(name: str, query_type: type[Any]) -> type[Any]:
    base_decode = query_type.decode

    def decode(cls: type[Any], /, **parameters: Any) -> Any:
        try:
            return base_decode(**parameters)
        except QueryValueError:
            raise
        except (TypeError, ValueError, KeyError) as err:
            raise QueryValueError(
                f"filter[{name}] is malformed: {err}. Its parameters are "
                f"{sorted(parameters)}; see the query's fields in tiled's documentation.") from err

    # A subclass, so translations registered for the query type still apply (they are
    # looked up along the class hierarchy).
    return type(query_type.__name__, (query_type,), {"decode": classmethod(decode),
                                                     "__module__": query_type.__module__})


def safe_query_registry() -> QueryRegistry:
    """Every query type tiled knows now, decoded so that a malformed filter is a 400."""
    registry = QueryRegistry()
    for name, query_type in default_query_registry.name_to_query_type.items():
        registry.register(name=name)(_safe(name, query_type))
    return registry


def refuse_unknown_filters(app: Any, registry: QueryRegistry) -> None:
    """Answer 400 to a request with a ``filter[NAME]`` no registered query type has."""
    from starlette.responses import JSONResponse

    known = set(registry.name_to_query_type)

    async def unknown_filters(request: Any, call_next: Any) -> Any:
        for key, _ in parse_qsl(request.url.query, keep_blank_values=True):
            found = _FILTER.match(key)
            if found and found.group(1) not in known:
                return JSONResponse(status_code=400, content={"detail": (
                    f"Unknown filter {found.group(1)!r} (parameter {key!r}): this server "
                    f"would ignore it. Known filters: {', '.join(sorted(known))}.")})
        return await call_next(request)

    app.middleware("http")(unknown_filters)
