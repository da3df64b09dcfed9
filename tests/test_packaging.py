"""What the code imports is what pyproject.toml declares: a fresh install cannot miss a module."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
OWN = {"engine", "bonsai_tui"}


def imported_modules(folder: Path) -> dict[str, str]:
    """Top-level module name -> one file importing it, for every import in folder's .py files."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def normalized(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()


def undeclared(folders: list[str], declared: set[str], local: set[str] = frozenset()) -> list[str]:
    distributions = packages_distributions()
    missing = []
    for folder in folders:
        for module, where in imported_modules(REPO / folder).items():
            if module in sys.stdlib_module_names or module in OWN or module in local or module == "__future__":
                continue
            names = {normalized(d) for d in distributions.get(module, [module])}
            if not names & declared:
                missing.append(f"{module} (imported by {where})")
    return sorted(missing)


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_module_the_program_imports_is_a_declared_dependency() -> None:
    declared = {normalized(r) for r in project()["dependencies"]}
    assert undeclared(["engine", "bonsai_tui"], declared) == []


def test_every_module_the_tests_import_is_declared_for_them() -> None:
    p = project()
    declared = {normalized(r) for r in p["dependencies"] + p["optional-dependencies"]["test"]}
    local = {"tests", *(path.stem for path in (REPO / "tests").glob("*.py"))}
    assert undeclared(["tests"], declared, local) == []
