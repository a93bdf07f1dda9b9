"""Weighted input events: the Kish effective sample size of the input events in validation's
metrics.json and verdict, and the weighted signal fraction that ``sampling.signal_fraction:
null`` takes from the training data (negative weights counted with their sign)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hepflows.errors import InputError
from hepflows.report.runner import validate_samples
from hepflows.report.tables import verdict_html
from hepflows.sampling import training_signal_fraction
from hepflows.validation.judge import input_weights
from hepflows.validation.samples import load_sample

FEATURES = ("lepton_pt", "met")


def _events(n: int, seed: int, weights: bool) -> dict:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.3).astype(np.int8)
    out: dict = {
        "label": label,
        "lepton_pt": rng.exponential(40.0, n).astype(np.float32) + 20 * label,
        "met": rng.exponential(30.0, n).astype(np.float32),
    }
    if weights:
        out["weight"] = rng.uniform(0.1, 3.0, n).astype(np.float32)
    return out


def _kish(w: np.ndarray) -> float:
    w = w.astype(np.float64)
    return float(w.sum() ** 2 / (w**2).sum())


# -- the signal fraction ---------------------------------------------------------------------
def test_signal_fraction_counts_events_unweighted_and_weights_when_weighted():
    label = np.array([1, 1, 0, 0, 0], dtype=np.int8)
    assert training_signal_fraction(label) == pytest.approx(0.4)
    w = np.array([2.0, 1.0, 1.0, 1.5, -0.5])  # a negative background weight, counted signed
    assert training_signal_fraction(label, w) == pytest.approx(3.0 / 5.0)
    # equal weights: the event fraction
    assert training_signal_fraction(label, np.full(5, 0.7)) == pytest.approx(0.4)


def test_signal_fraction_refuses_a_process_of_non_positive_total():
    label = np.array([1, 1, 0, 0], dtype=np.int8)
    with pytest.raises(
        InputError, match=r"train\.root: the weights of the signal events sum to -1"
    ):
        training_signal_fraction(label, np.array([1.0, -2.0, 1.0, 1.0]), "train.root")
    with pytest.raises(InputError, match="background events sum to 0"):
        training_signal_fraction(label, np.array([1.0, 1.0, 1.0, -1.0]), "train.root")
    # one process only: its total must be positive, the absent one is no error
    assert training_signal_fraction(np.ones(3, np.int8), np.array([1.0, 2.0, -0.5])) == 1.0


def test_train_takes_the_weighted_fraction_of_its_dataset():
    from hepflows.steps.train import signal_fraction
    from hepflows.training import Dataset

    label = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    weight = torch.tensor([3.0, 0.5, 0.25, 0.25])  # mean 1, as train.dataset scales them
    data = Dataset(torch.zeros(4, 2), label, weight)
    assert signal_fraction("train.root", data) == pytest.approx(0.75)
    assert signal_fraction("train.root", Dataset(torch.zeros(4, 2), label)) == 0.25


# -- the input events' effective sample size in validation -----------------------------------
def test_input_weights_summarise_the_reference_by_class():
    ev = _events(600, 1, weights=True)
    got = input_weights(load_sample(ev, FEATURES, "reference"))
    w, sig = ev["weight"], ev["label"] == 1
    assert got["weighted"] and got["sample"] == "reference"
    assert got["all"]["events"] == 600
    assert got["all"]["kish_effective_size"] == pytest.approx(_kish(w), rel=1e-6)
    assert got["signal"]["kish_effective_size"] == pytest.approx(_kish(w[sig]), rel=1e-6)
    assert got["background"]["sum_weights"] == pytest.approx(float(w[~sig].sum()), rel=1e-6)
    assert got["all"]["kish_effective_size"] < 600
    plain = input_weights(load_sample(_events(600, 1, weights=False), FEATURES, "reference"))
    assert not plain["weighted"] and plain["all"]["kish_effective_size"] == 600


def test_metrics_json_and_verdict_carry_the_input_effective_size(tmp_path):
    ref = _events(500, 2, weights=True)
    result = validate_samples(
        ref,
        _events(500, 3, weights=False),
        FEATURES,
        tmp_path,
        n_null=2,
        classifier=False,
        plots=False,
    )
    stored = json.loads((tmp_path / "metrics.json").read_text())["input_weights"]
    assert stored == json.loads(json.dumps(result["input_weights"]))
    assert stored["all"]["kish_effective_size"] == pytest.approx(_kish(ref["weight"]), rel=1e-6)
    html = verdict_html(result)
    assert f"Kish effective sample size {stored['all']['kish_effective_size']:.0f}" in html
    # unweighted input: no line about weights
    result["input_weights"]["weighted"] = False
    assert "Kish" not in verdict_html(result)
