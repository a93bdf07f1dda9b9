"""The samples a validation compares: events as arrays, and the draws of the compared pairs.

The generated sample is compared with a random part of the held-out MC, and each MC-vs-MC null
pair is a random disjoint split of the MC pool, with the same number of events per class as the
value pair (see :mod:`hepflows.report.runner` for why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.schema import LABEL, WEIGHT
from hepflows.feasibility import MIN_EVENTS as MIN_EVENTS  # the one threshold, checked early

SLICES: tuple[str, ...] = ("all", "signal", "background")
SLICE_CLASS: dict[str, int] = {"signal": 1, "background": 0}
CLASS_NAME: dict[int, str] = {c: s for s, c in SLICE_CLASS.items()}


@dataclass(frozen=True)
class Sample:
    """Events as arrays: ``x`` (n, d) float64, ``label`` (n,) int8, ``w`` (n,) or None."""

    x: NDArray[np.float64]
    label: NDArray[np.int8]
    w: NDArray[np.float64] | None

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: NDArray[np.intp]) -> Sample:
        return Sample(self.x[idx], self.label[idx], None if self.w is None else self.w[idx])

    def slice(self, name: str) -> Sample:
        if name == "all":
            return self
        return self.take(np.flatnonzero(self.label == SLICE_CLASS[name]))

    def class_indices(self, cls: int) -> NDArray[np.intp]:
        return np.flatnonzero(self.label == cls)


def load_sample(sample: Mapping, features: Sequence[str], name: str) -> Sample:
    """Check an event dict and turn it into a :class:`Sample`; errors name what is wrong."""
    missing = [f for f in (*features, LABEL) if f not in sample]
    if missing:
        raise InputError(f"{name} events lack column(s) {missing}; they have {sorted(sample)}")
    label = np.asarray(sample[LABEL]).reshape(-1)
    n = len(label)
    for f in features:
        if np.shape(sample[f]) != (n,):
            raise InputError(
                f"{name} events: column {f!r} has shape {np.shape(sample[f])}, "
                f"but {LABEL!r} has ({n},)"
            )
    x = np.stack([np.asarray(sample[f], dtype=np.float64) for f in features], axis=1)
    bad = ~np.isfinite(x)
    if bad.any():
        counts = {f: int(c) for f, c in zip(features, bad.sum(axis=0), strict=True) if c}
        raise InputError(f"{name} events: non-finite values in {counts} (column: count)")
    classes = set(np.unique(label).tolist())
    if not classes <= {0, 1}:
        raise InputError(f"{name} events: {LABEL!r} holds {sorted(classes)}; expected 0 and 1")
    w = None
    if sample.get(WEIGHT) is not None:
        w = np.asarray(sample[WEIGHT], dtype=np.float64).reshape(-1)
        if w.shape != (n,):
            raise InputError(f"{name} events: {WEIGHT!r} has shape {w.shape}, expected ({n},)")
        if not np.all(np.isfinite(w)):
            raise InputError(f"{name} events: {WEIGHT!r} must be finite")
        # negative weights (NLO) are fine; each class's weights must sum to a positive total
        for c in np.unique(label):
            total = float(w[label == c].sum())
            if not total > 0:
                raise InputError(
                    f"{name} events: the weights of the {CLASS_NAME[int(c)]} events sum to "
                    f"{total:g}; the weighted distributions need a positive sum per process "
                    "(too many negative weights for the events validation reads?)"
                )
        if np.all(w == w[0]):
            w = None
    return Sample(x, label.astype(np.int8), w)


def per_process(s: Sample) -> Sample:
    """``s`` with each class's weights scaled to mean 1 (``data.normalise: per_process``).

    Each process keeps its weighted shape while the classes weigh as their event counts, so
    a process of small cross-section is compared as a shape, not drowned in the others.
    """
    if s.w is None:
        return s
    w = s.w.copy()
    for c in np.unique(s.label):
        mine = s.label == c
        w[mine] /= w[mine].mean()
    return Sample(s.x, s.label, w)


def at_mixture(s: Sample, other: Sample) -> Sample:
    """``s`` with each class's weights scaled so that the classes hold the shares of
    ``other``'s events: the MC drawn at the generated mixture (figures of ``per_process``
    runs, where the mixture is the user's choice).  A class ``other`` lacks keeps its weights.
    """
    w = np.ones(len(s)) if s.w is None else s.w.copy()
    for c in np.unique(s.label):
        mine = s.label == c
        share = float(np.mean(other.label == c)) if len(other) else 0.0
        if share > 0:
            w[mine] *= share * len(s) / w[mine].sum()
    return Sample(s.x, s.label, w)


def concat_samples(a: Sample, b: Sample) -> Sample:
    """Events of ``a`` then ``b``; weights of 1 where one side has none."""
    w = None
    if a.w is not None or b.w is not None:
        w = np.concatenate(
            [np.ones(len(a)) if a.w is None else a.w, np.ones(len(b)) if b.w is None else b.w]
        )
    return Sample(np.concatenate([a.x, b.x]), np.concatenate([a.label, b.label]), w)


def draw_value_pair(
    ref: Sample, gen: Sample, sizes: Mapping[int, int], separate: bool, rng: np.random.Generator
) -> tuple[Sample, Sample]:
    """MC half ``A`` and the generated subsample, ``sizes[c]`` events per class each.

    Without a separate null reference, ``A`` is the first part of a random permutation of the
    reference, i.e. a random half when the generated sample is large enough.
    """
    ia, ig = [], []
    for c, n_c in sizes.items():
        ia.append(
            rng.permutation(ref.class_indices(c))[:n_c]
            if not separate
            else rng.choice(ref.class_indices(c), n_c, replace=False)
        )
        ig.append(rng.choice(gen.class_indices(c), n_c, replace=False))
    return ref.take(np.concatenate(ia)), gen.take(np.concatenate(ig))


def draw_null_pair(
    pool: Sample, sizes: Mapping[int, int], rng: np.random.Generator
) -> tuple[Sample, Sample]:
    """Two disjoint random subsets of the MC pool with ``sizes[c]`` events per class each."""
    ia, ib = [], []
    for c, n_c in sizes.items():
        perm = rng.permutation(pool.class_indices(c))
        ia.append(perm[:n_c])
        ib.append(perm[n_c : 2 * n_c])
    return pool.take(np.concatenate(ia)), pool.take(np.concatenate(ib))


def compared_sizes(
    ref: Sample, gen: Sample, pool: Sample, separate: bool
) -> tuple[dict[int, int], list[str]]:
    """Events per class in each compared sample, and the slices that have any.

    ``n_c = min(#generated_c, #reference_c // 2)``, or with a separate null reference
    ``min(#generated_c, #reference_c, #pool_c // 2)``; a slice with fewer than
    :data:`MIN_EVENTS` events is an :class:`InputError`.
    """
    sizes: dict[int, int] = {}
    for c in (0, 1):
        n_ref = len(ref.class_indices(c))
        n_c = min(
            len(gen.class_indices(c)),
            n_ref if separate else n_ref // 2,
            len(pool.class_indices(c)) // 2,
        )
        if n_c > 0:
            sizes[c] = n_c
    slices = [s for s in SLICES if s == "all" or SLICE_CLASS[s] in sizes]
    for s in slices:
        n_s = sum(sizes.values()) if s == "all" else sizes[SLICE_CLASS[s]]
        if n_s < MIN_EVENTS:
            raise InputError(
                f"validate_samples: only {n_s} events per sample in slice {s!r} (reference "
                f"{len(ref)}, generated {len(gen)} events); need at least {MIN_EVENTS}"
            )
    return sizes, slices
