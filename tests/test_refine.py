"""The refine step: classifier weights that move a generated sample onto MC, the MC ranges it
takes (disjoint from every split and from the truth), ``hepflows run`` and the DAG with it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import copy_workflow, snakemake_env
from test_workflow import jobs_planned

from hepflows import config as hconfig
from hepflows import layout
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import branch_names, read_events, read_metadata
from hepflows.kish import effective_size
from hepflows.refine import REFINE_FIRST_CHUNK, REFINE_START, event_weights, refine
from hepflows.settings import Settings
from hepflows.steps.generate import TRUTH_START, Outputs, jobs
from hepflows.validation.classifier import classifier_two_sample

SETTINGS = Settings.load(None, {"refine": {"enabled": True}}).refine


def _gaussians(n: int, mean: float, sigma: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(mean, sigma, n),
        "b": rng.normal(mean, sigma, n),
        "label": (rng.random(n) < 0.5).astype(np.int8),
    }


#: one calibrated tree classifier (the default), and a 3-fold committee of trees and networks
REWEIGHTERS: dict[str, dict[str, Any]] = {
    "one": {},
    "committee": {"folds": 3, "families": ("gbt", "mlp")},
}


@pytest.fixture(scope="module", params=sorted(REWEIGHTERS))
def toy(request):
    """MC = N(0, 1) per feature; generated = N(0.3, 0.8): shifted and narrower."""
    settings = replace(SETTINGS, max_iter=100, min_samples_leaf=50, **REWEIGHTERS[request.param])
    mc = _gaussians(6000, 0.0, 1.0, 1)
    draw = _gaussians(6000, 0.3, 0.8, 2)
    sample = _gaussians(4000, 0.3, 0.8, 3)
    weights, record = refine(mc, draw, sample, ["a", "b"], settings, seed=0)
    return mc, sample, weights, record


def test_weights_move_the_moments_to_the_mc(toy):
    _, sample, w, _ = toy
    for f in ("a", "b"):
        raw_mean, raw_sd = sample[f].mean(), sample[f].std()
        mean = np.average(sample[f], weights=w)
        sd = np.sqrt(np.average((sample[f] - mean) ** 2, weights=w))
        assert abs(raw_mean - 0.3) < 0.05 and abs(raw_sd - 0.8) < 0.05  # the toy is as meant
        # most of the way: the narrower sample has few events in MC's tails to weight up
        assert abs(mean) < 0.3 * 0.3, (f, mean)
        assert abs(sd - 1.0) < 0.5 * 0.2, (f, sd)


def test_weights_are_mean_one_per_process_and_the_ess_is_reported(toy):
    _, sample, w, record = toy
    for c in (0, 1):
        assert w[sample["label"] == c].mean() == pytest.approx(1.0)
    assert record["weights"]["ess"] == pytest.approx(effective_size(w, len(w)))
    assert 0.2 * len(w) < record["weights"]["ess"] < len(w)
    assert w.max() <= SETTINGS.clip * 1.05
    fit = record["fit"]
    assert fit["ece_calibrated"] < 0.05 and 0.5 < fit["auc_check"] < 0.8


def test_weighted_classifier_auc_drops(toy):
    mc, sample, w, _ = toy
    test_mc = _gaussians(4000, 0.0, 1.0, 4)
    x_mc = np.column_stack([test_mc["a"], test_mc["b"]])
    x_gen = np.column_stack([sample["a"], sample["b"]])
    raw = classifier_two_sample(x_mc, x_gen, seed=5, n_bootstrap=0)["auc"]
    weighted = classifier_two_sample(x_mc, x_gen, seed=5, n_bootstrap=0, w_test=w)["auc"]
    assert raw > 0.6
    assert weighted < raw - 0.05 and weighted < 0.56, (raw, weighted)


def test_a_committee_has_every_family_in_every_fold_each_checked_on_unseen_events(toy):
    *_, record = toy
    fit = record["fit"]
    if fit["folds"] == 1:
        assert fit["families"] == ["gbt"] and "members" not in fit
        return
    members = fit["members"]
    assert sorted((m["family"], m["fold"]) for m in members) == sorted(
        (f, k) for f in ("gbt", "mlp") for k in range(3)
    )
    for m in members:  # each member separates the toy and is calibrated on its own fold
        assert 0.55 < m["auc_check"] < 0.8 and m["ece_calibrated"] < 0.06, m
    assert fit["family"] == "gbt+mlp" and "3-fold" in fit["classifier"]


def test_several_families_need_folds():
    mc, draw = _gaussians(600, 0.0, 1.0, 1), _gaussians(600, 0.3, 0.8, 2)
    settings = replace(SETTINGS, families=("gbt", "mlp"), folds=1)
    with pytest.raises(InputError, match="refine.folds >= 2"):
        refine(mc, draw, draw, ["a", "b"], settings, seed=0)


def test_clip_counts_what_it_clips():
    w, record = event_weights(np.log(np.array([1.0, 1.0, 1.0, 97.0])), None, clip=2.0)
    assert record["fraction_clipped"] == 0.25 and record["max_before_clip"] == pytest.approx(3.88)
    assert w.mean() == pytest.approx(1.0) and w.argmax() == 3


def _ranges(cfg: dict, **outputs: str) -> dict[str, range]:
    settings = Settings.from_config(cfg)
    return {s: range(a, a + n) for s, _, a, n, _ in jobs(settings, Outputs(**outputs))}


def test_refine_mc_range_is_disjoint_from_every_split_and_the_truth():
    cfg = hconfig.load(None, {"refine": {"enabled": True}})
    ranges = _ranges(cfg, train="t", val="v", test="x")
    ranges |= _ranges(cfg, truth="truth.root") | _ranges(cfg, refine="refine.root")
    assert ranges["refine"].start == REFINE_START and ranges["truth"].start == TRUTH_START
    assert len(ranges["refine"]) == cfg["refine"]["mc_events"]
    names = sorted(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            lo, hi = ranges[a], ranges[b]
            assert max(lo.start, hi.start) >= min(lo.stop, hi.stop), (a, b)


def test_a_truth_reaching_the_refine_range_is_refused():
    cfg = hconfig.load(
        None, {"validation": {"amplification": {"truth_events": REFINE_START - TRUTH_START + 1}}}
    )
    with pytest.raises(InputError, match="truth_events"):
        _ranges(cfg, refine="refine.root")


TINY = {
    "run": "tiny",
    "seed": 3,
    "features": ["lepton_pt", "met", "jet1_pt", "m_bb"],
    "data": {"events": {"train": 1500, "val": 400, "test": 1200}},
    "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
    "training": {"epochs": 1, "batch_size": 256, "device": "cpu"},
    "sampling": {"events": 600, "chunk_size": 300},
    "validation": {
        "max_events": 500,
        "n_null": 20,
        "amplification": {"truth_events": 2000, "bins": 8, "cells": 10},
    },
    "refine": {"enabled": True, "mc_events": 1000, "generated_events": 1000, "max_iter": 20},
}


def test_hepflows_run_with_refine_writes_the_weights_and_both_verdicts(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    assert main(["run", "--config", str(cfg_path), "--results", str(tmp_path), "--quiet"]) == 0
    p = layout.paths(tmp_path / "tiny")
    # the weighted sample: every generated event, in order, plus the weight branch
    assert "weight" in branch_names(p["refined"]) and "weight" not in branch_names(p["generated"])
    raw = read_events(p["generated"], TINY["features"])
    refined = read_events(p["refined"], TINY["features"], with_weight=True)
    assert np.array_equal(raw["m_bb"], refined["m_bb"])
    assert refined["weight"].mean() == pytest.approx(1.0, rel=1e-3)
    assert read_metadata(p["refine_draw"])["first_chunk"] == REFINE_FIRST_CHUNK
    assert not np.isin(read_events(p["refine_draw"], ["m_bb"])["m_bb"], raw["m_bb"]).any()
    # both verdicts, side by side, with the ESS and how the events are kept apart
    rew = json.loads(p["reweighted_metrics"].read_text())
    assert rew["overall_status"] in ("green", "amber", "red")
    assert rew["sizes"]["generated"] == 500
    html = p["refine_comparison"].read_text()
    assert "Reweighted" in html and "Kish effective sample size" in html
    assert "never sees a validation event" in html and str(REFINE_START) in html
    # the weighted sample's amplification counts its effective size, not its events
    amp = json.loads(p["reweighted_amplification"].read_text())
    ess = json.loads(p["refine_report"].read_text())["weights"]["ess"]
    n_gen = [r["n_generated"] for r in amp["rows"] if r["slice"] == "all"]
    assert n_gen == pytest.approx([ess] * len(n_gen), rel=1e-4) and ess < TINY["sampling"]["events"]
    assert "Refine: raw and reweighted" in p["summary"].read_text()
    assert (tmp_path / "tiny" / layout.log("refine")).is_file()


def _dry_run(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    copy_workflow(tmp_path, {"test": config})
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/test.yaml"],
        cwd=tmp_path,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


REFINE_JOBS = {"generate_refine", "sample_refine", "refine", "amplification_reweighted"}


@pytest.mark.parametrize("enabled", [True, False])
def test_dag_has_the_refine_jobs_only_when_enabled(tmp_path, enabled):
    result = _dry_run(tmp_path, dict(TINY, refine=dict(TINY["refine"], enabled=enabled)))
    assert result.returncode == 0, result.stderr
    jobs = jobs_planned(result)
    assert "validate" in jobs
    assert (REFINE_JOBS <= jobs) if enabled else not (REFINE_JOBS & jobs), jobs


def test_dag_refuses_refine_with_shards(tmp_path):
    sharded = dict(TINY, sampling=dict(TINY["sampling"], shards=2))
    result = _dry_run(tmp_path, sharded)
    assert result.returncode != 0
    assert "refine.enabled" in result.stdout + result.stderr


def test_null_pairs_of_a_weighted_sample_carry_its_weights_per_class():
    from hepflows.validation.evaluation import weighted_like
    from hepflows.validation.samples import Sample

    rng = np.random.default_rng(0)
    label = np.repeat(np.array([0, 1], np.int8), 50)
    g = Sample(rng.normal(size=(100, 2)), label, np.concatenate([np.ones(50), np.arange(1, 51)]))
    q = Sample(rng.normal(size=(100, 2)), label[::-1].copy(), None)
    w = weighted_like(q, g, rng).w
    assert w is not None
    for c in (0, 1):
        assert sorted(w[q.label == c]) == sorted(g.w[g.label == c])
    assert effective_size(w, len(w)) == pytest.approx(effective_size(g.w, len(g.w)))


def test_mc_weights_enter_the_classifier():
    """MC N(0, 1) weighted by exp(0.5 x - 1/8) per feature is N(0.5, 1): a generated N(0.5, 1)
    then needs (almost) no weights, unlike against the unweighted MC."""
    settings = replace(SETTINGS, max_iter=100, min_samples_leaf=50)
    mc = _gaussians(6000, 0.0, 1.0, 1)
    mc["weight"] = np.exp(0.5 * mc["a"] - 0.125) * np.exp(0.5 * mc["b"] - 0.125)
    draw, sample = _gaussians(6000, 0.5, 1.0, 2), _gaussians(3000, 0.5, 1.0, 3)
    w, record = refine(mc, draw, sample, ["a", "b"], settings, seed=0)
    unweighted = dict(mc)
    unweighted.pop("weight")
    w0, _ = refine(unweighted, draw, sample, ["a", "b"], settings, seed=0)
    assert record["fit"]["mc_weighted"]
    assert effective_size(w, len(w)) > 0.85 * len(w) > effective_size(w0, len(w0)), (
        effective_size(w, len(w)),
        effective_size(w0, len(w0)),
    )
    assert abs(np.average(sample["a"], weights=w0)) < 0.15  # unweighted MC: pulled to 0
