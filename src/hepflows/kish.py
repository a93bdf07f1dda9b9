"""Kish's effective sample size of weighted events, the one place its formula is written.

``n_eff = (sum w)^2 / sum w^2`` (L. Kish, *Survey Sampling*, Wiley 1965): the number of
unweighted events that would give a weighted mean the same variance. Ingest streams the two
sums chunk by chunk (:func:`kish_size`); validation, amplification, the classifier test and
refinement hold the weights in memory (:func:`effective_size`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["effective_size", "kish_size"]


def kish_size(sum_weights: float, sum_weights_squared: float) -> float:
    """Kish effective sample size from the sum of the weights and of their squares; 0 without
    events (both sums 0)."""
    return sum_weights**2 / sum_weights_squared if sum_weights_squared > 0 else 0.0


def effective_size(w: ArrayLike | None, n: int) -> float:
    """Kish effective sample size of the weights ``w`` (n,); ``n`` for unweighted events
    (``w`` None)."""
    if w is None:
        return float(n)
    arr = np.asarray(w, dtype=np.float64)
    return float(kish_size(float(arr.sum()), float(np.square(arr).sum())))
