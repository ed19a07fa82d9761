"""Small Sphinx helpers for broker_v1's docs.

``.. if-importable:: MODULE`` renders its content only when MODULE can be imported, and
otherwise a note saying the module is not part of this build.  The API reference uses it for
stores that are optional or still being written, so that ``sphinx-build -W`` does not fail on
an autodoc import error while the rest of the reference stays checked.

Docstrings inside a module often name a sibling object without its module, e.g.
``:class:`RunNotFound``` in ``broker_v1/stores/base.py``.  Python's domain looks such names up
only relative to the current module, so in nitpicky mode they would fail.  The
``missing-reference`` handler below resolves a bare name when exactly one documented
``broker_v1`` object has that name; an ambiguous or unknown name still fails the build.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


class IfImportable(SphinxDirective):
    """Parse the content only if the module named by the argument imports."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        try:
            importlib.import_module(module)
        except ImportError as err:
            para = nodes.paragraph(
                text=f"{module} is not available in this build of the documentation "
                f"({err}); its reference appears here once it is installed."
            )
            return [nodes.note("", para)]
        container = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, container)
        return list(container.children)


def resolve_bare_names(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``:class:`Name``` to the one documented ``broker_v1...Name``, if unique."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target or "." in target.lstrip("~"):
        return None
    target = target.lstrip("~")
    domain = env.get_domain("py")
    found = {
        name: obj
        for name, obj in domain.objects.items()
        if name.startswith("broker_v1.") and name.rsplit(".", 1)[-1] == target
        and not obj.aliased
    }
    if len(found) != 1:
        return None
    (name, obj), = found.items()
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node.get("refdoc", ""), obj.docname, obj.node_id,
                        contnode, name)


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("if-importable", IfImportable)
    app.connect("missing-reference", resolve_bare_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
