"""Wild values: finite numbers absurd for their feature (a ``met`` of 1e38 among values of tens
of GeV), which no NaN/Inf check catches and which a min-max range would take as its edge.

A value ``x`` of a feature is wild when ``|x - median| > FACTOR * scale`` with the robust scale
``scale = |median| + IQR`` (interquartile range) of the feature's values: six orders of
magnitude beyond where the bulk of the events lie, far beyond any physical tail, and neither
the median nor the IQR moves with a few wild events (their breakdown point is 25 %).  Where
that scale is 0 (most values exactly 0) the largest magnitude of the 0.1 % and 99.9 %
quantiles stands in; a feature whose values are all 0 has no wild value.

:class:`WildValueGuard` applies it while ingest streams: the statistics come from a reservoir
of every feature's values seen so far (at most :data:`RESERVOIR` kept, drawn reproducibly) and
the chunk itself, so one wild event in the first chunk is caught as well as one in the last;
a chunk whose extremes lie inside the kept sample's range costs only its minimum and maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from hepflows.errors import InputError

__all__ = ["FACTOR", "POLICIES", "RESERVOIR", "WildValueGuard", "robust_scale", "wild_mask"]

log = logging.getLogger("hepflows")

#: How many robust scales from the median a value may lie before it is wild.
FACTOR = 1e6
#: Values of each feature kept for its statistics while streaming (a few thousand a chunk).
RESERVOIR = 20_000
#: ``data.wild_values``: stop at the first wild value, or drop its event and count it.
POLICIES = ("refuse", "drop")


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """``(median, scale)`` of the finite ``values`` (1-D), as defined in the module; scale 0:
    nothing can be called wild."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 0.0
    q25, median, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    scale = abs(median) + (q75 - q25)
    if scale == 0:
        scale = float(np.max(np.abs(np.quantile(v, [0.001, 0.999]))))
    return float(median), float(scale)


def wild_mask(values: np.ndarray, median: float, scale: float) -> np.ndarray:
    """Which ``values`` (n,) are wild for a feature of ``(median, scale)``; NaN/Inf are not
    (they are another check's)."""
    v = np.asarray(values, np.float64)
    if scale <= 0:
        return np.zeros(v.shape, bool)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(v) & (np.abs(v - median) > FACTOR * scale)


class WildValueGuard:
    """Checks ingest's chunks for wild values of ``branches`` (branch -> what it is, for the
    message), refusing them (``policy="refuse"``) or dropping their events (``"drop"``)."""

    def __init__(self, branches: Mapping[str, str], policy: str = "refuse", seed: int = 0):
        if policy not in POLICIES:
            raise InputError(
                f"key data.wild_values: expected one of {list(POLICIES)}, got {policy!r}"
            )
        self.branches = dict(branches)
        self.policy = policy
        self.dropped = 0  # events dropped so far
        self._kept = {b: np.empty(0) for b in self.branches}
        self._stats: dict[str, tuple[float, float]] = {}
        self._rng = np.random.default_rng(seed)

    def keep(
        self, raw: Mapping[str, np.ndarray], entries: np.ndarray, where: str, word: str
    ) -> np.ndarray | None:
        """Indices of the chunk's events to keep, or None when all are; ``raw`` holds each
        branch's values (n,) and ``entries`` (n,) their entry numbers in ``where``.

        Refusing, the first wild value is an :class:`InputError` naming the file, the branch,
        the entry, the value and the feature's robust range.
        """
        wild = np.zeros(len(entries), bool)
        for branch, what in self.branches.items():
            values = np.asarray(raw[branch])
            bad = self._wild(branch, values)
            if bad.any() and self.policy == "refuse":
                median, scale = robust_scale(np.concatenate([self._kept[branch], values]))
                i = int(np.argmax(bad))
                raise InputError(
                    f"{where}: {word} {branch!r} ({what}): value {values[i]:.6g} at entry "
                    f"{int(entries[i])} is absurd for it, more than {FACTOR:g} times its robust "
                    f"scale ({scale:.4g}, median {median:.4g}) from the median "
                    f"({int(bad.sum())} such value(s) in entries {int(entries[0])}.."
                    f"{int(entries[-1])}); fix the file, or set data.wild_values: drop to drop "
                    "and count such events"
                )
            wild |= bad
            self._remember(branch, values[~bad])
        if not wild.any():
            return None
        self.dropped += int(wild.sum())
        log.warning(
            "%s: dropped %d event(s) with wild values, the first at entry %d",
            where,
            int(wild.sum()),
            int(entries[int(np.argmax(wild))]),
        )
        return np.flatnonzero(~wild)

    def _wild(self, branch: str, values: np.ndarray) -> np.ndarray:
        """The chunk's wild values of ``branch``: judged by the sample kept so far, and only
        where the chunk's extremes leave that range (most chunks cost a min and a max), then
        by the sample and the chunk together (the first chunk by itself)."""
        if values.size == 0:
            return np.zeros(values.shape, bool)
        if branch in self._stats:
            median, scale = self._stats[branch]
            with np.errstate(invalid="ignore"):  # NaN is another check's: nanmin skips it
                low, high = float(np.nanmin(values)), float(np.nanmax(values))
            if scale > 0 and max(abs(low - median), abs(high - median)) <= FACTOR * scale:
                return np.zeros(values.shape, bool)
        # a strided sample of the chunk serves the statistics as well as all of it
        sample = values[:: max(1, values.size // RESERVOIR)]
        median, scale = robust_scale(np.concatenate([self._kept[branch], sample]))
        return wild_mask(values, median, scale)

    def _remember(self, branch: str, values: np.ndarray) -> None:
        """Keep a sample of at most RESERVOIR of the branch's values, a few thousand a chunk
        (once full, new ones replace random old ones), and its statistics."""
        values = np.asarray(values[:: max(1, values.size // 2000)], np.float64)
        values = values[np.isfinite(values)]
        kept = self._kept[branch]
        room = RESERVOIR - kept.size
        if room > 0:
            kept = np.concatenate([kept, values[:room]])
            values = values[room:]
        if values.size:
            kept[self._rng.integers(0, kept.size, values.size)] = values
        self._kept[branch] = kept
        self._stats[branch] = robust_scale(kept)
