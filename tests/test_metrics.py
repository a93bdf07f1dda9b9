"""Two-sample metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hepflows.validation import metrics as m
from hepflows.validation.classifier import bootstrap_auc, classifier_two_sample


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- identical samples --------------------------------------------------------------------------


def test_identical_samples_give_zero_distance():
    a = rng(0).normal(size=3000)
    assert m.ks_test(a, a) == (0.0, 1.0)
    chi2 = m.chi2_test(a, a)
    assert chi2["chi2"] == 0.0 and chi2["pvalue"] == 1.0 and chi2["ndf"] == 39
    assert m.wasserstein(a, a) == 0.0
    assert m.separation_power(a, a) == 0.0
    x = rng(1).normal(size=(2000, 4))
    assert m.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert np.all(m.correlation_difference(x, x) == 0.0)


# -- Kolmogorov-Smirnov and Wasserstein -----------------------------------------------------------


def test_ks_and_wasserstein_of_shifted_gaussians_match_analytic_values():
    shift = 0.5
    a = rng(2).normal(size=20_000)
    b = rng(3).normal(loc=shift, size=20_000)
    stat, p = m.ks_test(a, b)
    # sup |Phi(x) - Phi(x - d)| is reached at x = d / 2
    assert stat == pytest.approx(2 * stats.norm.cdf(shift / 2) - 1, abs=0.015)
    assert p < 1e-50
    assert m.wasserstein(a, b) == pytest.approx(shift, abs=0.03)
    assert m.wasserstein_columns(a, b)[0] == pytest.approx(m.wasserstein(a, b), rel=1e-10)


def test_ks_columns_agree_with_scipy_including_ties():
    gen = rng(4)
    a = gen.integers(0, 6, size=(700, 3)).astype(float)  # heavy ties
    b = gen.integers(0, 7, size=(500, 3)).astype(float)
    ours = m.ks_statistic_columns(a, b)
    for j in range(3):
        assert ours[j] == pytest.approx(stats.ks_2samp(a[:, j], b[:, j]).statistic, abs=1e-12)


def test_unit_weights_give_the_unweighted_results():
    a, b = rng(5).normal(size=1500), rng(6).normal(0.1, 1.1, size=1200)
    ones_a, twos_b = np.ones(len(a)), np.full(len(b), 2.0)
    assert m.ks_test(a, b, wa=ones_a, wb=twos_b) == m.ks_test(a, b)
    assert m.chi2_test(a, b, wa=ones_a, wb=twos_b) == m.chi2_test(a, b)
    assert m.wasserstein(a, b, wa=ones_a, wb=twos_b) == pytest.approx(m.wasserstein(a, b))
    assert m.separation_power(a, b, wa=ones_a) == m.separation_power(a, b)


def test_integer_weights_act_as_repeated_events():
    gen = rng(7)
    a, b = gen.normal(size=800), gen.normal(0.2, 1.0, size=900)
    w = gen.integers(1, 4, size=len(a)).astype(float)
    rep = np.repeat(a, w.astype(int))
    assert m.ks_statistic_columns(a, b, wa=w)[0] == pytest.approx(
        stats.ks_2samp(rep, b).statistic, abs=1e-12
    )
    assert m.wasserstein_columns(a, b, wa=w)[0] == pytest.approx(m.wasserstein(rep, b), rel=1e-9)
    edges = np.linspace(-4, 4, 21)
    assert m.separation_power(a, b, bins=edges, wa=w) == pytest.approx(
        m.separation_power(rep, b, bins=edges), rel=1e-12
    )


def test_weighted_sample_reweighted_to_the_target_passes():
    """MC from N(0, 1) reweighted to N(0.3, 1) is compatible with N(0.3, 1), unweighted is not."""
    a = rng(8).normal(size=20_000)
    b = rng(9).normal(loc=0.3, size=20_000)
    w = stats.norm.pdf(a, loc=0.3) / stats.norm.pdf(a)
    assert m.ks_test(a, b, wa=w)[1] > 0.01
    assert m.chi2_test(a, b, wa=w)["pvalue"] > 0.01
    assert m.wasserstein(a, b, wa=w) < 0.03
    assert m.ks_test(a, b)[1] < 1e-20
    assert m.chi2_test(a, b)["pvalue"] < 1e-20


def test_weighted_ks_pvalue_is_calibrated_with_effective_sizes():
    gen = rng(10)
    a = gen.normal(size=(3000, 200))
    b = gen.normal(size=(2000, 200))
    w = gen.exponential(size=3000)  # strongly varying weights, same shape as unweighted
    stat = m.ks_statistic_columns(a, b, wa=w)
    na = m.effective_size(w, 3000)
    p = stats.kstwo.sf(stat, round(na * 2000 / (na + 2000)))
    assert 0.01 <= np.mean(p < 0.05) <= 0.1


# -- chi2 ---------------------------------------------------------------------------------------


def test_chi2_of_same_distribution_follows_chi2_ndf():
    gen = rng(11)
    a = gen.normal(size=(2000, 300))  # 300 independent features in one vectorised call
    b = gen.normal(size=(1500, 300))
    chi2, ndf = m.chi2_columns(a, b, bins=30)
    assert np.all(ndf == 29)
    assert np.mean(chi2 / ndf) == pytest.approx(1.0, abs=0.05)
    pvalues = stats.chi2.sf(chi2, ndf)
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01


def test_chi2_of_shifted_gaussians_matches_noncentral_expectation():
    shift, n = 0.15, 4000
    edges = np.concatenate([[-np.inf], np.linspace(-2.5, 2.5, 21), [np.inf]])
    p = np.diff(stats.norm.cdf(edges))
    q = np.diff(stats.norm.cdf(edges - shift))
    noncentrality = n * np.sum((p - q) ** 2 / (p + q))  # equal sizes: pooled variance (p+q)/2n
    gen = rng(12)
    a = gen.normal(size=(n, 100))
    b = gen.normal(loc=shift, size=(n, 100))
    chi2, ndf = m.chi2_columns(a, b, bins=edges)
    assert np.all(ndf == len(p) - 1)
    assert np.mean(chi2) == pytest.approx(len(p) - 1 + noncentrality, rel=0.06)


def test_chi2_weighted_form_agrees_with_unweighted_on_large_samples():
    gen = rng(13)
    a, b = gen.normal(size=50_000), gen.normal(0.02, 1.0, size=40_000)
    w = np.ones(len(a))
    w[0] = 1.0 + 1e-9  # not uniform: takes the weighted-weighted form
    uu, ww = m.chi2_test(a, b), m.chi2_test(a, b, wa=w)
    assert ww["chi2"] == pytest.approx(uu["chi2"], rel=0.1)


def test_chi2_edges_follow_mc_quantiles_and_keep_the_tails():
    a = rng(14).exponential(size=4000)
    b = a + 100.0  # entirely beyond the MC: lands in the open last bin, not dropped
    res = m.chi2_test(a, b, bins=10)
    assert res["ndf"] == 9 and res["pvalue"] < 1e-100


# -- separation power ------------------------------------------------------------------------------


def test_separation_power_is_zero_for_identical_and_one_for_disjoint():
    a = rng(15).uniform(0, 1, size=2000)
    edges = np.linspace(0, 3, 31)
    assert m.separation_power(a, a, bins=edges) == 0.0
    assert m.separation_power(a, a + 2.0, bins=edges) == pytest.approx(1.0)


def test_separation_power_on_chi2_bins_is_chi2_over_2n():
    gen = rng(16)
    a, b = gen.normal(size=3000), gen.normal(0.05, 1, size=3000)
    assert m.separation_power(a, b, bins=25) == pytest.approx(
        m.chi2_test(a, b, bins=25)["chi2"] / (2 * 3000), rel=1e-10
    )


def test_uniform_edges_are_equal_width_with_open_ends():
    edges = m.uniform_edges(rng(17).normal(size=(5000, 2)), 10)
    assert edges.shape == (11, 2)
    assert np.all(np.isinf(edges[[0, -1]]))
    widths = np.diff(edges[1:-1], axis=0)
    assert np.allclose(widths, widths[0])


# -- joint: Frechet, kernel, correlations -------------------------------------------------------


def test_frechet_distance_of_shifted_gaussians_is_squared_mean_shift():
    mu = np.array([0.3, -0.2, 0.1, 0.0])
    x = rng(18).normal(size=(20_000, 4))
    y = rng(19).normal(size=(20_000, 4)) + mu
    assert m.frechet_distance(x, y) == pytest.approx(np.sum(mu**2), rel=0.1)
    assert m.frechet_distance(x, rng(20).normal(size=(20_000, 4))) < 0.005
    # 1-D widths: (sigma_1 - sigma_2)^2
    assert m.frechet_distance(x[:, 0], 2.0 * x[:, 1]) == pytest.approx(1.0, rel=0.05)


def test_fpd_extrapolates_to_the_squared_shift():
    mu = np.array([0.4, 0.0, -0.3])
    x = rng(21).normal(size=(8000, 3))
    y = rng(22).normal(size=(8000, 3)) + mu
    value, err = m.fpd(
        x,
        y,
        normalise=False,
        min_samples=1000,
        max_samples=4000,
        num_batches=5,
        num_points=4,
        seed=1,
    )
    assert value == pytest.approx(0.25, abs=max(0.03, 3 * err))
    same, _ = m.fpd(
        x,
        rng(23).normal(size=(8000, 3)),
        normalise=False,
        min_samples=1000,
        max_samples=4000,
        num_batches=5,
        num_points=4,
        seed=1,
    )
    assert same < 0.01


def test_mmd_matches_brute_force_and_kpd_separates():
    gen = rng(24)
    x, y = gen.normal(size=(7, 3)), gen.normal(size=(9, 3))
    kxx, kyy, kxy = ((u @ v.T / 3 + 1) ** 4 for u, v in ((x, x), (y, y), (x, y)))
    brute = (kxx.sum() - np.trace(kxx)) / 42 + (kyy.sum() - np.trace(kyy)) / 72 - 2 * kxy.mean()
    assert m.mmd_poly_unbiased(x, y) == pytest.approx(brute, rel=1e-12)
    a, b = gen.normal(size=(3000, 5)), gen.normal(size=(3000, 5))
    same, same_err = m.kernel_distance(a, b, batch_size=1000, num_batches=5)
    diff, diff_err = m.kernel_distance(a, b + 0.3, batch_size=1000, num_batches=5)
    assert abs(same) < 3 * same_err + 1e-4
    assert diff > 10 * max(diff_err, same_err)


def test_correlation_difference_sign_and_diagonal():
    gen = rng(25)
    z = gen.normal(size=(20_000, 2))
    correlated = np.column_stack([z[:, 0], 0.8 * z[:, 0] + 0.6 * z[:, 1]])
    diff = m.correlation_difference(correlated, gen.normal(size=(20_000, 2)))
    assert diff[0, 1] == pytest.approx(-0.8, abs=0.02)  # generated minus reference
    assert np.all(np.diag(diff) == 0.0)
    assert m.correlation_norm(diff) == pytest.approx(abs(diff[0, 1]))


# -- classifier two-sample test ---------------------------------------------------------------


def test_classifier_auc_is_half_for_identical_distributions():
    gen = rng(26)
    res = classifier_two_sample(
        gen.normal(size=(2000, 5)), gen.normal(size=(2000, 5)), seed=0, n_bootstrap=100
    )
    assert 0.45 <= res["auc"] <= 0.55
    assert res["auc_lo"] < res["auc"] < res["auc_hi"]
    assert res["sigma_null"] == pytest.approx(np.sqrt(2001 / (12 * 1000 * 1000)), rel=0.01)


def test_classifier_auc_is_high_for_different_distributions():
    gen = rng(27)
    x = gen.normal(size=(2000, 5))
    y = gen.normal(size=(2000, 5)) * np.array([1, 1, 1, 1, 2.0]) + np.array([1.5, 0, 0, 0, 0])
    res = classifier_two_sample(x, y, seed=0, n_bootstrap=50)
    assert res["auc"] > 0.8
    assert res["auc_lo"] > 0.75


def test_bootstrap_auc_without_resampling_is_the_auc():
    from sklearn.metrics import roc_auc_score

    class Identity:  # multiplicities all 1: the replicate is the sample itself
        @staticmethod
        def multinomial(n, pvals, size):
            return np.ones((size, n))

    gen = rng(28)
    score = np.round(gen.normal(size=400), 1)  # ties on purpose
    y = (gen.random(400) < 0.4).astype(int)
    w = gen.uniform(0.5, 2.0, size=400)
    assert bootstrap_auc(score, y, w, 2, Identity())[0] == pytest.approx(
        roc_auc_score(y, score, sample_weight=w), rel=1e-12
    )
