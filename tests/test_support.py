"""Generated events stay inside the training events' support: fitted bounds, rejection, rate."""

import numpy as np
import pytest
import torch

from hepflows import preprocess
from hepflows.errors import InputError
from hepflows.events.feature_cut import FeatureCut, feature_cut
from hepflows.events.reader import read_events, read_metadata
from hepflows.flows import build_flow
from hepflows.report.run_summary import support_sentence
from hepflows.sampling import sample_chunk, sample_to_root
from hepflows.support import Support, fit_support
from hepflows.training import Dataset, Trainer

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


def trained(pre, x, label, tmp_path):
    """A tiny flow trained two epochs on ``x`` (n, d) preprocessed by ``pre``."""
    d = x.shape[1]
    torch.manual_seed(0)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [16, 16]}, d, 1)

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
        data(slice(0, -500)),
        data(slice(-500, None)),
        settings,
        seed=0,
        resume_path=tmp_path / "resume.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
    ).fit()
    flow.eval()
    return flow


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
    flow = trained(pre, x, label, tmp_path)

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


def test_the_selection_on_features_is_restated_in_their_names():
    cut = feature_cut(
        "(el_pt > 27) & (len(jet_pt) >= 4) and (jet_pt[0] + jet_pt[1] < 3 * el_pt) & (x > 1)",
        ["lep_pt", "HT2"],
        branch_map={"lep_pt": "el_pt"},
        derived={"HT2": "jet_pt[0] + jet_pt[1]"},
    )
    # branch el_pt is feature lep_pt, the derived expression is HT2; the jet count and the
    # branch x are no feature: skipped, as written
    assert cut.expression == "(lep_pt > 27) & (HT2 < (3 * lep_pt))"
    assert cut.skipped == ("len(jet_pt) >= 4", "x > 1")
    assert feature_cut("len(jet_pt) >= 4", ["lep_pt"]) == FeatureCut(None, ("len(jet_pt) >= 4",))
    box = fit_support(np.array([[30.0, 50.0], [40.0, 100.0]]), ["lep_pt", "HT2"], cut)
    again = Support.from_dict(box.to_dict(), ["lep_pt", "HT2"], "p.json")
    assert again.cut == cut
    np.testing.assert_array_equal(again.inside(np.array([[30.0, 50.0], [30.0, 95.0]])), [1, 0])
    with pytest.raises(InputError, match=r"p.json: 'support' selection .* reads \['HT2'\]"):
        Support.from_dict(box.to_dict(), ["lep_pt", "other"], "p.json")


def test_no_generated_event_fails_the_ingest_selection(tmp_path, caplog):
    """A term tying two features together, which no box per feature can hold."""
    x, label = mc(6000, 2)
    x, features = x[:, :2], FEATURES[:2]
    selection = "(m_jj < lepton_pt) & (len(jet_pt) >= 4)"
    keep = x[:, 1] < x[:, 0]
    x, label = x[keep], label[keep]
    cut = feature_cut(selection, features)
    pre = preprocess.fit(x, features, labels=label, cut=cut)
    flow = trained(pre, x, label, tmp_path)

    def draw(name, **kw):
        path = tmp_path / name / "samples" / "generated.root"
        n = sample_to_root(
            flow,
            pre,
            path,
            10_000,
            seed=3,
            chunk_size=5000,
            signal_fraction=0.4,
            progress=False,
            **kw,
        )
        ev = read_events(path, features)
        return n, ev, path

    _, raw, _ = draw("raw", support=False)
    fails = ~(raw["m_jj"] < raw["lepton_pt"])
    assert fails.mean() > 0.01  # without the check the flow breaks the selection
    with caplog.at_level("INFO", logger="hepflows"):
        n, kept, path = draw("kept")
    assert n == len(kept["m_jj"]) == 10_000
    assert (kept["m_jj"] < kept["lepton_pt"]).all()
    meta = read_metadata(path)
    assert meta["support_selection"] == {
        "checked": "(m_jj < lepton_pt)",
        "skipped": ["len(jet_pt) >= 4"],
    }
    record = meta["support_acceptance"]
    drawn = sum(r["drawn"] for r in record.values())
    assert sum(r["accepted"] for r in record.values()) == n
    # the selection's rejections are counted in the same record: at least the raw failures
    assert 1 - n / drawn >= fails.mean() - 5 * np.sqrt(fails.mean() / n)
    assert "len(jet_pt) >= 4" in caplog.text
    # a chunk drawn alone (the Python API's way) is the same chunk of the file
    alone = sample_chunk(
        flow, pre, 5000, seed=3, chunk=1, signal_fraction=0.4, device=torch.device("cpu")
    )
    for f in features:
        np.testing.assert_array_equal(alone[f], kept[f][5000:])
    sentence = support_sentence(tmp_path / "kept")
    assert "pT and MET, the selection (m_jj < lepton_pt)); acceptance" in sentence
    assert sentence.endswith("not features): len(jet_pt) >= 4.")
