"""The package without leftovers: no former module paths, no private name shared across modules,
no import cycle between the amplification and its figure."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hepflows"


@pytest.mark.parametrize(
    "module", ["hepflows.merge", "hepflows.validation.summary", "hepflows.events.io"]
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


def _hepflows_imports(path: Path) -> set[str]:
    return {n.module for n in _imports(path) if n.module and n.module.startswith("hepflows")}


def test_amplification_and_its_figure_do_not_import_each_other():
    validation = SRC / "validation"
    figure = "hepflows.validation.amplification_plot"
    statistics = "hepflows.validation.amplification"
    assert figure not in _hepflows_imports(validation / "amplification.py")
    assert not (
        statistics in _hepflows_imports(validation / "amplification_plot.py")
        and figure in _hepflows_imports(validation / "amplification.py")
    )
