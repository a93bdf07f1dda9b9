"""Validation figures in ATLAS style (mplhep): features, correlations, ROC, training curves.

Every figure is written twice, ``<base>.pdf`` and ``<base>.png``, each atomically (temporary
file, then rename) so the pipeline never sees half a figure.  The style is applied inside a
context so that importing this module changes no global matplotlib setting.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on machines without a display

import hist  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from numpy.typing import ArrayLike, NDArray  # noqa: E402

from hepflows.atomic import atomic_path  # noqa: E402
from hepflows.errors import InputError  # noqa: E402
from hepflows.events.observables import axis_label, unit  # noqa: E402
from hepflows.events.schema import MASSES  # noqa: E402
from hepflows.settings import AxisLabel  # noqa: E402

#: Per class: (name, MC fill colour, generated marker colour).  Blue/orange stay distinct for
#: the common colour-vision deficiencies.
CLASS_STYLE: dict[int, tuple[str, str, str]] = {
    0: ("background", "#3f90da", "#0b3d78"),
    1: ("signal", "#ffa90e", "#a34f00"),
}
#: Text after "ATLAS" in the corner label.
EXPERIMENT_TEXT = ""
PNG_DPI = 110
TRAINING_LOG_COLUMNS = ("epoch", "train_nll", "val_nll")


@contextlib.contextmanager
def atlas_style() -> Iterator[None]:
    """ATLAS style for the duration of one figure."""
    with plt.style.context(mplhep.style.ATLAS):
        yield


@dataclass(frozen=True)
class FigureText:
    """The text of every figure: the bold ``label`` (top left, with "Simulation"), sqrt(s)
    ``energy`` and the luminosity ``lumi`` (top right of the feature plots); config ``plots``."""

    label: str = "hepflows"
    energy: str = "8 TeV"
    lumi: str | None = None

    def rlabel(self) -> str:
        """ "√s = 13 TeV, 140 fb⁻¹": what is given of the two."""
        parts = [f"√s = {self.energy}" if self.energy else "", self.lumi or ""]
        return ", ".join(p for p in parts if p)


_FIGURE_TEXT: contextvars.ContextVar[FigureText] = contextvars.ContextVar(
    "hepflows_figure_text",
    default=FigureText(),  # noqa: B039 (frozen: never mutated)
)


@contextlib.contextmanager
def figure_text(
    label: str = "hepflows", energy: str = "8 TeV", lumi: str | None = None
) -> Iterator[FigureText]:
    """The figures drawn inside this block carry this text (config ``plots``)."""
    token = _FIGURE_TEXT.set(FigureText(label=label, energy=energy, lumi=lumi))
    try:
        yield _FIGURE_TEXT.get()
    finally:
        _FIGURE_TEXT.reset(token)


def current_figure_text() -> FigureText:
    """The figure text in force here (:func:`figure_text`), to hand to another process."""
    return _FIGURE_TEXT.get()


def simulation_label(
    fig: plt.Figure,
    rect: tuple[float, float, float, float],
    loc: int | None = None,
    rlabel: str = "",
) -> None:
    """'hepflows Simulation' at the top left of the axes area ``rect`` (figure fraction).

    ``data=False`` makes mplhep add "Simulation"; ``loc=0`` puts the label above the axes.
    mplhep measures its text by drawing the whole figure, twice; drawing axes full of ATLAS
    minor ticks is most of the cost of a figure.  So the label goes on a transparent axes
    without ticks over ``rect``, made before the real axes exist: those draws then cost
    nothing.  Call it first, on a fixed layout.
    """
    overlay = fig.add_axes(rect)
    overlay.set_axis_off()
    overlay.set_zorder(10)  # drawn over the real axes, whose background would hide the text
    kwargs = {} if loc is None else {"loc": loc}
    # ATLAS style; the label names this project unless config plots.label names another.
    mplhep.label.exp_label(
        exp=_FIGURE_TEXT.get().label,
        ax=overlay,
        data=False,
        text=EXPERIMENT_TEXT,
        rlabel=rlabel,
        **kwargs,
    )


def save_figure(fig: plt.Figure, out_base: Path) -> tuple[Path, Path]:
    """Write ``out_base``.pdf and .png atomically and close the figure; returns both paths."""
    out_base = Path(out_base)
    paths = []
    try:
        for ext in ("pdf", "png"):
            path = out_base.with_name(out_base.name + "." + ext)
            with atomic_path(path) as tmp:
                # fixed margins instead of bbox_inches="tight", which draws the figure again
                fig.savefig(tmp, format=ext, dpi=PNG_DPI)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths[0], paths[1]


# ----------------------------------------------------------------------------------------------
# one feature: MC as step lines, generated as markers, one ratio panel per process
# ----------------------------------------------------------------------------------------------

#: Central MC quantiles that set the x range; the rest is folded into the edge bins.
RANGE_QUANTILES = (0.005, 0.995)
#: Fraction of the MC that a Gaussian holds within +-sigma/2: the shortest interval holding this
#: fraction of a class is the width sigma of its narrowest peak (or the scale of a falling spectrum).
CORE_FRACTION = 0.383
#: Bin width as a fraction of that resolution.
BIN_FRACTION = 0.5
MIN_BINS, MAX_BINS = 20, 80
#: A bin should hold this many MC events on average, so that sparse samples get fewer bins.
EVENTS_PER_BIN = 25
#: Per-feature metrics written in the corner of a ratio panel: (key, text).
#: Bins whose MC relative error is at least this show no ratio.
MAX_RATIO_ERROR = 0.3
PANEL_METRICS = (("ks", "KS"), ("chi2_ndf", r"$\chi^2$/ndf"))


def _nice_width(width: float, up: bool = False) -> float:
    """``width`` rounded down (or up) to 1, 2, 2.5 or 5 times a power of ten."""
    if not width > 0:
        return 1.0
    scale = 10.0 ** np.floor(np.log10(width))
    steps = (1.0, 2.0, 2.5, 5.0, 10.0)
    m = width / scale
    pick = (
        min((s for s in steps if s >= m - 1e-9), default=10.0)
        if up
        else max((s for s in steps if s <= m + 1e-9), default=1.0)
    )
    return float(pick * scale)


def _shortest_interval(x: NDArray, fraction: float) -> float:
    """Length of the shortest interval that holds ``fraction`` of the values ``x``."""
    xs = np.sort(x)
    k = max(1, int(np.ceil(fraction * len(xs))))
    if len(xs) <= k:
        return float(xs[-1] - xs[0]) if len(xs) else 0.0
    return float(np.min(xs[k:] - xs[:-k]))


def feature_binning(x: ArrayLike, labels: ArrayLike | None = None) -> hist.axis.Regular:
    """Regular bins of a feature from its MC: range and width that a physicist would choose.

    Range: the central 99 % of the MC (:data:`RANGE_QUANTILES`), aligned to the bin width.
    Width: half the width of the narrowest peak of any class (the shortest interval holding
    38.3 % of a class, which is sigma for a Gaussian), rounded down to 1, 2, 2.5 or 5 x 10^k;
    widened (rounded up) when that would give more than :data:`MAX_BINS` bins or fewer than
    :data:`EVENTS_PER_BIN` MC events a bin.  A point mass (m_lv at m_W) has no width and is
    capped in the same way.  Flow bins exist: callers fold them into the edge bins.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = (float(v) for v in np.quantile(x, RANGE_QUANTILES))
    if not hi > lo:
        lo, hi = float(np.min(x)) - 0.5, float(np.max(x)) + 0.5
    labels = np.zeros(len(x), np.int8) if labels is None else np.asarray(labels)
    inside = (x >= lo) & (x <= hi)
    widths = [
        _shortest_interval(x[inside & (labels == c)], CORE_FRACTION)
        for c in np.unique(labels)
        if np.count_nonzero(inside & (labels == c)) >= 50
    ]
    widths = [w for w in widths if w > 0]
    max_bins = int(np.clip(len(x) // EVENTS_PER_BIN, MIN_BINS, MAX_BINS))
    width = _nice_width(BIN_FRACTION * min(widths)) if widths else (hi - lo) / max_bins
    if (hi - lo) / width > max_bins:
        width = _nice_width((hi - lo) / max_bins, up=True)
    if (hi - lo) / width < MIN_BINS:
        width = _nice_width((hi - lo) / MIN_BINS)
    start = np.floor(lo / width) * width
    n = max(1, int(np.ceil((hi - start) / width - 1e-9)))
    return hist.axis.Regular(
        n, float(start), float(start + n * width), underflow=True, overflow=True
    )


def _plot_range(x: NDArray, log_tail: bool = True) -> tuple[float, float]:
    """Histogram range of :func:`feature_binning` (kept for callers of the old helper)."""
    axis = feature_binning(x)
    return float(axis.edges[0]), float(axis.edges[-1])


def _normalised_hist(
    x: NDArray, w: NDArray | None, edges_axis: hist.axis.Regular, total: float
) -> tuple[NDArray, NDArray]:
    """Bin contents and errors (n_bins,) as fractions of ``total``; flow bins folded in.

    Under- and overflow are added to the first and last bins so that no event is hidden.
    """
    h = hist.Hist(edges_axis, storage=hist.storage.Weight())
    h.fill(x, weight=w)
    view = h.view(flow=True)
    val, var = view.value.copy(), view.variance.copy()
    val[1] += val[0]
    val[-2] += val[-1]
    var[1] += var[0]
    var[-2] += var[-1]
    return val[1:-1] / total, np.sqrt(var[1:-1]) / total


def null_ratio_band(
    null_pairs: Sequence[tuple[tuple, tuple]],
    axis: hist.axis.Regular,
    cls: int,
    scale: float = 1.0,
) -> NDArray | None:
    """Half-width per bin of the MC-vs-MC band of the ratio of one class, or None.

    ``null_pairs`` are the validation's null pairs for one feature, each ``((x, label, w),
    (x, label, w))``: two disjoint MC samples at the compared sizes.  Per pair and bin the
    deviation ``|q/p - 1|`` of their per-class histograms; the band is its edge over the pairs
    by the verdict's own rule (:func:`hepflows.validation.null.band_edge`: the 95 % order
    statistic), times ``scale`` (the ratio of the statistical errors of the plotted samples to
    those of a null pair, so that the band fits the plotted ratio).
    """
    from hepflows.validation import null as nl

    devs = []
    for p, q in null_pairs:
        mp, mq = np.asarray(p[1]) == cls, np.asarray(q[1]) == cls
        if not (mp.any() and mq.any()):
            continue
        hp, _ = _normalised_hist(
            np.asarray(p[0])[mp], None if p[2] is None else np.asarray(p[2])[mp], axis, 1.0
        )
        hq, _ = _normalised_hist(
            np.asarray(q[0])[mq], None if q[2] is None else np.asarray(q[2])[mq], axis, 1.0
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            devs.append(np.where(hp > 0, np.abs(hq * hp.sum() / (hp * hq.sum()) - 1), np.nan))
    if not devs:
        return None
    devs_arr = np.nan_to_num(np.stack(devs), nan=np.inf)  # an empty bin is no evidence
    edge = nl.band_edge(devs_arr)
    return np.where(np.isfinite(edge), edge * scale, np.nan)


def _stat_text(stats: Mapping | None, slc: str) -> tuple[str, str] | None:
    """'KS 0.012 (green)   chi2/ndf 1.05 (green)' and the worse colour, for one slice."""
    from hepflows.validation import null as nl

    if not stats or slc not in stats:
        return None
    parts, statuses = [], []
    for key, text in PANEL_METRICS:
        if key in stats[slc]:
            value, status = stats[slc][key]
            parts.append(f"{text} = {value:.3g} ({status})")
            statuses.append(status)
    if not parts:
        return None
    worst = nl.worst_status(statuses)
    return "   ".join(parts), nl.STATUS_COLOURS[worst]


def _fmt_n(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else (f"{n / 1e3:.3g}k" if n >= 1e4 else f"{n:.0f}")


def _sample_size(x: ArrayLike, w: ArrayLike | None) -> str:
    """ "1005 events", or with weights "1005 events (effective 170)": the Kish size
    (sum w)^2 / sum w^2 says how much statistics a weighted sample really holds."""
    n = len(np.asarray(x))
    if w is None:
        return f"{_fmt_n(n)} events"
    from hepflows.kish import effective_size

    return f"{_fmt_n(n)} events (effective {_fmt_n(effective_size(np.asarray(w), n))})"


def is_peaked(feature: str) -> bool:
    """Masses peak (h0, W, top): linear y axis; momenta and MET fall: logarithmic."""
    return feature in MASSES


def plot_feature(
    feature: str,
    reference: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    generated: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    out_base: Path,
    *,
    units: str = "GeV",
    bins: int | None = None,
    null_pairs: Sequence[tuple[tuple, tuple]] = (),
    null_scale: Mapping[int, float] | None = None,
    stats: Mapping[str, Mapping[str, tuple[float, str]]] | None = None,
    model: str | None = None,
    labels: Mapping[str, AxisLabel] | None = None,
    shapes: bool = False,
) -> tuple[Path, Path]:
    """Figure of one feature (its axis label and unit from ``labels``): MC vs generated, one colour per process, a ratio panel each.

    ``reference`` and ``generated`` are ``(values (n,), labels (n,), weights (n,) | None)``.
    Each class is a fraction of the whole sample, so a wrong signal fraction shows as an
    offset; with ``shapes`` (``data.normalise: per_process``, the mixture being the user's
    choice) each class is normalised to its own area instead.  MC: step line; generated: markers with statistical errors.  Bins from
    :func:`feature_binning` (``bins`` forces that many over the same range); under- and
    overflow folded into the edge bins and marked.  Masses on a linear y axis, momenta and
    MET on a logarithmic one.  Each ratio panel (generated / MC of one process) shows the MC
    statistical band (grey) and, when ``null_pairs`` are given, the MC-vs-MC 95 % band of the
    verdict (dashed; :func:`null_ratio_band`, scaled per class by ``null_scale``), and the
    KS and chi2/ndf of that process's slice from ``stats`` (``{slice: {metric: (value,
    status)}}``) in a box coloured by the worse status.
    """
    rx, rl = np.asarray(reference[0]), np.asarray(reference[1])
    rw = None if reference[2] is None else np.asarray(reference[2])
    gx, gl = np.asarray(generated[0]), np.asarray(generated[1])
    gw = None if generated[2] is None else np.asarray(generated[2])
    axis = feature_binning(rx, rl)
    if bins is not None:
        axis = hist.axis.Regular(bins, axis.edges[0], axis.edges[-1], underflow=True, overflow=True)
    edges = axis.edges
    lo, hi = float(edges[0]), float(edges[-1])
    width = float(edges[1] - edges[0])
    gev = unit(feature, labels) == "GeV" and units == "GeV"
    log_y = unit(feature, labels) == "GeV" and not is_peaked(feature)
    totals = (
        float(len(rx) if rw is None else rw.sum()),
        float(len(gx) if gw is None else gw.sum()),
    )
    classes = [c for c in CLASS_STYLE if np.any(rl == c)]

    with atlas_style():
        fig, ax, raxes = _feature_axes(max(1, len(classes)))
        ymax, ymin_pos = 0.0, np.inf
        for i, cls in enumerate(classes):
            name = CLASS_STYLE[cls][0]
            mr, mg = rl == cls, gl == cls
            if shapes:
                totals = (
                    float(mr.sum() if rw is None else rw[mr].sum()),
                    float(mg.sum() if gw is None else gw[mg].sum()),
                )
            null = None
            if null_pairs:
                scale = 1.0 if null_scale is None else float(null_scale.get(cls, 1.0))
                null = null_ratio_band(null_pairs, axis, cls, scale)
            top, low = _draw_class(
                ax,
                raxes[i],
                cls,
                axis,
                (rx[mr], None if rw is None else rw[mr]),
                (gx[mg], None if gw is None else gw[mg]),
                totals,
                null,
                model,
            )
            ymax, ymin_pos = max(ymax, top), min(ymin_pos, low)
            _ratio_panel_text(raxes[i], name, _stat_text(stats, name), legend=i == 0)
        _main_y_range(ax, log_y, ymax, ymin_pos)
        per = f"{width:g} GeV" if gev else f"{width:g}"
        ax.set_ylabel(f"{'Fraction of process' if shapes else 'Fraction of events'} / {per}")
        ax.set_xlim(lo, hi)
        ax.legend(loc="upper right", fontsize="x-small", ncol=1)
        sizes = f"MC: {_sample_size(rx, rw)}\n{model or 'Flow'}: {_sample_size(gx, gw)}"
        ax.text(0.03, 0.96, sizes, transform=ax.transAxes, fontsize="x-small", va="top")
        _mark_flow_bins(ax, (rx, gx), lo, hi, width)
        raxes[-1].set_xlabel(axis_label(feature, labels, units=units))
        return save_figure(fig, out_base)


def _feature_axes(n_ratio: int) -> tuple[plt.Figure, Any, list[Any]]:
    """The feature figure: the main axes over ``n_ratio`` ratio panels sharing its x axis,
    with the experiment's label above."""
    fig = plt.figure(figsize=(8, 6.2 + 1.5 * n_ratio))
    grid = fig.add_gridspec(
        1 + n_ratio,
        1,
        height_ratios=(3.4, *([1] * n_ratio)),
        hspace=0.07,
        left=0.15,
        right=0.96,
        top=0.95,
        bottom=0.09,
    )
    simulation_label(
        fig, grid[0].get_position(fig).bounds, loc=0, rlabel=_FIGURE_TEXT.get().rlabel()
    )
    ax = fig.add_subplot(grid[0])
    raxes = [fig.add_subplot(grid[1 + i], sharex=ax) for i in range(n_ratio)]
    for a in (ax, *raxes[:-1]):
        a.tick_params(labelbottom=False)
    return fig, ax, raxes


def _draw_class(
    ax: Any,
    rax: Any,
    cls: int,
    axis: hist.axis.Regular,
    mc_events: tuple[NDArray, NDArray | None],
    gen_events: tuple[NDArray, NDArray | None],
    totals: tuple[float, float],
    null: NDArray | None,
    model: str | None,
) -> tuple[float, float]:
    """One process: its MC (step line) and generated events (markers) on ``ax``, their ratio
    with the MC statistical band and the MC-vs-MC band ``null`` on ``rax``; the events are
    ``(values, weights | None)``, each a fraction of its ``totals``.  Returns the highest bar
    top and the lowest positive MC bin, for the y range."""
    name, line, marker = CLASS_STYLE[cls]
    edges = axis.edges
    mc, mc_err = _normalised_hist(mc_events[0], mc_events[1], axis, totals[0])
    mplhep.histplot(
        mc, edges, ax=ax, histtype="step", color=line, linewidth=1.8, label=f"MC {name}"
    )
    ymax = float(np.max(mc + mc_err))
    ymin_pos = float(np.min(mc[mc > 0])) if np.any(mc > 0) else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        band = np.where(mc > 0, mc_err / mc, np.nan)
    # bins where the MC itself says little (>= 30 % error) show no ratio
    sparse = ~(band < MAX_RATIO_ERROR)
    band[sparse] = np.nan
    rax.stairs(
        1 + band,
        edges,
        baseline=1 - band,
        fill=True,
        color="#c8c8c8",
        linewidth=0,
        label="MC stat.",
    )
    if null is not None:
        null[sparse] = np.nan
        rax.stairs(
            1 + null, edges, color="#444444", linestyle="--", linewidth=1, label="MC vs MC 95 %"
        )
        rax.stairs(1 - null, edges, color="#444444", linestyle="--", linewidth=1)
    if len(gen_events[0]):
        gen, gen_err = _normalised_hist(gen_events[0], gen_events[1], axis, totals[1])
        mplhep.histplot(
            gen,
            edges,
            yerr=gen_err,
            ax=ax,
            histtype="errorbar",
            color=marker,
            marker="o",
            markersize=4,
            label=f"{model or 'Flow'} {name}",
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(sparse, np.nan, gen / mc)
            r_err = np.where(sparse, np.nan, gen_err / mc)
        mplhep.histplot(
            r,
            edges,
            yerr=r_err,
            ax=rax,
            histtype="errorbar",
            color=marker,
            marker="o",
            markersize=3,
        )
        ymax = max(ymax, float(np.max(gen + gen_err)))
    return ymax, ymin_pos


def _ratio_panel_text(rax: Any, name: str, found: tuple[str, str] | None, *, legend: bool) -> None:
    """A ratio panel's line at 1, range, label, the KS and chi2/ndf box ``found`` (text, colour)
    and, on the first panel, the legend."""
    rax.axhline(1.0, color="black", linewidth=0.8)
    rax.set_ylim(0.5, 1.5)
    # 0.5, 1, 1.5 would put the top label on the bottom one of the panel above
    rax.set_yticks([0.75, 1.0, 1.25])
    rax.set_ylabel(f"Flow / MC\n{name}", fontsize="small")
    if found is not None:
        text, colour = found
        rax.text(
            0.02,
            0.9,
            text,
            transform=rax.transAxes,
            fontsize="x-small",
            va="top",
            ha="left",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none"},
        )
    if legend:
        rax.legend(loc="lower right", fontsize="xx-small", ncol=2, frameon=False)


def _main_y_range(ax: Any, log_y: bool, ymax: float, ymin_pos: float) -> None:
    """Head room for the text and legend: 45 % of the decades on log axes, 70 % on linear."""
    if log_y and np.isfinite(ymin_pos):
        ax.set_yscale("log")
        bottom = ymin_pos * 0.3
        top = ymax * (ymax / bottom) ** 0.45
        if top > 1.0:
            # a fraction of events stays below 1: keep the head room, raise the bottom
            top, bottom = 1.0, ymax * ymax ** (1 / 0.45)
        ax.set_ylim(bottom, top)
    else:
        ax.set_ylim(0, ymax * 1.7)
        # plain numbers: a "x10^-2" above the axis would sit on the label
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)


def _mark_flow_bins(
    ax: Any, values: tuple[NDArray, NDArray], lo: float, hi: float, width: float
) -> None:
    """Mark the edge bins into which under- and overflow (of either sample) are folded."""
    under = sum(float(np.mean(x < lo)) for x in values)
    over = sum(float(np.mean(x >= hi)) for x in values)
    for flag, x_at, ha, txt in (
        (under, lo, "left", "$\\leftarrow$ + underflow"),
        (over, hi, "right", "+ overflow $\\rightarrow$"),
    ):
        if flag > 0:
            ax.axvline(
                x_at + (width if ha == "left" else -width),
                color="grey",
                linestyle=":",
                linewidth=0.8,
            )
            ax.text(
                x_at + (0.2 * width if ha == "left" else -0.2 * width),
                0.55,
                txt,
                transform=ax.get_xaxis_transform(),
                fontsize="xx-small",
                rotation=90,
                ha=ha,
                va="center",
                color="grey",
            )


# ----------------------------------------------------------------------------------------------
# overview: every feature and slice in one grid; 2-D comparisons of correlated pairs
# ----------------------------------------------------------------------------------------------

#: Colour of the "all" slice in the overview (the classes keep :data:`CLASS_STYLE`).
ALL_STYLE = ("all", "#333333", "#000000")
#: Feature pairs whose correlation matters for the analysis, compared in 2-D when configured.
PAIRS_2D: tuple[tuple[str, str], ...] = (
    ("m_bb", "m_wwbb"),
    ("m_jj", "m_jjj"),
    ("lepton_pt", "met"),
)
OVERVIEW_COLUMNS = 6
OVERVIEW_MAX_BINS = 40


def plot_overview(
    features: Sequence[str],
    reference: tuple[NDArray, NDArray, NDArray | None],
    generated: tuple[NDArray, NDArray, NDArray | None],
    out_base: Path,
    *,
    statuses: Mapping[tuple[str, str], str] | None = None,
    slices: Sequence[str] = ("all", "signal", "background"),
    model: str | None = None,
    labels: Mapping[str, AxisLabel] | None = None,
) -> tuple[Path, Path]:
    """All features for each slice in one grid: MC as step lines, generated as markers.

    ``reference`` and ``generated`` are ``(x (n, d), labels (n,), weights (n,) | None)``
    with the columns of ``features``; ``statuses`` maps ``(feature, slice)`` to the verdict
    colour of that cell (the worst of its per-feature metrics), drawn as the panel's corner.
    Each panel is normalised to unit area; bins as :func:`feature_binning`, at most
    :data:`OVERVIEW_MAX_BINS`.  Plain matplotlib style, few ticks: 50+ panels draw in seconds.
    """
    from hepflows.validation import null as nl

    rx, rl, rw = reference
    gx, gl, gw = generated
    names = {name: cls for cls, (name, _, _) in CLASS_STYLE.items()}
    shown = [s for s in slices if s == "all" or np.any(rl == names.get(s, -1))]
    d = len(features)
    ncol = min(OVERVIEW_COLUMNS, d)
    nrow_slice = int(np.ceil(d / ncol))
    nrow = nrow_slice * len(shown)
    panel_w, panel_h = 2.3, 1.75
    top, left = 0.55, 0.25
    width = left + ncol * panel_w + 0.1
    height = top + nrow * panel_h + 0.35 * len(shown)
    fig = plt.figure(figsize=(width, height))
    text = _FIGURE_TEXT.get()
    fig.text(left / width, 1 - 0.2 / height, text.label, fontweight="bold", fontsize=13, va="top")
    fig.text(
        # after the bold label: about 0.13 inch per character at 13 pt
        (left + 0.13 * len(text.label) + 0.01) / width,
        1 - 0.2 / height,
        f"Simulation   {text.rlabel()}   MC (lines) vs {model or 'Flow'} (markers): "
        f"{_sample_size(rx, rw)} vs {_sample_size(gx, gw)}   corner: verdict per feature "
        "and slice",
        fontsize=10,
        fontstyle="italic",
        va="top",
    )
    y_cursor = height - top
    for slc in shown:
        fig.text(
            left / width, (y_cursor - 0.05) / height, slc, fontsize=11, fontweight="bold", va="top"
        )
        y_cursor -= 0.35
        if slc == "all":
            mr, mg, style = np.ones(len(rl), bool), np.ones(len(gl), bool), ALL_STYLE
        else:
            c = names[slc]
            mr, mg, style = rl == c, gl == c, CLASS_STYLE[c]
        for j, f in enumerate(features):
            r, col = divmod(j, ncol)
            rect = (
                (left + col * panel_w + 0.12) / width,
                (y_cursor - (r + 1) * panel_h + 0.32) / height,
                (panel_w - 0.22) / width,
                (panel_h - 0.42) / height,
            )
            _overview_panel(
                fig.add_axes(rect),
                f,
                (rx[mr, j], None if rw is None else rw[mr]),
                (gx[mg, j], None if gw is None else gw[mg]),
                style,
                (statuses or {}).get((f, slc), nl.UNKNOWN),
                labels,
            )
        y_cursor -= nrow_slice * panel_h
    return save_figure(fig, out_base)


def _overview_panel(
    ax: Any,
    feature: str,
    mc_events: tuple[NDArray, NDArray | None],
    gen_events: tuple[NDArray, NDArray | None],
    style: tuple[str, str, str],
    status: str,
    labels: Mapping[str, AxisLabel] | None,
) -> None:
    """One panel of the overview: ``(values, weights | None)`` of MC (line) and generated
    events (markers), each normalised to unit area, and the cell's verdict colour."""
    from hepflows.validation import null as nl

    x_r, wr = mc_events
    axis = feature_binning(x_r)
    if axis.size > OVERVIEW_MAX_BINS:
        axis = hist.axis.Regular(
            OVERVIEW_MAX_BINS, axis.edges[0], axis.edges[-1], underflow=True, overflow=True
        )
    edges = axis.edges
    mc, _ = _normalised_hist(x_r, wr, axis, float(len(x_r) if wr is None else wr.sum()))
    ax.stairs(mc, edges, color=style[1], linewidth=1.2)
    x_g, wg = gen_events
    if len(x_g):
        gen, gen_err = _normalised_hist(x_g, wg, axis, float(len(x_g) if wg is None else wg.sum()))
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.errorbar(
            centres, gen, yerr=gen_err, fmt="o", markersize=1.8, color=style[2], elinewidth=0.6
        )
    if unit(feature, labels) == "GeV" and not is_peaked(feature) and np.any(mc > 0):
        ax.set_yscale("log")
        ax.set_ylim(float(np.min(mc[mc > 0])) * 0.3, float(np.max(mc)) * 3)
    else:
        ax.set_ylim(0, float(np.max(mc)) * 1.25 if np.any(mc > 0) else 1)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_yticks([])
    ax.minorticks_off()
    ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
    ax.set_xlabel(axis_label(feature, labels, units="none"), fontsize=7, labelpad=1)
    ax.add_patch(
        plt.Rectangle(
            (0.84, 0.78),
            0.16,
            0.22,
            transform=ax.transAxes,
            facecolor=nl.STATUS_COLOURS.get(status, "#dddddd"),
            edgecolor="black",
            linewidth=0.4,
            clip_on=False,
        )
    )


def plot_2d_comparison(
    features: tuple[str, str],
    reference: tuple[NDArray, NDArray, NDArray | None],
    generated: tuple[NDArray, NDArray, NDArray | None],
    out_base: Path,
    *,
    units: str = "GeV",
    bins: int = 40,
    model: str | None = None,
) -> tuple[Path, Path]:
    """Two features against each other: MC, generated, and their difference in sigma.

    ``reference`` and ``generated`` are ``(xy (n, 2), labels, weights | None)``.  Both
    densities are fractions of their sample per bin on the same logarithmic colour scale;
    the third panel is ``(gen - MC) / sqrt(err_gen^2 + err_MC^2)`` per bin (bins empty in
    both left white), so a missing correlation shows as a coherent pattern of one sign.
    Range per axis: the central 99 % of the MC.
    """
    from matplotlib.colors import LogNorm

    rxy, _, rw = reference
    gxy, _, gw = generated
    ex = [np.linspace(*_plot_range(rxy[:, k]), bins + 1) for k in range(2)]

    def h2(xy: NDArray, w: NDArray | None) -> tuple[NDArray, NDArray]:
        clipped = np.column_stack([np.clip(xy[:, k], ex[k][0], ex[k][-1]) for k in range(2)])
        total = float(len(xy) if w is None else w.sum())
        h, _, _ = np.histogram2d(clipped[:, 0], clipped[:, 1], bins=ex, weights=w)
        v, _, _ = np.histogram2d(
            clipped[:, 0], clipped[:, 1], bins=ex, weights=None if w is None else w * w
        )
        return h / total, np.sqrt(v) / total

    mc, mc_err = h2(rxy, rw)
    gen, gen_err = h2(gxy, gw)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where((mc > 0) | (gen > 0), (gen - mc) / np.hypot(mc_err, gen_err), np.nan)
    positive = np.concatenate([mc[mc > 0], gen[gen > 0]])
    norm = (
        LogNorm(vmin=float(positive.min()), vmax=float(positive.max())) if len(positive) else None
    )
    with atlas_style():
        fig = plt.figure(figsize=(16, 5.4))
        rects = [(0.06 + 0.31 * i, 0.14, 0.24, 0.74) for i in range(3)]
        simulation_label(fig, rects[0], loc=0, rlabel="")
        axes = [fig.add_axes(r) for r in rects]
        titles = ("MC", model or "Flow", f"({model or 'Flow'} $-$ MC) / $\\sigma$")
        images = []
        for ax, data, title in zip(axes, (mc, gen, pull), titles, strict=True):
            if data is pull:
                im = ax.pcolormesh(ex[0], ex[1], data.T, cmap="RdBu_r", vmin=-4, vmax=4)
            else:
                im = ax.pcolormesh(
                    ex[0], ex[1], np.where(data > 0, data, np.nan).T, cmap="viridis", norm=norm
                )
            images.append(im)
            ax.set_title(title, fontsize="small", loc="right")
            ax.set_xlabel(axis_label(features[0], units=units), fontsize="small")
            ax.tick_params(labelsize="x-small")
            if data is mc:
                ax.set_ylabel(axis_label(features[1], units=units), fontsize="small")
            else:  # the same y axis: its labels once, clear of the colour bar on the left
                ax.tick_params(labelleft=False)
        for k, text in ((1, "Fraction of events"), (2, "pull")):
            x0, y0, w0, h0 = rects[k]
            cax = fig.add_axes((x0 + w0 + 0.008, y0, 0.01, h0))
            fig.colorbar(images[k], cax=cax).set_label(text, fontsize="x-small")
            cax.tick_params(labelsize="x-small")
        for ax in axes:
            ax.set_xlim(ex[0][0], ex[0][-1])
            ax.set_ylim(ex[1][0], ex[1][-1])
        fig.text(
            0.06 + 0.31,
            0.95,
            f"{_FIGURE_TEXT.get().rlabel()}   MC: {_sample_size(rxy, rw)}, "
            f"{model or 'Flow'}: {_sample_size(gxy, gw)}",
            fontsize="small",
        )
        return save_figure(fig, out_base)


# ----------------------------------------------------------------------------------------------
# correlation-matrix differences
# ----------------------------------------------------------------------------------------------


def plot_correlation_difference(
    differences: Mapping[str, ArrayLike],
    features: Sequence[str],
    out_base: Path,
    *,
    outside: Mapping[str, ArrayLike] | None = None,
    labels: Mapping[str, AxisLabel] | None = None,
) -> tuple[Path, Path]:
    """Panels of correlation(generated) - correlation(MC), one per slice, each (d, d).

    ``outside`` marks, per slice, the entries whose ``|difference|`` exceeds its own MC-vs-MC
    null band (boolean (d, d)); they are drawn with a black dot.
    """
    names = [axis_label(f, labels, units="none") for f in features]
    slices = list(differences)
    d, k = len(features), len(slices)
    scale = max(0.05, max(float(np.max(np.abs(np.asarray(v)))) for v in differences.values()))
    # fixed layout in inches (a layout engine would need extra draws): square panels, room
    # for the rotated feature names left and below, a colour bar on the right
    side, margin, gap, bar = max(4.8, 0.3 * d + 1.0), 1.3, 1.4, 1.4
    width, height = margin + k * side + (k - 1) * gap + bar, side + margin + 0.6
    rects = [
        ((margin + i * (side + gap)) / width, margin / height, side / width, side / height)
        for i in range(k)
    ]
    with atlas_style():
        fig = plt.figure(figsize=(width, height))
        simulation_label(fig, rects[0], loc=0)
        axes = [fig.add_axes(rect) for rect in rects]
        cax = fig.add_axes(
            ((width - bar + 0.3) / width, margin / height, 0.2 / width, side / height)
        )
        image = None
        for ax, name in zip(axes, slices, strict=True):
            diff = np.asarray(differences[name], dtype=np.float64)
            image = ax.imshow(
                diff, cmap="RdBu_r", vmin=-scale, vmax=scale, origin="upper", aspect="auto"
            )
            if outside is not None and name in outside:
                rows, cols = np.nonzero(np.asarray(outside[name]))
                ax.scatter(cols, rows, s=12, color="black", marker="o")
            ax.set_xlim(-0.5, d - 0.5)  # the markers must not widen the limits of the image
            ax.set_ylim(d - 0.5, -0.5)
            ax.set_xticks(range(d), names, rotation=90, fontsize="x-small")
            ax.set_yticks(range(d), names, fontsize="x-small")
            ax.minorticks_off()
            ax.set_title(f"{name}: flow $-$ MC", fontsize="small", loc="right")
        # max() over differences above raised if it was empty, so one image was drawn
        assert image is not None
        bar_axis = fig.colorbar(image, cax=cax, format="%.2f")
        bar_axis.set_label(r"$\Delta$ correlation", fontsize="small")
        fig.text(
            margin / width,
            0.02,
            "Dots: entries outside their MC-vs-MC 95 % band",
            fontsize="x-small",
        )
        return save_figure(fig, out_base)


# ----------------------------------------------------------------------------------------------
# classifier ROC
# ----------------------------------------------------------------------------------------------


def plot_roc(
    result: Mapping,
    out_base: Path,
    *,
    null_results: Sequence[Mapping] = (),
) -> tuple[Path, Path]:
    """ROC curve of the classifier separating generated from MC events.

    ``result`` is the dict of :func:`hepflows.validation.classifier.classifier_two_sample`;
    ``null_results`` the same for MC-vs-MC pairs, drawn thin and grey for comparison.
    """
    with atlas_style():
        fig = plt.figure(figsize=(7, 7))
        rect = (0.15, 0.11, 0.8, 0.82)  # room above for the label
        simulation_label(fig, rect)
        ax = fig.add_axes(rect)
        for i, res in enumerate(null_results):
            ax.plot(
                res["fpr"],
                res["tpr"],
                color="grey",
                linewidth=0.8,
                alpha=0.7,
                label="MC vs MC" if i == 0 else None,
            )
        ax.plot(
            result["fpr"],
            result["tpr"],
            color=CLASS_STYLE[1][2],
            linewidth=2,
            label=(
                f"Flow vs MC: AUC = {result['auc']:.3f}"
                f" [{result['auc_lo']:.3f}, {result['auc_hi']:.3f}]"
            ),
        )
        ax.plot(
            [0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8, label="indistinguishable"
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.25)
        ax.set_yticks(np.arange(0.2, 1.01, 0.2))  # no 0.0 on top of the x axis's at the corner
        ax.set_xlabel("False positive rate (MC called generated)")
        ax.set_ylabel("True positive rate (generated called generated)")
        ax.legend(loc="lower right", fontsize="small")
        return save_figure(fig, out_base)


# ----------------------------------------------------------------------------------------------
# training curves
# ----------------------------------------------------------------------------------------------


def read_training_log(log_csv: Path) -> dict[str, NDArray]:
    """Columns of a training log CSV (epoch, train_nll, val_nll and optionally lr) as arrays.

    Raises :class:`InputError` naming the file and what is missing or malformed.
    """
    log_csv = Path(log_csv)
    with log_csv.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in TRAINING_LOG_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{log_csv}: header {header} lacks column(s) {missing}; expected "
                f"{list(TRAINING_LOG_COLUMNS)} and optionally 'lr'"
            )
        keep = [c for c in (*TRAINING_LOG_COLUMNS, "lr") if c in header]
        columns: dict[str, list[float]] = {c: [] for c in keep}
        for line, row in enumerate(reader, start=2):
            for c in keep:
                try:
                    columns[c].append(float(row[c]))
                except (TypeError, ValueError):
                    raise InputError(
                        f"{log_csv}: line {line}, column {c!r}: {row[c]!r} is not a number"
                    ) from None
    if not columns["epoch"]:
        raise InputError(f"{log_csv}: no epochs logged")
    return {c: np.asarray(v) for c, v in columns.items()}


def plot_training_curve(
    log_csv: Path, out_base: Path, loss: str = "Negative log-likelihood per event"
) -> tuple[Path, Path]:
    """Training and validation loss per epoch (and the learning rate, if logged): the NLL, or
    what ``loss`` names (the flow-matching loss of that family).

    Writes ``out_base``.pdf and .png; the epoch of the best validation NLL is marked, since
    that is the model the pipeline keeps.
    """
    log = read_training_log(log_csv)
    epoch = log["epoch"]
    finite = np.isfinite(log["val_nll"])
    best = int(np.flatnonzero(finite)[np.argmin(log["val_nll"][finite])]) if finite.any() else None
    with atlas_style():
        fig = plt.figure(figsize=(8, 6))
        rect = (0.14, 0.13, 0.7, 0.78)  # room above for the label, right for the lr axis
        simulation_label(fig, rect)
        ax = fig.add_axes(rect)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.plot(epoch, log["train_nll"], marker="o", markersize=3, label="training")
        ax.plot(epoch, log["val_nll"], marker="s", markersize=3, label="validation")
        if best is not None:
            ax.axvline(
                epoch[best],
                color="grey",
                linestyle=":",
                linewidth=1,
                label=f"best: epoch {epoch[best]:g}",
            )
        ax.set_xlabel("Epoch")
        ax.set_ylabel(loss)
        # the first and last epochs' labels clear of the y axes' labels at the corners
        pad = 0.05 * float(epoch[-1] - epoch[0]) + 0.3
        ax.set_xlim(float(epoch[0]) - pad, float(epoch[-1]) + pad)
        if "lr" in log and np.all(log["lr"] > 0):
            lax = ax.twinx()
            lax.plot(
                epoch,
                log["lr"],
                color="black",
                linewidth=0.8,
                linestyle="--",
                label="learning rate",
            )
            lax.set_yscale("log")
            lax.set_ylabel("Learning rate")
            lines = ax.get_legend_handles_labels()
            extra = lax.get_legend_handles_labels()
            ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper right", fontsize="small")
        else:
            ax.legend(loc="upper right", fontsize="small")
        return save_figure(fig, out_base)
