"""Two-sample distances between a reference sample (the MC) and a test sample (generated events).

Conventions
-----------
* 1-D functions take ``a`` (reference, shape ``(n,)``) and ``b`` (test, shape ``(m,)``) and
  optional per-event weights ``wa`` ``(n,)`` and ``wb`` ``(m,)``.  Values are in the units of the
  feature (GeV for momenta and masses); distances such as the Wasserstein distance carry them.
* The ``*_columns`` variants take ``(n, d)`` and ``(m, d)`` arrays and return one value per
  column, shape ``(d,)``.  The null distribution needs every metric for every feature, slice and
  replicate, so these do the work in a few array operations instead of thousands of scipy calls.
* Joint functions take ``x`` ``(n, d)`` and ``y`` ``(m, d)``.
* Inputs must be finite; callers check this once, where they can name the offending feature.

Weights: a sample whose weights are all equal is treated exactly like an unweighted one, so a
weighted call with unit weights returns the unweighted result.  Weights may be negative (NLO
generators) as long as their sum is positive: the ECDFs, histograms, means and covariances are
those of the signed measure, and the resampling estimators (:func:`fpd`,
:func:`kernel_distance`) draw events with probability ``|w| / sum |w|`` and keep each drawn
event's sign as its weight, an unbiased importance sampling of the signed measure.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from hepflows.kish import effective_size

FloatArray = NDArray[np.float64]

#: Default number of histogram bins for the chi2 test and the separation power.
DEFAULT_BINS = 40


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _as_columns(x: ArrayLike) -> FloatArray:
    """Return ``x`` as float64 of shape ``(n, d)``; a 1-D input becomes one column."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("cannot compare an empty sample")
    return arr


def _weights(w: ArrayLike | None, n: int) -> FloatArray | None:
    """Validated float64 weights of shape ``(n,)``, or ``None`` when absent or all equal.

    All-equal weights carry no information for shape comparisons, so they are dropped: this
    makes weighted calls with unit weights identical to unweighted ones.
    """
    if w is None:
        return None
    arr = np.asarray(w, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"weights have shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)) or arr.sum() <= 0:
        raise ValueError("weights must be finite with a positive sum")
    if np.all(arr == arr[0]):
        return None
    return arr


def _ecdf_difference(
    a: FloatArray, b: FloatArray, wa: FloatArray | None, wb: FloatArray | None
) -> tuple[FloatArray, FloatArray]:
    """Pooled sorted values and ``F_a - F_b`` just right of each of them, per column.

    Shapes: ``a`` (n, d), ``b`` (m, d) -> both outputs (n + m, d).  ``F`` are the (weighted)
    empirical CDFs; at the last pooled value the difference is 0 up to rounding.
    """
    n, m = a.shape[0], b.shape[0]
    pooled = np.concatenate([a, b], axis=0)
    # the order inside runs of tied values does not matter to the callers (KS looks only at
    # the last of a run, W1 weighs runs by zero width), so the fast unstable sort will do
    order = np.argsort(pooled, axis=0)
    values = np.take_along_axis(pooled, order, axis=0)
    step_a = np.full(n, 1.0 / n) if wa is None else wa / wa.sum()
    step_b = np.full(m, 1.0 / m) if wb is None else wb / wb.sum()
    step = np.concatenate([step_a, -step_b])
    return values, np.cumsum(step[order], axis=0)


def quantile_inner_edges(a: FloatArray, n_bins: int, wa: FloatArray | None) -> FloatArray:
    """Inner bin edges at the (weighted) quantiles ``k / n_bins`` of each column of ``a``.

    Shape (n_bins - 1, d).  Repeated edges (discrete values) give empty bins, which the
    callers drop, so every column can keep the same number of bins.
    """
    probs = np.arange(1, n_bins) / n_bins
    if wa is None:
        return np.quantile(a, probs, axis=0)
    order = np.argsort(a, axis=0)
    sorted_a = np.take_along_axis(a, order, axis=0)
    cum = np.cumsum(wa[order], axis=0)
    cum /= cum[-1]
    # negative weights make the signed ECDF non-monotone; its running maximum is the smallest
    # monotone bound, so that searchsorted sees a sorted array and the edges stay ordered
    np.maximum.accumulate(cum, axis=0, out=cum)
    edges = np.empty((n_bins - 1, a.shape[1]))
    for j in range(a.shape[1]):
        idx = np.searchsorted(cum[:, j], probs, side="left")
        edges[:, j] = sorted_a[np.minimum(idx, len(a) - 1), j]
    return edges


def uniform_edges(a: ArrayLike, n_bins: int, *, coverage: float = 0.99) -> FloatArray:
    """Equal-width bin edges per column spanning the central ``coverage`` of ``a`` (the MC).

    Shape (n_bins + 1, d); the outer edges are -inf and +inf so that the tails land in the
    first and last bins instead of being dropped.
    """
    a2 = _as_columns(a)
    tail = 0.5 * (1.0 - coverage)
    lo, hi = np.quantile(a2, [tail, 1.0 - tail], axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)  # a constant column still gets increasing edges
    edges = lo + (hi - lo) * (np.arange(n_bins + 1)[:, None] / n_bins)
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def _binned(
    a: FloatArray,
    b: FloatArray,
    bins: int | ArrayLike,
    wa: FloatArray | None,
    wb: FloatArray | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Sums of weights and of squared weights per bin for both samples, shape (n_bins, d) each.

    With an integer ``bins`` the edges are the quantiles of ``a`` (the MC) and the outer bins
    are open-ended, so no event of either sample falls outside.  With edges, shape
    (n_bins + 1,) shared by all columns or (n_bins + 1, d), events outside
    ``[edges[0], edges[-1]]`` are ignored, as in ``np.histogram`` (use +-inf to keep them).
    """
    d = a.shape[1]
    if np.ndim(bins) == 0:
        n_bins = int(bins)  # type: ignore[arg-type]
        if n_bins < 2:
            raise ValueError(f"need at least 2 bins, got {n_bins}")
        inner = quantile_inner_edges(a, n_bins, wa)

        def index(x: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
            idx = np.empty(x.shape, dtype=np.intp)
            for j in range(d):
                idx[:, j] = np.searchsorted(inner[:, j], x[:, j], side="right")
            return idx, np.ones(x.shape, dtype=bool)

    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim == 1:
            edges = np.repeat(edges[:, None], d, axis=1)
        if edges.ndim != 2 or edges.shape[1] != d or len(edges) < 3:
            raise ValueError(
                f"bin edges must have shape (n_bins + 1,) or (n_bins + 1, {d}) "
                f"with n_bins >= 2, got {np.shape(bins)}"
            )
        if np.any(np.diff(edges, axis=0) <= 0):
            raise ValueError("bin edges must be strictly increasing")
        n_bins = len(edges) - 1

        def index(x: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
            idx = np.empty(x.shape, dtype=np.intp)
            for j in range(d):
                idx[:, j] = np.searchsorted(edges[:, j], x[:, j], side="right") - 1
            idx[x == edges[-1]] = n_bins - 1  # the last bin is closed, as in np.histogram
            return idx, (idx >= 0) & (idx < n_bins)

    def fill(x: FloatArray, w: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        idx, ok = index(x)
        # one bincount for all columns: shift column j into bins [j*n_bins, (j+1)*n_bins)
        flat = (idx + n_bins * np.arange(d))[ok]
        ww = np.ones(x.shape) if w is None else np.broadcast_to(w[:, None], x.shape)
        ww = ww[ok]
        s1 = np.bincount(flat, weights=ww, minlength=n_bins * d).reshape(d, n_bins).T
        s2 = np.bincount(flat, weights=ww * ww, minlength=n_bins * d).reshape(d, n_bins).T
        # with weights bincount gives float64 (numpy's stub says intp whatever the weights)
        return cast(FloatArray, s1), cast(FloatArray, s2)

    sa, sa2 = fill(a, wa)
    sb, sb2 = fill(b, wb)
    return sa, sa2, sb, sb2


# ----------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov
# ----------------------------------------------------------------------------------------------


def ks_statistic_columns(
    a: ArrayLike, b: ArrayLike, *, wa: ArrayLike | None = None, wb: ArrayLike | None = None
) -> FloatArray:
    """Two-sample (weighted) KS statistic ``sup |F_a - F_b|`` per column; shape (d,).

    The supremum is taken only at the last of tied values, where both ECDFs are complete.
    """
    a2, b2 = _as_columns(a), _as_columns(b)
    values, diff = _ecdf_difference(a2, b2, _weights(wa, len(a2)), _weights(wb, len(b2)))
    last_of_ties = np.ones(values.shape, dtype=bool)
    last_of_ties[:-1] = values[1:] != values[:-1]
    return np.max(np.where(last_of_ties, np.abs(diff), 0.0), axis=0)


def ks_test(
    a: ArrayLike, b: ArrayLike, *, wa: ArrayLike | None = None, wb: ArrayLike | None = None
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of 1-D samples; returns (statistic, p-value).

    Unweighted samples use ``scipy.stats.ks_2samp`` (exact p-value up to 10^4 events).  Weighted
    samples use the weighted ECDFs for the statistic and Smirnov's asymptotic distribution
    (``scipy.stats.kstwo``, as ``ks_2samp`` does for large samples) with the Kish effective sizes
    in place of ``n`` and ``m``.
    """
    a1 = np.asarray(a, dtype=np.float64).reshape(-1)
    b1 = np.asarray(b, dtype=np.float64).reshape(-1)
    wa1, wb1 = _weights(wa, len(a1)), _weights(wb, len(b1))
    if wa1 is None and wb1 is None:
        res = stats.ks_2samp(a1, b1)
        return float(res.statistic), float(res.pvalue)
    stat = float(ks_statistic_columns(a1, b1, wa=wa1, wb=wb1)[0])
    na, nb = effective_size(wa1, len(a1)), effective_size(wb1, len(b1))
    en = max(1.0, round(na * nb / (na + nb)))
    return stat, float(stats.kstwo.sf(stat, en))


# ----------------------------------------------------------------------------------------------
# chi2 of two histograms
# ----------------------------------------------------------------------------------------------


def chi2_columns(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bins: int | ArrayLike = DEFAULT_BINS,
    wa: ArrayLike | None = None,
    wb: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """chi2 and ndf of two histograms per column, both normalised to unit area; shapes (d,).

    Both samples' statistical errors enter.  Unweighted samples use the homogeneity test with
    the pooled bin probability (ROOT ``Chi2Test`` "UU"; Gagunashvili 2006):
    ``chi2 = sum (M n_i - N m_i)^2 / (N M (n_i + m_i))``, whose null distribution is chi2(ndf)
    even for small bin contents.  If either sample is weighted, the weighted-weighted form
    (ROOT "WW") ``chi2 = sum (p_i - q_i)^2 / (s2a_i / Wa^2 + s2b_i / Wb^2)`` with ``p, q`` the
    normalised contents and ``s2`` the sums of squared weights.  Bins empty in both samples are
    dropped; ``ndf = (non-empty bins) - 1`` because normalising removes one degree of freedom.
    """
    a2, b2 = _as_columns(a), _as_columns(b)
    wa1, wb1 = _weights(wa, len(a2)), _weights(wb, len(b2))
    sa, sa2, sb, sb2 = _binned(a2, b2, bins, wa1, wb1)
    tot_a, tot_b = sa.sum(axis=0), sb.sum(axis=0)
    used = (sa2 + sb2) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if wa1 is None and wb1 is None:
            terms = (tot_b * sa - tot_a * sb) ** 2 / (tot_a * tot_b * (sa + sb))
        else:
            var = sa2 / tot_a**2 + sb2 / tot_b**2
            terms = (sa / tot_a - sb / tot_b) ** 2 / var
    chi2 = np.where(used, terms, 0.0).sum(axis=0)
    ndf = used.sum(axis=0) - 1.0
    return chi2, ndf


def chi2_test(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bins: int | ArrayLike = DEFAULT_BINS,
    wa: ArrayLike | None = None,
    wb: ArrayLike | None = None,
) -> dict[str, float]:
    """chi2 test of the shapes of two 1-D samples (see :func:`chi2_columns`).

    With an integer ``bins`` the edges are the quantiles of ``a`` (the MC) so each bin holds
    about the same MC weight, and the outer bins are open.  Returns
    ``{"chi2", "ndf", "chi2_ndf", "pvalue"}``; the p-value is ``P(chi2(ndf) >= chi2)``.
    """
    chi2, ndf = chi2_columns(a, b, bins=bins, wa=wa, wb=wb)
    c, k = float(chi2[0]), float(ndf[0])
    if k < 1:
        return {"chi2": c, "ndf": k, "chi2_ndf": float("nan"), "pvalue": float("nan")}
    return {"chi2": c, "ndf": k, "chi2_ndf": c / k, "pvalue": float(stats.chi2.sf(c, k))}


# ----------------------------------------------------------------------------------------------
# Wasserstein distance and separation power
# ----------------------------------------------------------------------------------------------


def wasserstein_columns(
    a: ArrayLike, b: ArrayLike, *, wa: ArrayLike | None = None, wb: ArrayLike | None = None
) -> FloatArray:
    """1-Wasserstein distance ``integral |F_a - F_b| dx`` per column, in feature units; (d,)."""
    a2, b2 = _as_columns(a), _as_columns(b)
    values, diff = _ecdf_difference(a2, b2, _weights(wa, len(a2)), _weights(wb, len(b2)))
    return np.sum(np.abs(diff[:-1]) * np.diff(values, axis=0), axis=0)


def ks_wasserstein_columns(
    a: ArrayLike, b: ArrayLike, *, wa: ArrayLike | None = None, wb: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray]:
    """KS statistic and 1-Wasserstein distance per column from one sort; shapes (d,) each.

    Same values as :func:`ks_statistic_columns` and :func:`wasserstein_columns`; the sort of
    the pooled sample is most of the cost of either, so the validation loop asks for both.
    """
    a2, b2 = _as_columns(a), _as_columns(b)
    values, diff = _ecdf_difference(a2, b2, _weights(wa, len(a2)), _weights(wb, len(b2)))
    last_of_ties = np.ones(values.shape, dtype=bool)
    last_of_ties[:-1] = values[1:] != values[:-1]
    ks = np.max(np.where(last_of_ties, np.abs(diff), 0.0), axis=0)
    w1 = np.sum(np.abs(diff[:-1]) * np.diff(values, axis=0), axis=0)
    return ks, w1


def wasserstein(
    a: ArrayLike, b: ArrayLike, *, wa: ArrayLike | None = None, wb: ArrayLike | None = None
) -> float:
    """1-Wasserstein (earth mover's) distance of two 1-D samples, in feature units."""
    return float(
        stats.wasserstein_distance(
            np.asarray(a, dtype=np.float64).reshape(-1),
            np.asarray(b, dtype=np.float64).reshape(-1),
            None if wa is None else np.asarray(wa, dtype=np.float64),
            None if wb is None else np.asarray(wb, dtype=np.float64),
        )
    )


def separation_power_columns(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bins: int | ArrayLike = DEFAULT_BINS,
    wa: ArrayLike | None = None,
    wb: ArrayLike | None = None,
) -> FloatArray:
    """CaloChallenge separation power per column, in [0, 1]; shape (d,).

    ``0.5 * sum_i (h_i - g_i)^2 / (h_i + g_i)`` on histograms normalised to unit sum (the
    triangular discrimination, eq. 15 of arXiv:2009.03796).  Binning as in :func:`chi2_columns`.
    On the same bins and for two unweighted samples of equal size N it is exactly the chi2 of
    :func:`chi2_columns` divided by 2N, so a caller wanting a second opinion should bin it
    differently (e.g. :func:`uniform_edges`, the CaloChallenge practice).
    """
    a2, b2 = _as_columns(a), _as_columns(b)
    sa, _, sb, _ = _binned(a2, b2, bins, _weights(wa, len(a2)), _weights(wb, len(b2)))
    h, g = sa / sa.sum(axis=0), sb / sb.sum(axis=0)
    den = h + g
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(den > 0, (h - g) ** 2 / den, 0.0)
    return 0.5 * terms.sum(axis=0)


def separation_power(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bins: int | ArrayLike = DEFAULT_BINS,
    wa: ArrayLike | None = None,
    wb: ArrayLike | None = None,
) -> float:
    """CaloChallenge separation power of two 1-D samples: 0 identical, 1 disjoint."""
    return float(separation_power_columns(a, b, bins=bins, wa=wa, wb=wb)[0])


# ----------------------------------------------------------------------------------------------
# joint distribution: Frechet and kernel physics distances, correlations
# ----------------------------------------------------------------------------------------------


def normalise_features(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Divide both samples by the per-feature maximum of ``|x|`` (JetNet's normalisation).

    Features that are identically 0 in ``x`` are left as they are.
    """
    x2, y2 = _as_columns(x), _as_columns(y)
    scale = np.max(np.abs(x2), axis=0)
    scale[scale == 0] = 1.0
    return x2 / scale, y2 / scale


def _mean_cov(x: FloatArray, w: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Mean (d,) and covariance (d, d) of the rows of ``x`` (n, d), optionally weighted.

    Weighted: ``mu = sum w x / V1`` and ``C = sum w (x - mu)(x - mu)^T / (V1 - V2 / V1)`` with
    ``V1 = sum w``, ``V2 = sum w^2`` (``np.cov``'s ``aweights`` estimator, written out because
    numpy refuses negative weights).
    """
    if w is None:
        return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))
    v1 = w.sum()
    mu = (w @ x) / v1
    dx = x - mu
    cov = (dx * w[:, None]).T @ dx / (v1 - np.square(w).sum() / v1)
    return mu, np.atleast_2d(cov)


def _frechet_from_moments(
    mu1: FloatArray, cov1: FloatArray, mu2: FloatArray, cov2: FloatArray
) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` for symmetric PSD covariances.

    ``tr (C1 C2)^(1/2)`` equals the sum of square roots of the eigenvalues of the symmetric
    matrix ``C1^(1/2) C2 C1^(1/2)``; eigh on it is faster and steadier than ``sqrtm``.
    """
    evals, evecs = np.linalg.eigh(cov1)
    root1 = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
    inner = root1 @ cov2 @ root1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (inner + inner.T)), 0.0, None)).sum()
    dist = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(dist, 0.0)


def frechet_distance(
    x: ArrayLike,
    y: ArrayLike,
    *,
    wx: ArrayLike | None = None,
    wy: ArrayLike | None = None,
    normalise: bool = False,
) -> float:
    """Frechet distance between Gaussians with the means and covariances of ``x`` and ``y``.

    Shapes (n, d) and (m, d); the result is in squared feature units (unitless when
    ``normalise`` divides both by the max ``|x|`` per feature, as JetNet's FPD does).  For two
    Gaussians with equal covariances it is ``|mu_x - mu_y|^2``.
    """
    x2, y2 = _as_columns(x), _as_columns(y)
    if normalise:
        x2, y2 = normalise_features(x2, y2)
    mu1, c1 = _mean_cov(x2, _weights(wx, len(x2)))
    mu2, c2 = _mean_cov(y2, _weights(wy, len(y2)))
    return _frechet_from_moments(mu1, c1, mu2, c2)


def _draw_probabilities(w: ArrayLike | None, n: int) -> tuple[FloatArray | None, FloatArray | None]:
    """Resampling probabilities ``|w| / sum |w|`` and the sign of each event, or None twice.

    Positive weights give unweighted batches (sign None); with negative ones each drawn event
    keeps its sign as its weight in the batch.
    """
    ww = _weights(w, n)
    if ww is None:
        return None, None
    sign = np.sign(ww) if np.any(ww < 0) else None
    return np.abs(ww) / np.abs(ww).sum(), sign


def _batch(
    x: FloatArray,
    p: FloatArray | None,
    sign: FloatArray | None,
    size: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray | None]:
    """``size`` rows of ``x`` drawn with replacement with probabilities ``p``, and their signs."""
    idx = rng.choice(len(x), size=size, p=p)
    return x[idx], None if sign is None else sign[idx]


def _batch_sources(
    x: ArrayLike, y: ArrayLike, wx: ArrayLike | None, wy: ArrayLike | None, normalise: bool
) -> tuple[FloatArray, FloatArray, tuple, tuple]:
    """The two samples as columns (standardised together with ``normalise``) and, for each, the
    draw probabilities and signs of :func:`_batch`: what the batched JetNet distances share."""
    x2, y2 = _as_columns(x), _as_columns(y)
    if normalise:
        x2, y2 = normalise_features(x2, y2)
    return x2, y2, _draw_probabilities(wx, len(x2)), _draw_probabilities(wy, len(y2))


def fpd(
    x: ArrayLike,
    y: ArrayLike,
    *,
    wx: ArrayLike | None = None,
    wy: ArrayLike | None = None,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    num_batches: int = 20,
    num_points: int = 10,
    normalise: bool = True,
    seed: int = 42,
) -> tuple[float, float]:
    """Frechet physics distance as in JetNet (Kansal et al., arXiv:2211.10295); (value, error).

    Frechet distances of batches drawn with replacement, at ``num_points`` batch sizes evenly
    spaced in 1/N between ``min_samples`` and ``max_samples``, averaged over ``num_batches``
    per size, then extrapolated linearly in 1/N to N -> infinity (intercept >= 0).  The error is
    the fit's uncertainty on the intercept.  Weighted samples are drawn with probability
    proportional to their weights (to their absolute values, each keeping its sign, when
    some are negative).
    """
    x2, y2, (px, sx), (py, sy) = _batch_sources(x, y, wx, wy, normalise)
    sizes = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(int)
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        vals = []
        for _ in range(num_batches):
            bx, bsx = _batch(x2, px, sx, size, rng)
            by, bsy = _batch(y2, py, sy, size, rng)
            vals.append(_frechet_from_moments(*_mean_cov(bx, bsx), *_mean_cov(by, bsy)))
        means.append(np.mean(vals))
    params, cov = optimize.curve_fit(
        lambda inv_n, c, s: c + s * inv_n,
        1.0 / sizes,
        np.asarray(means),
        bounds=([0.0, 0.0], [np.inf, np.inf]),
    )
    return float(params[0]), float(np.sqrt(np.diag(cov)[0]))


def _int_power(base: FloatArray, degree: int) -> FloatArray:
    """``base ** degree`` for a small positive integer degree by repeated squaring.

    ``np.power`` with an integer exponent above 2 calls ``pow`` per element and is several
    times slower than a few in-place multiplications on kernel matrices of millions of entries.
    ``base`` is overwritten.
    """
    result = None
    while True:
        if degree & 1:
            if result is None:
                result = base.copy() if degree > 1 else base
            else:
                result *= base
        degree >>= 1
        if not degree:
            assert result is not None  # degree >= 1: its lowest set bit set result
            return result
        np.multiply(base, base, out=base)


def _poly_kernel_sum(
    x: FloatArray,
    y: FloatArray,
    degree: int,
    chunk: int = 1024,
    wx: FloatArray | None = None,
    wy: FloatArray | None = None,
) -> float:
    """Sum over all pairs of ``wx_i wy_j (x_i . y_j / d + 1)^degree`` (weights 1 when None),
    built in row chunks to bound memory."""
    gamma = 1.0 / x.shape[1]
    total = 0.0
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk] @ y.T
        block *= gamma
        block += 1.0
        k = _int_power(block, degree)
        if wx is None and wy is None:
            total += float(np.sum(k))
            continue
        row = k.sum(axis=1) if wy is None else k @ wy
        total += float(row.sum() if wx is None else wx[start : start + chunk] @ row)
    return total


def mmd_poly_unbiased(
    x: ArrayLike,
    y: ArrayLike,
    *,
    degree: int = 4,
    wx: ArrayLike | None = None,
    wy: ArrayLike | None = None,
) -> float:
    """Unbiased quadratic-time estimate of MMD^2 with the kernel ``(x.y / d + 1)^degree``.

    Shapes (n, d), (m, d) with n, m >= 2.  Can be negative when the samples agree.  With
    (signed) weights the pair sums are weighted, ``sum_{i!=j} w_i w_j k_ij / ((sum w)^2 -
    sum w^2)`` within a sample and ``sum w_i v_j k_ij / (sum w sum v)`` across, which is the
    unweighted estimator when all weights are 1.
    """
    x2, y2 = _as_columns(x), _as_columns(y)
    d = x2.shape[1]
    if degree < 1:
        raise ValueError(f"kernel degree must be a positive integer, got {degree}")
    ax = None if wx is None else np.asarray(wx, dtype=np.float64)
    ay = None if wy is None else np.asarray(wy, dtype=np.float64)

    def within(z: FloatArray, w: FloatArray | None) -> float:
        diag = (np.einsum("ij,ij->i", z, z) / d + 1.0) ** degree
        if w is None:
            return (_poly_kernel_sum(z, z, degree) - np.sum(diag)) / (len(z) * (len(z) - 1))
        pairs = w.sum() ** 2 - np.square(w).sum()
        return (_poly_kernel_sum(z, z, degree, wx=w, wy=w) - float(np.square(w) @ diag)) / pairs

    sx = len(x2) if ax is None else ax.sum()
    sy = len(y2) if ay is None else ay.sum()
    kxy = _poly_kernel_sum(x2, y2, degree, wx=ax, wy=ay) / (sx * sy)
    return float(within(x2, ax) + within(y2, ay) - 2.0 * kxy)


def kernel_distance(
    x: ArrayLike,
    y: ArrayLike,
    *,
    wx: ArrayLike | None = None,
    wy: ArrayLike | None = None,
    num_batches: int = 10,
    batch_size: int = 5_000,
    degree: int = 4,
    normalise: bool = True,
    seed: int = 42,
) -> tuple[float, float]:
    """Kernel physics distance as in JetNet (arXiv:2211.10295); returns (median, error).

    Block estimator: the unbiased MMD^2 with a polynomial kernel ``(x.y/d + 1)^degree`` on
    ``num_batches`` batches of ``batch_size`` events drawn with replacement from each sample;
    the value is the median over batches and the error half the 16.275-83.725 % inter-quantile
    range, as in JetNet.  JetNet's code uses ``degree=4``; ``degree=3`` gives the cubic kernel
    of the kernel inception distance.  Weighted samples are drawn with probability
    proportional to their weights (to their absolute values, each keeping its sign, when
    some are negative).
    """
    x2, y2, (px, sx), (py, sy) = _batch_sources(x, y, wx, wy, normalise)
    vals = []
    for i in range(num_batches):
        rng = np.random.default_rng(seed + 1000 * i)
        bx, bsx = _batch(x2, px, sx, batch_size, rng)
        by, bsy = _batch(y2, py, sy, batch_size, rng)
        vals.append(mmd_poly_unbiased(bx, by, degree=degree, wx=bsx, wy=bsy))
    err = stats.iqr(vals, rng=(16.275, 83.725)) / 2.0
    return float(np.median(vals)), float(err)


def correlation_matrix(x: ArrayLike, *, w: ArrayLike | None = None) -> FloatArray:
    """Pearson correlation matrix (d, d) of the columns of ``x`` (n, d), optionally weighted."""
    x2 = _as_columns(x)
    _, cov = _mean_cov(x2, _weights(w, len(x2)))
    sd = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.nan_to_num(cov / np.outer(sd, sd))
    # exactly 1 on the diagonal (0 for constant columns): rounding must not look like a signal
    np.fill_diagonal(corr, (sd > 0).astype(np.float64))
    return corr


def correlation_difference(
    x: ArrayLike, y: ArrayLike, *, wx: ArrayLike | None = None, wy: ArrayLike | None = None
) -> FloatArray:
    """Correlation matrix of ``y`` (generated) minus that of ``x`` (reference); shape (d, d)."""
    return correlation_matrix(y, w=wy) - correlation_matrix(x, w=wx)


def correlation_norm(diff: ArrayLike) -> float:
    """Frobenius norm of the off-diagonal upper triangle of a correlation difference (d, d)."""
    arr = np.asarray(diff, dtype=np.float64)
    iu = np.triu_indices(arr.shape[0], k=1)
    return float(np.sqrt(np.sum(arr[iu] ** 2)))
