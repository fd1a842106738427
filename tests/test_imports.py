"""No import cycles inside kpi_lib, counting imports placed inside functions.

Only an ``if TYPE_CHECKING:`` block may import a module that imports this one back: it never
runs.  Every other import — at the top of a module or inside a function — is an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kpi_lib"
#: Cycles being taken apart (sorted module names); none may be added.
KNOWN: set[tuple[str, ...]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import node, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports(ast.Module(body=[child], type_ignores=[])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """kpi_lib module -> the kpi_lib modules it imports.

    ``from pkg import name`` depends on the submodule ``pkg.name`` when there is one, else on
    ``pkg`` itself (its ``__init__`` defines the name).
    """
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                prefix = base[:len(base) - node.level + 1] if node.level else []
                source = ".".join(prefix + ([node.module] if node.module else []))
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source
                           for alias in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), as sorted tuples."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles_in_kpi_lib():
    cycles = find_cycles(import_graph())
    assert cycles - KNOWN == set(), "import cycles: " + "; ".join(" <-> ".join(c) for c in sorted(cycles - KNOWN))


def test_the_check_sees_imports_inside_functions_but_not_type_checking_blocks(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from .b import B\nelse:\n    from .c import C\n"
                     "def f():\n    from .d import D\n"
                     "class K:\n    def g(self):\n        from . import e\n")
    found = {(n.module, tuple(a.name for a in n.names)) for n in _imports(tree)}
    assert found == {("typing", ("TYPE_CHECKING",)), ("c", ("C",)), ("d", ("D",)), (None, ("e",))}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}
    assert find_cycles({"a": {"b"}, "b": set()}) == set()


def test_the_graph_resolves_relative_imports():
    graph = import_graph()
    assert "kpi_lib.kpis.registry" in graph["kpi_lib.kpis.targets"]  # from .registry import …
    assert "kpi_lib.config" in graph["kpi_lib.kpis.context"]  # from ..config import …
    assert "kpi_lib.kpis" in graph["kpi_lib.cli"]  # from .kpis import … inside a function
    assert "kpi_lib.kpis.context" not in graph["kpi_lib.kpis.facts"]  # only under TYPE_CHECKING
    assert graph["kpi_lib.demo.plan"] == {"kpi_lib.demo.texts"}  # from . import texts: the submodule only
    assert "kpi_lib" in graph["kpi_lib.amocrm.client"]  # from .. import __version__: the package itself
