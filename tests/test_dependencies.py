"""Product code imports only what pyproject.toml declares: a fresh install has nothing else.

`rich` was once imported by `nurec evaluate` without being declared; the venv used for
development happened to lack it too, but a venv that has it would hide such a crash.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("nurec", "sim", "services")
# Developer tools shipped inside the packages, whose imports come from the test extra.
DEVELOPMENT_ONLY = {("services/generate.py", "grpc_tools")}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """Return the distributions [project] dependencies install (names and extras, e.g. dask[distributed])."""
    names = set()
    for spec in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", spec)
        names.add(_normalise(match[1]))
        # dask's "distributed" extra installs the distribution of the same name
        names.update(_normalise(extra) for extra in (match[2] or "").split(",") if extra.strip())
    return names


def third_party_imports() -> dict[tuple[str, str], int]:
    """Return {(file, top-level module): line} for every absolute import in the product code."""
    found: dict[tuple[str, str], int] = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PRODUCT_PACKAGES and top != "__future__":
                        found.setdefault((path.relative_to(REPO).as_posix(), top), node.lineno)
    return found


def test_product_code_imports_only_declared_dependencies():
    declared = declared_distributions()
    providers = packages_distributions()
    undeclared = [f"{file}:{line}: {module}"
                  for (file, module), line in third_party_imports().items()
                  if (file, module) not in DEVELOPMENT_ONLY
                  and not declared & {_normalise(d) for d in providers.get(module, [])}]
    assert not undeclared, "imports not declared in [project] dependencies:\n" + "\n".join(undeclared)


def test_the_import_scan_sees_function_level_imports(tmp_path, monkeypatch):
    # rich was imported inside a function; the scan must see such imports
    (tmp_path / "nurec").mkdir()
    (tmp_path / "nurec" / "m.py").write_text("def f():\n    from rich.table import Table\n    import os\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PRODUCT_PACKAGES", ("nurec",))
    assert third_party_imports() == {("nurec/m.py", "rich"): 2}


def test_generate_without_grpcio_tools_says_what_to_install(monkeypatch, tmp_path):
    from services.generate import generate

    monkeypatch.setitem(sys.modules, "grpc_tools", None)  # import fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"grpcio-tools.*\.\[test\]"):
        generate(tmp_path)
