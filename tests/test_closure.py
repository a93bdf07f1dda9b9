"""Physics closure checks on cases with known answers."""

import numpy as np
import pytest

from hepflows.validation.closure import classifier_closure, hanley_mcneil_error, template_fit


def two_class(n, rng, shift=1.0):
    y = (rng.random(n) < 0.5).astype(np.int8)
    x = rng.normal(size=(n, 3)) + shift * y[:, None]
    return x, y


def test_classifier_closure_agrees_on_same_distribution_and_not_on_distorted():
    rng = np.random.default_rng(0)
    (xt, yt), (xm, ym), (xg, yg) = (two_class(4000, rng) for _ in range(3))
    same = classifier_closure(xt, yt, xm, ym, xg, yg, seed=1)
    assert 0.8 < same["auc_mc"] < 0.95
    assert abs(same["pull"]) < 3
    xb, yb = two_class(4000, rng, shift=0.3)  # generated events that separate less well
    bad = classifier_closure(xt, yt, xm, ym, xb, yb, seed=1)
    assert bad["difference"] < -0.1 and bad["pull"] < -5


def test_hanley_mcneil_matches_known_value():
    # AUC 0.5 with n1 = n0 = 100: sqrt((0.25 + 99*(1/3-1/4)*2) / 1e4) = 0.0408...
    assert hanley_mcneil_error(0.5, 100, 100) == pytest.approx(0.04083, abs=1e-4)


def test_template_fit_spurious_signal():
    rng = np.random.default_rng(2)
    data = rng.exponential(100, 20000) + 200
    signal = rng.normal(425, 20, 5000)
    good = rng.exponential(100, 20000) + 200
    bump = np.concatenate([rng.exponential(100, 19000) + 200, rng.normal(425, 20, 1000)])
    result = template_fit(data, signal, {"mc": good, "distorted": bump}, bins=15)
    assert abs(result["mc"]["spurious_mu"]) < 3 * result["mc"]["spurious_mu_error"] + 0.05
    # a template with an excess where the signal sits absorbs it: mu is pulled negative
    assert result["distorted"]["spurious_mu"] < result["mc"]["spurious_mu"] - 0.3
    assert 0 < result["mc"]["expected_limit_mu"] < 2
