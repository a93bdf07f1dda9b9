"""End to end on an analysis-like ntuple set: the walk-through of docs/own-ntuples.md, its
config as written (tiny model and sizes merged on top), through ``snakemake --cores 2``.

The report speaks the user's names and labels, the integer ``n_bjets`` comes back on exactly
its values and is judged by a chi2 row (no KS row), and the summary gives the weights'
effective sizes."""

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

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-ntuples.md"
#: The tiny sizes of the other workflow tests, merged over the walk-through's config.
TINY = {k: TINY_WORKFLOW[k] for k in ("model", "training", "sampling")} | {
    "validation": {
        "max_events": 1000,
        "n_null": 20,
        "classifier": False,
    }
}


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
    build(work / "ntuples", xsec={"ttbar": 0.8, "wjets": 1.2, "singletop": 0.5, "signal": 1.0})
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
