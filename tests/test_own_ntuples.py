"""End to end on an analysis-like ntuple set: the walk-through of docs/own-ntuples.md, its
config as written (tiny model and sizes merged on top), through ``snakemake --cores 2``.

The ntuples have NLO-like weights (5 % negative) and a cross-section factor per file, and the
processes are compared as shapes (``data.normalise: per_process``, merged with the tiny sizes).
The report speaks the user's names and labels, the integer ``n_bjets`` comes back on exactly
its values and is judged by a chi2 row (no KS row), no generated event fails the selection's
terms on features, and the summary gives the weights' effective sizes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from analysis_ntuples import build
from conftest import TINY_WORKFLOW, copy_workflow, run_tiny_snakemake

from hepflows import config
from hepflows.events.reader import read_metadata

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-ntuples.md"
#: The tiny sizes of the other workflow tests, merged over the walk-through's config, and
#: each process compared as a shape of its own (docs/weighted-inputs.md).
TINY = {k: TINY_WORKFLOW[k] for k in ("model", "training", "sampling")} | {
    "data": {"normalise": "per_process"},
    "validation": {
        "max_events": 1000,
        "n_null": 20,
        "classifier": False,
    },
}
#: Each file's cross-section factor, as the walk-through's inputs give them.
XSEC = {"ttbar": 0.8, "wjets": 1.2, "singletop": 0.5, "signal": 1.0}


def walkthrough_config() -> dict:
    """The first YAML block of docs/own-ntuples.md, as written."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, f"{DOC} has no yaml block"
    return yaml.safe_load(blocks[0])


def test_walkthrough_config_is_valid_and_names_the_users_observables():
    cfg = config.validate(walkthrough_config(), source=str(DOC))
    assert cfg["data"]["source"] == "root" and "HT" in cfg["derived"]
    assert set(cfg["labels"]) <= {*cfg["features"], *cfg["derived"]}


@pytest.fixture(scope="module")
def analysis_run(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("analysis")
    cfg = config.merge(walkthrough_config(), TINY)
    inputs = build(work / "ntuples", negative_fraction=0.05, xsec=XSEC)
    # the walk-through's inputs are those of the builder, factors included
    written = {Path(e["path"]).name.rsplit("_", 1)[0]: e.get("weight") for e in inputs}
    assert written == {
        Path(e["path"]).name.split("_")[0]: e["weight"] for e in cfg["data"]["inputs"]
    }
    copy_workflow(work, {"tiny": cfg})
    run_tiny_snakemake(work, "--cores", "2")
    return work / "results" / cfg["run"], cfg


def test_outputs_use_the_users_names(analysis_run):
    run, cfg = analysis_run
    names = [*cfg["features"], *(d for d in cfg["derived"] if d not in cfg["features"])]
    with uproot.open(run / "samples" / "generated.root") as f:
        branches = set(f["events"].keys())
        gen = f["events"].arrays(names, library="np")
    assert set(names) <= branches
    for name in names:
        assert (run / "validation" / "plots" / f"{name}.png").stat().st_size > 1000
    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    assert metrics["features"] == names
    # the discrete features come back on exactly the values of the training events
    with uproot.open(run / "data" / "train.root") as f:
        train = f["events"].arrays(["n_bjets", "n_jets"], library="np")
    for name in ("n_bjets", "n_jets"):
        assert set(np.unique(gen[name])) <= set(np.unique(train[name])), name
    assert set(metrics["discrete"]) == {"n_bjets", "n_jets"}
    amplification = (run / "validation" / "amplification.csv").read_text()
    assert all(name in amplification for name in names)
    # the selection's len(jet_pt) >= 3 holds in the MC, and jet3_pt is then a real jet
    assert np.unique(train["n_jets"]).min() >= 3


def test_discrete_feature_has_a_chi2_row_and_no_ks_row(analysis_run):
    run, _ = analysis_run
    with open(run / "validation" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    metrics_of = {}
    for r in rows:
        metrics_of.setdefault(r["feature"], set()).add(r["metric"])
    assert "chi2_ndf" in metrics_of["n_bjets"] and "ks" not in metrics_of["n_bjets"]
    assert "ks" in metrics_of["HT"] and "chi2_ndf" in metrics_of["HT"]


def test_summary_gives_the_weights_effective_sizes(analysis_run):
    run, _ = analysis_run
    html = (run / "summary.html").read_text()
    assert "Kish effective sample size" in html


def test_no_generated_event_fails_the_selection(analysis_run):
    run, cfg = analysis_run
    assert cfg["data"]["selection"] == "(lep_pt > 25) & (len(jet_pt) >= 3)"
    with uproot.open(run / "samples" / "generated.root") as f:
        gen = f["events"].arrays(["lep_pt", "n_jets"], library="np")
    assert len(gen["lep_pt"]) == cfg["sampling"]["events"]
    assert (gen["lep_pt"] > 25).all() and (gen["n_jets"] >= 3).all()
    # len(jet_pt) is the derived n_jets: both terms are checked on the generated events
    meta = read_metadata(run / "samples" / "generated.root")
    assert meta["support_selection"] == {"checked": "(lep_pt > 25) & (n_jets >= 3)", "skipped": []}
    assert set(meta["support_acceptance"]) == {"background", "signal"}
    summary = (run / "summary.html").read_text()
    assert (
        "the selection (lep_pt &gt; 25) &amp; (n_jets &gt;= 3)); acceptance per process" in summary
    )


def test_nlo_weights_reach_training_and_validation(analysis_run):
    run, _ = analysis_run
    with uproot.open(run / "data" / "train.root") as f:
        w = f["events"]["weight"].array(library="np")
    assert 0.02 < (w < 0).mean() < 0.08  # about 5 % negative, carried to the event files
    # validation compares each process's shape with the weights, negative ones included
    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    assert metrics["normalise"] == "per_process"
    sizes = metrics["input_weights"]
    assert sizes["weighted"] and set(sizes) >= {"signal", "background"}
    assert sizes["all"]["kish_effective_size"] < sizes["all"]["events"]


def test_later_steps_settings_reach_ingests_checks_but_do_not_rerun_it(analysis_run):
    run, cfg = analysis_run
    work = run.parents[1]
    # ingest refuses negative weights only for a config whose validation cannot take them, so
    # it sees validation.classifier; changing that (or the generated events) reruns the steps
    # that use them, not ingest and the training after it
    changed = config.merge(cfg, {"validation": {"classifier": True}, "sampling": {"events": 900}})
    copy_workflow(work, {"changed": changed})
    result = run_tiny_snakemake(work, "-n", "--configfile", "config/changed.yaml")
    jobs = result.stdout + result.stderr
    assert re.search(r"\bsample\b", jobs) and re.search(r"\bvalidate\b", jobs)
    for step in ("ingest", "preprocess", "train"):
        assert not re.search(rf"rule {step}\b", jobs), step


def test_ingest_refuses_nlo_weights_for_a_classifier_test_under_snakemake(tmp_path):
    # the fixture's run passes with validation.classifier false; with true, ingest (given only
    # its own sections as settings) still sees it and stops before writing any event file
    cfg = config.merge(
        config.merge(walkthrough_config(), TINY), {"validation": {"classifier": True}}
    )
    build(tmp_path / "ntuples", negative_fraction=0.05, xsec=XSEC)
    copy_workflow(tmp_path, {"tiny": cfg})
    data = tmp_path / "results" / cfg["run"] / "data"
    target = f"results/{cfg['run']}/data/train.root"
    result = run_tiny_snakemake(tmp_path, "--cores", "1", target, check=False)
    assert result.returncode != 0
    said = result.stdout + result.stderr  # the failed step's log, as the workflow prints it
    assert "ntuples/ttbar_0.root" in said and "negative weight(s)" in said
    assert "Set validation.classifier: false" in said
    assert not list(data.glob("*.root"))
