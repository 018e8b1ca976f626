"""The module import graph of ``host`` and ``ext_sdk``, built from the source (AST), checked for layering and cycles.

The graph has one node per module of the two packages and one edge per
import of another module of them, wherever the import statement is: module
level or inside a function (a function-local import that dodges a cycle is
still a cycle). Only imports under ``if TYPE_CHECKING:`` are left out of the
cycle check: they never run, and serve annotations only.

``from package import name`` is an edge to ``package.name`` when that is a
module, else to ``package`` itself (its ``__init__``). Importing a module
does not add edges to its parent packages: Python initialises them first, and
a submodule that needs nothing from its parent's ``__init__`` is no cycle.

What must hold:

* ``ext_sdk`` imports nothing of ``host`` (not even for type checking) and none
  of the host's heavy dependencies: an extension installs the SDK alone;
* there is no import cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
PACKAGES: Final = ("host", "ext_sdk")
#: Third-party packages the SDK must never import (litellm alone takes ~3 s).
SDK_FORBIDDEN: Final = frozenset({"host", "litellm", "openai", "pydantic", "tenacity", "jsonschema"})


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module name as written (resolved to absolute), and where."""

    importer: str
    target: str
    line: int
    #: True under ``if TYPE_CHECKING:``.
    type_checking: bool


def module_files() -> dict[str, Path]:
    """Module name → file, for every module of :data:`PACKAGES`."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], type_checking: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement, nested ones included, with whether it sits under ``if TYPE_CHECKING:``."""
    for node in body:
        yield node, type_checking
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, True)
            yield from _statements(node.orelse, type_checking)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _statements([child], type_checking)
            elif isinstance(child, ast.ExceptHandler | ast.match_case):
                yield from _statements(child.body, type_checking)


def imports_of(module: str, path: Path, modules: set[str]) -> Iterator[Import]:
    """What ``module`` imports, as absolute module names (a ``from`` import of a submodule names it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, type_checking in _statements(tree.body, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, type_checking)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(module, candidate if candidate in modules else base, node.lineno, type_checking)


def _internal(target: str, modules: set[str]) -> str | None:
    """The module of ours that importing ``target`` runs (``a.b.c`` → ``a.b.c``, or its nearest package)."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def import_graph() -> tuple[dict[str, set[str]], list[Import]]:
    """``(graph, every import)``: the graph (module → modules it imports) leaves out TYPE_CHECKING imports."""
    files = module_files()
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    found: list[Import] = []
    for module, path in files.items():
        for imp in imports_of(module, path, modules):
            found.append(imp)
            target = _internal(imp.target, modules)
            if target is not None and target != module and not imp.type_checking:
                graph[module].add(target)
    return graph, found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest import path ``start → … → start`` inside one component (breadth first)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & within):
            if nxt == start:
                path = [node]
                while (up := parent[path[-1]]) is not None:
                    path.append(up)
                return [*reversed(path), start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return [start]


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    """One component as its shortest cycle through its first module, plus its members."""
    cycle = shortest_cycle(graph, component[0], set(component))
    return f"{' -> '.join(cycle)}   (component: {', '.join(component)})"


def test_the_graph_sees_every_kind_of_import() -> None:
    graph, found = import_graph()
    assert "host.agent" in graph and "ext_sdk" in graph and "host.cli" in graph
    # a relative from-import of a submodule, a package import, and a function-local import are all edges
    assert "host.agent.loop" in graph["host.agent.session"]
    assert "host.agent.llm.stream" in graph["host.agent.llm"]  # a package's __init__ importing its modules
    assert "host.agent.cli" in graph["host.cli"]  # imported inside a function
    assert any(i.type_checking for i in found)  # TYPE_CHECKING imports are seen, and kept apart


def test_ext_sdk_never_imports_host_or_heavy_dependencies() -> None:
    _, found = import_graph()
    offenders = [f"{i.importer}:{i.line} imports {i.target}" for i in found
                 if i.importer.split(".")[0] == "ext_sdk" and i.target.split(".")[0] in SDK_FORBIDDEN]
    assert offenders == []


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    cycles = [describe(graph, component) for component in strongly_connected(graph)]
    for cycle in cycles:
        print("import cycle:", cycle)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_importing_kithost_does_not_import_litellm() -> None:
    """litellm takes ~3 s to import: only a model call may pay for it, never ``kithost --help`` or the SDK."""
    names = sorted(m for m in module_files() if not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in ('litellm', 'openai') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
