"""The package layers: arrows run one way and no two files import each other in a ring.

``nurec`` is the foundation: it never imports ``sim`` (the simulator) or ``services``
(the gRPC server); those two build on ``nurec`` and not on each other. The imports are
read from the source (AST), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nurec", "sim", "services")
ALLOWED = {"nurec": {"nurec"}, "sim": {"nurec", "sim"}, "services": {"nurec", "services"}}


def _module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> set[str]:
    """Return the dotted names a module imports (absolute and relative imports, at any depth)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {module: {name for name in _imported_names(module, path) if name in modules and name != module}
            for module, path in modules.items()}


def test_packages_import_only_the_layers_below_them():
    backward = []
    for module, path in _module_files().items():
        layer = module.split(".")[0]
        for name in _imported_names(module, path):
            top = name.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[layer]:
                backward.append(f"{path.relative_to(REPO)} imports {name}")
    assert not backward, "imports that run against the layers:\n" + "\n".join(sorted(backward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other_in_a_ring():
    assert _cycles(_import_graph()) == []


def test_cycle_finder_sees_a_ring():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
