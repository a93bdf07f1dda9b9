"""benchmarks/step_ops.py: it counts what launches a kernel, and a seed step's snapshot is small."""

from __future__ import annotations

import importlib.util

import torch
from conftest import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("step_ops", ROOT / "benchmarks" / "step_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_views_are_not_counted_products_are():
    step_ops = load_script()
    a, b = torch.randn(4, 3), torch.randn(3, 2)
    with step_ops.OperationCounter() as counter:
        a.t()
        a.view(12)
        a[1:]
        torch.mm(a, b)
        (a + 1).relu_()
    assert dict(counter.counts) == {"mm": 1, "add": 1, "relu_": 1}


def test_seed_step_counts(capsys):
    step_ops = load_script()
    counts = step_ops.step_operations(ROOT / "config" / "seed-paper.yaml", batch=32)
    # forward: the 20 networks' 3 layers and the 20 LU mixings; backward: two products a layer
    assert counts["addmm"] == 20 * 3 + 20
    assert counts["mm"] >= 2 * 20 * 3
    # the snapshot a non-finite step is put back from (the 2 running statistics of 20 norms),
    # taken in one call, and the restore through torch.where: one a buffer, and one for the flag
    assert counts["_foreach_copy_"] == 1 and "clone" not in counts
    assert counts["where"] == 40 + 1
    assert step_ops.main(["--top", "3"]) == 0
    assert "kernel-launching operations in one step" in capsys.readouterr().out
