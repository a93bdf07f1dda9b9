"""The physical support of the training events, and generated events kept inside it.

A flow's density is positive everywhere, and the preprocessing's range is the training range
widened by a margin (:mod:`hepflows.preprocess`), so without a check a flow generates a few
events where no MC event can be: negative masses, pT below the sample's 20 GeV cut, |eta|
beyond the detector's 2.5.  The support fitted here is a box per feature,
``low <= x <= high`` (either side may be open, +-inf), with these rules on the training events
(n, d):

* **a hard edge**: at least :data:`EDGE_FRACTION` of the events (and at least
  :data:`EDGE_EVENTS`) lie within :data:`EDGE_WIDTH` of the feature's range from its minimum
  (maximum).  The events crowd against a cut (pT at 20 GeV, |eta| at 2.5, an ingest
  selection, m_lv at the W-mass constraint), so the bound is the training minimum (maximum)
  moved out by the mean spacing of those events (the unbiased estimate of the end point of a
  uniform density: |eta| <= 2.4999 rather than the sample's 2.4987); a falling tail has a few
  events there and stays open.
* **a non-negative quantity**: a feature whose training events are all >= 0 (masses, pT, MET)
  gets a lower bound of at least 0.

Generated events outside the box are rejected and redrawn (:mod:`hepflows.sampling`), with the
acceptance per process recorded: the accepted events follow the flow's density restricted to
the support, as a rejection sampler's do (Robert and Casella, "Monte Carlo Statistical
Methods", ch. 2.3).  The rule can make a bound a little tighter than the physics (MET's
training minimum is 0.3 GeV, not 0): a fraction of the events of order 1e-5 is then rejected
that could have been kept.

Serialised with the preprocessing parameters as ``{"low": [...], "high": [...]}`` (null for an
open side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError

if TYPE_CHECKING:  # preprocess imports this module
    from hepflows.preprocess import Preprocessor

#: A side is a hard edge when at least this fraction of the events ...
EDGE_FRACTION = 1e-3
#: ... and at least this many events ...
EDGE_EVENTS = 10
#: ... lie within this fraction of the feature's range from its extreme.
EDGE_WIDTH = 0.01


@dataclass(frozen=True)
class Support:
    """Per feature (d,) bounds of the physical support, in the features' units; +-inf: open."""

    features: tuple[str, ...]
    low: NDArray[np.float64]
    high: NDArray[np.float64]

    def inside(self, x: NDArray) -> NDArray[np.bool_]:
        """Which events of ``x`` (n, d) lie inside the support: (n,) bool."""
        x = np.asarray(x)
        return np.asarray(((x >= self.low) & (x <= self.high)).all(axis=1))

    def to_dict(self) -> dict:
        def side(v: NDArray) -> list[float | None]:
            return [float(b) if np.isfinite(b) else None for b in v]

        return {"low": side(self.low), "high": side(self.high)}

    @classmethod
    def from_dict(cls, data: Mapping, features: Sequence[str], source: str) -> Support:
        """The support saved by :meth:`to_dict` for ``features``; malformed: InputError."""
        try:
            low = np.array([-np.inf if b is None else float(b) for b in data["low"]])
            high = np.array([np.inf if b is None else float(b) for b in data["high"]])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{source}: malformed 'support' ({err!r})") from None
        if low.shape != (len(features),) or high.shape != (len(features),) or np.any(low > high):
            raise InputError(
                f"{source}: 'support' must hold 'low' <= 'high', {len(features)} values each "
                f"(features {list(features)}), got {low.shape} and {high.shape}"
            )
        return cls(tuple(features), low, high)


def fit_support(x: NDArray, features: Sequence[str]) -> Support:
    """The support of training events ``x`` (n, d), by the rules of the module docstring."""
    x = np.asarray(x, np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    near = EDGE_WIDTH * (hi - lo)
    need = max(EDGE_FRACTION * len(x), EDGE_EVENTS)
    n_low, n_high = (x <= lo + near).sum(axis=0), (x >= hi - near).sum(axis=0)
    # the cut lies beyond the sample's extreme by about the events' spacing there (the
    # unbiased estimate of a uniform density's end point), not at the extreme itself
    low = np.where(n_low >= need, lo - near / np.maximum(n_low, 1), -np.inf)
    low = np.where(lo >= 0.0, np.maximum(low, 0.0), low)
    high = np.where(n_high >= need, hi + near / np.maximum(n_high, 1), np.inf)
    return Support(tuple(features), low, high)


def latent_bounds(pre: Preprocessor) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """The support of ``pre`` (its ``support`` record) in its standardised latent space: low
    and high (P, d), one row per quantile table (P = 2 per process, else 1); None without a
    support.

    Each feature's preprocessing is a non-decreasing map of that feature alone, so
    ``low <= x <= high`` holds exactly when ``forward(low) <= y <= forward(high)``, and a flow's
    draw can be checked before it is mapped back.  A bound at or beyond the widened range is
    open: the inverse never leaves that range.
    """
    if not pre.support:
        return None
    box = Support.from_dict(pre.support, pre.features, "preprocessing parameters")
    open_low = ~(box.low > pre.low)
    open_high = ~(box.high < pre.high)
    from hepflows.preprocess import PROCESSES

    rows = len(PROCESSES) if pre.per_process else 1
    # the open sides get a value inside the range, so that forward() sees only finite numbers
    mid = 0.5 * (pre.low + pre.high)
    edges = np.stack([np.where(open_low, mid, box.low), np.where(open_high, mid, box.high)])
    out = []
    for side, is_open, inf in ((0, open_low, -np.inf), (1, open_high, np.inf)):
        latent = np.stack(
            [
                pre.forward(edges[side][None], np.array([p]) if pre.per_process else None)[0]
                for p in range(rows)
            ]
        )
        out.append(np.where(is_open, inf, latent))
    return out[0], out[1]
