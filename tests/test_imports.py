"""The package has no import circle (issue 14): module A importing B while B imports A, directly or
through others, at module level or inside functions, or by ``importlib.import_module`` of a module
named in the file (issue 24: the registries' lazy loading counts, it no longer hides a loop).
A package's ``__init__`` importing its submodules counts too (importing the package runs it)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ddtse"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_dynamically(tree: ast.AST) -> bool:
    """The file calls ``importlib.import_module`` or ``__import__``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
                    isinstance(f, ast.Name) and f.id in ("import_module", "__import__")):
                return True
    return False


def file_imports(tree: ast.AST, modules) -> set[str]:
    """The ddtse modules a parsed file imports: import statements anywhere, and, when it imports by
    name at run time (importlib), every ddtse module named by a string in it."""
    deps = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        deps |= {t for t in targets if t in modules}
    if _imports_dynamically(tree):
        deps |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in modules}
    return deps


def import_graph() -> dict[str, set[str]]:
    """module -> the ddtse modules it imports anywhere in its file (packages resolved to __init__)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: file_imports(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_importlib_loads():
    modules = {"ddtse.a", "ddtse.b"}
    tree = ast.parse("import importlib\nPLUGINS = ('ddtse.b',)\ndef load():\n"
                     "    for m in PLUGINS:\n        importlib.import_module(m)\n")
    assert file_imports(tree, modules) == {"ddtse.b"}
    assert file_imports(ast.parse("NAME = 'ddtse.b'\n"), modules) == set()  # a string alone loads nothing


def test_package_has_no_import_circle():
    graph = import_graph()
    assert "ddtse.extract" in graph and "ddtse.systems.base" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_layers_do_not_reach_up():
    """models/ imports neither the inference path nor the CLI; inference does not borrow from the
    Lightning data module; the registry imports no package that fills it (issue 24)."""
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("ddtse.models"):
            up = {d for d in deps if d in ("ddtse.extract", "ddtse.export", "ddtse.inference") or d.startswith("ddtse.cli")}
            assert not up, f"{name} imports {sorted(up)}"
    assert "ddtse.data.datamodule" not in graph["ddtse.extract"]
    assert "ddtse.data.batch" in graph["ddtse.extract"] and "ddtse.data.batch" in graph["ddtse.data.datamodule"]
    assert graph["ddtse.registry"] <= {"ddtse.errors"}, graph["ddtse.registry"]
    assert {"ddtse.models", "ddtse.systems", "ddtse.data"} <= graph["ddtse.components"]
