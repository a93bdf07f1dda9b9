"""The whole DAG, end to end, on a tiny config: outputs, rerun behaviour, lint and report."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TINY_WORKFLOW, run_tiny_snakemake

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_WORKFLOW
snakemake = run_tiny_snakemake


@pytest.fixture(scope="module")
def workdir(tiny_workflow) -> Path:
    """A copy of the workflow with a tiny config, run once to completion (once per session)."""
    return tiny_workflow


def jobs_planned(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names in the 'Job stats' table of a dry run."""
    table = result.stdout.split("Job stats:")[-1]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"total"}


def test_all_outputs_exist(workdir):
    run = workdir / "results" / "tiny"
    for rel in (
        "data/train.root",
        "data/val.root",
        "data/test.root",
        "preprocess.json",
        "model/model.pt",
        "model/training_log.csv",
        "model/training_curve.png",
        "model/training_curve.pdf",
        "samples/generated.root",
        "validation/metrics.json",
        "validation/metrics.csv",
        "validation/verdict.csv",
        "validation/verdict.html",
        "validation/closure.csv",
        "data/truth.root",
        "validation/amplification.csv",
        "validation/amplification.json",
        "validation/amplification.png",
        "validation/amplification.pdf",
        "validation/amplification_summary.html",
        "summary.html",
    ):
        assert (run / rel).stat().st_size > 0, rel
    for feature in TINY["features"]:
        assert (run / "validation" / "plots" / f"{feature}.png").stat().st_size > 1000
        assert (run / "validation" / "plots" / f"{feature}.pdf").exists()
    for rule in (
        "generate",
        "generate_truth",
        "preprocess",
        "train",
        "sample",
        "validate",
        "amplification",
    ):
        assert (run / "logs" / f"{rule}.log").exists()
        assert (run / "benchmarks" / f"{rule}.tsv").exists()
    log = (run / "model" / "training_log.csv").read_text().splitlines()
    assert len(log) == 1 + TINY["training"]["epochs"]
    assert "training on cpu" in (run / "logs" / "train.log").read_text()


def test_metrics_cover_every_feature(workdir):
    metrics = json.loads((workdir / "results" / "tiny" / "validation" / "metrics.json").read_text())
    text = json.dumps(metrics)
    for feature in TINY["features"]:
        assert feature in text
    rows = (workdir / "results" / "tiny" / "validation" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"feature", "metric", "value", "null_p95", "status"} <= set(header)
    metric_col = header.index("metric")
    assert {"ks", "chi2_ndf"} <= {r.split(",")[metric_col] for r in rows[1:]}


def test_second_run_does_nothing(workdir):
    result = snakemake(workdir, "--cores", "2")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_model_change_reruns_from_training_on(workdir):
    changed = dict(TINY, model={"blocks": 3, "hidden": [16, 16]})
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(changed))
    result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml")
    assert jobs_planned(result) == {
        "train",
        "sample",
        "validate",
        "amplification",
        "summary",
        "all",
    }


def test_amplification_covers_every_feature_slice_and_the_joint_partition(workdir):
    import csv

    folder = workdir / "results" / "tiny" / "validation"
    with (folder / "amplification.csv").open() as f:
        rows = list(csv.DictReader(f))
    slices = ("all", "signal", "background")
    cells = {(r["feature"], r["slice"]) for r in rows}
    assert cells == {(f, s) for f in [*TINY["features"], "joint"] for s in slices}
    assert len(rows) == len(cells)
    n_train, n_truth = (
        TINY["data"]["events"]["train"],
        TINY["validation"]["amplification"]["truth_events"],
    )
    for r in rows:
        assert float(r["n_equiv"]) > 0 and r["lower_bound"] in ("true", "false"), r
        assert float(r["n_train"]) == n_train
        assert float(r["G"]) == pytest.approx(float(r["n_equiv"]) / n_train, rel=1e-4)
    # the truth is the generator's disjoint range, of the configured size (all the slices')
    assert {
        float(r["n_truth"]) for r in rows if r["slice"] == "all" and r["feature"] != "joint"
    } == {n_truth}
    doc = json.loads((folder / "amplification.json").read_text())
    assert doc["summary"]["n_cells"] == len(rows) and doc["summary"]["joint"]["feature"] == "joint"
    summary = (folder / "amplification_summary.html").read_text()
    assert re.search(
        r"worth [≈≥] [\d.]+k? MC events \(joint\), worst feature \w+ \(\w+\): [≈≥] ", summary
    )
    assert "; G = " in summary
    # a complete run leaves nothing to do, the amplification included
    assert "Nothing to be done" in snakemake(workdir, "-n").stdout


def test_summary_says_what_ran_and_the_verdict(workdir):
    run = workdir / "results" / "tiny"
    page = (run / "summary.html").read_text()
    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    word = "indistinguishable" if metrics["overall_status"] == "green" else "distinguishable"
    m = re.search(
        rf"Generated events are {word} from MC: (\d+) of (\d+) cells outside the "
        r"MC-vs-MC band \([\d.]+ expected by chance\), classifier AUC of the most sensitive "
        r"judge \([^)]+\) ([\d.]+)",
        page,
    )
    assert m, page
    feature_rows = [
        v
        for v in metrics["verdict"]
        if v["metric"] in ("ks", "chi2_ndf", "wasserstein", "separation_power")
    ]
    assert int(m.group(1)) == sum(v["n_outside"] for v in feature_rows)
    assert int(m.group(2)) == sum(v["n_tested"] for v in feature_rows)
    assert float(m.group(3)) == pytest.approx(metrics["classifier"]["auc"], abs=5e-4)
    assert "background:#" in page  # the coloured verdict table
    assert f"{TINY['training']['epochs']} / " in page and "affine" in page
    assert re.search(r"<td[^>]*>[\d,]+</td>", page)  # the parameter count, from the train log
    assert "cpu" in page  # the device
    for step in ("generate", "preprocess", "train", "sample", "validate", "amplification", "toys"):
        assert f">{step}</td>" in page, step  # its wall time, from benchmarks/<step>.tsv


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_report_has_every_figure_with_caption(workdir):
    report = workdir / "report.html"
    snakemake(workdir, "--cores", "1", "--report", str(report))
    html = report.read_text()
    assert "training_curve" in html
    for feature in TINY["features"]:
        assert f"{feature}.png" in html
    assert "null band" in html  # the verdict caption
    assert "amplification.png" in html and "amplification_summary.html" in html
    assert "arXiv:2008.06545" in html  # the amplification captions
    assert "summary.html" in html and "0. Summary" in html


def test_bad_config_fails_before_any_job(workdir):
    (workdir / "config" / "bad.yaml").write_text(
        yaml.safe_dump(dict(TINY, training={"epochs": -1}))
    )
    result = snakemake(workdir, "-n", "--configfile", "config/bad.yaml", check=False)
    assert result.returncode != 0
    assert "training.epochs" in result.stdout + result.stderr


def test_closure_table(workdir):
    import csv

    path = workdir / "results" / "tiny" / "validation" / "closure.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["check", "value", "error"]
    checks = [r[0] for r in rows[1:]]
    assert "AUC generated - MC" in checks
    assert any(c.startswith("spurious signal strength, generated") for c in checks)
    auc_mc = float(rows[1][1])  # the fits may be NaN on tiny samples, the AUC not
    assert 0.5 < auc_mc <= 1.0
