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

* **the ingest selection**: the terms of ``data.selection`` that read only features
  (:mod:`hepflows.events.feature_cut`; ``(lep_pt > 27) & (HT < 400)``, not
  ``len(jet_pt) >= 4``), checked on the events as they are written (float32, after the
  preprocessing's inverse); the terms that read other branches are recorded as skipped.

Generated events outside the box or failing the selection are rejected and redrawn
(:mod:`hepflows.sampling`), with the acceptance per process recorded: the accepted events
follow the flow's density restricted to the support, as a rejection sampler's do (Robert and
Casella, "Monte Carlo Statistical Methods", ch. 2.3).  The rule can make a bound a little
tighter than the physics (MET's training minimum is 0.3 GeV, not 0): a fraction of the events
of order 1e-5 is then rejected that could have been kept.

Serialised with the preprocessing parameters as ``{"low": [...], "high": [...]}`` (null for an
open side), with ``"selection"`` (the checked terms in feature names) and
``"selection_skipped"`` where the inputs had a selection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.feature_cut import FeatureCut
from hepflows.events.selection import Selection

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
    """Per feature (d,) bounds of the physical support, in the features' units (+-inf: open),
    and the ingest selection's terms on the features (:class:`FeatureCut`)."""

    features: tuple[str, ...]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    cut: FeatureCut = FeatureCut(None)

    def inside(self, x: NDArray) -> NDArray[np.bool_]:
        """Which events of ``x`` (n, d) lie inside the support: (n,) bool."""
        x = np.asarray(x)
        return np.asarray(((x >= self.low) & (x <= self.high)).all(axis=1)) & self.passes(x)

    def passes(self, x: NDArray) -> NDArray[np.bool_]:
        """Which events of ``x`` (n, d) pass the selection's terms: (n,) bool."""
        x = np.asarray(x)
        if self.cut.expression is None:
            return np.ones(len(x), bool)
        columns = {f: x[:, i] for i, f in enumerate(self.features)}
        return Selection(self.cut.expression, "support.selection").mask(columns, len(x))

    def to_dict(self) -> dict:
        def side(v: NDArray) -> list[float | None]:
            return [float(b) if np.isfinite(b) else None for b in v]

        out: dict = {"low": side(self.low), "high": side(self.high)}
        if self.cut.expression is not None or self.cut.skipped:
            out.update(selection=self.cut.expression, selection_skipped=list(self.cut.skipped))
        return out

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
        cut = FeatureCut(data.get("selection"), tuple(data.get("selection_skipped") or ()))
        if cut.expression is not None:
            reads = Selection(cut.expression, f"{source}: support.selection")
            unknown = [n for n in reads.names if n not in features]
            if unknown or reads.jagged:
                what = unknown or "collections"
                raise InputError(
                    f"{source}: 'support' selection {cut.expression!r} reads {what}, expected "
                    f"only the features {list(features)}"
                )
        return cls(tuple(features), low, high, cut)


def fit_support(x: NDArray, features: Sequence[str], cut: FeatureCut | None = None) -> Support:
    """The support of training events ``x`` (n, d), by the rules of the module docstring, with
    the ingest selection's ``cut`` on the features."""
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
    return Support(tuple(features), low, high, cut or FeatureCut(None))


def data_cut(pre: Preprocessor) -> Callable[[NDArray, NDArray | None], NDArray] | None:
    """The selection's check of latent draws ``y`` (n, d) with labels (n,) or None: (n,) bool,
    on the events as :mod:`hepflows.sampling` writes them (the inverse, in float32); None
    where ``pre`` holds no selection.  Unlike the box it needs the inverse: a term may tie
    several features together (``HT > 2 * lep_pt``)."""
    if not pre.support:
        return None
    box = Support.from_dict(pre.support, pre.features, "preprocessing parameters")
    if box.cut.expression is None:
        return None

    def check(y: NDArray, labels: NDArray | None) -> NDArray:
        return box.passes(pre.inverse(y, labels).astype(np.float32))

    return check


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
