"""The spread of an ensemble's members per histogram bin: the generator's own uncertainty.

The averaging method of Bahl, Diefenbacher, Elmer, Plehn, Spinner, "Forecasting generative
amplification", arXiv:2509.08048 (section on averaging amplification with ensembles): members
trained on the same events with different seeds disagree where the training events do not
fix the density; their spread over a phase-space volume is the uncertainty of the generator's
integral over it, and the MC sample of the same statistical uncertainty is what the generator
is worth there, with no truth sample needed.

The maths
---------
Bins ``b = 1..B`` (quantile bins of a reference sample, per feature).  Member ``j = 1..k``
generated ``n_j`` events, ``c_jb`` of them in bin ``b``: its fraction ``p_jb = c_jb / n_j``.

* the ensemble's fraction (its mixture's, for equal ``n_j``): ``pbar_b = (1/k) sum_j p_jb``;
* the spread: ``s_b^2 = 1/(k - 1) sum_j (p_jb - pbar_b)^2``;
* each ``p_jb`` also carries its sample's multinomial noise, ``v_b = (1/k) sum_j
  pbar_b (1 - pbar_b) / n_j``; the members' own disagreement, what training left open, is
  ``sigma_b^2 = max(s_b^2 - v_b, 0)`` (``E[s_b^2] = sigma_b^2 + v_b`` for independent draws);
* one member's fraction has the uncertainty of ``n_equiv,b = pbar_b (1 - pbar_b) / sigma_b^2``
  MC events (a binomial fraction of ``n`` events has variance ``p (1 - p) / n``), infinite
  where ``sigma_b = 0`` (the spread is all sampling noise: not resolved); the averaging
  amplification of a member is ``G_b = n_equiv,b / n_train``;
* the ensemble's mean of ``k`` independent members has ``sigma_b / sqrt(k)``, so it is worth
  ``k n_equiv,b`` as far as the members' errors are independent (they share the training
  events, so this is an upper bound; the spread says nothing of a bias every member shares).

With ``k = 2`` every ``s_b^2`` has one degree of freedom: read the spread over many bins (its
median, its largest values), not bin by bin.  Shapes: ``(k, B)`` in, ``(B,)`` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.schema import LABEL
from hepflows.validation.metrics import quantile_inner_edges

__all__ = ["Spread", "member_spread", "feature_spreads", "DEFAULT_BINS"]

#: Quantile bins per feature, as the amplification's (:mod:`hepflows.validation.amplification`).
DEFAULT_BINS = 50

#: The slices of a labelled sample and the label each keeps (None: every event).
SLICES = {"all": None, "signal": 1, "background": 0}


@dataclass(frozen=True)
class Spread:
    """The members' spread on ``B`` bins (see the module's maths); arrays of shape (B,)."""

    mean: NDArray[np.float64]  # pbar_b: the ensemble's fraction
    spread: NDArray[np.float64]  # s_b: the members' standard deviation, noise included
    noise: NDArray[np.float64]  # sqrt(v_b): what the samples' multinomial noise alone gives
    sigma: NDArray[np.float64]  # sigma_b: the members' disagreement, noise taken out
    n_equiv: NDArray[np.float64]  # pbar_b (1 - pbar_b) / sigma_b^2 (inf where sigma_b = 0)

    @property
    def relative(self) -> NDArray[np.float64]:
        """sigma_b / pbar_b: the generator's relative uncertainty per bin (NaN in empty bins)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.mean > 0, self.sigma / self.mean, np.nan)


def member_spread(counts: NDArray[Any], events: Sequence[int] | NDArray[Any]) -> Spread:
    """The spread of ``k`` members' histograms: ``counts`` (k, B) events per bin, ``events``
    (k,) the events each member drew (the denominators, events outside the bins included)."""
    c = np.asarray(counts, dtype=np.float64)
    n = np.asarray(events, dtype=np.float64).reshape(-1)
    if c.ndim != 2 or c.shape[0] != n.shape[0]:
        raise InputError(f"counts: expected shape (k, B) with k = {n.shape[0]}, got {c.shape}")
    if c.shape[0] < 2:
        raise InputError(f"an ensemble spread needs at least 2 members, got {c.shape[0]}")
    if np.any(n <= 0):
        raise InputError(f"every member needs events, got {n.tolist()}")
    p = c / n[:, None]
    mean = p.mean(0)
    s2 = p.var(0, ddof=1)
    v = mean * (1.0 - mean) * np.mean(1.0 / n)
    sigma2 = np.maximum(s2 - v, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_equiv = np.where(sigma2 > 0, mean * (1.0 - mean) / sigma2, np.inf)
    return Spread(mean, np.sqrt(s2), np.sqrt(v), np.sqrt(sigma2), n_equiv)


def feature_spreads(
    reference: Mapping[str, Any],
    generated: Mapping[str, Any],
    members: NDArray[Any],
    features: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    n_train: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (feature, slice) of the members' spread on ``bins`` quantile bins of
    ``reference`` (MC events; its quantiles only place the bins).

    ``generated`` holds the ensemble's events (feature -> (n,), ``label`` for the slices) and
    ``members`` (n,) the member that drew each (:func:`hepflows.ensemble.event_members`).  A
    row: feature, slice, bins, the median and largest ``sigma_b / pbar_b`` over the bins,
    the median of ``spread / noise`` (1 when the members agree within their sampling noise),
    the smallest and the median ``n_equiv,b`` and, with ``n_train``, the smallest ``G_b``.
    """
    members = np.asarray(members).reshape(-1)
    k = int(members.max()) + 1 if members.size else 0
    labelled = LABEL in generated and LABEL in reference
    rows = []
    for name, label in SLICES.items():
        if label is not None and not labelled:
            continue
        keep_g = (
            np.ones(len(members), bool) if label is None else np.asarray(generated[LABEL]) == label
        )
        keep_r = None if label is None else np.asarray(reference[LABEL]) == label
        for f in features:
            ref = np.asarray(reference[f], np.float64)
            ref = ref if keep_r is None else ref[keep_r]
            inner = quantile_inner_edges(ref[:, None], bins, None)[:, 0]
            x = np.asarray(generated[f], np.float64)[keep_g]
            who = members[keep_g]
            idx = np.searchsorted(inner, x, side="right")
            counts = np.stack([np.bincount(idx[who == j], minlength=bins) for j in range(k)])
            s = member_spread(counts, [int((who == j).sum()) for j in range(k)])
            filled = s.mean > 0
            rel = s.relative[filled]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = (s.spread / s.noise)[filled]
            rows.append(
                {
                    "feature": f,
                    "slice": name,
                    "bins": int(filled.sum()),
                    "rel_sigma_median": float(np.median(rel)),
                    "rel_sigma_max": float(np.max(rel)),
                    "spread_over_noise_median": float(np.median(ratio)),
                    "n_equiv_min": float(np.min(s.n_equiv[filled])),
                    "n_equiv_median": float(np.median(s.n_equiv[filled])),
                    "G_min": float(np.min(s.n_equiv[filled]) / n_train) if n_train else None,
                }
            )
    return rows
