"""The amplification figure: how many MC events a generated sample is worth, read off a curve.

Per slice one panel, log-log: the chi2 divergence per degree of freedom, ``d / (B - 1)``, of MC
samples of growing size ``n`` from the truth (markers: mean and spread over the features), the
expected ``1/n + 1/N_T`` of an independent MC sample (solid line; ``1/n - 1/N_T`` dashed, where
the MC points are subsamples of the truth itself), and each feature's generated-sample
``d_gen / (B - 1)`` as a horizontal line (the joint partition's too).  Where a line crosses the
solid curve, at ``n* = 1 / (d_gen / (B - 1) - 1/N_T)``, the generated sample is worth ``n*`` MC
events (Butter et al., arXiv:2008.06545; arXiv:2509.08048): the worst features and the joint
row are drawn in colour and their crossings marked.

The measurement is :mod:`hepflows.validation.amplification`; the style and the atomic PDF+PNG
writing are :mod:`hepflows.report.plots`'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# plots first: it selects the file-only matplotlib backend before pyplot is imported
from hepflows.report.plots import atlas_style, simulation_label, save_figure  # isort: skip
import matplotlib.pyplot as plt

from hepflows.events.observables import axis_label
from hepflows.settings import AxisLabel
from hepflows.validation.amplification import JOINT, events_text

__all__ = ["plot_amplification"]

#: Colours of the highlighted lines (worst features first, the joint row last).
HIGHLIGHT_COLOURS = ("#e42536", "#964a8b", "#f89c20", "#5790fc")
JOINT_COLOUR = "#000000"


def _crossing(y: float, n_truth: float) -> float:
    """``n*`` where ``1/n + 1/N_T`` equals ``y``; infinite when ``y`` is at or below ``1/N_T``."""
    excess = y - 1.0 / n_truth
    return 1.0 / excess if excess > 0 else math.inf


def _panel(
    ax: Any,
    rows: Sequence[Mapping[str, Any]],
    curve: Mapping[str, Any] | None,
    slice_name: str,
    highlight: int,
    labels: Mapping[str, AxisLabel] | None = None,
) -> None:
    """One slice: MC points, expected curves, the generated lines, the worst crossings."""
    n_truth = float(rows[0]["n_truth"])
    n_gen = float(rows[0]["n_generated"])
    ys = {r["feature"]: r["d_gen"] / (r["bins"] - 1) for r in rows}
    # significant excesses first (smallest worth first), then the lower bounds
    feats = sorted(
        (r for r in rows if r["feature"] != JOINT), key=lambda r: (r["lower_bound"], r["worth"])
    )
    joint = [r for r in rows if r["feature"] == JOINT]
    lo_n = 0.1 * min(n_gen, n_truth)
    hi_n = 20.0 * max(n_gen, n_truth)
    if curve is not None and len(curve["n"]):
        lo_n = min(lo_n, 0.5 * float(np.min(curve["n"])))
        _mc_curve(ax, curve, lo_n, n_truth)
    marked = [
        (r, HIGHLIGHT_COLOURS[i % len(HIGHLIGHT_COLOURS)]) for i, r in enumerate(feats[:highlight])
    ] + [(r, JOINT_COLOUR) for r in joint]
    crossings = [_crossing(ys[r["feature"]], n_truth) for r, _ in marked]
    lo_n = max(1.0, min([lo_n, *(0.5 * c for c in crossings if math.isfinite(c))]))
    n = np.geomspace(lo_n, hi_n, 200)
    ax.plot(
        n,
        1 / n + 1 / n_truth,
        color="black",
        linewidth=1.5,
        label=r"expected, independent MC: $1/n + 1/N_T$",
    )
    for r in feats[highlight:]:
        ax.axhline(ys[r["feature"]], color="#9c9ca1", linewidth=0.6, alpha=0.7)
    for (r, colour), n_star in zip(marked, crossings, strict=True):
        _generated_line(ax, r, ys[r["feature"]], colour, n_star, labels)
    ax.axvline(n_gen, color="black", linewidth=0.6, linestyle=":")
    ax.text(
        n_gen,
        0.04,
        f" N = {events_text(n_gen)} generated",
        transform=ax.get_xaxis_transform(),
        fontsize="x-small",
        rotation=90,
        va="bottom",
        ha="right",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_n, hi_n)
    y_all = [*ys.values(), 1 / lo_n]
    ax.set_ylim(0.3 / n_truth, 30 * max(y_all))
    ax.set_xlabel(r"MC events $n$")
    ax.set_title(
        f"{slice_name}: $N_T$ = {events_text(n_truth)} truth events", fontsize="small", loc="right"
    )
    ax.legend(loc="upper right", fontsize="xx-small")


def _mc_curve(ax: Any, curve: Mapping[str, Any], lo_n: float, n_truth: float) -> None:
    """The MC points (mean and spread over features) and, for subsamples of the truth itself,
    their expected divergence."""
    d = np.asarray(curve["d_per_dof"])
    mean, sd = d.mean(1), d.std(1)
    ax.errorbar(
        curve["n"],
        mean,
        yerr=sd,
        fmt="o",
        color="grey",
        markersize=4,
        capsize=2,
        label="MC, mean and spread over features",
        zorder=3,
    )
    if not curve["independent"]:
        n = np.geomspace(lo_n, 0.99 * n_truth, 200)
        ax.plot(
            n,
            1 / n - 1 / n_truth,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=r"expected, subsample of $T$: $1/n - 1/N_T$",
        )


def _generated_line(
    ax: Any,
    r: Mapping[str, Any],
    y: float,
    colour: str,
    n_star: float,
    labels: Mapping[str, AxisLabel] | None,
) -> None:
    """One marked row's divergence ``y`` as a line, with its crossing ``n_star`` of the
    independent-MC curve where the excess is significant."""
    name = (
        "joint (k-means cells)"
        if r["feature"] == JOINT
        else axis_label(r["feature"], labels, units="none")
    )
    worth = (
        f"worth $\\geq$ {events_text(r['worth'])}"
        if r["lower_bound"]
        else f"worth ~{events_text(r['worth'])} MC events"
    )
    ax.axhline(
        y,
        color=colour,
        linewidth=1.4,
        linestyle="-." if r["feature"] == JOINT else "-",
        label=f"{name}: {worth}",
    )
    if math.isfinite(n_star) and not r["lower_bound"]:
        ax.plot([n_star], [y], marker="v", color=colour, markersize=9, zorder=4)
        ax.axvline(n_star, color=colour, linewidth=0.6, linestyle=":")


def plot_amplification(
    rows: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Mapping[str, Any]] | None,
    out_base: Path,
    *,
    highlight: int = 3,
    labels: Mapping[str, AxisLabel] | None = None,
) -> tuple[Path, Path]:
    """Write the amplification figure ``out_base``.pdf/.png; one panel per slice in ``rows``;
    ``labels`` gives features their names on it (:func:`hepflows.events.observables.axis_label`).

    ``rows``: :func:`~hepflows.validation.amplification.amplification`'s rows; ``curves``:
    :func:`~hepflows.validation.amplification.mc_divergence_curve`'s result (per slice ``n``
    (m,), ``d_per_dof`` (m, d), ``independent``), or None for the expected curves alone.  The
    ``highlight`` features of smallest worth (significant excesses before lower bounds) are drawn
    in colour, the rest grey.
    """
    slices = list(dict.fromkeys(r["slice"] for r in rows))
    if not slices:
        raise ValueError("plot_amplification: no rows")
    side, left, gap, bottom = 6.0, 1.2, 0.9, 0.9
    width, height = left + len(slices) * side + (len(slices) - 1) * gap + 0.3, side + bottom + 0.5
    rects = [
        ((left + i * (side + gap)) / width, bottom / height, side / width, side / height)
        for i in range(len(slices))
    ]
    with atlas_style():
        fig = plt.figure(figsize=(width, height))
        simulation_label(fig, rects[0], loc=0)
        for i, (name, rect) in enumerate(zip(slices, rects, strict=True)):
            ax = fig.add_axes(rect)
            _panel(
                ax,
                [r for r in rows if r["slice"] == name],
                None if curves is None else curves.get(name),
                name,
                highlight,
                labels,
            )
            if i == 0:
                ax.set_ylabel(r"$\chi^2$ divergence per bin from truth, $d\,/\,(B-1)$")
        return save_figure(fig, out_base)
