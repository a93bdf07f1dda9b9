"""The event generator: reproducibility, sharding, labels, acceptance, kinematics and physics peaks."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import vector

from hepflows.errors import InputError
from hepflows.events import generator as gen
from hepflows.events.generator import BLOCK_SIZE, generate
from hepflows.events.joint import _delta_r
from hepflows.events.schema import BTAGS, HIGGS_FEATURES, LABEL, MASSES

N_PHYSICS = 3 * BLOCK_SIZE


@pytest.fixture(scope="module")
def events() -> dict[str, np.ndarray]:
    """About 12k signal and 12k t tbar events in GeV."""
    return generate(N_PHYSICS, seed=2024)


#: Every effect off that makes the stored features differ from a plain reconstruction: jets in
#: pT order and the W-mass constraint at m_W exactly.
PLAIN = {"jet_order": False, "constraint_spread": False}


@pytest.fixture(scope="module")
def plain_events() -> dict[str, np.ndarray]:
    """The same events as ``events`` but in pT order with the constraint at m_W exactly."""
    return generate(N_PHYSICS, seed=2024, effects=PLAIN)


def _mode(x: np.ndarray, lo: float, hi: float, width: float) -> float:
    """Centre of the fullest bin of a histogram of x on [lo, hi), bins of ``width``."""
    counts, edges = np.histogram(x, bins=int(round((hi - lo) / width)), range=(lo, hi))
    i = int(np.argmax(counts))
    return 0.5 * (edges[i] + edges[i + 1])


# -- API, reproducibility, sharding ---------------------------------------------------------------
def test_columns_dtypes_and_length():
    ev = generate(123, seed=1)
    assert set(ev) == {*HIGGS_FEATURES, LABEL}
    for f in HIGGS_FEATURES:
        assert ev[f].dtype == np.float32 and ev[f].shape == (123,), f
        assert np.isfinite(ev[f]).all(), f
    assert ev[LABEL].dtype == np.int8
    assert set(np.unique(ev[LABEL])) <= {0, 1}
    assert all(len(a) == 0 for a in generate(0, seed=1).values())


def test_reproducible_and_seed_dependent():
    a = generate(300, seed=9)
    b = generate(300, seed=9)
    c = generate(300, seed=10)
    for f in (*HIGGS_FEATURES, LABEL):
        np.testing.assert_array_equal(a[f], b[f])
    assert not np.array_equal(a["lepton_pt"], c["lepton_pt"])


def test_shards_equal_one_run():
    start, n = BLOCK_SIZE - 250, BLOCK_SIZE + 600  # spans three blocks
    whole = generate(n, seed=5, start=start)
    cuts = [0, 1, 250, 251, 4000, n]  # shards inside and across block boundaries
    shards = [generate(b - a, seed=5, start=start + a) for a, b in zip(cuts, cuts[1:])]
    for f in (*HIGGS_FEATURES, LABEL):
        np.testing.assert_array_equal(np.concatenate([s[f] for s in shards]), whole[f], err_msg=f)


def test_labels_are_a_function_of_seed_and_index():
    # Labels come from their own stream: the same whatever the units or the shard.
    a = generate(900, seed=4, signal_fraction=0.3)[LABEL]
    b = generate(400, seed=4, start=500, signal_fraction=0.3, units="higgs")[LABEL]
    np.testing.assert_array_equal(a[500:], b)
    assert not np.array_equal(a, generate(900, seed=5, signal_fraction=0.3)[LABEL])


@pytest.mark.parametrize("fraction", [0.0, 0.27, 1.0])
def test_label_fraction(fraction):
    n = 2 * BLOCK_SIZE
    label = generate(n, seed=8, signal_fraction=fraction)[LABEL]
    sigma = np.sqrt(fraction * (1 - fraction) / n)
    assert abs(label.mean() - fraction) <= 4 * sigma + 1e-12


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="units"):
        generate(10, seed=1, units="TeV")
    with pytest.raises(InputError, match="signal_fraction"):
        generate(10, seed=1, signal_fraction=1.5)
    with pytest.raises(InputError, match="n_events"):
        generate(-1, seed=1)
    with pytest.raises(InputError, match="seed"):
        generate(10, seed=-3)


# -- units ---------------------------------------------------------------------------------------
def test_default_signal_fraction_follows_the_layout():
    n = 4 * BLOCK_SIZE
    sigma = np.sqrt(0.25 / n)
    assert (
        abs(generate(n, seed=8, units="higgs")[LABEL].mean() - gen.HIGGS_SIGNAL_FRACTION)
        < 4 * sigma
    )
    assert abs(generate(n, seed=8)[LABEL].mean() - 0.5) < 4 * sigma


def test_higgs_units_rescale_the_same_events(events):
    higgs = generate(N_PHYSICS, seed=2024, units="higgs", signal_fraction=0.5)
    np.testing.assert_array_equal(higgs[LABEL], events[LABEL])
    np.testing.assert_allclose(higgs["lepton_eta"], events["lepton_eta"])
    for f, scale in gen.HIGGS_SCALE.items():
        np.testing.assert_allclose(higgs[f], events[f] / scale, rtol=1e-6)
        # Scales fitted to the real rows' medians: means near 1, as in the HIGGS dataset.
        assert 0.85 < higgs[f].mean() < 1.15, f
    for f, (scale_bkg, scale_sig) in gen.HIGGS_SCALE_BY_LABEL.items():
        sig = events[LABEL] == 1
        np.testing.assert_allclose(higgs[f][sig], events[f][sig] / scale_sig, rtol=1e-6)
        np.testing.assert_allclose(higgs[f][~sig], events[f][~sig] / scale_bkg, rtol=1e-6)
        assert 0.85 < higgs[f][sig].mean() < 1.15 and 0.85 < higgs[f][~sig].mean() < 1.15, f
    with pytest.raises(InputError, match="m_wbb"):
        gen.to_higgs_units({"m_wbb": events["m_wbb"]})
    for f in ("lepton_phi", "met_phi", "jet1_phi"):
        assert np.abs(higgs[f]).max() <= 1.7434 + 1e-6
        np.testing.assert_allclose(higgs[f], events[f] * gen.HIGGS_PHI_SCALE, rtol=1e-6)
    for f in BTAGS:
        levels = np.asarray(gen.HIGGS_BTAG_LEVELS[f], dtype=np.float32)
        np.testing.assert_array_equal(np.unique(higgs[f]), levels)
        np.testing.assert_array_equal(higgs[f], levels[events[f].astype(int)])


# -- acceptance ----------------------------------------------------------------------------------
def test_objects_pass_the_selection(events, plain_events):
    assert (events["lepton_pt"] > gen.LEPTON_PT_MIN).all()
    assert (np.abs(events["lepton_eta"]) < gen.LEPTON_ETA_MAX).all()
    pts = np.stack([events[f"jet{i}_pt"] for i in range(1, 5)])
    assert (pts > gen.JET_PT_MIN).all()
    # Stored as in the HIGGS rows: not in pT order, but the same four jets as the pT order.
    plain = np.stack([plain_events[f"jet{i}_pt"] for i in range(1, 5)])
    assert (np.diff(plain, axis=0) <= 0).all(), "without jet_order, jets are in decreasing pT"
    np.testing.assert_array_equal(np.sort(pts, axis=0), np.sort(plain, axis=0))
    swapped = np.mean(pts[0] < pts[1])
    assert 0.2 < swapped < 0.5, swapped
    for i in range(1, 5):
        assert (np.abs(events[f"jet{i}_eta"]) < gen.JET_ETA_MAX).all()
    assert (events["met"] > 0).all()
    for f in ("lepton_phi", "met_phi", "jet1_phi", "jet4_phi"):
        assert np.abs(events[f]).max() <= np.pi + 1e-6
    for f in MASSES:
        assert (events[f] > 0).all(), f


def test_btags_take_three_levels(events):
    for f in BTAGS:
        assert set(np.unique(events[f])) == {0.0, 1.0, 2.0}, f
    # Only b jets are tagged, as in the HIGGS rows: never more than two tagged jets an event.
    tags = np.stack([events[f] for f in BTAGS])
    assert ((tags > 0).sum(axis=0) <= 2).all()
    # Four jets with two b quarks among them, each tight-tagged with about 3/4: ~0.35 a jet.
    tagged = np.mean(tags == 2)
    assert 0.25 < tagged < 0.45


def test_two_b_tags_inside_the_taggers_acceptance(events):
    # The selection needs two b-tagged jets among all good jets, and the tagger sees only
    # |eta| < 1.8, its efficiency falling from |eta| 0.8: the stored tagged jets are central.
    tags = np.stack([events[f] for f in BTAGS])
    etas = np.abs(np.stack([events[f"jet{i}_eta"] for i in range(1, 5)]))
    eta_max = gen.BTAG_ETA_ACCEPTANCE[0][-1]
    assert (etas[tags > 0] < eta_max).all()
    rate = lambda lo, hi: np.mean(tags[(etas >= lo) & (etas < hi)] > 0)  # noqa: E731
    assert rate(0.0, 0.8) > 2 * rate(1.4, 1.6) > 0
    # the two b jets are among the four in most events, so most events have two tags
    assert np.mean((tags > 0).sum(axis=0) == 2) > 0.75
    # without the acceptance, b jets are tagged wherever they are
    off = generate(BLOCK_SIZE, seed=2024, effects={"btag_eta": False})
    off_tags = np.stack([off[f] for f in BTAGS]) > 0
    off_etas = np.abs(np.stack([off[f"jet{i}_eta"] for i in range(1, 5)]))
    assert (off_etas[off_tags] > eta_max).any()


def test_taggable_events_are_the_only_ones_that_pass():
    # Skipping the detector for events whose b quarks lie outside the tagger's acceptance
    # loses no event that the selection would keep.
    partons = gen._signal_partons(np.random.default_rng(3), 20_000)
    _, accepted = gen._detector(np.random.default_rng(4), partons, gen.EFFECTS)
    taggable = partons.taggable()
    assert accepted.sum() > 1000
    assert not (accepted & ~taggable).any()
    assert 0.5 < taggable.mean() < 0.95


@pytest.mark.parametrize("f_longitudinal", [0.7, 1.0])
def test_w_from_top_decays_with_its_helicity(f_longitudinal):
    # The charged lepton's angle to the W's direction in the top's frame: f0 (3/4) sin^2 +
    # (1 - f0) (3/8) (1 - cos)^2, whose mean is -(1 - f0)/2 and mean square 0.2 f0 + 0.4 (1 - f0).
    rng = np.random.default_rng(8)
    n = 200_000
    m_t = np.full(n, gen.M_TOP)
    top = gen._system(m_t, rng.normal(0, 1, n), rng.normal(0, 60, n), rng.normal(0, 60, n))
    w, _ = gen._two_body(rng, top, m_t, gen.M_W, gen.M_B)
    m_w = np.full(n, gen.M_W)
    lepton, nu = gen._polarised_w_decay(rng, w, m_w, top, m_t, f_longitudinal)
    np.testing.assert_allclose(lepton + nu, w, atol=1e-6)
    np.testing.assert_allclose(gen._mass(lepton), 0.0, atol=0.05)  # float32 directions
    axis = gen._to_rest(w, top, m_t)[1:]
    in_w = gen._to_rest(lepton, w, m_w)[1:]
    cos = (axis * in_w).sum(axis=0) / np.sqrt((axis**2).sum(axis=0) * (in_w**2).sum(axis=0))
    assert np.mean(cos) == pytest.approx(-(1 - f_longitudinal) / 2, abs=0.01)
    want = 0.2 * f_longitudinal + 0.4 * (1 - f_longitudinal)
    assert np.mean(cos**2) == pytest.approx(want, abs=0.01)


def test_charged_higgs_decays_to_w_h_or_to_t_b():
    # In SIGNAL_HPM_TB of the signal events H+- -> t b: the two b quarks are then not the h0's.
    p = gen._signal_partons(np.random.default_rng(5), 20_000)
    b1, b2 = (np.stack([np.linalg.norm(p.jets[:, k], axis=0), *p.jets[:, k]]) for k in (0, 1))
    m_bb = gen._mass(b1 + b2)
    from_h0 = np.abs(m_bb - gen.M_HIGGS) < 2.0  # (the b quarks are stored massless)
    assert np.mean(~from_h0) == pytest.approx(gen.SIGNAL_HPM_TB, abs=0.02)
    assert np.median(m_bb[~from_h0]) > gen.M_HIGGS + 20


def _jet(pt: float, eta: float, phi: float) -> np.ndarray:
    return np.array([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)])


def test_clustering_merges_partons_closer_than_the_jet_radius():
    r = gen.JET_RADIUS
    # event 0: a light quark at 0.5 R from b1 joins it; event 1: the same at 1.5 R stays apart;
    # event 2: two light quarks at 0.5 R, the softer joins the harder.
    jets = np.zeros((3, 6, 3))
    for k, d in enumerate((0.5 * r, 1.5 * r)):
        jets[:, 0, k] = _jet(60.0, 0.3, 1.0)
        jets[:, 2, k] = _jet(80.0, 0.3 + d, 1.0)
        jets[:, 4, k] = _jet(30.0, -1.5, -2.0)
    jets[:, 0, 2] = _jet(50.0, 1.0, 0.0)
    jets[:, 2, 2] = _jet(20.0, -0.5, 2.0)
    jets[:, 3, 2] = _jet(70.0, -0.5 + 0.5 * r, 2.0)
    out = gen._cluster(jets)
    np.testing.assert_allclose(out[:, 0, 0], jets[:, 0, 0] + jets[:, 2, 0])  # into the b slot
    assert np.hypot(*out[:2, 2, 0]) < 1e-3
    np.testing.assert_allclose(out[:, :, 1], jets[:, :, 1])  # nothing close: unchanged
    np.testing.assert_allclose(out[:, 3, 2], jets[:, 2, 2] + jets[:, 3, 2])  # into the harder
    assert np.hypot(*out[:2, 2, 2]) < 1e-3
    # momentum is conserved in every event
    np.testing.assert_allclose(out.sum(axis=1), jets.sum(axis=1), atol=1e-3)


def test_lepton_isolation_against_nearby_jets():
    lepton = np.zeros((4, 3))
    lepton[1:] = np.stack([_jet(40.0, 0.0, 0.0)] * 3, axis=1)
    lepton[0] = np.linalg.norm(lepton[1:], axis=0)
    jets = np.zeros((3, 6, 3))
    jets[:, 2, 0] = _jet(30.0, 0.5 * gen.LEPTON_ISOLATION_RADIUS, 0.0)  # close and hard
    jets[:, 2, 1] = _jet(30.0, 2.0 * gen.LEPTON_ISOLATION_RADIUS, 0.0)  # far
    jets[:, 2, 2] = _jet(0.5 * gen.LEPTON_ISOLATION_RATIO * 40.0, 0.1, 0.0)  # close, soft
    assert gen._isolated(lepton, jets).tolist() == [False, True, True]


def test_stored_jets_are_apart_and_the_lepton_isolated(events):
    # Jet directions are not smeared: no two stored jets are closer than the jet radius, and
    # no jet as hard as a fifth of the lepton comes near it.
    r = gen.JET_RADIUS * (1 - 1e-3)
    for i in range(1, 5):
        for j in range(i + 1, 5):
            d = _delta_r(*(events[f"jet{k}_{v}"] for k in (i, j) for v in ("eta", "phi")))
            assert d.min() > 0.9 * r, (i, j)
        d = _delta_r(
            events["lepton_eta"], events["lepton_phi"], events[f"jet{i}_eta"], events[f"jet{i}_phi"]
        )
        hard = events[f"jet{i}_pt"] > 0.2 * events["lepton_pt"]
        assert d[hard].min() > 0.9 * gen.LEPTON_ISOLATION_RADIUS
    off = generate(N_PHYSICS, seed=2024, effects={"jet_clustering": False})
    d = _delta_r(off["jet1_eta"], off["jet1_phi"], off["jet2_eta"], off["jet2_phi"])
    assert (d < r).mean() > 0.005  # without clustering, close jets are there


@pytest.mark.parametrize("a", [-0.6, 1.5])
def test_top_angle_follows_one_plus_a_cos_squared(a):
    c = gen._cos_theta(np.random.default_rng(2), a, 200_000)
    x = np.linspace(-1, 1, 41)
    cdf = (x + 1 + a * (x**3 + 1) / 3) / (2 + 2 * a / 3)
    assert np.max(np.abs(np.searchsorted(np.sort(c), x) / c.size - cdf)) < 0.006


def test_btag_efficiency_follows_the_pt_response(monkeypatch):
    monkeypatch.setattr(gen, "BTAG_PT_RESPONSE", ((39.9, 40.0), (0.0, 1.0)))
    ev = generate(BLOCK_SIZE, seed=9)
    for jet in ("jet1", "jet2", "jet3", "jet4"):
        tagged = ev[f"{jet}_btag"] > 0
        assert tagged.any()
        assert ev[f"{jet}_pt"][tagged].min() >= 39.9


def test_jet_masses_raise_every_pair_mass(monkeypatch):
    # The same events with massive and with (nearly) massless jets: only the masses differ.
    monkeypatch.setattr(gen, "JET_MASS", (1e-6, 0.0, 0.0))
    light = generate(BLOCK_SIZE, seed=4)
    monkeypatch.setattr(gen, "JET_MASS", (10.0, 0.0, 0.0))
    heavy = generate(BLOCK_SIZE, seed=4)
    np.testing.assert_array_equal(light["jet1_pt"], heavy["jet1_pt"])
    # (the pairing may pick other jets once they have masses: most events, not all)
    for m in ("m_jj", "m_bb", "m_jjj"):
        assert np.mean(heavy[m] > light[m]) > 0.9, m
    np.testing.assert_allclose(heavy["m_lv"], light["m_lv"])


# -- physics -------------------------------------------------------------------------------------
def test_w_peaks(events, plain_events):
    # m_lv equals m_W whenever the W-mass constraint has a real solution: the median sits on it.
    assert abs(np.median(plain_events["m_lv"]) - gen.M_W) < 1.0
    assert (plain_events["m_lv"] >= gen.M_W - 0.01).all()
    # With the constraint's spread, a narrow line of relative width W_CONSTRAINT_SPREAD.
    m_lv = events["m_lv"]
    line = np.abs(m_lv / gen.M_W - 1.0) < 3 * gen.W_CONSTRAINT_SPREAD
    assert 0.5 < line.mean() < 0.9
    assert 0.5 < np.std(m_lv[line] / gen.M_W) / gen.W_CONSTRAINT_SPREAD < 1.5
    assert abs(_mode(events["m_jj"], 0, 200, 5) - gen.M_W) < 10


def test_effects_change_what_they_model(events):
    # Each effect, switched off, gives other events; an unknown one is an error.
    for name in gen.EFFECTS:
        other = generate(2000, seed=2024, effects={name: False})
        assert not np.array_equal(other["jet1_pt"], events["jet1_pt"][:2000]) or not np.array_equal(
            other["m_lv"], events["m_lv"][:2000]
        ), name
    with pytest.raises(InputError, match="effects"):
        generate(10, seed=1, effects={"pileup": False})
    # Semileptonic b decays put real MET into events: more MET with them than without.
    off = generate(N_PHYSICS, seed=2024, effects={"b_semileptonic": False})
    assert np.mean(events["met"]) > np.mean(off["met"])


def test_top_peaks_in_ttbar(events):
    bkg = events[LABEL] == 0
    for f in ("m_jjj", "m_jlv"):
        assert abs(_mode(events[f][bkg], 50, 400, 10) - gen.M_TOP) < 20, f


def test_higgs_peaks_in_signal(events):
    sig, bkg = events[LABEL] == 1, events[LABEL] == 0
    assert abs(_mode(events["m_bb"][sig], 0, 300, 10) - gen.M_HIGGS) < 15
    assert abs(_mode(events["m_wbb"][sig], 100, 700, 20) - gen.M_HPM) < 30
    assert abs(_mode(events["m_wwbb"][sig], 200, 900, 20) - gen.M_H0) < 30

    # The resonances make the signal narrower there than t tbar.
    def near(f: str, m: float, w: float, mask: np.ndarray) -> float:
        return float(np.mean(np.abs(events[f][mask] - m) < w))

    assert near("m_bb", gen.M_HIGGS, 20, sig) > 1.5 * near("m_bb", gen.M_HIGGS, 20, bkg)
    assert near("m_wwbb", gen.M_H0, 40, sig) > 1.5 * near("m_wwbb", gen.M_H0, 40, bkg)


def test_parton_level_conservation():
    rng = np.random.default_rng(3)
    p = gen._signal_partons(rng, 4000)
    visible = p.lepton + p.neutrino
    px = visible[1] + p.jets[0].sum(axis=0)
    py = visible[2] + p.jets[1].sum(axis=0)
    # ISR balances the hard system: the event has no net transverse momentum.
    np.testing.assert_allclose(px, 0.0, atol=1e-6)
    np.testing.assert_allclose(py, 0.0, atol=1e-6)
    # The decay products of the H0 rebuild its Breit-Wigner line.
    quarks = p.jets[:, :4]  # (3, 4, n): b, b, q, q'
    mass = np.array([gen.M_B, gen.M_B, 0.0, 0.0])[:, None]
    e_quarks = np.sqrt((quarks**2).sum(axis=0) + mass**2).sum(axis=0)
    m = gen._mass(visible + np.concatenate([e_quarks[None], quarks.sum(axis=1)]))
    assert abs(np.median(m) - gen.M_H0) < 2.0
    assert 0.5 * gen.GAMMA_H0 < np.subtract(*np.percentile(m, [75, 25])) < 2 * gen.GAMMA_H0


# -- kinematics checked against the vector package ---------------------------------------------
def _vec(p: np.ndarray) -> vector.MomentumNumpy4D:
    return vector.array({"px": p[1], "py": p[2], "pz": p[3], "E": p[0]})


def test_two_body_decay_and_boost_match_vector():
    rng = np.random.default_rng(0)
    n = 1000
    m_parent = rng.uniform(200, 500, n)
    parent = gen._system(
        m_parent, rng.normal(0, 1.5, n), rng.normal(0, 80, n), rng.normal(0, 80, n)
    )
    d1, d2 = gen._two_body(rng, parent, m_parent, 80.4, gen.M_B)
    np.testing.assert_allclose(_vec(d1).mass, 80.4, rtol=1e-5)
    np.testing.assert_allclose(_vec(d2).mass, gen.M_B, rtol=1e-3)
    np.testing.assert_allclose((_vec(d1) + _vec(d2)).mass, m_parent, rtol=1e-9)
    q = np.stack(
        [np.full(n, 50.0), rng.normal(0, 20, n), rng.normal(0, 20, n), rng.normal(0, 20, n)]
    )
    boosted = _vec(gen._boost_from_rest(q, parent, m_parent))
    expected = _vec(q).boost_p4(_vec(parent))
    for c in ("px", "py", "pz", "E"):
        np.testing.assert_allclose(getattr(boosted, c), getattr(expected, c), rtol=1e-9, atol=1e-9)


def test_eta_matches_vector():
    rng = np.random.default_rng(1)
    p = rng.normal(0, 100, (3, 1000))
    pt = np.hypot(p[0], p[1])
    eta = gen._eta(pt, p[2], np.sqrt(pt**2 + p[2] ** 2))
    np.testing.assert_allclose(
        eta, vector.array({"px": p[0], "py": p[1], "pz": p[2]}).eta, atol=1e-12
    )


def test_neutrino_pz_solves_the_w_mass_constraint():
    rng = np.random.default_rng(2)
    n = 2000
    w = gen._system(
        np.full(n, gen.M_W), rng.normal(0, 1, n), rng.normal(0, 40, n), rng.normal(0, 40, n)
    )
    lep, nu = gen._two_body(rng, w, np.full(n, gen.M_W), 0.0, 0.0)
    pz = gen.neutrino_pz(lep, nu[1], nu[2])
    nu_rec = np.stack([np.sqrt(nu[1] ** 2 + nu[2] ** 2 + pz**2), nu[1], nu[2], pz])
    np.testing.assert_allclose((_vec(lep) + _vec(nu_rec)).mass, gen.M_W, rtol=1e-6)
    # The two roots: the true pz is one of them and the chosen one is the smaller in |pz|.
    other = (
        2
        * (gen.M_W**2 / 2 + lep[1] * nu[1] + lep[2] * nu[2])
        * lep[3]
        / (lep[1] ** 2 + lep[2] ** 2)
        - pz
    )
    assert (np.abs(pz) <= np.abs(other) + 1e-6).all()
    miss = np.minimum(np.abs(pz - nu[3]), np.abs(other - nu[3]))
    # float32 directions in the decay: tiny errors, amplified where the two roots nearly meet.
    assert np.median(miss) < 1e-4 and miss.max() < 0.1


def test_neutrino_pz_without_solution_gives_the_transverse_mass():
    # MET far above what a W can give: no pz reaches m_W, and the neutrino takes the lepton's
    # rapidity, where m(l nu) is least and equals the transverse mass (as in the HIGGS rows).
    rng = np.random.default_rng(3)
    n = 500
    pt_l, eta_l, dphi = rng.uniform(30, 80, n), rng.uniform(-2, 2, n), rng.uniform(2, 3, n)
    lep = gen._from_pt_eta(pt_l, eta_l, np.ones(n), np.zeros(n))
    met = rng.uniform(150, 300, n)
    met_x, met_y = met * np.cos(dphi), met * np.sin(dphi)
    m_t = np.sqrt(2 * pt_l * met * (1 - np.cos(dphi)))
    assert (m_t > gen.M_W).all()
    pz = gen.neutrino_pz(lep, met_x, met_y)
    nu = _vec(np.stack([np.sqrt(met**2 + pz**2), met_x, met_y, pz]))
    m_lv = (_vec(lep) + nu).mass
    np.testing.assert_allclose(m_lv, m_t, rtol=1e-9)
    # and it is the least m(l nu) over pz: moving pz either way raises it
    for dz in (-5.0, 5.0):
        nu_d = _vec(np.stack([np.sqrt(met**2 + (pz + dz) ** 2), met_x, met_y, pz + dz]))
        assert ((_vec(lep) + nu_d).mass > m_lv).all()


def test_reconstructed_masses_match_vector(plain_events):
    ev = {k: v[:500].astype(np.float64) for k, v in plain_events.items()}
    phis = lambda f: (np.cos(ev[f]), np.sin(ev[f]))  # noqa: E731
    jets = np.stack(
        [
            gen._from_pt_eta(ev[f"jet{i}_pt"], ev[f"jet{i}_eta"], *phis(f"jet{i}_phi"))
            for i in range(1, 5)
        ],
        axis=1,
    )
    lep = gen._from_pt_eta(ev["lepton_pt"], ev["lepton_eta"], *phis("lepton_phi"))
    met_x, met_y = ev["met"] * np.cos(ev["met_phi"]), ev["met"] * np.sin(ev["met_phi"])
    btag = np.stack([ev[f"jet{i}_btag"] for i in range(1, 5)]).astype(np.int8)
    m = gen.reconstruct_masses(jets, btag, lep, met_x, met_y)
    # Recomputed masses agree with the file's (float32 rounding aside: 10 MeV where two jets are
    # nearly collinear and their small mass amplifies it).
    for f in MASSES:
        if f == "m_wbb":  # takes the true W (WBB_W), which the stored features do not tell
            lv_wbb = gen.reconstruct_masses(
                jets, btag, lep, met_x, met_y, wbb_leptonic=np.ones(500, bool)
            )[f]
            hadronic = np.isclose(m[f], ev[f], rtol=2e-4, atol=1e-2)
            leptonic = np.isclose(lv_wbb, ev[f], rtol=2e-4, atol=1e-2)
            assert (hadronic | leptonic).all() and 0.1 < leptonic.mean() < 0.9
            continue
        np.testing.assert_allclose(m[f], ev[f], rtol=2e-4, atol=1e-2, err_msg=f)
    j = [_vec(jets[:, i]) for i in range(4)]
    pz = gen.neutrino_pz(lep, met_x, met_y)
    nu = _vec(np.stack([np.sqrt(met_x**2 + met_y**2 + pz**2), met_x, met_y, pz]))
    l = _vec(lep)
    # m_wwbb uses every object, whatever the assignment.
    np.testing.assert_allclose(m["m_wwbb"], (j[0] + j[1] + j[2] + j[3] + l + nu).mass, rtol=1e-9)
    # m_jj is one pair's mass, and m_bb the mass of the two other jets.
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    m_pairs = np.stack([(j[a] + j[b]).mass for a, b in pairs])
    m_rest = np.stack([(j[c] + j[d]).mass for c, d in pairs[::-1]])
    k = np.argmin(np.abs(m_pairs - m["m_jj"]), axis=0)
    np.testing.assert_allclose(m_pairs[k, np.arange(500)], m["m_jj"], rtol=1e-9)
    np.testing.assert_allclose(m_rest[k, np.arange(500)], m["m_bb"], rtol=1e-9)


def test_wbb_truth_takes_the_w_of_the_charged_higgs(monkeypatch):
    # Default WBB_W "truth": m_wbb rebuilds the H+- whichever way its W decayed, so its line is
    # not wider than with the hadronic W candidate ("reconstructed"), which changes only m_wbb.
    assert gen.WBB_W == "truth"
    truth = generate(16_384, seed=5, signal_fraction=1.0, effects=PLAIN)
    monkeypatch.setattr(gen, "WBB_W", "reconstructed")
    base = generate(16_384, seed=5, signal_fraction=1.0, effects=PLAIN)
    changed = [k for k in base if not np.array_equal(base[k], truth[k])]
    assert changed == ["m_wbb"]
    differ = base["m_wbb"] != truth["m_wbb"]
    # the H+-'s W is the leptonic one in 1 - SIGNAL_H0_W_LEPTONIC of the events
    assert np.mean(differ) == pytest.approx(1 - gen.SIGNAL_H0_W_LEPTONIC, abs=0.03)
    near = lambda m: np.mean(np.abs(m - gen.M_HPM) < 30.0)  # noqa: E731
    assert near(truth["m_wbb"][differ]) > near(base["m_wbb"][differ]) + 0.2


def test_b_candidates_from_all_jets(monkeypatch):
    # B_CANDIDATES "all" takes the two tagged jets wherever they are: where both are among the
    # four the masses are those of "four"; where one is not, m_bb is not a pair of the four.
    four = generate(BLOCK_SIZE, seed=6, effects=PLAIN)
    monkeypatch.setattr(gen, "B_CANDIDATES", "all")
    every = generate(BLOCK_SIZE, seed=6, effects=PLAIN)
    n_tags = (np.stack([four[f] for f in BTAGS]) > 0).sum(axis=0)
    for f in MASSES:
        np.testing.assert_array_equal(every[f][n_tags == 2], four[f][n_tags == 2], err_msg=f)
    one = n_tags == 1
    assert one.mean() > 0.05
    assert np.mean(every["m_bb"][one] != four["m_bb"][one]) > 0.9
    # the b outside the four is a soft or forward one: lower pair masses than a stored jet gives
    assert np.median(every["m_bb"][one]) < np.median(four["m_bb"][one])


# -- output --------------------------------------------------------------------------------------
def test_generate_to_root_streams_the_same_events(tmp_path):
    from hepflows.events.reader import read_events, read_metadata

    path = tmp_path / "gen.root"
    n = gen.generate_to_root(
        path, 700, seed=12, start=50, units="higgs", chunk_size=300, progress=False
    )
    assert n == 700
    got = read_events(path)
    want = generate(700, seed=12, start=50, units="higgs")
    for f in (*HIGGS_FEATURES, LABEL):
        np.testing.assert_array_equal(got[f], want[f], err_msg=f)
    meta = read_metadata(path)
    assert (meta["seed"], meta["start"], meta["n_events"], meta["units"]) == (12, 50, 700, "higgs")
    assert meta["generator_version"] == gen.VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["gen.root"]


@pytest.mark.slow
def test_speed_at_least_1e5_events_per_second():
    generate(10, seed=0)  # tables and imports
    n = 10 * BLOCK_SIZE
    best = min(_timed(functools.partial(generate, n, seed=s)) for s in range(3))
    assert n / best >= 1e5, f"{n / best:.3g} events/s"


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t
