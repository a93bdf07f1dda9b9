"""benchmarks/gpu/check.sh end to end on the CPU (--tiny): the GPU check must not rot between
the sessions that are lent a GPU. Every part has to run and record what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


def test_gpu_check_runs_every_part_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), OMP_NUM_THREADS="1")
    # a generous budget: the machine running the tests may be shared (55 s by default); the
    # check grows it further with the start-up it measures on a loaded machine
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/check.sh", "--device", "cpu", "--tiny", "--budget", "200"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    log = (tmp_path / "gpu.log").read_text() if (tmp_path / "gpu.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-4000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    parts = report["parts"]
    assert list(parts) == [
        "tests",
        "training_step",
        "seed_training",
        "sampling",
        "throughput",
        "compiled",
        "best_training",
    ]
    assert all(p["status"] == "ok" for p in parts.values()), {
        k: p.get("error") for k, p in parts.items()
    }
    assert report["machine"]["device"] == "cpu" and report["tiny"] is True
    assert report["startup_s"] > 0 and report["slowness"] >= 1 and report["budget_s"] >= 200

    tests = parts["tests"]["counts"]
    assert tests["passed"] >= 30 and tests["failures"] == tests["errors"] == 0

    steps = parts["training_step"]
    assert [r["compile"] for r in steps["rows"]] == ["false", "true"]  # no CUDA graphs on a CPU
    assert all("error" not in r and r["steps_per_second"] > 0 for r in steps["rows"]), steps
    assert all(r["projected_seed_study_s"] > 0 for r in steps["rows"])
    assert all(r["cudagraph_skips"] == 0 for r in steps["rows"])  # recorded (none on a CPU)
    # traced without code generation: the compiled steps learn what the eager ones do
    eager, traced = (r["val_nll"] for r in steps["rows"])
    assert traced == pytest.approx(eager, rel=1e-4)
    assert steps["fastest"] in ("false", "true") and steps["speedup"] > 0

    seed = parts["seed_training"]
    assert seed["config"]["compile"] is False  # --tiny: part 2 only traced
    assert [s for s in seed["steps"]] == ["generate", "preprocess", "train", "sample", "validate"]
    assert all(s["rc"] == 0 for s in seed["steps"].values())
    assert seed["training"]["finished"] and seed["training"]["epochs_done"] == 2
    assert {row["metric"] for row in seed["verdict"]} >= {"ks", "chi2_ndf"}

    sampling = parts["sampling"]
    models = {(r["model"], r["precision"]) for r in sampling["in_memory"]}
    assert models == {("seed-paper", "float32"), ("best", "float32")}  # no bf16 path on the CPU
    assert all(r["events_per_second"] > 0 for r in sampling["in_memory"])
    root = sampling["to_root"]
    assert root["events_written"] == root["events"] == 200_000 and root["exit_codes"] == [0, 0]
    assert root["bytes_written"] > 200_000 * 18 and root["peak_rss_mb_all"] > 0

    table = parts["throughput"]["result"]["archs"]
    assert {row["library"] for arch in table for row in arch["rows"]} >= {"hepflows"}

    compiled = parts["compiled"]
    assert compiled["settings"] == {"backend": "eager", "mode": None, "batch": 4096}
    rows = {(r["model"], r["precision"]): r for r in compiled["compiled"]}
    assert set(rows) == {("seed-paper", "float32"), ("best", "float32")}
    # traced without code generation: the same events as the eager flow for the same seed
    assert all("error" not in r and r["max_abs_diff"] == 0.0 for r in rows.values()), rows
    assert all(r["compiled_events_per_second"] > 0 and r["speedup"] > 0 for r in rows.values())
    assert all(r["cudagraph_skips"] == 0 for r in rows.values())

    best = parts["best_training"]
    assert best["training"]["finished"] and len(best["epochs"]) == 2


def test_tiny_limits_grow_with_a_slow_machine():
    """On a loaded CPU (30 s to start a step's process, a third of a core) each part still gets
    its work slowed alike plus the start-up of every process it runs; on an idle one the given
    budget stands."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    import check

    budget, limits = check.part_limits(list(check.PARTS), True, 200, startup=30.0, slowness=3.0)
    for name, _, work, processes in check.PARTS:
        assert limits[name] >= 3.0 * work + processes * check.STARTUP_MARGIN * 30.0, name
    assert budget >= sum(limits.values()) - 1e-6
    budget, limits = check.part_limits(list(check.PARTS), True, 200, startup=0.5)
    assert budget == 200 and sum(limits.values()) == pytest.approx(200)
