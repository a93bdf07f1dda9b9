"""The joint diagnosis of the embedded generator (hepflows.events.joint) and its targets.

The unit tests build samples whose marginals agree and whose correlation does not; the
calibration tests need ``../shared/data/higgs/higgs_real_subset.csv.gz`` and are skipped with
the reason otherwise.  ``python benchmarks/generator_vs_higgs.py --joint`` prints the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import signal_fails

from hepflows.events import calibration as cal
from hepflows.events import joint
from hepflows.events.generator import generate
from hepflows.events.schema import LABEL

REAL = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "higgs" / "higgs_real_subset.csv.gz"
)


def _sample(n: int, rho: float, seed: int) -> dict[str, np.ndarray]:
    """Events of both processes: 22 independent features but lepton_pt and met, which are
    Gaussian with correlation rho (same marginals whatever rho)."""
    rng = np.random.default_rng(seed)
    out = {f: rng.standard_normal(n) for f in cal.CALIBRATION_FEATURES}
    for f in ("jet1_btag", "jet2_btag", "jet3_btag", "jet4_btag"):
        out[f] = rng.integers(0, 3, n).astype(float)
    z = rng.standard_normal(n)
    out["met"] = rho * out["lepton_pt"] + np.sqrt(1 - rho * rho) * z
    out[LABEL] = (rng.random(n) < 0.5).astype(np.int8)
    return out


def test_pair_chi2_finds_the_pair_whose_correlation_differs():
    gen, real = _sample(20_000, 0.0, 1), _sample(8_000, 0.6, 2)
    pairs = joint.pair_chi2(gen, real, "signal")
    assert len(pairs) == 231
    assert {pairs[0][0], pairs[0][1]} == {"lepton_pt", "met"}
    assert pairs[0][2] > 5.0
    # every other pair agrees: about 1 per degree of freedom
    assert np.median([c for _, _, c in pairs[1:]]) < 1.5


def test_correlations_and_classifier_see_the_difference():
    gen, real = _sample(20_000, 0.0, 1), _sample(8_000, 0.8, 2)
    cg, cr = joint.correlations(gen, real, "background")
    i, j = cal.CALIBRATION_FEATURES.index("lepton_pt"), cal.CALIBRATION_FEATURES.index("met")
    assert abs(cg[i, j]) < 0.05
    assert cr[i, j] > 0.7
    assert joint.classifier_auc(gen, real, "background", n_bootstrap=1)["auc"] > 0.65
    same = joint.classifier_auc(_sample(20_000, 0.8, 3), real, "background", n_bootstrap=1)
    assert same["auc"] < 0.56


def test_extreme_events_are_ranked_by_the_classifier():
    gen, real = _sample(20_000, 0.0, 1), _sample(8_000, 0.8, 2)
    ext = joint.extreme_events(gen, real, "signal", k=4)
    assert ext["most_generator_like"].shape == (4, 22)
    assert ext["most_real_like"].shape == (4, 22)
    i, j = cal.CALIBRATION_FEATURES.index("lepton_pt"), cal.CALIBRATION_FEATURES.index("met")
    # uncorrelated events far off the real diagonal look generated: lepton_pt and met of
    # opposite sign; the most real-like sit on it
    g, r = ext["most_generator_like"], ext["most_real_like"]
    assert np.all(g[:, i] * g[:, j] < 0)
    assert np.mean(r[:, i] * r[:, j] > 0) >= 0.75


def _tagged_sample(n: int, seed: int) -> dict[str, np.ndarray]:
    """Signal events whose two tagged jets (jets 2 and 4) share one pT scale and whose untagged
    jets do not; a tenth of the events have one tagged jet only, with m_bb doubled."""
    rng = np.random.default_rng(seed)
    out = {f: rng.random(n) for f in cal.CALIBRATION_FEATURES}
    hard = rng.exponential(1.0, n)
    out["jet2_pt"] = hard * (1.0 + 0.01 * rng.random(n))
    out["jet4_pt"] = hard * (1.0 + 0.01 * rng.random(n))
    out["jet1_pt"], out["jet3_pt"] = rng.exponential(1.0, (2, n))
    one_tag = np.arange(n) < n // 10
    for f in ("jet1_btag", "jet3_btag"):
        out[f] = np.zeros(n)
    out["jet2_btag"] = np.full(n, 2.0)
    out["jet4_btag"] = np.where(one_tag, 0.0, 1.0)
    out["m_bb"] = np.where(one_tag, 2.0, 1.0) * (0.5 + rng.random(n))
    out[LABEL] = np.ones(n, dtype=np.int8)
    return out


def test_jet_pair_correlations_see_the_pair_that_shares_its_momentum():
    ev = _tagged_sample(20_000, 1)
    rho = joint.jet_pair_correlations(ev, "signal")
    assert rho["tagged"] > 0.95
    assert abs(rho["untagged"]) < 0.05
    assert abs(rho["between"]) < 0.05
    # the one-tag events (a tenth) are left out: with them jet 4 would be an untagged jet
    ev["jet4_btag"][:] = 0.0
    ev["jet3_btag"][:] = 1.0
    assert joint.jet_pair_correlations(ev, "signal")["tagged"] < 0.05


def test_masses_by_tag_count_split_the_events_by_their_tags():
    q = joint.masses_by_tag_count(_tagged_sample(20_000, 2), "signal")
    assert set(q) == {1, 2}
    assert q[1]["m_bb"][0] == pytest.approx(2.0, abs=0.05)
    assert q[2]["m_bb"][0] == pytest.approx(1.0, abs=0.02)
    assert q[2]["m_bb"][1] == pytest.approx(1.4, abs=0.02)


def test_tagged_pair_mass_finds_the_columns_scales():
    # Jets 1 and 2 tagged; m_bb is their massless mass in 70 % of the events, else 1.3 times
    # it; columns stored in units of S = (120, 80, 60, 40) GeV for the jets, 140 for m_bb.
    n = 40_000
    rng = np.random.default_rng(3)
    scales = np.array([120.0, 80.0, 60.0, 40.0])
    pt = rng.uniform(30.0, 200.0, (4, n))
    eta = rng.uniform(-2.0, 2.0, (4, n))
    phi = rng.uniform(-np.pi, np.pi, (4, n))
    tags = np.zeros((4, n))
    pair = rng.integers(0, 6, n)
    ij = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])[pair].T
    tags[ij[0], np.arange(n)] = tags[ij[1], np.arange(n)] = 2.0
    i, j, ev = ij[0], ij[1], np.arange(n)
    m = np.sqrt(
        2
        * pt[i, ev]
        * pt[j, ev]
        * (np.cosh(eta[i, ev] - eta[j, ev]) - np.cos(phi[i, ev] - phi[j, ev]))
    )
    m = np.where(rng.random(n) < 0.7, m, 1.3 * m)
    events = {LABEL: np.zeros(n, dtype=np.int8), "m_bb": m / 140.0}
    for k in range(4):
        events[f"jet{k + 1}_pt"] = pt[k] / scales[k]
        events[f"jet{k + 1}_eta"] = eta[k]
        events[f"jet{k + 1}_phi"] = phi[k] * (1.7434 / np.pi)
        events[f"jet{k + 1}_btag"] = tags[k]
    res = joint.tagged_pair_mass(events, "background")
    assert res["pairs"]["12"]["mode"] == pytest.approx(np.log(120.0 * 80.0 / 140.0**2), abs=0.01)
    for p in res["pairs"].values():
        assert p["fraction"] == pytest.approx(0.7, abs=0.03)
    np.testing.assert_allclose(res["scales"], scales / 140.0, rtol=0.01)


def test_derived_observables_measure_distances_and_recoil():
    # One event: jets at (eta, phi) (0, 0), (0, 1), (1, 0), (-2, 3); the lepton at (0.3, 0.4),
    # the MET at phi 2.9; jets 1 and 4 tagged.  Every pT 1 HIGGS unit.
    from hepflows.events.generator import HIGGS_PHI_SCALE, HIGGS_SCALE

    ev = {LABEL: np.ones(1, dtype=np.int8), "lepton_pt": np.ones(1), "met": np.ones(1)}
    for k, (eta, phi) in enumerate([(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (-2.0, 3.0)], start=1):
        ev[f"jet{k}_pt"] = np.ones(1)
        ev[f"jet{k}_eta"] = np.array([eta])
        ev[f"jet{k}_phi"] = np.array([phi * HIGGS_PHI_SCALE])
        ev[f"jet{k}_btag"] = np.array([2.0 if k in (1, 4) else 0.0])
    ev["lepton_eta"], ev["lepton_phi"] = np.array([0.3]), np.array([0.4 * HIGGS_PHI_SCALE])
    ev["met_phi"] = np.array([2.9 * HIGGS_PHI_SCALE])
    d = joint.derived_observables(ev, "signal")
    assert d["min_dr_jets"][0] == pytest.approx(1.0)
    assert d["min_dr_lepton_jet"][0] == pytest.approx(0.5)
    assert d["dphi_lepton_met"][0] == pytest.approx(2.5)
    assert d["dr_tagged"][0] == pytest.approx(np.hypot(2.0, 3.0))
    assert d["mean_abs_eta"][0] == pytest.approx(0.75)
    jets = [
        HIGGS_SCALE[f"jet{k}_pt"] * np.array([np.cos(p), np.sin(p)])
        for k, p in zip(range(1, 5), (0.0, 1.0, 0.0, 3.0), strict=True)
    ]
    lep = HIGGS_SCALE["lepton_pt"] * np.array([np.cos(0.4), np.sin(0.4)])
    met = HIGGS_SCALE["met"] * np.array([np.cos(2.9), np.sin(2.9)])
    assert d["visible_pt"][0] == pytest.approx(np.linalg.norm(sum(jets) + lep + met))
    # the KS table: a sample against itself is at distance 0
    assert joint.derived_distances(ev, ev, "signal")["min_dr_jets"]["ks"] == 0.0


@pytest.fixture(scope="module")
def real_and_generated() -> tuple[dict, dict]:
    if not REAL.exists():
        pytest.skip(f"real HIGGS subset not present at {REAL}")
    return cal.read_real(REAL), generate(40_000, seed=7, units="higgs")


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_real_vs_real_null_is_near_one_half(real_and_generated, process):
    real, _ = real_and_generated
    assert abs(joint.real_null_auc(real, process) - 0.5) < 0.03


# What the generator reaches (40k events, seed 7): AUC 0.791 signal, 0.774 t tbar.
_AUC_REACHED = {"signal": 0.791, "background": 0.774}


@pytest.mark.parametrize("process", list(cal.PROCESSES))
@pytest.mark.xfail(
    strict=True,
    reason="the joint target is not reached: classifier AUC 0.79 (signal), 0.77 (t tbar); "
    "see docs/generator.md, 'Fourth round'",
)
def test_classifier_auc_meets_the_joint_target(real_and_generated, process):
    real, gen = real_and_generated
    assert joint.classifier_auc(gen, real, process, n_bootstrap=1)["auc"] <= joint.AUC_TARGET


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_classifier_auc_stays_where_the_generator_reached(real_and_generated, process):
    # A change that makes the events easier to tell from the real ones fails here.
    real, gen = real_and_generated
    auc = joint.classifier_auc(gen, real, process, n_bootstrap=1)["auc"]
    assert auc <= _AUC_REACHED[process] + 0.02


# The real rows' number of b-tagged jets among the four (0, 1, 2; no row has more).
_REAL_TAG_COUNTS = {"signal": (0.011, 0.222, 0.767), "background": (0.007, 0.161, 0.832)}


@pytest.mark.parametrize(
    "process",
    signal_fails(
        "two tagged jets among the four in 0.84 of the signal events against the real 0.77: "
        "the clustering (version 3) keeps both b jets among the four more often (version 2: "
        "0.83); docs/generator.md, 'Fourth round'"
    ),
)
def test_tagged_jets_per_event_as_in_the_real_rows(real_and_generated, process):
    # Two b-tags are required among all jets, so both b jets are tagged and most often both are
    # among the four: each count is the real fraction to 0.07 (t tbar: 0.14 and 0.86 for one and
    # two tags; signal 0.16 and 0.84, a little too few b jets outside the four).
    real, gen = real_and_generated
    for sample, want in ((real, _REAL_TAG_COUNTS[process]), (gen, None)):
        keep = sample[LABEL] == cal.PROCESSES[process]
        n_tags = sum((sample[f"jet{i}_btag"][keep] > 0).astype(int) for i in range(1, 5))
        counts = np.bincount(n_tags, minlength=3) / keep.sum()
        if want is not None:
            np.testing.assert_allclose(counts, want, atol=2e-3)
        else:
            np.testing.assert_allclose(counts, _REAL_TAG_COUNTS[process], atol=0.07)


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_tag_rate_falls_with_eta_as_in_the_real_rows(real_and_generated, process):
    # The tag rate of central jets (|eta| < 0.8) and of jets at 1.2 < |eta| < 1.6, both samples.
    real, gen = real_and_generated

    def rates(sample):
        keep = sample[LABEL] == cal.PROCESSES[process]
        eta = np.abs(np.concatenate([sample[f"jet{i}_eta"][keep] for i in range(1, 5)]))
        tag = np.concatenate([sample[f"jet{i}_btag"][keep] > 0 for i in range(1, 5)])
        return np.array([tag[eta < 0.8].mean(), tag[(eta > 1.2) & (eta < 1.6)].mean()])

    np.testing.assert_allclose(rates(gen), rates(real), atol=0.05)


# The jets of one parent share its momentum: rank correlations of the jets' pTs in the rows with
# two tagged jets (tagged pair, untagged pair, pair sums), real rows / version 3 of the generator
# at 40k events: signal 0.13 / -0.19, 0.30 / -0.01, 0.42 / 0.15; t tbar 0.30 / 0.27,
# 0.21 / 0.06, 0.37 / 0.29.  The signal lacks an event-wide hardness (docs/generator.md,
# "Third round" and "Fourth round").
@pytest.mark.parametrize(
    "process",
    signal_fails(
        "the signal's jet pairs share too little momentum (-0.19 against 0.13 for "
        "the tagged pair); see docs/generator.md, 'Third round'"
    ),
)
def test_jet_pairs_share_momentum_as_in_the_real_rows(real_and_generated, process):
    real, gen = real_and_generated
    rho_gen = joint.jet_pair_correlations(gen, process)
    rho_real = joint.jet_pair_correlations(real, process)
    for k, r in rho_real.items():
        assert abs(rho_gen[k] - r) <= 0.15, (k, rho_gen, rho_real)


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_real_one_tag_rows_have_the_lower_b_masses(real_and_generated, process):
    # The real rows' b candidates with one tagged jet among the four are the tagged jet and a
    # softer one from outside the four: their m_bb lies below the two-tag rows' (median 0.75
    # against 0.88 in signal, 0.69 against 0.98 in t tbar).
    real, _ = real_and_generated
    q = joint.masses_by_tag_count(real, process)
    assert q[1]["m_bb"][0] < q[2]["m_bb"][0] - 0.1


@pytest.mark.parametrize("process", list(cal.PROCESSES))
@pytest.mark.xfail(
    strict=True,
    reason="the generator takes the second b candidate among the four (B_CANDIDATES 'four'): "
    "its one-tag m_bb is not below the two-tag one's (medians 1.07 against 0.84 in signal, "
    "0.94 against 0.94 in t tbar)",
)
def test_generated_one_tag_rows_have_the_lower_b_masses(real_and_generated, process):
    _, gen = real_and_generated
    q = joint.masses_by_tag_count(gen, process)
    assert q[1]["m_bb"][0] < q[2]["m_bb"][0] - 0.1


def test_real_pair_masses_imply_one_set_of_jet_scales(real_and_generated):
    # m_bb is the tagged pair's massless mass (to 1 %) in 80 % of the real rows whose jets 1 and
    # 2 are the tagged ones, fewer for later jets (29 % for jets 3 and 4); where it is, the
    # spikes of all six pairs agree on one scale per jet column, the same in both processes:
    # 0.86, 0.63, 0.45, 0.32 times m_bb's.
    real, _ = real_and_generated
    sig = joint.tagged_pair_mass(real, "signal")
    bkg = joint.tagged_pair_mass(real, "background")
    np.testing.assert_allclose(sig["scales"], bkg["scales"], rtol=0.02)
    np.testing.assert_allclose(sig["scales"], [0.863, 0.626, 0.450, 0.324], rtol=0.02)
    assert sig["pairs"]["12"]["fraction"] > 0.7
    assert sig["pairs"]["34"]["fraction"] < 0.4


@pytest.mark.xfail(
    strict=True,
    reason="the jet scales fitted to the medians (102.1, 79.4, 59.7, 46.0 GeV) are not those the "
    "real rows' pair masses imply (120, 87, 63, 45 GeV at m_bb's 139.1): the generator's stored "
    "jets relate to its masses otherwise than the real ones; docs/generator.md, 'Third round'",
)
def test_generator_jet_scales_are_those_the_real_pair_masses_imply(real_and_generated):
    real, gen = real_and_generated
    want = joint.tagged_pair_mass(real, "signal")["scales"]
    np.testing.assert_allclose(joint.tagged_pair_mass(gen, "signal")["scales"], want, rtol=0.03)


def _benchmark():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "generator_vs_higgs.py"
    spec = importlib.util.spec_from_file_location("generator_vs_higgs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_sets_generator_constants_and_refuses_unknown_ones(monkeypatch):
    from hepflows.events import generator

    bench = _benchmark()
    for name in ("B_CANDIDATES", "SIGNAL_HPM_TB", "BTAG_ETA_ACCEPTANCE"):
        monkeypatch.setattr(generator, name, getattr(generator, name))
    bench.apply_settings(
        ["B_CANDIDATES=all", "SIGNAL_HPM_TB=0.3", "BTAG_ETA_ACCEPTANCE=[[0, 2], [1, 1]]"]
    )
    assert generator.B_CANDIDATES == "all"
    assert generator.SIGNAL_HPM_TB == 0.3
    assert generator.BTAG_ETA_ACCEPTANCE == ([0, 2], [1, 1])
    for bad in ("NO_SUCH_CONSTANT=1", "SIGNAL_HPM_TB", "generate=1"):
        with pytest.raises(SystemExit, match="generator constant"):
            bench.apply_settings([bad])
