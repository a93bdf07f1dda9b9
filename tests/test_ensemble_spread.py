"""The members' spread per histogram bin (arXiv:2509.08048's averaging): its noise model and
the n_equiv it gives."""

from __future__ import annotations

import numpy as np
import pytest

from hepflows.errors import InputError
from hepflows.validation.ensemble_spread import feature_spreads, member_spread


def test_member_spread_by_hand():
    s = member_spread(np.array([[10, 90], [30, 70]]), [100, 100])
    np.testing.assert_allclose(s.mean, [0.2, 0.8])
    np.testing.assert_allclose(s.spread**2, [0.02, 0.02])  # var of (0.1, 0.3), ddof 1
    np.testing.assert_allclose(s.noise**2, [0.2 * 0.8 / 100] * 2)
    np.testing.assert_allclose(s.sigma**2, [0.02 - 0.0016] * 2)
    np.testing.assert_allclose(s.n_equiv, [0.16 / 0.0184] * 2)


def test_members_of_one_density_spread_as_their_noise():
    """Draws of the same fractions: the spread is the multinomial noise, sigma ~ 0."""
    rng = np.random.default_rng(1)
    p = np.full(200, 1 / 200)
    counts = rng.multinomial(100_000, p, size=4)
    s = member_spread(counts, [100_000] * 4)
    assert np.median(s.spread / s.noise) == pytest.approx(1.0, abs=0.15)
    # most bins resolve nothing beyond the noise; the typical n_equiv is far above the draws
    assert np.median(s.n_equiv) > 10 * 100_000


def test_members_that_disagree_give_their_disagreement():
    """Members whose fractions differ by a known sigma: recovered once the noise is out."""
    rng = np.random.default_rng(2)
    bins, k, n = 400, 8, 2_000_000
    base = np.full(bins, 1 / bins)
    sigma = 0.1 * base  # a 10 % disagreement per bin
    p = np.clip(base + rng.normal(0, 1, (k, bins)) * sigma, 0, None)
    p /= p.sum(1, keepdims=True)
    counts = np.stack([rng.multinomial(n, q) for q in p])
    s = member_spread(counts, [n] * k)
    assert np.median(s.relative) == pytest.approx(0.1, rel=0.15)
    # n_equiv = p (1 - p) / sigma^2 = (1 - p) / (0.01 p) ~ 100 / p
    assert np.median(s.n_equiv) == pytest.approx((1 - 1 / bins) * 100 * bins, rel=0.3)


def test_member_spread_refuses_one_member_and_bad_shapes():
    with pytest.raises(InputError, match="at least 2 members"):
        member_spread(np.ones((1, 5)), [5])
    with pytest.raises(InputError, match="shape"):
        member_spread(np.ones((2, 5)), [5, 5, 5])


def test_feature_spreads_rows_per_feature_and_slice():
    rng = np.random.default_rng(3)
    n = 40_000
    ref = {"x": rng.normal(size=n), "label": rng.integers(0, 2, n).astype(np.int8)}
    members = np.repeat([0, 1], n // 2)
    shifted = rng.normal(size=n) + np.where(members == 1, 0.3, 0.0)  # member 1 is off
    gen = {"x": shifted, "label": rng.integers(0, 2, n).astype(np.int8)}
    rows = feature_spreads(ref, gen, members, ["x"], bins=20, n_train=1000)
    assert [(r["feature"], r["slice"]) for r in rows] == [
        ("x", "all"),
        ("x", "signal"),
        ("x", "background"),
    ]
    # a 0.3 sigma shift: far beyond the noise of 20k events a member
    assert rows[0]["spread_over_noise_median"] > 3
    assert rows[0]["n_equiv_min"] < 20_000 and rows[0]["G_min"] == rows[0]["n_equiv_min"] / 1000
