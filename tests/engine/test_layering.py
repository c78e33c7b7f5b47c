"""The engine's modules form layers, storage → query → server → cli / the package, and their
imports a DAG: read from the source (ast), every import counted (at module level or inside a
function) except those under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[2] / "python" / "datago" / "engine"
PACKAGE = "datago.engine"

# Each module may import modules of its own layer or of the layers before it. A new module must
# be placed in a layer here.
LAYERS: list[tuple[str, set[str]]] = [
    ("storage", {"values", "signing", "objstore", "scan", "blobs", "schema", "db", "writes", "tokens"}),
    (
        "query",
        {"query", "sql", "executor", "render", "dataroom", "results", "datasource", "datasources", "datasets", "ml"},
    ),
    ("server", {"server"}),  # the package and its modules
    ("top", {"cli", ""}),  # "" is the package datago.engine itself
]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``root`` (a package's folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([package, *parts])] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (explicitly; a submodule's parent
    package, which Python runs first, is not counted)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                bases = [(alias.name, []) for alias in node.names]
            else:
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    up = here[: len(here) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                bases = [(base, [alias.name for alias in node.names])]
            for base, members in bases:
                subs = [f"{base}.{m}" for m in members if f"{base}.{m}" in modules]
                if subs:
                    targets.update(subs)
                if len(subs) < len(members) or not members:
                    # names taken from the module itself; for "import a.b.c" the module a.b.c
                    mod = base
                    while mod and mod not in modules and "." in mod:
                        mod = mod.rsplit(".", 1)[0]
                    if mod in modules:
                        targets.add(mod)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is a DAG."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(module: str, package: str = PACKAGE) -> int:
    """Index in LAYERS of a module of the engine package.

    Raises:
        KeyError: a module no layer lists.
    """
    rel = module[len(package) + 1 :] if module != package else ""
    top = rel.split(".", 1)[0]
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise KeyError(f"{module} is in no layer of tests/engine/test_layering.py")


def layer_violations(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    """``"a (layer) imports b (higher layer)"`` for every import of a later layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target, package) > layer_of(module, package):
                bad.append(
                    f"{module} ({LAYERS[layer_of(module, package)][0]}) imports "
                    f"{target} ({LAYERS[layer_of(target, package)][0]})"
                )
    return bad


def test_engine_imports_are_a_dag() -> None:
    graph = import_graph(ENGINE_DIR, PACKAGE)
    assert f"{PACKAGE}.db" in graph and f"{PACKAGE}.server.app" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_engine_layers() -> None:
    graph = import_graph(ENGINE_DIR, PACKAGE)
    for module in graph:
        layer_of(module)  # every module has a layer
    assert layer_violations(graph) == []
    storage = {m for m in graph if layer_of(m) == 0}
    assert {f"{PACKAGE}.db", f"{PACKAGE}.writes", f"{PACKAGE}.values"} <= storage


def _write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "datago" / "engine"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_checker_finds_lazy_cycle_and_upward_import(tmp_path: Path) -> None:
    # the shape the engine had: storage importing the server inside a method, closing a cycle
    pkg = _write_package(
        tmp_path,
        {
            "db.py": "def start():\n    from .server import serve\n    return serve\n",
            "datasource.py": "from . import db\n",
            "server/__init__.py": "from .app import serve\n",
            "server/app.py": "from ..datasource import db\n\ndef serve():\n    pass\n",
        },
    )
    graph = import_graph(pkg, PACKAGE)
    assert graph[f"{PACKAGE}.db"] == {f"{PACKAGE}.server"}
    assert graph[f"{PACKAGE}.server"] == {f"{PACKAGE}.server.app"}
    assert graph[f"{PACKAGE}.server.app"] == {f"{PACKAGE}.datasource"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and f"{PACKAGE}.db" in cycle
    assert layer_violations(graph) == [f"{PACKAGE}.db (storage) imports {PACKAGE}.server (server)"]


def test_checker_ignores_type_checking_and_accepts_a_dag(tmp_path: Path) -> None:
    pkg = _write_package(
        tmp_path,
        {
            "values.py": "import json\n",
            "db.py": "from .values import json\n",
            "results.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .datasource import X\n",
            "datasource.py": "from datago.engine import results\nfrom .db import json\n",
        },
    )
    graph = import_graph(pkg, PACKAGE)
    assert graph[f"{PACKAGE}.results"] == set()
    assert graph[f"{PACKAGE}.datasource"] == {f"{PACKAGE}.results", f"{PACKAGE}.db"}
    assert find_cycle(graph) is None and layer_violations(graph) == []
    with pytest.raises(KeyError, match="no layer"):
        layer_of(f"{PACKAGE}.elsewhere")


if __name__ == "__main__":  # print the graph: python3 tests/engine/test_layering.py
    for mod, deps in sorted(import_graph(ENGINE_DIR, PACKAGE).items(), key=lambda kv: (layer_of(kv[0]), kv[0])):
        short = sorted(d[len(PACKAGE) + 1 :] or "(package)" for d in deps)
        print(f"{LAYERS[layer_of(mod)][0]:8} {mod[len(PACKAGE) + 1 :] or '(package)':32} -> {', '.join(short)}")
