"""The import graph by folder runs one way: the composition root, the services, the core.

Every import statement counts, including the ones inside functions, so a late import cannot
hide an arrow that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO_ROOT

CORE = "radraft"
SERVICES = ("gateway", "worker", "reporting")
ROOT = "radraft_cli"


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    packages: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            packages.add(node.module.split(".")[0])
    return packages


def modules_of(package: str) -> list[Path]:
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules, package
    return modules


def test_the_core_imports_no_service_and_not_the_composition_root() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_packages(path) & {*SERVICES, ROOT})
        for path in modules_of(CORE)
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def test_services_import_the_core_only_never_each_other_or_the_root() -> None:
    offenders = {}
    for service in SERVICES:
        forbidden = ({*SERVICES} - {service}) | {ROOT}
        for path in modules_of(service):
            found = sorted(imported_packages(path) & forbidden)
            if found:
                offenders[str(path.relative_to(REPO_ROOT))] = found
    assert offenders == {}


def test_nothing_imports_the_composition_root() -> None:
    importers = [
        str(path.relative_to(REPO_ROOT))
        for package in (CORE, *SERVICES)
        for path in modules_of(package)
        if ROOT in imported_packages(path)
    ]
    assert importers == []
    assert {"gateway", "worker", "reporting"} <= set().union(
        *(imported_packages(path) for path in modules_of(ROOT))
    ), "the root is where the services are assembled"
