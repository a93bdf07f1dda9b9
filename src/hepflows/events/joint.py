"""How close the embedded generator is to real HIGGS events jointly, not feature by feature.

:mod:`hepflows.events.calibration` compares one feature at a time.  A physicist (and a flow)
looks at all of them together, so this module measures the joint closeness per process
(signal, t tbar) over the 22 features without azimuths, in ``units="higgs"``:

* the classifier two-sample test (:func:`hepflows.validation.classifier.classifier_two_sample`,
  a gradient-boosted tree classifier scored on held-out events): ROC AUC 0.5 when generator and
  real events cannot be told apart; its null is the same test between two halves of the real
  rows (Lopez-Paz, Oquab, "Revisiting Classifier Two-Sample Tests", arXiv:1610.06545);
* the Spearman rank correlation matrices of both samples and their difference;
* for every pair of features, the chi^2 per degree of freedom of the 2-D histogram of the
  generator against the real one, on bins that hold equal numbers of real events per feature
  (so a pair scores high only where the joint shape differs, not one marginal);
* the held-out events that the classifier finds most generator-like and most real-like;
* two views of the structure behind them: the rank correlations of the jets' pTs within the
  tagged pair, within the untagged pair and between the pairs (in rows with two tagged jets
  among the four), and the masses' quantiles in rows with one and with two tagged jets;
* where m_bb is the massless mass of the two tagged jets, and the jet scales that implies
  (:func:`tagged_pair_mass`);
* observables that no feature holds but physics sets (:func:`derived_observables`): the
  distances between the objects (jet clustering, lepton isolation, the boosts of the W and of
  the b pair) and the visible system's recoil, each compared by its KS distance.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from hepflows.events.calibration import CALIBRATION_FEATURES, MASSES, PROCESSES
from hepflows.events.schema import BTAGS, JETS, LABEL
from hepflows.validation.classifier import classifier_two_sample

__all__ = [
    "AUC_TARGET",
    "classifier_auc",
    "correlations",
    "derived_distances",
    "derived_observables",
    "extreme_events",
    "jet_pair_correlations",
    "tagged_pair_mass",
    "masses_by_tag_count",
    "pair_chi2",
    "process_matrix",
    "real_null_auc",
]

#: Target of the joint calibration, per process: the classifier AUC generator vs real.
AUC_TARGET = 0.60

#: The four jets' pT columns, in the stored order (as :data:`~hepflows.events.schema.BTAGS`).
JET_PTS: tuple[str, ...] = tuple(f"{jet}_pt" for jet in JETS)

#: Bins per feature of the 2-D histograms in :func:`pair_chi2` (b-tags keep their 3 levels).
PAIR_BINS = 8


def process_matrix(
    events: Mapping[str, np.ndarray], process: str, features: tuple[str, ...] = CALIBRATION_FEATURES
) -> np.ndarray:
    """The events of one process (``"signal"`` or ``"background"``) as an (n, d) float64 matrix."""
    keep = np.asarray(events[LABEL]) == PROCESSES[process]
    return np.stack([np.asarray(events[f], dtype=np.float64)[keep] for f in features], axis=1)


def classifier_auc(
    gen: Mapping[str, np.ndarray],
    real: Mapping[str, np.ndarray],
    process: str,
    *,
    seed: int = 0,
    max_iter: int = 100,
    n_bootstrap: int = 100,
) -> dict:
    """Held-out classifier AUC of generator vs real events of one process (22 features).

    The generator sample is cut to the real one's size so that both classes weigh the same.
    Returns the dict of :func:`~hepflows.validation.classifier.classifier_two_sample`.
    """
    xr = process_matrix(real, process)
    xg = process_matrix(gen, process)[: len(xr)]
    return classifier_two_sample(xr, xg, seed=seed, max_iter=max_iter, n_bootstrap=n_bootstrap)


def real_null_auc(
    real: Mapping[str, np.ndarray], process: str, *, seed: int = 0, max_iter: int = 100
) -> float:
    """The same test between two random halves of the real events of one process: the AUC a
    perfect generator would reach at these sample sizes."""
    x = process_matrix(real, process)
    perm = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    res = classifier_two_sample(
        x[perm[:half]], x[perm[half : 2 * half]], seed=seed, max_iter=max_iter, n_bootstrap=1
    )
    return float(res["auc"])


def correlations(
    gen: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], process: str
) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rank correlation matrices (d, d) of the generator and of the real events.

    Rank correlations, not Pearson's: the masses and momenta have long tails.
    """
    cg = spearmanr(process_matrix(gen, process)).statistic
    cr = spearmanr(process_matrix(real, process)).statistic
    return np.asarray(cg), np.asarray(cr)


def _edges(real_col: np.ndarray, name: str) -> np.ndarray:
    """Bin edges of a feature: its levels for b-tags, else PAIR_BINS equal-count real bins."""
    if name in BTAGS:
        levels = np.unique(real_col)
        return np.concatenate([[-np.inf], 0.5 * (levels[1:] + levels[:-1]), [np.inf]])
    inner = np.quantile(real_col, np.linspace(0.0, 1.0, PAIR_BINS + 1)[1:-1])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def pair_chi2(
    gen: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], process: str
) -> list[tuple[str, str, float]]:
    """chi^2 per degree of freedom of the generator's 2-D histogram against the real one, for
    every pair of the 22 features, largest first.

    Two-sample chi^2 of unequal sizes, sum (K1 r - K2 g)^2 / (r + g) with K1 = sqrt(G/R),
    K2 = sqrt(R/G) (the ROOT ``Chi2Test`` form), over bins with any entry; about 1 when the
    samples agree.  Bins are equal-count per feature in the real events, so a pair whose
    marginals agree but whose correlation differs stands out.
    """
    xg, xr = process_matrix(gen, process), process_matrix(real, process)
    names = CALIBRATION_FEATURES
    edges = [_edges(xr[:, k], f) for k, f in enumerate(names)]
    big, small = len(xg), len(xr)
    k1, k2 = np.sqrt(big / small), np.sqrt(small / big)
    out = []
    for i, j in itertools.combinations(range(len(names)), 2):
        r = np.histogram2d(xr[:, i], xr[:, j], bins=(edges[i], edges[j]))[0]
        g = np.histogram2d(xg[:, i], xg[:, j], bins=(edges[i], edges[j]))[0]
        filled = (r + g) > 0
        chi2 = float(np.sum((k1 * r - k2 * g)[filled] ** 2 / (r + g)[filled]))
        out.append((names[i], names[j], chi2 / max(int(filled.sum()) - 1, 1)))
    return sorted(out, key=lambda t: -t[2])


def extreme_events(
    gen: Mapping[str, np.ndarray],
    real: Mapping[str, np.ndarray],
    process: str,
    *,
    k: int = 5,
    seed: int = 0,
    max_iter: int = 100,
) -> dict[str, np.ndarray]:
    """The ``k`` held-out generator events the classifier finds most generator-like and the
    ``k`` held-out real events it finds most real-like, as (k, 22) matrices, plus the scores
    (probability of being generated) of all held-out events of each sample."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    xr = process_matrix(real, process)
    xg = process_matrix(gen, process)[: len(xr)]
    rng = np.random.default_rng(seed)
    train_r = rng.random(len(xr)) < 0.5
    train_g = rng.random(len(xg)) < 0.5
    model = HistGradientBoostingClassifier(
        max_iter=max_iter, early_stopping=False, random_state=seed
    )
    model.fit(
        np.concatenate([xr[train_r], xg[train_g]]),
        np.concatenate([np.zeros(train_r.sum()), np.ones(train_g.sum())]),
    )
    s_r = model.predict_proba(xr[~train_r])[:, 1]
    s_g = model.predict_proba(xg[~train_g])[:, 1]
    return {
        "most_generator_like": xg[~train_g][np.argsort(-s_g)[:k]],
        "most_real_like": xr[~train_r][np.argsort(s_r)[:k]],
        "score_generator": s_g,
        "score_real": s_r,
    }


def _tags_and_pts(
    events: Mapping[str, np.ndarray], process: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The four jets' pTs and whether each is b-tagged, (4, n) each, and the number of tagged
    jets among the four (n,), for the events of one process."""
    keep = np.asarray(events[LABEL]) == PROCESSES[process]
    pt = np.stack([np.asarray(events[f], dtype=np.float64)[keep] for f in JET_PTS])
    tagged = np.stack([np.asarray(events[f])[keep] > 0 for f in BTAGS])
    return pt, tagged, tagged.sum(axis=0)


def jet_pair_correlations(events: Mapping[str, np.ndarray], process: str) -> dict[str, float]:
    """Spearman rank correlations of the jets' pTs in the events of one process with exactly
    two tagged jets among the four (b candidates and W candidates, whatever the stored order):

    ``"tagged"``: between the two tagged jets' pTs; ``"untagged"``: between the two untagged
    jets' pTs; ``"between"``: the tagged pair's summed pT against the untagged pair's.  The
    pairs have no order (sorting them by pT would correlate even independent jets), so each
    pair's correlation is taken symmetrically, over both orders of every pair.  A decay's
    daughters share their parent's momentum, so these measure how the parents (and the whole
    system) spread in momentum; an event-wide hardness raises all three.
    """
    pt, tagged, n_tags = _tags_and_pts(events, process)
    two = n_tags == 2
    pt, tagged = pt[:, two], tagged[:, two]
    # The tagged jets' pTs, then the untagged ones', each pair in its stored order.
    order = np.argsort(~tagged, axis=0, kind="stable")
    b1, b2, q1, q2 = np.take_along_axis(pt, order, axis=0)

    def symmetric(x: np.ndarray, y: np.ndarray) -> float:
        return float(spearmanr(np.concatenate([x, y]), np.concatenate([y, x])).statistic)

    return {
        "tagged": symmetric(b1, b2),
        "untagged": symmetric(q1, q2),
        "between": float(spearmanr(b1 + b2, q1 + q2).statistic),
    }


def masses_by_tag_count(
    events: Mapping[str, np.ndarray], process: str, quantiles: tuple[float, ...] = (0.5, 0.9)
) -> dict[int, dict[str, list[float]]]:
    """Quantiles of each of the seven masses in the events of one process with one and with two
    tagged jets among the four: ``{n_tags: {mass: [q...]}}``.

    Where the reconstruction takes its b candidates shows here: from an untagged jet among the
    four, the one-tag events' masses rise above the two-tag ones'; from a tagged jet outside the
    four, they do not.
    """
    keep = np.asarray(events[LABEL]) == PROCESSES[process]
    n_tags = _tags_and_pts(events, process)[2]
    return {
        k: {
            m: [float(v) for v in np.quantile(np.asarray(events[m])[keep][n_tags == k], quantiles)]
            for m in MASSES
        }
        for k in (1, 2)
    }


#: Bins (in ln m^2) of the histogram whose mode :func:`tagged_pair_mass` takes.
_SPIKE_BIN = 0.01


def tagged_pair_mass(
    events: Mapping[str, np.ndarray], process: str, *, tolerance: float = 0.01
) -> dict[str, Any]:
    """Where m_bb is the massless mass of the two tagged jets, in HIGGS units.

    For each pair of the four jets (``"12"`` .. ``"34"``), in the events of one process whose
    two tagged jets are that pair: x = ln(m_bb^2 / (2 pT_i pT_j (cosh d_eta - cos d_phi))),
    ``"mode"`` its most common value and ``"fraction"`` the share of events within
    ``tolerance`` (relative, in the mass) of it.  Where m_bb is that pair's mass, x equals
    ln(S_i S_j / S_bb^2) with S the columns' GeV per HIGGS unit, the same in every event: a
    spike.  ``"scales"``: the S_i / S_bb that the six modes imply (least squares of
    ln S_i + ln S_j - 2 ln S_bb = mode), one per jet.
    """
    from hepflows.events.generator import HIGGS_PHI_SCALE

    keep = np.asarray(events[LABEL]) == PROCESSES[process]

    def col(name: str) -> np.ndarray:
        return np.asarray(events[name], dtype=np.float64)[keep]

    pt = np.stack([col(f) for f in JET_PTS])
    eta = np.stack([col(f"{jet}_eta") for jet in JETS])
    phi = np.stack([col(f"{jet}_phi") for jet in JETS]) / HIGGS_PHI_SCALE
    tagged = np.stack([col(f) > 0 for f in BTAGS])
    m_bb = col("m_bb")
    pairs: dict[str, dict] = {}
    rows, modes = [], []
    for i, j in itertools.combinations(range(4), 2):
        sel = tagged[i] & tagged[j] & (tagged.sum(axis=0) == 2)
        m0_sq = 2.0 * pt[i] * pt[j] * (np.cosh(eta[i] - eta[j]) - np.cos(phi[i] - phi[j]))
        x = np.log(m_bb[sel] ** 2 / m0_sq[sel])
        hist, edges = np.histogram(x, bins=np.arange(-4.0, 2.0 + _SPIKE_BIN, _SPIKE_BIN))
        mode = float(0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1]))
        # tolerance in the mass is twice that in ln m^2
        fraction = float(np.mean(np.abs(x - mode) < 2.0 * tolerance)) if x.size else 0.0
        pairs[f"{i + 1}{j + 1}"] = {"mode": mode, "fraction": fraction, "n": int(sel.sum())}
        if not x.size:
            continue  # no events of this pair: no mode to fit the scales to
        row = np.zeros(4)
        row[[i, j]] = 1.0
        rows.append(row)
        modes.append(mode)
    log_s = np.linalg.lstsq(np.array(rows), np.array(modes), rcond=None)[0]
    return {"pairs": pairs, "scales": [float(v) for v in np.exp(log_s)]}


def _delta_r(
    eta1: np.ndarray | float, phi1: np.ndarray, eta2: np.ndarray | float, phi2: np.ndarray
) -> np.ndarray:
    """Distance in (eta, phi), phi in radians."""
    dphi = np.abs((phi1 - phi2 + np.pi) % (2.0 * np.pi) - np.pi)
    return np.hypot(eta1 - eta2, dphi)


def derived_observables(events: Mapping[str, np.ndarray], process: str) -> dict[str, np.ndarray]:
    """Observables of the events of one process (HIGGS units) that physics sets and no single
    feature holds, each (n,) (NaN where undefined):

    ``"min_dr_jets"``: the least Delta R between two of the four jets (jet clustering keeps it
    above the jet radius); ``"min_dr_lepton_jet"``: the least Delta R of the lepton to a jet
    (lepton isolation); ``"dphi_lepton_met"``: the azimuth between lepton and MET (the leptonic
    W's boost); ``"dr_tagged"``: Delta R of the two tagged jets, in rows with two (the b pair's
    parents' boost); ``"visible_pt"`` [GeV]: the transverse momentum of lepton, MET and four
    jets together (the recoil against what is not among them), at the generator's
    ``HIGGS_SCALE``; ``"mean_abs_eta"``: the four jets' mean |eta|.
    """
    from hepflows.events.generator import HIGGS_PHI_SCALE, HIGGS_SCALE

    keep = np.asarray(events[LABEL]) == PROCESSES[process]

    def col(name: str) -> np.ndarray:
        return np.asarray(events[name], dtype=np.float64)[keep]

    eta = np.stack([col(f"{jet}_eta") for jet in JETS])
    phi = np.stack([col(f"{jet}_phi") for jet in JETS]) / HIGGS_PHI_SCALE
    pt = np.stack([col(f) * HIGGS_SCALE[f] for f in JET_PTS])
    tagged = np.stack([col(f) > 0 for f in BTAGS])
    l_eta, l_phi = col("lepton_eta"), col("lepton_phi") / HIGGS_PHI_SCALE
    l_pt, met = col("lepton_pt") * HIGGS_SCALE["lepton_pt"], col("met") * HIGGS_SCALE["met"]
    met_phi = col("met_phi") / HIGGS_PHI_SCALE
    pairs = list(itertools.combinations(range(4), 2))
    dr_jets = np.stack([_delta_r(eta[i], phi[i], eta[j], phi[j]) for i, j in pairs])
    two = tagged.sum(axis=0) == 2
    is_tagged_pair = np.stack([tagged[i] & tagged[j] for i, j in pairs])
    dr_tagged = np.where(two, np.where(is_tagged_pair, dr_jets, 0.0).sum(axis=0), np.nan)
    px = (pt * np.cos(phi)).sum(axis=0) + l_pt * np.cos(l_phi) + met * np.cos(met_phi)
    py = (pt * np.sin(phi)).sum(axis=0) + l_pt * np.sin(l_phi) + met * np.sin(met_phi)
    return {
        "min_dr_jets": dr_jets.min(axis=0),
        "min_dr_lepton_jet": _delta_r(l_eta, l_phi, eta, phi).min(axis=0),
        "dphi_lepton_met": _delta_r(0.0, l_phi, 0.0, met_phi),
        "dr_tagged": dr_tagged,
        "visible_pt": np.hypot(px, py),
        "mean_abs_eta": np.abs(eta).mean(axis=0),
    }


def derived_distances(
    gen: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], process: str
) -> dict[str, dict[str, Any]]:
    """For each of :func:`derived_observables`: the KS distance of generator against real
    events of one process, and both samples' 1 %, 50 % and 90 % quantiles."""
    from scipy.stats import ks_2samp

    dg, dr = derived_observables(gen, process), derived_observables(real, process)
    out = {}
    for name in dg:
        g, r = dg[name][np.isfinite(dg[name])], dr[name][np.isfinite(dr[name])]
        qg, qr = np.quantile(g, (0.01, 0.5, 0.9)), np.quantile(r, (0.01, 0.5, 0.9))
        out[name] = {
            "ks": float(ks_2samp(g, r).statistic),
            "generator": [float(v) for v in qg],
            "real": [float(v) for v in qr],
        }
    return out
