"""Sphinx configuration for broker_v1's documentation.

Build (warnings are errors, every cross-reference must resolve)::

    python -m sphinx -W -n -b html docs docs/_build/html

The examples in the pages are doctests; ``tests/test_docs.py`` runs them and this build.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the broker_v1 checkout being documented
sys.path.insert(0, os.path.join(HERE, "_ext"))

import broker_v1  # noqa: E402

project = "broker_v1"
author = "the broker_v1 developers"
copyright = "the broker_v1 developers"  # noqa: A001 - Sphinx's name
release = broker_v1.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_click",
    "brokerdocs",
]

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_theme = "alabaster"
html_title = f"broker_v1 {release}"
html_theme_options = {"page_width": "1160px", "sidebar_width": "230px"}
pygments_style = "sphinx"
# "default": Python highlighting that falls back to none, silently, for literal blocks in
# docstrings that are not Python (directory layouts, YAML).
highlight_language = "default"

# --- autodoc / numpydoc ---------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- nitpicky mode (-n) ---------------------------------------------------------------
# Every reference to broker_v1's own objects must resolve.  References into other projects
# (type hints naming pandas, xarray, numpy, collections.abc, ...) cannot, because the build
# runs without network access and so without intersphinx inventories; they are ignored here
# by module name, nothing else is.
nitpick_ignore_regex = [
    (r"py:.*", r"(pandas|pd|xarray|numpy|np|dask|event_model|doct|click|sqlite3|jsonschema)"
               r"(\..*)?"),
    (r"py:.*", r"(abc|collections\.abc|typing|types|os|pathlib|zoneinfo|datetime|threading)\..*"),
    # Private objects (any dotted component starting with "_") are not part of the documented
    # API; they show up as base classes, return types, or in docstrings explaining a design.
    (r"py:.*", r"(\w+\.)*_\w+(\.\w+)*"),
    (r"py:.*", r"(Mapping|MutableMapping|Sequence|Iterable|Iterator|Callable|Path|PathLike"
               r"|ZoneInfo|Any|NamedTuple|TypeVar|NoReturn|ClassVar|Protocol|Doc|Sort"
               r"|PrepareHook)"),
]

# numpydoc loads autosummary; nothing here uses autosummary stubs, and letting it scan the
# pages would import optional modules outside the ``if-importable`` guard.
autosummary_generate = False

# Command lines (``--since``) must stay as typed: no en dashes or curly quotes.
smartquotes = False
