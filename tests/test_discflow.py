"""DiscFlow fine-tuning (:mod:`hepflows.discflow`): a poor flow fine-tuned on the classifier's
weights moves towards the MC, and the fine-tuned model file samples like any model of its run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from conftest import train_tiny_run

import hepflows
from hepflows.discflow import DiscFlowSettings, finetune, save
from hepflows.errors import InputError
from hepflows.events.reader import read_events
from hepflows.validation.classifier import classifier_two_sample

FEATURES = ["lepton_pt", "met", "m_bb"]


def _ntuple(path: Path, seed: int, n: int) -> None:
    """A correlated toy: the flow of one short epoch gets its shape wrong."""
    rng = np.random.default_rng(seed)
    met = rng.exponential(60.0, n)
    cols = {
        "lepton_pt": (20.0 + rng.exponential(40.0, n) + 0.5 * met).astype(np.float32),
        "met": met.astype(np.float32),
        "m_bb": (125.0 + rng.normal(0.0, 15.0, n)).astype(np.float32),
    }
    with uproot.recreate(path) as f:
        f["events"] = cols


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("discflow")
    _ntuple(d / "bkg.root", 1, 6000)
    cfg = {
        "run": "toy",
        "seed": 3,
        "features": FEATURES,
        "data": {"source": "root", "inputs": [{"path": str(d / "bkg.root"), "label": 0}]},
        "model": {"coupling": "affine", "blocks": 2, "hidden": [16, 16]},
        "training": {"epochs": 1, "batch_size": 256, "lr": 3e-3, "device": "cpu"},
    }
    config = d / "toy.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return train_tiny_run(config, d / "results" / "toy")


def _auc(model, test: dict, seed: int) -> float:
    events = model.sample(len(test["met"]), seed=seed)
    x_gen = np.column_stack([events[f] for f in FEATURES])
    x_mc = np.column_stack([test[f] for f in FEATURES])
    return classifier_two_sample(x_mc, x_gen, seed=seed, n_bootstrap=0)["auc"]


def test_finetuning_moves_a_poor_flow_towards_the_mc(run, tmp_path):
    # (on this toy plain continued training gets as far: whether the weights add anything is
    # measured at scale by benchmarks/discflow.py against its --control)
    model = hepflows.load(run)
    train = read_events(run / "data" / "train.root", FEATURES)
    val = read_events(run / "data" / "val.root", FEATURES)
    test = read_events(run / "data" / "test.root", FEATURES)
    training = yaml.safe_load((run.parent.parent / "toy.yaml").read_text())["training"]
    from hepflows import config as hconfig

    training = hconfig.load(None, {"training": training})["training"]
    before = np.mean([_auc(model, test, s) for s in (11, 12)])
    settings = DiscFlowSettings(rounds=2, epochs=3, draw_events=4000, lr=3e-3, folds=2)
    records = finetune(model, train, val, training, settings, seed=1)
    after = np.mean([_auc(model, test, s) for s in (11, 12)])
    assert before > 0.6, before  # the one-epoch flow is visibly off
    assert after < before - 0.03, (before, after)
    assert [r["round"] for r in records] == [1, 2]
    assert all(0.5 < r["auc_out_of_fold"] < 1 and r["ess"] > 0 for r in records)

    out = tmp_path / "model.pt"
    save(model, str(out), records, settings)
    again = hepflows.load(out, preprocess=run / "preprocess.json")
    assert again.info["discflow"]["settings"]["rounds"] == 2
    a, b = again.sample(500, seed=5), model.sample(500, seed=5)
    np.testing.assert_array_equal(a["met"], b["met"])  # the file holds the fine-tuned weights


@pytest.mark.parametrize(
    "bad", [{"rounds": 0}, {"alpha": 0.0}, {"clip": 1.0}, {"folds": 1}, {"draw_events": 10}]
)
def test_settings_out_of_range_are_refused(bad):
    with pytest.raises(InputError, match="discflow"):
        DiscFlowSettings(**bad)
