"""Classifier two-sample test: can a classifier tell generated events from MC events?

A classifier of one family (:data:`FAMILIES`: gradient-boosted trees or a neural network) is
trained on half of the events of both samples to tell
them apart and scored on the other half.  Its ROC AUC on those held-out events is 0.5 when the
samples are indistinguishable.  Because the held-out events play no part in training, under the
null hypothesis their scores are i.i.d. whichever sample they come from, so the AUC is a
Mann-Whitney statistic with mean 0.5 and standard deviation
``sqrt((n1 + n2 + 1) / (12 n1 n2))`` -- an exact reference for the band, whatever the
classifier learnt (ties in the tree scores only narrow it).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from hepflows.errors import InputError
from hepflows.feasibility import NEGATIVE_WEIGHTS
from hepflows.kish import effective_size

#: Points kept of the ROC curve: enough for a smooth plot, small enough for JSON.
ROC_POINTS = 201
#: Classifier families: sklearn's HistGradientBoostingClassifier ("gbt", axis-aligned cuts) and
#: MLPClassifier ("mlp", smooth functions of every input at once, on standardised inputs).
FAMILIES = ("gbt", "mlp")
#: The network's hidden layers and its most passes over the training half (early stopping on
#: a tenth of it usually ends it sooner).
MLP_HIDDEN = (64, 64)
MLP_MAX_ITER = 40


def mann_whitney_sigma(n1: float, n2: float) -> float:
    """Standard deviation of the AUC of a score that does not separate the classes."""
    return float(np.sqrt((n1 + n2 + 1.0) / (12.0 * n1 * n2)))


def _downsample_roc(fpr: NDArray, tpr: NDArray, points: int = ROC_POINTS) -> tuple[list, list]:
    """ROC curve resampled on an even grid of false-positive rates (for plots and JSON)."""
    grid = np.linspace(0.0, 1.0, points)
    return grid.tolist(), np.interp(grid, fpr, tpr).tolist()


def bootstrap_auc(
    score: NDArray, y: NDArray, w: NDArray, n_bootstrap: int, rng: np.random.Generator
) -> NDArray:
    """ROC AUCs of ``n_bootstrap`` resamplings of scored events, shape (n_bootstrap,).

    ``score``, ``y`` (0/1) and ``w`` have shape (n,).  Each class is resampled on its own, so
    every replicate keeps both class sizes.  A resampling is a vector of multiplicities, and
    the AUC of a resampling is ``sum_i c1_i w1_i (W0(s < s1_i) + W0(s = s1_i) / 2) / (W0 W1)``
    with ``W0(.)`` the resampled class-0 weight below or at a score: one cumulative sum over
    the sorted class-0 scores serves all class-1 events, so the loop over replicates is a few
    array operations instead of ``n_bootstrap`` calls to ``roc_auc_score``.
    """
    s0, s1 = score[y == 0], score[y == 1]
    w0, w1 = w[y == 0], w[y == 1]
    order = np.argsort(s0, kind="stable")
    s0, w0 = s0[order], w0[order]
    below = np.searchsorted(s0, s1, side="left")
    upto = np.searchsorted(s0, s1, side="right")
    c0 = rng.multinomial(len(s0), np.full(len(s0), 1.0 / len(s0)), size=n_bootstrap) * w0
    c1 = rng.multinomial(len(s1), np.full(len(s1), 1.0 / len(s1)), size=n_bootstrap) * w1
    cum = np.zeros((n_bootstrap, len(s0) + 1))
    np.cumsum(c0, axis=1, out=cum[:, 1:])
    lower = cum[:, below]
    ties = cum[:, upto] - lower
    return (c1 * (lower + 0.5 * ties)).sum(axis=1) / (c0.sum(axis=1) * c1.sum(axis=1))


def classifier_two_sample(
    x_ref: ArrayLike,
    x_test: ArrayLike,
    *,
    seed: int,
    n_bootstrap: int = 200,
    w_ref: ArrayLike | None = None,
    w_test: ArrayLike | None = None,
    test_fraction: float = 0.5,
    max_iter: int = 100,
    family: str = "gbt",
) -> dict:
    """Held-out ROC AUC of a classifier separating ``x_test`` (n2, d) from ``x_ref`` (n1, d).

    Features are standardised on the training half (trees do not need it; the network does).
    ``family`` "gbt" is sklearn's ``HistGradientBoostingClassifier`` (``max_iter`` boosting
    iterations): fast on few cores and insensitive to feature scales, but each split is a cut
    on one input.  "mlp" is ``MLPClassifier`` (:data:`MLP_HIDDEN`, ReLU, Adam, early
    stopping): it forms smooth functions of all inputs, which trees only approximate by steps.
    The interval is the 2.5-97.5 % percentile range of ``n_bootstrap`` resamplings of the
    held-out events.  Weights, when given, enter the fit and the AUC.

    Returns ``{"auc", "auc_lo", "auc_hi", "sigma_null", "n_train", "n_test", "fpr", "tpr"}``;
    ``sigma_null`` is the Mann-Whitney standard deviation of the AUC for indistinguishable
    samples at the held-out sizes (effective sizes when weighted).
    """
    xr = np.asarray(x_ref, dtype=np.float64)
    xt = np.asarray(x_test, dtype=np.float64)
    if xr.ndim != 2 or xt.ndim != 2 or xr.shape[1] != xt.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) arrays, got {xr.shape} and {xt.shape}")
    x = np.concatenate([xr, xt])
    y = np.concatenate([np.zeros(len(xr), dtype=np.int8), np.ones(len(xt), dtype=np.int8)])
    weighted = w_ref is not None or w_test is not None
    w = np.ones(len(x))
    if w_ref is not None:
        w[: len(xr)] = np.asarray(w_ref, dtype=np.float64)
    if w_test is not None:
        w[len(xr) :] = np.asarray(w_test, dtype=np.float64)
    if np.any(w < 0):
        raise InputError(f"{int((w < 0).sum())} negative weight(s): {NEGATIVE_WEIGHTS}")
    if weighted:
        # equal total weight per sample, as for equal-size unweighted samples
        w[y == 0] *= len(x) / (2.0 * w[y == 0].sum())
        w[y == 1] *= len(x) / (2.0 * w[y == 1].sum())

    x_tr, x_ho, y_tr, y_ho, w_tr, w_ho = train_test_split(
        x, y, w, test_size=test_fraction, random_state=seed, stratify=y
    )
    # no sample weights at all when unweighted: sklearn then bins features ~10x faster
    fit_w = w_tr if weighted else None
    scaler = StandardScaler().fit(x_tr, sample_weight=fit_w)
    model = _model(family, max_iter, seed)
    model.fit(scaler.transform(x_tr), y_tr, sample_weight=fit_w)
    score = model.predict_proba(scaler.transform(x_ho))[:, 1]
    sw = w_ho if weighted else None
    auc = float(roc_auc_score(y_ho, score, sample_weight=sw))

    if n_bootstrap > 1:
        boot = bootstrap_auc(score, y_ho, w_ho, n_bootstrap, np.random.default_rng(seed))
        lo, hi = np.percentile(boot, [2.5, 97.5])
    else:
        lo, hi = auc, auc

    def n_eff(mask: NDArray) -> float:
        return effective_size(w_ho[mask], int(mask.sum()))

    fpr, tpr, _ = roc_curve(y_ho, score, sample_weight=sw)
    grid, tpr_grid = _downsample_roc(fpr, tpr)
    return {
        "auc": auc,
        "auc_lo": float(lo),
        "auc_hi": float(hi),
        "sigma_null": mann_whitney_sigma(n_eff(y_ho == 0), n_eff(y_ho == 1)),
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_ho)),
        "fpr": grid,
        "tpr": tpr_grid,
    }


def _model(family: str, max_iter: int, seed: int) -> HistGradientBoostingClassifier | MLPClassifier:
    """An unfitted classifier of ``family`` (one of :data:`FAMILIES`)."""
    if family == "gbt":
        return HistGradientBoostingClassifier(
            max_iter=max_iter, early_stopping=False, random_state=seed
        )
    if family == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=MLP_HIDDEN,
            batch_size=512,
            max_iter=MLP_MAX_ITER,
            early_stopping=True,
            n_iter_no_change=4,
            random_state=seed,
        )
    raise ValueError(f"classifier family {family!r}: expected one of {', '.join(FAMILIES)}")


def auc_null_pvalue(auc: float, sigma_null: float) -> float:
    """One-sided p-value of an AUC above 0.5 under the Mann-Whitney null (normal limit)."""
    return float(stats.norm.sf((auc - 0.5) / sigma_null))
