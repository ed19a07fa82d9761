"""Collection rules for the package's own modules (pytest collects them for doctests).

``broker_v1/serve`` imports tiled's server (FastAPI, uvicorn) at module level; without the
``serve`` extra it is left out of collection instead of failing it.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if all(
    importlib.util.find_spec(name) is not None for name in ("fastapi", "uvicorn", "tiled")
) else ["broker_v1/serve/*"]
