"""The package without leftovers: no former module paths, no private name shared across
modules (the statistics and the report are kept apart in tests/test_layers.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hepflows"


@pytest.mark.parametrize(
    "module",
    [
        "hepflows.merge",
        "hepflows.validation.summary",
        "hepflows.events.io",
        # the report's pages and figures live in hepflows.report
        "hepflows.validation.plots",
        "hepflows.validation.tables",
        "hepflows.validation.runner",
        "hepflows.validation.run_summary",
        "hepflows.validation.compare",
        "hepflows.validation.compare_plot",
        "hepflows.validation.amplification_plot",
    ],
)
def test_former_module_paths_are_gone(module):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_flows_export_no_model_config_names():
    import hepflows.flows

    for name in ("MODEL_DEFAULTS", "check_model_config", "COUPLINGS"):
        assert name not in hepflows.flows.__all__
        assert not hasattr(hepflows.flows, name)


def _imports(path: Path) -> list[ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in SRC.rglob("*.py"):
        for node in _imports(path):
            if node.level or (node.module or "").startswith("hepflows"):
                found += [
                    f"{path.relative_to(SRC)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert found == []
