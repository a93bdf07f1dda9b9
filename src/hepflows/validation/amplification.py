"""How many MC events a generated sample is worth: the amplification measurement.

References: Butter, Diefenbacher, Kasieczka, Nachman, Plehn, "GANplifying event samples",
arXiv:2008.06545 (the question and the quantile-bin measurement); "Forecasting generative
amplification", arXiv:2509.08048 (the divergence's noise model, used here to take both samples'
statistical noise out of the generated sample's distance from the truth).

The measurement
---------------
A truth sample ``T`` of ``N_T`` events the flow never saw defines a partition into ``B`` cells:
per feature the ``B`` quantile bins of ``T``; jointly ``B`` k-means cells of ``T`` in the
gauss-rank space (each feature mapped through ``T``'s CDF to a standard normal), so that
correlations count too.  With ``p_S`` and ``p_T`` the fractions of a sample ``S`` and of ``T``
in each cell, shapes ``(B,)``, the chi2 divergence is

    d(S) = sum_b (p_S,b - p_T,b)^2 / p_T,b .

For an independent MC sample of ``n`` events, ``E[d] = (B - 1) (1/n + 1/N_T)``; more precisely
``d / s`` with ``s = 1/n + 1/N_T`` is chi2-distributed with ``k = B - 1`` degrees of freedom.  A
generated sample of ``N`` events whose model has a bias ``D = sum_b delta_b^2 / p_b`` (what is
left of ``d`` when both samples' noise is taken out) has ``d / s`` distributed as a noncentral
chi2 with ``k`` degrees of freedom and noncentrality ``lambda = D / s``, ``s = 1/N + 1/N_T``.
An MC sample of ``n`` events has ``D = k / n`` in the same units, so the model is worth

    n_equiv = k / D = (B - 1) / (d_gen - (B - 1)(1/N + 1/N_T))

MC events however many events it generates, its sample of ``N`` events is worth
``1 / (1/n_equiv + 1/N)``, and it amplifies its ``n_train`` training events by
``G = n_equiv / n_train``.

Noise
-----
``d_gen`` fluctuates (for MC, its standard deviation is ``sqrt(2 k) s``), so every cell gets a
confidence interval from the noncentral chi2 (a Neyman construction on ``lambda``), one-sided
level ``alpha`` on each side:

* ``n_equiv_hi`` is finite only if the excess is significant: the chi2 p-value of ``d_gen / s``
  under "no bias" is below ``alpha``.  Otherwise ``n_equiv`` is reported as its lower bound and
  the row is flagged ``lower_bound``: the flow is as good as MC as far as this truth resolves.
* ``n_equiv_lo`` is power-constrained (as ATLAS does for limits): never above the lower bound a
  bias-free sample gets at the median, ``resolution``.  That is what the truth and the sample
  sizes can resolve; for a small truth (the test split of real data) it is of the order of
  ``min(N, N_T)``, and no claim goes beyond it.

Each cell is one test at level ``alpha``: of ``m`` cells of a bias-free sample about
``alpha * m`` come out significant by chance (reported as ``n_expected`` beside ``n_significant``
by :func:`summarize`), as with the other metrics' bands.  The smallest ``n_equiv_lo`` over cells
is a valid lower bound on the smallest ``n_equiv`` at level ``alpha`` without any correction.

Weighted samples enter through their weighted fractions and Kish effective sizes
``(sum w)^2 / sum w^2`` in place of ``n``, ``N`` and ``N_T``; negative weights are counted with
their sign.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from hepflows.atomic import atomic_write_text
from hepflows.errors import InputError
from hepflows.events.schema import LABEL, WEIGHT
from hepflows.kish import effective_size
from hepflows.records import jsonable
from hepflows.validation.metrics import quantile_inner_edges

__all__ = [
    "COLUMNS",
    "DEFAULT_ALPHA",
    "DEFAULT_BINS",
    "DEFAULT_CELLS",
    "JOINT",
    "amplification",
    "bin_fractions",
    "chi2_divergence",
    "excess_interval",
    "headline",
    "mc_divergence_curve",
    "summarize",
    "write_amplification",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

SLICES: tuple[str, ...] = ("all", "signal", "background")
SLICE_CLASS: dict[str, int] = {"signal": 1, "background": 0}
#: ``feature`` of the rows of the multi-dimensional (k-means) partition.
JOINT = "joint"
#: Quantile bins per feature.
DEFAULT_BINS = 50
#: k-means cells of the joint partition.
DEFAULT_CELLS = 200
#: One-sided level of each side of the interval, and of the significance of an excess.
DEFAULT_ALPHA = 0.05
#: Fewer bins (cells) where the smaller sample of a slice would have under this many events per
#: bin: the chi2 noise model needs counts well above a few.
MIN_EVENTS_PER_BIN = 20
MIN_BINS = 5
#: Events of the truth that the k-means cells are fitted on (all of them are then assigned).
KMEANS_FIT_EVENTS = 100_000
#: Knots of the gauss-rank map of the joint partition.
GAUSS_RANK_KNOTS = 1001

#: Columns of ``amplification.csv``, in order (the JSON rows have the same keys).
COLUMNS: tuple[str, ...] = (
    "feature",
    "slice",
    "bins",
    "n_truth",
    "n_generated",
    "d_gen",
    "d_mc",
    "pvalue",
    "n_equiv",
    "n_equiv_lo",
    "n_equiv_hi",
    "lower_bound",
    "resolution",
    "worth",
    "worth_lo",
    "worth_hi",
    "n_train",
    "G",
    "G_lo",
)


# ----------------------------------------------------------------------------------------------
# samples
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    """Events as arrays: ``x`` (n, d) float64, ``label`` (n,) int8 or None, ``w`` (n,) or None."""

    x: FloatArray
    label: NDArray[np.int8] | None
    w: FloatArray | None

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: NDArray[np.intp]) -> _Events:
        return _Events(
            self.x[idx],
            None if self.label is None else self.label[idx],
            None if self.w is None else self.w[idx],
        )

    def slice(self, name: str) -> _Events:
        if name == "all":
            return self
        if self.label is None:
            raise InputError(f"slice {name!r} needs labelled events")
        return self.take(np.flatnonzero(self.label == SLICE_CLASS[name]))

    @property
    def size(self) -> float:
        """Kish effective size ``(sum w)^2 / sum w^2``; the event count when unweighted."""
        return effective_size(self.w, len(self))


def _events(sample: Mapping[str, ArrayLike], features: Sequence[str], name: str) -> _Events:
    """Check an event dict (feature -> (n,), optional ``label`` and ``weight``) into arrays."""
    missing = [f for f in features if f not in sample]
    if missing:
        raise InputError(f"{name} events lack column(s) {missing}; they have {sorted(sample)}")
    x = np.stack([np.asarray(sample[f], dtype=np.float64).reshape(-1) for f in features], 1)
    if x.shape[0] == 0:
        raise InputError(f"{name} events: the sample is empty")
    bad = ~np.isfinite(x)
    if bad.any():
        counts = {f: int(c) for f, c in zip(features, bad.sum(0), strict=True) if c}
        raise InputError(f"{name} events: non-finite values in {counts} (column: count)")
    label = None
    if sample.get(LABEL) is not None:
        label = np.asarray(sample[LABEL]).reshape(-1).astype(np.int8)
        if label.shape != (x.shape[0],) or not set(np.unique(label).tolist()) <= {0, 1}:
            raise InputError(f"{name} events: {LABEL!r} must be 0/1 of shape ({x.shape[0]},)")
    w = None
    if sample.get(WEIGHT) is not None:
        w = np.asarray(sample[WEIGHT], dtype=np.float64).reshape(-1)
        # negative weights (NLO) are fine: signed bin fractions, Kish sizes of the signed sums
        if w.shape != (x.shape[0],) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise InputError(
                f"{name} events: {WEIGHT!r} must be finite with a positive sum, of shape "
                f"({x.shape[0]},)"
            )
        if np.all(w == w[0]):
            w = None
    return _Events(x, label, w)


# ----------------------------------------------------------------------------------------------
# the divergence
# ----------------------------------------------------------------------------------------------


def bin_fractions(cells: NDArray[np.intp], n_cells: int, w: FloatArray | None = None) -> FloatArray:
    """Fraction of the (weighted) events in each cell: cell indices (n, d) -> fractions (n_cells, d)."""
    cells = cells.reshape(cells.shape[0], -1)
    out = np.empty((n_cells, cells.shape[1]))
    total = float(cells.shape[0] if w is None else w.sum())
    for j in range(cells.shape[1]):
        out[:, j] = np.bincount(cells[:, j], weights=w, minlength=n_cells) / total
    return out


def chi2_divergence(p_s: ArrayLike, p_t: ArrayLike) -> FloatArray:
    """``d = sum_b (p_S,b - p_T,b)^2 / p_T,b`` over axis 0; cells with ``p_T = 0`` are skipped.

    Shapes: ``(B, ...)`` each -> ``(...)``.  Quantile bins of repeated values (point masses) are
    empty in the truth, and in every sample, so skipping them loses nothing.
    """
    p_s, p_t = np.asarray(p_s, dtype=np.float64), np.asarray(p_t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p_t > 0, np.square(p_s - p_t) / p_t, 0.0)
    return terms.sum(0)


def _ncx2_cdf(x: float, k: float, lam: float) -> float:
    return float(stats.chi2.cdf(x, k) if lam <= 0 else stats.ncx2.cdf(x, k, lam))


def _noncentrality_at(x: float, k: float, q: float) -> float:
    """The noncentrality ``lam >= 0`` at which ``P(chi2'(k, lam) <= x) = q`` (0 if none)."""
    if _ncx2_cdf(x, k, 0.0) <= q:
        return 0.0
    hi = max(1.0, 2.0 * x)
    while _ncx2_cdf(x, k, hi) > q:  # the CDF falls with lam
        hi *= 2.0
    return float(
        optimize.brentq(lambda lam: _ncx2_cdf(x, k, lam) - q, 0.0, hi, xtol=1e-9 * hi, rtol=1e-10)
    )


def excess_interval(
    x: float, k: float, alpha: float = DEFAULT_ALPHA
) -> tuple[float, float, float, float, float]:
    """The noncentrality of ``x = d / s``, chi2'(k, lambda) distributed: estimate and interval.

    Returns ``(lam_hat, lam_lo, lam_hi, lam_res, pvalue)``: the estimate ``max(x - k, 0)``; the
    limits at one-sided level ``alpha`` each (``lam_lo = 0`` unless the excess is significant);
    ``lam_res``, the upper limit a bias-free sample gets at the median (``lam_hi`` is never taken
    below it: the power constraint); the p-value of ``x`` under ``lambda = 0``.
    """
    pvalue = float(stats.chi2.sf(x, k))
    lam_res = _noncentrality_at(float(stats.chi2.median(k)), k, alpha)
    lam_hi = max(_noncentrality_at(x, k, alpha), lam_res)
    lam_lo = _noncentrality_at(x, k, 1.0 - alpha) if pvalue < alpha else 0.0
    return max(x - k, 0.0), lam_lo, lam_hi, lam_res, pvalue


def _inv(v: float) -> float:
    return math.inf if v <= 0 else 1.0 / v


def _row(
    feature: str,
    slice_name: str,
    p_gen: FloatArray,
    p_truth: FloatArray,
    n_gen: float,
    n_truth: float,
    n_train: float | None,
    alpha: float,
) -> dict[str, Any]:
    """One (feature, slice) row from the fractions (B,) of the generated sample and the truth."""
    k = float(np.count_nonzero(p_truth > 0) - 1)
    s = 1.0 / n_gen + 1.0 / n_truth
    d = float(chi2_divergence(p_gen, p_truth))
    lam_hat, lam_lo, lam_hi, lam_res, pvalue = excess_interval(d / s, k, alpha)
    # n_equiv = k / D with D = lambda s
    hat, lo, hi, res = (k * _inv(lam * s) for lam in (lam_hat, lam_hi, lam_lo, lam_res))
    bound = pvalue >= alpha
    n_equiv = lo if bound else hat
    worth = [_inv(_inv(v) + 1.0 / n_gen) for v in (n_equiv, lo, hi)]
    g = [v / n_train if n_train else math.nan for v in (n_equiv, lo)]
    return {
        "feature": feature,
        "slice": slice_name,
        "bins": int(k + 1),
        "n_truth": n_truth,
        "n_generated": n_gen,
        "d_gen": d,
        "d_mc": k * s,
        "pvalue": pvalue,
        "n_equiv": n_equiv,
        "n_equiv_lo": lo,
        "n_equiv_hi": hi,
        "lower_bound": bool(bound),
        "resolution": res,
        "worth": worth[0],
        "worth_lo": worth[1],
        "worth_hi": worth[2],
        "n_train": n_train if n_train else math.nan,
        "G": g[0],
        "G_lo": g[1],
    }


# ----------------------------------------------------------------------------------------------
# partitions of the truth
# ----------------------------------------------------------------------------------------------


def _n_bins(requested: int, truth: _Events, gen: _Events) -> int:
    """``requested`` bins, fewer where the smaller sample has under MIN_EVENTS_PER_BIN a bin."""
    n = min(truth.size, gen.size)
    return int(max(MIN_BINS, min(requested, n // MIN_EVENTS_PER_BIN)))


def _quantile_cells(truth: _Events, samples: Sequence[_Events], bins: int) -> list[FloatArray]:
    """Per-feature fractions (bins, d) of the truth, then of each sample, on ``T``'s quantile bins."""
    inner = quantile_inner_edges(truth.x, bins, truth.w)  # (bins - 1, d)

    def fractions(ev: _Events) -> FloatArray:
        idx = np.stack(
            [np.searchsorted(inner[:, j], ev.x[:, j], side="right") for j in range(ev.x.shape[1])],
            1,
        )
        return bin_fractions(idx, bins, ev.w)

    return [fractions(truth), *(fractions(s) for s in samples)]


class _GaussRank:
    """Each feature through the truth's CDF (piecewise linear on quantile knots) to N(0, 1)."""

    def __init__(self, x: FloatArray) -> None:
        probs = np.linspace(0.0, 1.0, GAUSS_RANK_KNOTS)
        self.knots = np.quantile(x, probs, axis=0)  # (K, d)
        eps = 0.5 / x.shape[0]
        self.z = stats.norm.ppf(np.clip(probs, eps, 1.0 - eps))

    def __call__(self, x: FloatArray) -> FloatArray:
        return np.stack(
            [np.interp(x[:, j], self.knots[:, j], self.z) for j in range(x.shape[1])], 1
        )


def _split_for_fit(truth: _Events, seed: int) -> tuple[_Events, _Events]:
    """(events the k-means cells are fitted on, the rest of the truth), a random split.

    The fit takes ``min(KMEANS_FIT_EVENTS, N_T / 5)`` events.  They are left out of the truth's
    fractions: cells adapt to the fluctuations of the events they were fitted on, and the noise
    model (an independent partition) would no longer hold for those events.
    """
    n_fit = min(KMEANS_FIT_EVENTS, len(truth) // 5)
    order = np.random.default_rng(seed).permutation(len(truth))
    return truth.take(np.sort(order[:n_fit])), truth.take(np.sort(order[n_fit:]))


def _kmeans_cells(
    fit: _Events, truth: _Events, samples: Sequence[_Events], cells: int, seed: int
) -> list[FloatArray]:
    """Fractions (cells, 1) of the truth, then of each sample, in k-means cells fitted on ``fit``.

    The cells are fitted (MiniBatchKMeans, fixed seed) on ``fit`` (truth events disjoint from
    ``truth``, see :func:`_split_for_fit`) in its gauss-rank space; every event of ``truth`` and
    of each sample is assigned to its nearest centre.
    """
    from sklearn.cluster import MiniBatchKMeans

    rank = _GaussRank(fit.x)
    km = MiniBatchKMeans(n_clusters=cells, random_state=seed, batch_size=4096, n_init=3)
    km.fit(rank(fit.x))

    def fractions(ev: _Events) -> FloatArray:
        return bin_fractions(km.predict(rank(ev.x))[:, None], cells, ev.w)

    return [fractions(truth), *(fractions(s) for s in samples)]


# ----------------------------------------------------------------------------------------------
# the measurement
# ----------------------------------------------------------------------------------------------


def _slices(truth: _Events, gen: _Events, slices: Sequence[str]) -> list[str]:
    """The requested slices both samples can provide (only "all" without labels)."""
    if truth.label is None or gen.label is None:
        return [s for s in slices if s == "all"]
    return [
        s
        for s in slices
        if s == "all"
        or (np.any(truth.label == SLICE_CLASS[s]) and np.any(gen.label == SLICE_CLASS[s]))
    ]


def amplification(
    truth: Mapping[str, ArrayLike],
    generated: Mapping[str, ArrayLike],
    features: Sequence[str],
    *,
    n_train: int | None = None,
    bins: int = DEFAULT_BINS,
    cells: int | None = DEFAULT_CELLS,
    alpha: float = DEFAULT_ALPHA,
    slices: Sequence[str] = SLICES,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The amplification rows of a generated sample against a truth sample.

    ``truth`` and ``generated`` are event dicts (feature -> (n,), optional ``label`` (n,) 0/1
    and ``weight`` (n,)), as :func:`hepflows.events.reader.read_events` returns them; ``truth`` is
    MC the flow never saw.  Returns one row per (feature, slice) on ``bins`` quantile bins of the
    truth, then, unless ``cells`` is None, one ``JOINT`` row per slice on ``cells`` k-means
    cells; keys as :data:`COLUMNS` (``n_equiv`` and ``worth`` are lower bounds where
    ``lower_bound``; infinities where nothing bounds them; ``G`` NaN without ``n_train``).
    Slices "signal"/"background" need labels on both samples.
    """
    features = list(features)
    t_all, g_all = _events(truth, features, "truth"), _events(generated, features, "generated")
    rows: list[dict[str, Any]] = []
    joint: list[dict[str, Any]] = []
    for k, name in enumerate(_slices(t_all, g_all, slices)):
        t, g = t_all.slice(name), g_all.slice(name)
        n_bins = _n_bins(bins, t, g)
        p_t, p_g = _quantile_cells(t, [g], n_bins)
        rows += [
            _row(f, name, p_g[:, j], p_t[:, j], g.size, t.size, n_train, alpha)
            for j, f in enumerate(features)
        ]
        if cells is not None:
            fit, rest = _split_for_fit(t, seed + k)
            n_cells = _n_bins(cells, rest, g)
            p_t, p_g = _kmeans_cells(fit, rest, [g], n_cells, seed + k)
            joint.append(_row(JOINT, name, p_g[:, 0], p_t[:, 0], g.size, rest.size, n_train, alpha))
    return rows + joint


def summarize(rows: Sequence[Mapping[str, Any]], alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """The headline of the rows: the worst feature x slice cell, the worst joint row, counts.

    ``features`` and ``joint`` each hold the row with the smallest ``n_equiv`` (its
    ``lower_bound`` flag says whether that is a bound), the smallest ``n_equiv_lo`` (a lower
    bound on the smallest n_equiv at level ``alpha``) and ``G``/``G_lo`` of those; ``None``
    where there are no such rows.  ``n_significant`` cells have a significant excess, against
    ``n_expected = alpha * n_cells`` for a bias-free sample.
    """

    def worst(subset: list[Mapping[str, Any]]) -> dict[str, Any] | None:
        if not subset:
            return None
        r = min(subset, key=lambda r: r["n_equiv"])
        lo = min(r["n_equiv_lo"] for r in subset)
        n_train = r["n_train"]
        return {
            "feature": r["feature"],
            "slice": r["slice"],
            "n_equiv": r["n_equiv"],
            "lower_bound": r["lower_bound"],
            "n_equiv_lo": lo,
            "worth": r["worth"],
            "G": r["G"],
            "G_lo": lo / n_train if math.isfinite(n_train) else math.nan,
        }

    feats = [r for r in rows if r["feature"] != JOINT]
    joints = [r for r in rows if r["feature"] == JOINT]
    return {
        "features": worst(feats),
        "joint": worst(joints),
        "n_cells": len(rows),
        "n_significant": sum(not r["lower_bound"] for r in rows),
        "n_expected": alpha * len(rows),
        "alpha": alpha,
    }


# ----------------------------------------------------------------------------------------------
# MC of growing size: the calibration curve of the figure
# ----------------------------------------------------------------------------------------------


def mc_divergence_curve(
    truth: Mapping[str, ArrayLike],
    features: Sequence[str],
    sizes: Sequence[int] | NDArray[np.integer[Any]],
    *,
    mc: Mapping[str, ArrayLike] | None = None,
    bins: int = DEFAULT_BINS,
    slices: Sequence[str] = SLICES,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per-feature divergence per degree of freedom, ``d / (B - 1)``, of MC samples of growing size.

    The MC samples of each size in ``sizes`` are drawn without replacement from ``mc`` (an
    independent MC sample: expected ``1/n + 1/N_T``) or, without it, from the truth itself
    (expected ``1/n - 1/N_T``, a subsample shares the truth's noise).  Returns per slice
    ``{"n": (m,), "d_per_dof": (m, d), "n_truth": N_T, "independent": bool}``; sizes above the
    source's slice are dropped.  Bins as :func:`amplification` would choose them for a
    generated sample as large as the truth.
    """
    features = list(features)
    t_all = _events(truth, features, "truth")
    src_all = t_all if mc is None else _events(mc, features, "mc")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for name in _slices(t_all, src_all, slices):
        t, src = t_all.slice(name), src_all.slice(name)
        n_bins = _n_bins(bins, t, t)
        use = [int(n) for n in sizes if n <= len(src) and (mc is not None or n < len(t))]
        subs = [src.take(rng.choice(len(src), n, replace=False)) for n in use]
        p_t, *p_subs = _quantile_cells(t, subs, n_bins)
        k = (p_t > 0).sum(0) - 1.0  # (d,)
        d = (
            np.stack([chi2_divergence(p, p_t) / k for p in p_subs])
            if subs
            else np.empty((0, len(features)))
        )
        out[name] = {
            "n": np.asarray(use, dtype=np.float64),
            "d_per_dof": d,
            "n_truth": t.size,
            "independent": mc is not None,
        }
    return out


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    """CSV cell: floats to 6 significant digits, ``inf`` for unbounded, empty for NaN."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.6g}")
    return str(v)


def write_amplification(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, alpha: float = DEFAULT_ALPHA
) -> tuple[Path, Path]:
    """Write ``amplification.csv`` (one row per cell, :data:`COLUMNS`) and ``amplification.json``
    (``{"summary": summarize(rows), "rows": rows}``, infinities as null) atomically into
    ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS])
    csv_path, json_path = out_dir / "amplification.csv", out_dir / "amplification.json"
    atomic_write_text(csv_path, buf.getvalue())
    doc = {
        "summary": summarize(rows, alpha),
        "columns": list(COLUMNS),
        "rows": [{c: r[c] for c in COLUMNS} for r in rows],
    }
    atomic_write_text(json_path, json.dumps(jsonable(doc), indent=1) + "\n")
    return csv_path, json_path


def events_text(n: float) -> str:
    """'80.2k', '1.2M', '950', 'inf' for a number of events."""
    if not math.isfinite(n):
        return "inf"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def headline(summary: Mapping[str, Any]) -> str:
    """The verdict's line of :func:`summarize`'s result, e.g.

    ``worth ≈ 80.2k MC events (joint), worst feature m_bb (signal): 12.3k; G = 2.67 (joint),
    0.41 (worst feature)``, with "≥" where a number is a lower bound (no significant excess:
    the flow is as good as MC as far as the truth resolves).
    """

    def worth(w: Mapping[str, Any]) -> str:
        return ("≥ " if w["lower_bound"] else "≈ ") + events_text(w["n_equiv"])

    def g(w: Mapping[str, Any]) -> str:
        v = w["G"]
        return (
            "n/a"
            if v is None or math.isnan(v)
            else (("≥ " if w["lower_bound"] else "") + f"{v:.3g}")
        )

    feats, joint = summary.get("features"), summary.get("joint")
    parts, gs = [], []
    if joint:
        parts.append(f"worth {worth(joint)} MC events (joint)")
        gs.append(f"{g(joint)} (joint)")
    if feats:
        where = f"{feats['feature']} ({feats['slice']})"
        parts.append(
            f"worst feature {where}: {worth(feats)}"
            if joint
            else f"worth {worth(feats)} MC events (worst feature {where})"
        )
        gs.append(f"{g(feats)} (worst feature)")
    if not parts:
        return "no amplification rows"
    return ", ".join(parts) + "; G = " + ", ".join(gs)
