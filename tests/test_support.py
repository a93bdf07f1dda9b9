"""Generated events stay inside the training events' support: fitted bounds, rejection, rate."""

import numpy as np
import pytest
import torch

from hepflows import preprocess
from hepflows.errors import InputError
from hepflows.events.reader import read_events, read_metadata
from hepflows.flows import build_flow
from hepflows.sampling import sample_to_root
from hepflows.support import Support, fit_support
from hepflows.training import Dataset, Trainer
from hepflows.validation.run_summary import support_sentence

FEATURES = ("lepton_pt", "m_jj", "lepton_eta", "delta")


def mc(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 20 GeV pT cut, a non-negative mass near 0, a bounded eta, a signed unbounded
    difference; labels 0/1 with different shapes."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(np.int8)
    x = np.stack(
        [
            rng.exponential(30 + 20 * label, n) + 20.0,
            np.abs(rng.normal(5.0, 20.0, n)),
            rng.uniform(-2.5, 2.5, n),
            rng.normal(0.0, 50.0, n),
        ],
        1,
    )
    return x, label


def test_fitted_support_closes_cuts_and_non_negative_quantities_only():
    x, _ = mc(20_000, 0)
    box = fit_support(x, FEATURES)
    # the cut at 20 and |eta| at 2.5: just beyond the training extremes, by their spacing
    assert 20.0 - 0.01 < box.low[0] < x[:, 0].min() and box.high[0] == np.inf  # tail open
    assert -2.5 - 0.005 < box.low[2] < x[:, 2].min() - 1e-6
    assert 2.5 + 0.005 > box.high[2] > x[:, 2].max() + 1e-6
    assert 0.0 <= box.low[1] <= x[:, 1].min() < 0.1 and box.high[1] == np.inf  # non-negative
    assert (box.low[3], box.high[3]) == (-np.inf, np.inf)  # signed, tails both sides
    again = Support.from_dict(box.to_dict(), FEATURES, "p.json")
    np.testing.assert_array_equal(again.low, box.low)
    with pytest.raises(InputError, match="p.json: 'support'"):
        Support.from_dict({"low": [0.0], "high": [1.0]}, FEATURES, "p.json")


@pytest.mark.parametrize("transform", ["logit", "quantile"])
def test_no_generated_event_outside_the_support_of_a_trained_model(tmp_path, transform):
    x, label = mc(4000, 1)
    x, features = x[:, :3], FEATURES[:3]  # branch names of the event files
    pre = preprocess.fit(
        x,
        features,
        transform=transform,
        quantiles=32,
        labels=label,
        per_process=transform == "quantile",
    )
    box = Support.from_dict(pre.support, features, "fitted")
    # the margin lets the preprocessing's range reach below the cut and below zero
    assert pre.low[0] < 20.0 and pre.low[1] < 0.0
    torch.manual_seed(0)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [16, 16]}, 3, 1)

    def data(rows):
        y = torch.from_numpy(pre.forward(x[rows], label[rows]).astype(np.float32))
        return Dataset(y, torch.from_numpy(label[rows, None].astype(np.float32)))

    settings = {
        "epochs": 2,
        "batch_size": 256,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "scheduler": "cosine",
        "patience": None,
        "grad_clip": 5.0,
        "max_bad_steps": 4,
        "device": "cpu",
    }
    Trainer(
        flow,
        data(slice(0, 3500)),
        data(slice(3500, None)),
        settings,
        seed=0,
        resume_path=tmp_path / "resume.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
    ).fit()
    flow.eval()

    def draw(name, **kw):
        path = tmp_path / name / "samples" / "generated.root"  # a run's layout
        n = sample_to_root(
            flow,
            pre,
            path,
            20_000,
            seed=3,
            chunk_size=5000,
            signal_fraction=0.4,
            progress=False,
            **kw,
        )
        ev = read_events(path, features)
        return n, np.stack([ev[f] for f in features], 1), ev["label"], path

    _, raw, _, _ = draw("raw", support=False)
    outside = ~box.inside(raw.astype(np.float64))
    assert outside.any()  # without the check the flow leaves the support
    n, kept, labels, path = draw("kept")
    assert n == len(kept) == 20_000
    assert box.inside(kept.astype(np.float64)).all()
    assert (kept[:, :2] >= 0).all()
    assert abs(labels.mean() - 0.4) < 4 * np.sqrt(0.24 / n)  # redraws keep the label
    record = read_metadata(path)["support_acceptance"]
    assert set(record) == {"background", "signal"}
    drawn = sum(r["drawn"] for r in record.values())
    accepted = sum(r["accepted"] for r in record.values())
    assert accepted == n and drawn > n
    # the rejection rate is the raw sample's fraction outside, within its binomial error
    rate = 1 - accepted / drawn
    assert abs(rate - outside.mean()) < 5 * np.sqrt(outside.mean() / n) + 1e-3
    # the run's summary page says it, per process
    sentence = support_sentence(tmp_path / "kept")
    assert "inside the training events' support" in sentence
    assert f"signal {record['signal']['acceptance']:.5f}" in sentence
    assert support_sentence(tmp_path / "nowhere") == ""
