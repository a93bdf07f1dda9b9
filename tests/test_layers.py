"""The statistics (hepflows.validation) and the report (hepflows.report) stay apart: the pages
and figures import the statistics, never the other way, and no module of either imports itself
back through the other."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("hepflows.validation", "hepflows.report")


def _modules(package: str) -> list[str]:
    folder = SRC.joinpath(*package.split("."))
    return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(folder)])]


def _path(module: str) -> Path:
    base = SRC.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported(module: str) -> set[str]:
    """The hepflows modules that ``module`` imports anywhere (lazy imports in functions too),
    ``from hepflows.report import plots`` counted as ``hepflows.report.plots``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_path(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("hepflows")}


def _in(package: str, name: str) -> bool:
    return name == package or name.startswith(package + ".")


STATISTICS = _modules("hepflows.validation")
REPORT = _modules("hepflows.report")


def test_both_packages_hold_the_modules_they_should():
    assert {"hepflows.validation.metrics", "hepflows.validation.evaluation"} <= set(STATISTICS)
    assert {"hepflows.report.plots", "hepflows.report.runner"} <= set(REPORT)


@pytest.mark.parametrize("module", STATISTICS + REPORT)
def test_every_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module", STATISTICS)
def test_no_statistics_module_imports_the_report(module):
    assert sorted(m for m in imported(module) if _in("hepflows.report", m)) == []


def test_the_two_packages_have_no_import_cycle():
    known = set(STATISTICS + REPORT)
    graph = {m: {i for i in imported(m) if i in known and i != m} for m in known}
    # package __init__ files are entered by any import below them: not an edge of their own
    graph = {m: {i for i in deps if i not in PACKAGES} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, " -> ".join((*path, m))
        if m in done:
            return
        for i in sorted(graph[m]):
            visit(i, (*path, m))
        done.add(m)

    for m in sorted(known):
        visit(m, ())
