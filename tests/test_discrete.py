"""Discrete features: found by their few values (or declared), dequantised over their cells
for training, generated on exactly the values seen, and judged by chi2 rather than KS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepflows import preprocess
from hepflows.report.runner import validate_samples

FEATURES = ("lep_pt", "n_bjets", "charge", "btag")


def _events(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.exponential(40.0, n) + 25.0,
            np.minimum(rng.poisson(0.7, n), 3).astype(float),
            rng.choice([-1.0, 1.0], n),
            rng.choice([0.0, 1.0865, 2.1730], n, p=[0.5, 0.3, 0.2]),  # HIGGS-like b-tag codes
        ]
    )


@pytest.mark.parametrize("transform", ["logit", "quantile"])
def test_discrete_features_are_found_and_generated_on_their_values(transform):
    x = _events(4000, 1)
    pre = preprocess.fit(x, FEATURES, transform=transform, discrete_values=24)
    assert set(pre.discrete) == {"n_bjets", "charge", "btag"}
    assert pre.discrete["n_bjets"] == [0.0, 1.0, 2.0, 3.0]
    y = pre.forward(x)
    assert len(np.unique(y[:, 1])) > 0.99 * len(y)  # spread over the cells for the flow
    back = pre.inverse(y)
    # each event back on its own value (float32, as in the event files)
    np.testing.assert_array_equal(back[:, 1:].astype(np.float32), x[:, 1:].astype(np.float32))
    np.testing.assert_allclose(back[:, 0], x[:, 0], rtol=1e-9)
    # whatever the flow generates lands on values seen in training
    z = np.random.default_rng(2).normal(size=(20000, len(FEATURES))) * 1.5
    gen = pre.inverse(z)
    for j, name in enumerate(FEATURES[1:], start=1):
        assert set(np.unique(gen[:, j])) <= set(pre.discrete[name]), name
    assert len(np.unique(gen[:, 0])) > 0.99 * len(gen)  # the continuous one stays continuous
    loaded = preprocess.Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(loaded.inverse(z), gen)


def test_values_keep_their_frequencies_through_the_latent_space():
    x = _events(6000, 3)
    pre = preprocess.fit(x, FEATURES, discrete_values=24)
    # a latent sample with the training events' distribution: their own images
    gen = pre.inverse(pre.forward(_events(6000, 4)))
    for value in pre.discrete["n_bjets"]:
        assert abs(np.mean(gen[:, 1] == value) - np.mean(x[:, 1] == value)) < 0.03


def test_declared_and_off():
    x = _events(2000, 5)
    assert preprocess.fit(x, FEATURES).discrete == {}  # discrete_values 0: no search
    pre = preprocess.fit(x, FEATURES, discrete=["lep_pt"], discrete_values=0)
    assert list(pre.discrete) == ["lep_pt"]
    assert "discrete" not in preprocess.fit(x, FEATURES).to_dict()  # old files stay as they were


def test_bad_discrete_block_is_refused():
    pre = preprocess.fit(_events(500, 6), FEATURES, discrete_values=24)
    data = pre.to_dict()
    data["discrete"]["n_bjets"] = [2.0, 1.0]
    with pytest.raises(Exception, match="discrete"):
        preprocess.Preprocessor.from_dict(data, source="p.json")


def _sample(x: np.ndarray, seed: int) -> dict:
    labels = np.random.default_rng(seed).integers(0, 2, len(x)).astype(np.int8)
    return {**{f: x[:, j] for j, f in enumerate(FEATURES)}, "label": labels}


def test_discrete_features_are_judged_by_chi2_not_ks(tmp_path):
    ref, gen = _sample(_events(1600, 7), 7), _sample(_events(800, 8), 8)
    result = validate_samples(
        ref,
        gen,
        FEATURES,
        tmp_path,
        n_null=20,
        classifier=False,
        plots=False,
        discrete=("n_bjets", "charge", "btag"),
    )
    assert result["discrete"] == ["n_bjets", "charge", "btag"]
    ks = {r["feature"] for r in result["rows"] if r["metric"] == "ks"}
    chi2 = {r["feature"] for r in result["rows"] if r["metric"] == "chi2_ndf"}
    assert ks == {"lep_pt"} and chi2 == set(FEATURES)
    # the chi2 of a discrete feature is on its values: one bin per value
    n_bjets = result["analytic_pvalues"]["chi2"]["n_bjets"]["all"]
    assert n_bjets["ndf"] == 3
