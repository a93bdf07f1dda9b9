"""The throughput benchmark runs end to end at tiny sizes and prints a complete table.

No timing is asserted: only that every row is there and every number is finite.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location(
        "throughput", ROOT / "benchmarks" / "throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(throughput, tmp_path_factory):
    import contextlib
    import io

    out = io.StringIO()
    json_path = tmp_path_factory.mktemp("bench") / "report.json"
    with contextlib.redirect_stdout(out):
        report = throughput.main(["--quick", "--threads", "1", "--json", str(json_path)])
    return report, out.getvalue(), json_path


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_table_has_every_library_and_architecture(throughput, run) -> None:
    report, text, _ = run
    libraries = ["hepflows"] + [lib for lib in ("zuko", "nflows") if lib not in report["skipped"]]
    assert [a["arch"]["key"] for a in report["archs"]] == ["seed", "spline", "autoregressive"]
    for arch in report["archs"]:
        assert [r["library"] for r in arch["rows"]] == libraries
        assert arch["flops"] > 0 and _finite(arch["gemm_gflops"])
        for row in arch["rows"]:
            assert row["params"] > 0
            assert _finite(
                row["train"],
                row["sample"],
                row["root"],
                row["train_fraction"],
                row["sample_fraction"],
            )
            assert row["train"] > 0 and row["sample"] > 0 and row["root"] > 0
            assert row["peak_train_mb"] >= 0 or math.isnan(row["peak_train_mb"])
        title = arch["arch"]["title"]
        for lib in libraries:
            assert any(line.startswith(title) and f" {lib} " in line for line in text.splitlines())
        for peer in libraries[1:]:
            assert any(
                f"hepflows/{peer}" in line for line in text.splitlines() if line.startswith(title)
            )
    assert "FLOPs/event" in text and "matmul ceiling" in text


def test_nll_of_fast_path_and_memory_curve_are_printed(run) -> None:
    report, text, json_path = run
    nll = report["nll"]
    assert _finite(nll["float32"], nll["fast"], nll["bf16"])
    assert abs(nll["fast"] - nll["float32"]) < 1e-3  # the CPU fast path is exact float32
    assert "fast path" in text and "bfloat16" in text
    assert report["curve"] and all(_finite(p["seconds"], p["peak_mb"]) for p in report["curve"])
    assert json_path.exists()


def test_autoregressive_peers_have_the_same_parameters(run) -> None:
    # the same MADEs (widths, outputs per feature, biases) and no other parameters: alike models
    report, _, _ = run
    arch = next(a for a in report["archs"] if a["arch"]["key"] == "autoregressive")
    assert len({row["params"] for row in arch["rows"]}) == 1


def test_flop_count_is_analytic(throughput) -> None:
    from hepflows.flows import build_flow

    arch = throughput.Arch("seed", "", "affine", 20, (512, 512))
    flow = build_flow(arch.model_block(), 18)
    per_block = 2 * (9 * 512 + 512 * 512 + 512 * 18)
    assert throughput.matmul_flops(flow) == 20 * per_block
