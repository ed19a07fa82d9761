"""No import circle in broker_v1: every import counts, also under TYPE_CHECKING and in functions.

A circle means two modules know each other; the layering is store -> documents/pages ->
read context -> Header / v2 -> Broker, so each module depends only on the ones before it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "broker_v1"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of broker_v1 it imports}``, from every import statement."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                for alias in node.names:
                    child = f"{module}.{alias.name}"
                    targets.add(child if child in paths else module)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def test_the_checker_finds_a_circle() -> None:
    """The checker itself sees a circle, through a package and a submodule."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_relative_and_typing_imports() -> None:
    """Relative, TYPE_CHECKING and function-level imports are all edges."""
    graph = import_graph()
    assert "broker_v1.header" in graph["broker_v1.broker"]
    assert "broker_v1._reading" in graph["broker_v1.v2.stream"]
    assert "broker_v1.filling" in graph["broker_v1._reading"]  # under TYPE_CHECKING
    assert "broker_v1.replay" in graph["broker_v1._reading"]  # inside a function


def test_broker_v1_has_no_import_circle() -> None:
    """Header, v2 and copying never import the Broker; nothing imports back up."""
    assert circles(import_graph()) == []
