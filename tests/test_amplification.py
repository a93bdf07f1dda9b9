"""The amplification measurement: MC treated as generated is worth its size, a bias is finite.

The truth is a disjoint range of the generator's stream; MC samples of several sizes from other
ranges stand in for generated samples.  For those, E[d] = (B - 1)(1/n + 1/N_T) must hold, few
cells may show a significant excess (about alpha of them), and n_equiv must be consistent with
infinity (flagged as a lower bound of the order of the sample, or larger).  A copy with one
feature scaled by 1.02 must come out finite, at the n_equiv that the same scaling of the truth
itself gives, whatever the size of the sample.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hepflows.events.generator import generate
from hepflows.events.writer import write_events
from hepflows.validation import amplification as amp

FEATURES = ["lepton_pt", "met", "jet1_pt", "m_jj", "m_bb", "m_wwbb"]
SEED = 11
N_TRUTH = 300_000
TRUTH_START = 10**9


def _mc(n: int, start: int) -> dict[str, np.ndarray]:
    ev = generate(n, seed=SEED, start=start)
    return {k: ev[k] for k in (*FEATURES, "label")}


@pytest.fixture(scope="module")
def truth() -> dict[str, np.ndarray]:
    return _mc(N_TRUTH, TRUTH_START)


@pytest.fixture(scope="module")
def mc_rows(truth) -> list[tuple[int, list[dict]]]:
    """(size, rows) for MC samples of three sizes from disjoint event ranges."""
    out = []
    for i, n in enumerate((5_000, 20_000, 80_000)):
        rows = amp.amplification(truth, _mc(n, i * 10**6), FEATURES, n_train=n, cells=100, seed=i)
        out.append((n, rows))
    return out


def test_mc_divergence_matches_its_expectation(mc_rows):
    ratio = np.array([r["d_gen"] / r["d_mc"] for _, rows in mc_rows for r in rows])
    assert len(ratio) == 3 * (3 * len(FEATURES) + 3)
    # E[d] = (B - 1)(1/n + 1/N_T): each ratio has a standard deviation of about sqrt(2 / (B - 1))
    assert 0.85 < ratio.mean() < 1.15, ratio.mean()
    assert 0.1 < ratio.std() < 0.35, ratio.std()


def test_mc_is_worth_its_size_and_n_equiv_consistent_with_infinity(mc_rows):
    n_rows = sum(len(rows) for _, rows in mc_rows)
    significant = [r for _, rows in mc_rows for r in rows if not r["lower_bound"]]
    # about alpha of the cells by chance; a real bias would flag far more
    assert len(significant) <= 0.15 * n_rows, [(r["feature"], r["slice"]) for r in significant]
    for n, rows in mc_rows:
        for r in rows:
            size = r["n_generated"]
            where = (n, r["feature"], r["slice"])
            assert size == pytest.approx(n / (1 if r["slice"] == "all" else 2), rel=0.05), where
            # never a claim that MC is worth less than about itself
            assert r["n_equiv"] >= 0.5 * size, where
            if r["lower_bound"]:
                assert r["n_equiv_hi"] == math.inf and r["worth_hi"] == size, where
                assert r["n_equiv_lo"] <= r["resolution"] * (1 + 1e-9), where
                assert 0.4 * size <= r["worth_lo"] <= size, where
                assert r["G"] == pytest.approx(r["n_equiv"] / n), where


def _asymptotic_n_equiv(truth: dict, feature: str, slice_name: str, bins: int) -> float:
    """(B - 1) / d(1.02 T, T): the bias of the scaling alone, T's noise cancels."""
    t = amp._events(truth, [feature], "t").slice(slice_name)
    scaled = amp._Events(t.x * 1.02, t.label, None)
    p_t, p_s = amp._quantile_cells(t, [scaled], bins)
    return float((bins - 1) / amp.chi2_divergence(p_s, p_t)[0])


@pytest.mark.parametrize("n", [40_000, 160_000])
def test_a_scaled_feature_is_finite_at_the_right_n_equiv(truth, n):
    sample = _mc(n, 5 * 10**6)
    sample["lepton_pt"] = sample["lepton_pt"] * np.float32(1.02)
    rows = amp.amplification(truth, sample, FEATURES, cells=None, seed=1)
    scaled = [r for r in rows if r["feature"] == "lepton_pt"]
    assert len(scaled) == 3
    for r in scaled:
        expected = _asymptotic_n_equiv(truth, "lepton_pt", r["slice"], r["bins"])
        assert 2e3 < expected < 1e5  # a few 1e4 MC events: resolvable, far from the samples' size
        assert not r["lower_bound"], r
        assert r["n_equiv_lo"] < r["n_equiv"] < r["n_equiv_hi"] < math.inf
        # the interval holds the asymptotic value (10 % slack for the edges' own noise)
        assert r["n_equiv_lo"] / 1.1 < expected < r["n_equiv_hi"] * 1.1, (r, expected)
        # the estimate's own spread is about 25 % at 40k events (d's noise sqrt(2k s^2 + 4 D s))
        assert expected / 2 < r["n_equiv"] < 2 * expected, (r, expected)
        assert r["worth"] == pytest.approx(1 / (1 / r["n_equiv"] + 1 / r["n_generated"]))
    others = [r for r in rows if r["feature"] != "lepton_pt"]
    assert sum(not r["lower_bound"] for r in others) <= 3


def test_a_smeared_copy_is_finite_in_the_joint_partition(truth):
    sample = _mc(60_000, 7 * 10**6)
    rng = np.random.default_rng(0)
    for f in ("m_jj", "m_bb"):
        sample[f] = sample[f] * (1 + 0.1 * rng.standard_normal(len(sample[f]))).astype(np.float32)
    rows = amp.amplification(truth, sample, FEATURES, cells=100, slices=["all"], seed=2)
    joint = [r for r in rows if r["feature"] == amp.JOINT]
    assert len(joint) == 1 and not joint[0]["lower_bound"], joint
    # about 7k MC events (2.2k to 2.4k for m_bb alone) over seeds of the stream
    assert 2e3 < joint[0]["n_equiv"] < 3e4, joint
    assert joint[0]["pvalue"] < 1e-20


def test_weights_enter_through_kish_sizes(truth):
    sample = _mc(20_000, 9 * 10**6)
    plain = amp.amplification(truth, sample, FEATURES[:2], cells=None, slices=["all"])
    unit = amp.amplification(
        truth, {**sample, "weight": np.ones(20_000)}, FEATURES[:2], cells=None, slices=["all"]
    )
    assert plain == unit
    w = np.where(np.arange(20_000) % 2 == 0, 1.0, 3.0)  # Kish size 20k * 16 / 20 = 16k
    weighted = amp.amplification(
        truth, {**sample, "weight": w}, FEATURES[:2], cells=None, slices=["all"]
    )
    assert weighted[0]["n_generated"] == pytest.approx(16_000)


def test_excess_interval_limits():
    from scipy import stats

    k = 49.0
    lam_hat, lam_lo, lam_hi, lam_res, p = amp.excess_interval(stats.chi2.median(k), k)
    assert lam_hat == 0 and lam_lo == 0 and p == pytest.approx(0.5)
    assert lam_hi == pytest.approx(lam_res)  # power constraint: never beyond the median's limit
    assert amp.excess_interval(k, k)[2] > lam_res
    low = amp.excess_interval(20.0, k)  # far below the expectation: still the resolution only
    assert low[2] == pytest.approx(lam_res)
    big = amp.excess_interval(k + 500.0, k)
    assert big[4] < 1e-6 and 0 < big[1] < big[0] == 500.0 < big[2]


def test_write_amplification_and_plot(tmp_path, truth):
    from hepflows.report.amplification_plot import plot_amplification

    rows = amp.amplification(truth, _mc(10_000, 11 * 10**6), FEATURES, n_train=30_000, cells=50)
    csv_path, json_path = amp.write_amplification(rows, tmp_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(amp.COLUMNS) and len(lines) == len(rows) + 1
    doc = json.loads(json_path.read_text())
    assert len(doc["rows"]) == len(rows)
    bounded = [r for r in doc["rows"] if r["lower_bound"]]
    assert bounded and all(r["n_equiv_hi"] is None for r in bounded)  # inf -> null
    assert doc["summary"]["n_cells"] == len(rows)
    assert doc["summary"]["joint"]["feature"] == amp.JOINT
    curve = amp.mc_divergence_curve(truth, FEATURES, [1_000, 10_000, 100_000])
    assert curve["all"]["d_per_dof"].shape == (3, len(FEATURES))
    expected = 1 / curve["all"]["n"] - 1 / N_TRUTH  # subsamples of the truth
    assert np.mean(curve["all"]["d_per_dof"].mean(1) / expected) == pytest.approx(1, abs=0.2)
    pdf, png = plot_amplification(rows, curve, tmp_path / "amplification")
    assert pdf.stat().st_size > 0 and png.stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_command_line(tmp_path):
    from hepflows.cli import main

    write_events(tmp_path / "truth.root", _mc(20_000, TRUTH_START))
    write_events(tmp_path / "gen.root", _mc(4_000, 0))
    out = tmp_path / "out"
    settings = json.dumps({"features": FEATURES, "validation": {"amplification": {"cells": 20}}})
    command = ["amplification", "--settings", settings, "--quiet"]
    files = ["--generated", str(tmp_path / "gen.root"), "--out-dir", str(out)]
    truth = ["--truth", str(tmp_path / "truth.root"), "--train", str(tmp_path / "gen.root")]
    assert main([*command, *truth, *files]) == 0
    doc = json.loads((out / "amplification.json").read_text())
    assert {r["feature"] for r in doc["rows"]} == {*FEATURES, amp.JOINT}
    assert {r["slice"] for r in doc["rows"]} == {"all", "signal", "background"}
    assert {r["n_train"] for r in doc["rows"]} == {4000}
    assert main([*command, "--truth", str(tmp_path / "missing.root"), *files]) == 2
