"""How close the embedded generator is to real HIGGS events: the calibration measures.

The generator (:mod:`hepflows.events.generator`) is tuned so that, in ``units="higgs"``, its
events look like the rows of the HIGGS dataset (Baldi, Sadowski, Whiteson, "Searching for Exotic
Particles in High-Energy Physics with Deep Learning", Nature Communications 5, 4308 (2014),
arXiv:1402.4735).  This module holds the measures of that closeness, used by
``benchmarks/generator_vs_higgs.py`` and the calibration test:

* per process and feature (the 22 without azimuths), the two-sample Kolmogorov-Smirnov distance
  sup_x |F_gen(x) - F_real(x)|;
* per process and mass, the peak position (the mode of a smoothed histogram) and the relative
  width, full width at half maximum over the peak position.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import ks_2samp

from hepflows.events.schema import AZIMUTHS, HIGGS_FEATURES, LABEL, MASSES

__all__ = [
    "CALIBRATION_FEATURES",
    "KS_FEATURE_TARGET",
    "KS_MEDIAN_TARGET",
    "MASSES",
    "PEAK_POSITION_TOLERANCE",
    "PEAK_WIDTH_TOLERANCE",
    "PROCESSES",
    "compare",
    "peak",
    "read_real",
]

#: The 22 features compared: all 28 but the azimuths (flat in both, by symmetry).
CALIBRATION_FEATURES: tuple[str, ...] = tuple(f for f in HIGGS_FEATURES if f not in AZIMUTHS)

#: Process name -> label value.
PROCESSES: dict[str, int] = {"signal": 1, "background": 0}

#: Targets of the calibration, per process: the median KS distance over the 22 features, the
#: largest one, and the relative tolerances on a mass peak's position and its width.
KS_MEDIAN_TARGET = 0.04
KS_FEATURE_TARGET = 0.08
PEAK_POSITION_TOLERANCE = 0.03
PEAK_WIDTH_TOLERANCE = 0.20

#: Histogram used to locate a peak: bins over the central quantiles of the real events, then a
#: Gaussian smoothing of a few bins so that an 8k-event sample gives a stable mode.
_PEAK_BINS = 160
_PEAK_RANGE = (0.002, 0.98)
_PEAK_SMOOTHING_BINS = 2.5


def read_real(path: str | Path) -> dict[str, np.ndarray]:
    """All rows of a HIGGS CSV (label first, then 28 features) as arrays, through the io layer."""
    from hepflows.events.higgs_csv import iter_higgs_csv

    chunks = list(iter_higgs_csv(path))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def peak(x: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """Peak position and FWHM / position of the values ``x`` (n,), histogrammed on ``edges``.

    The histogram is smoothed by a Gaussian of ``_PEAK_SMOOTHING_BINS`` bins; the mode is
    refined by a parabola through its three highest bins, and each half-maximum crossing is
    interpolated linearly between the bins that bracket it.
    """
    h = gaussian_filter1d(np.histogram(x, bins=edges)[0].astype(float), _PEAK_SMOOTHING_BINS)
    centers = 0.5 * (edges[1:] + edges[:-1])
    step = edges[1] - edges[0]
    i = int(np.clip(np.argmax(h), 1, len(h) - 2))
    y0, y1, y2 = h[i - 1 : i + 2]
    curvature = y0 - 2 * y1 + y2
    mode = centers[i] + (0.5 * step * (y0 - y2) / curvature if curvature < 0 else 0.0)
    half = 0.5 * h.max()
    left = i
    while left > 0 and h[left] > half:
        left -= 1
    right = i
    while right < len(h) - 1 and h[right] > half:
        right += 1
    x_left = np.interp(half, [h[left], h[left + 1]], [centers[left], centers[left + 1]])
    x_right = np.interp(half, [h[right], h[right - 1]], [centers[right], centers[right - 1]])
    return float(mode), float((x_right - x_left) / mode)


def _peaks(gen: np.ndarray, real: np.ndarray) -> dict[str, float]:
    low, high = np.quantile(real, _PEAK_RANGE)
    edges = np.linspace(low, high, _PEAK_BINS + 1)
    g_pos, g_width = peak(gen, edges)
    r_pos, r_width = peak(real, edges)
    return {
        "gen_position": g_pos,
        "real_position": r_pos,
        "position_shift": g_pos / r_pos - 1.0,
        "gen_width": g_width,
        "real_width": r_width,
        "width_ratio": g_width / r_width,
    }


def compare(gen: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """KS distances, mass peaks and their summary against the targets, per process.

    ``gen`` and ``real``: the 28 features and ``label`` as arrays (n,), both in HIGGS units.
    Returns ``{"ks": {process: {feature: D}}, "peaks": {process: {mass: {...}}},
    "summary": {process: {...}}, "signal_fraction": {"generator": f, "real": f}}``.
    """
    out: dict[str, Any] = {"ks": {}, "peaks": {}, "summary": {}}
    for process, label in PROCESSES.items():
        g_mask, r_mask = np.asarray(gen[LABEL]) == label, np.asarray(real[LABEL]) == label
        ks = {
            f: float(ks_2samp(gen[f][g_mask], real[f][r_mask]).statistic)
            for f in CALIBRATION_FEATURES
        }
        peaks = {m: _peaks(gen[m][g_mask], real[m][r_mask]) for m in MASSES}
        worst = max(ks, key=ks.__getitem__)
        out["ks"][process] = ks
        out["peaks"][process] = peaks
        out["summary"][process] = {
            "ks_median": float(np.median(list(ks.values()))),
            "ks_max": ks[worst],
            "ks_max_feature": worst,
            "ks_over_target": [f for f, d in ks.items() if d > KS_FEATURE_TARGET],
            "peaks_shifted": [
                m for m, p in peaks.items() if abs(p["position_shift"]) > PEAK_POSITION_TOLERANCE
            ],
            "widths_off": [
                m for m, p in peaks.items() if abs(p["width_ratio"] - 1.0) > PEAK_WIDTH_TOLERANCE
            ],
        }
    out["signal_fraction"] = {
        "generator": float(np.mean(gen[LABEL])),
        "real": float(np.mean(real[LABEL])),
    }
    return out


def fit_higgs_scale(
    gen_gev: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]
) -> dict[str, float | tuple[float, float]]:
    """GeV per HIGGS unit for each momentum and mass: the ratio of the medians of both
    processes together, generator (in GeV) over real (in HIGGS units), rounded to 0.1 GeV; for
    the features of ``HIGGS_SCALE_BY_LABEL`` the ratio per process, as (t tbar, signal).

    The medians make the scales robust to the tails; the signal fraction of ``gen_gev`` should
    be the real one, so that both medians are of the same mixture.
    """
    from hepflows.events.generator import HIGGS_SCALE, HIGGS_SCALE_BY_LABEL

    def ratio(f: str, g: np.ndarray, r: np.ndarray) -> float:
        return round(float(np.median(gen_gev[f][g]) / np.median(real[f][r])), 1)

    out: dict[str, float | tuple[float, float]] = {
        f: ratio(f, np.ones(len(gen_gev[f]), bool), np.ones(len(real[f]), bool))
        for f in HIGGS_SCALE
    }
    g_lab, r_lab = np.asarray(gen_gev[LABEL]), np.asarray(real[LABEL])
    for f in HIGGS_SCALE_BY_LABEL:
        out[f] = (ratio(f, g_lab == 0, r_lab == 0), ratio(f, g_lab == 1, r_lab == 1))
    return out
