"""Null distributions: how large a metric is between two independent MC samples.

A metric between generated events and MC means nothing alone; it is judged against the same
metric between two independent MC samples of the same sizes, repeated ``n_null`` times.  This
module holds the pieces that turn those repeats into a band, a p-value and a colour.

The band edge ("null p95")
--------------------------
With only ``n`` null values, ``np.percentile(null, 95)`` interpolates between the two largest of
20 values, and a new MC-vs-MC value exceeds it about 9 % of the time, not 5 %: a verdict that
counts such exceedances against "5 % expected" would call good samples bad.  The edge here is
the order statistic ``k = ceil(0.95 (n + 1))`` of the null values.  If the value and the null
values are exchangeable (true under the null hypothesis), the value exceeds it with probability
exactly ``(n + 1 - k) / (n + 1)`` -- 1/21 = 4.8 % for ``n = 20`` -- which is the rate reported as
"expected by chance" (:func:`chance_rate`).  It is the largest of the 20 values for ``n = 20``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: Nominal coverage of the null band.
BAND_QUANTILE = 0.95
#: A value above the band edge but at most this multiple of it is amber; beyond, red.
AMBER_FACTOR = 1.5

GREEN, AMBER, RED, UNKNOWN = "green", "amber", "red", "n/a"
#: Background colour of a status cell in the HTML tables.
STATUS_COLOURS = {GREEN: "#b7e1a1", AMBER: "#ffd27f", RED: "#f4a3a3", UNKNOWN: "#dddddd"}
_STATUS_RANK = {GREEN: 0, UNKNOWN: 0, AMBER: 1, RED: 2}


def band_rank(n_null: int, q: float = BAND_QUANTILE) -> int:
    """1-based rank of the order statistic used as the band edge among ``n_null`` values."""
    if n_null < 1:
        raise ValueError("the null distribution needs at least one value")
    return min(n_null, math.ceil(q * (n_null + 1)))


def chance_rate(n_null: int, q: float = BAND_QUANTILE) -> float:
    """Probability that a null-distributed value exceeds the band edge of ``n_null`` values."""
    return (n_null + 1 - band_rank(n_null, q)) / (n_null + 1)


def band_edge(null: ArrayLike, q: float = BAND_QUANTILE) -> FloatArray:
    """Band edge per cell from null values of shape (n_null, ...) -> shape (...)."""
    arr = np.asarray(null, dtype=np.float64)
    return np.sort(arr, axis=0)[band_rank(arr.shape[0], q) - 1]


def empirical_pvalue(value: ArrayLike, null: ArrayLike) -> FloatArray:
    """``(1 + #{null >= value}) / (n_null + 1)`` per cell; never 0, so always a valid p-value."""
    arr = np.asarray(null, dtype=np.float64)
    return (1.0 + np.sum(arr >= np.asarray(value, dtype=np.float64), axis=0)) / (arr.shape[0] + 1)


def ratio(value: ArrayLike, edge: ArrayLike, baseline: float = 0.0) -> FloatArray:
    """``(value - baseline) / (edge - baseline)``: 1 on the band edge, <= 1 inside.

    The baseline is the metric's value for identical distributions when that is not 0 (0.5
    for a ROC AUC).  A degenerate band (edge <= baseline) gives 0 inside and infinity outside.
    """
    v = np.asarray(value, dtype=np.float64) - baseline
    e = np.asarray(edge, dtype=np.float64) - baseline
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(e > 0, v / e, np.where(v <= e, 0.0, np.inf))
    return np.where(np.isnan(v) | np.isnan(e), np.nan, out)


def status(r: float) -> str:
    """Colour of a ratio to the band edge: green <= 1, amber <= 1.5, red beyond."""
    if not np.isfinite(r) and not np.isinf(r):
        return UNKNOWN
    if r <= 1.0:
        return GREEN
    if r <= AMBER_FACTOR:
        return AMBER
    return RED


def worst_status(statuses: list[str]) -> str:
    """The worst of several colours (red > amber > green)."""
    return max(statuses, key=_STATUS_RANK.__getitem__, default=UNKNOWN)


def leave_one_out(null: ArrayLike, q: float = BAND_QUANTILE) -> tuple[FloatArray, FloatArray]:
    """What each null replicate looks like when judged against the band of the others.

    ``null`` has shape (n_null, cells), one column per (feature, slice) of a metric, all >= 0
    up to noise.  For replicate ``k`` the edge is built from the other ``n_null - 1`` values
    of each cell.  Returns, per replicate, the number of cells above their edge and the
    largest ratio to the edge, both shape (n_null,).  These are null distributions of the
    verdict's "cells outside the band" and "worst ratio" that keep the correlations between
    cells (features are correlated; the "all" slice contains the other two), which a binomial
    count would ignore.
    """
    arr = np.asarray(null, dtype=np.float64)
    n = arr.shape[0]
    if n < 3:
        nan = np.full(n, np.nan)
        return nan, nan
    rank_others = band_rank(n - 1, q)  # 1-based rank among the n - 1 others
    order = np.argsort(arr, axis=0, kind="stable")
    sorted_null = np.take_along_axis(arr, order, axis=0)
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(n)[:, None], axis=0)
    # removing a value below the chosen rank shifts the chosen value up by one place
    edge = np.where(
        position > rank_others - 1, sorted_null[rank_others - 1], sorted_null[rank_others]
    )
    r = ratio(arr, edge)
    count = np.sum(arr > edge, axis=1).astype(np.float64)
    return count, np.max(np.where(np.isnan(r), 0.0, r), axis=1)
