"""Validation figures in ATLAS style (mplhep): features, correlations, ROC, training curves.

Every figure is written twice, ``<base>.pdf`` and ``<base>.png``, each atomically (temporary
file, then rename) so the pipeline never sees half a figure.  The style is applied inside a
context so that importing this module changes no global matplotlib setting.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on machines without a display

import hist  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike, NDArray  # noqa: E402

from hepflows.atomic import atomic_path  # noqa: E402
from hepflows.errors import InputError  # noqa: E402
from hepflows.events.schema import axis_label, unit  # noqa: E402

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
def _atlas_style() -> Iterator[None]:
    """ATLAS style for the duration of one figure."""
    with plt.style.context(mplhep.style.ATLAS):
        yield


def _label(fig: plt.Figure, rect: Sequence[float], loc: int | None = None) -> None:
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
    # ATLAS style, but the label names this project: the events are not an experiment's.
    mplhep.label.exp_label(exp="hepflows", ax=overlay, data=False, text=EXPERIMENT_TEXT,
                           rlabel="", **kwargs)


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
# one feature: MC filled with error band, generated as markers, ratio panel
# ----------------------------------------------------------------------------------------------


def _plot_range(x: NDArray, log_tail: bool) -> tuple[float, float]:
    """Histogram range from the MC: central 99.9 % (99.98 % upper for tails), never empty."""
    lo, hi = np.quantile(x, [0.0005, 0.9998 if log_tail else 0.9995])
    if not hi > lo:
        lo, hi = float(np.min(x)) - 0.5, float(np.max(x)) + 0.5
    return float(lo), float(hi)


def _normalised_hist(
    x: NDArray, w: NDArray | None, edges_axis: hist.axis.Regular, total: float
) -> tuple[NDArray, NDArray]:
    """Bin contents and errors (n_bins,) in percent of ``total``; flow bins folded in.

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
    return 100.0 * val[1:-1] / total, 100.0 * np.sqrt(var[1:-1]) / total


def plot_feature(
    feature: str,
    reference: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    generated: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    out_base: Path,
    *,
    units: str = "GeV",
    bins: int = 40,
) -> tuple[Path, Path]:
    """Figure of one feature: MC vs generated, signal and background overlaid, ratio below.

    ``reference`` and ``generated`` are ``(values (n,), labels (n,), weights (n,) | None)``.
    Each class is shown in percent of the whole sample, so a wrong signal fraction shows as
    an offset.  MC: filled histogram with a hatched band of its statistical error.
    Generated: markers with statistical error bars.  Ratio panel: generated / MC per class,
    error bars from the generated sample, band from the MC.  Momenta, MET and masses get a
    logarithmic y axis so the tails are visible.
    """
    rx, rl, rw = (np.asarray(v) if v is not None else None for v in reference)
    gx, gl, gw = (np.asarray(v) if v is not None else None for v in generated)
    log_tail = unit(feature) == "GeV"
    lo, hi = _plot_range(rx, log_tail)
    axis = hist.axis.Regular(bins, lo, hi, underflow=True, overflow=True)
    edges = axis.edges
    total_r = float(len(rx) if rw is None else rw.sum())
    total_g = float(len(gx) if gw is None else gw.sum())

    with _atlas_style():
        fig = plt.figure(figsize=(8, 8))
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.06, left=0.15, right=0.96,
                                top=0.97, bottom=0.1)
        _label(fig, grid[0].get_position(fig).bounds)
        ax = fig.add_subplot(grid[0])
        rax = fig.add_subplot(grid[1], sharex=ax)
        ax.tick_params(labelbottom=False)
        ymax, ymin_pos = 0.0, np.inf
        for cls, (name, fill, marker) in CLASS_STYLE.items():
            mr, mg = rl == cls, gl == cls
            if not mr.any():
                continue
            mc, mc_err = _normalised_hist(rx[mr], None if rw is None else rw[mr], axis, total_r)
            mplhep.histplot(mc, edges, ax=ax, histtype="fill", color=fill, alpha=0.45,
                            label=f"MC {name}")
            ax.stairs(mc + mc_err, edges, baseline=mc - mc_err, fill=True, facecolor="none",
                      edgecolor=fill, hatch="////", linewidth=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                band = np.where(mc > 0, mc_err / mc, 0.0)
            rax.stairs(1 + band, edges, baseline=1 - band, fill=True, color=fill, alpha=0.35)
            ymax = max(ymax, float(np.max(mc + mc_err)))
            if np.any(mc > 0):
                ymin_pos = min(ymin_pos, float(np.min(mc[mc > 0])))
            if not mg.any():
                continue
            gen, gen_err = _normalised_hist(gx[mg], None if gw is None else gw[mg], axis, total_g)
            mplhep.histplot(gen, edges, yerr=gen_err, ax=ax, histtype="errorbar", color=marker,
                            marker="o", markersize=4, label=f"Flow {name}")
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(mc > 0, gen / mc, np.nan)
                r_err = np.where(mc > 0, gen_err / mc, np.nan)
            mplhep.histplot(r, edges, yerr=r_err, ax=rax, histtype="errorbar", color=marker,
                            marker="o", markersize=3)
            ymax = max(ymax, float(np.max(gen + gen_err)))

        # head room for the label and legend: 40 % of the decades on log axes, 60 % on linear
        if log_tail and np.isfinite(ymin_pos):
            ax.set_yscale("log")
            bottom = ymin_pos * 0.3
            ax.set_ylim(bottom, ymax * (ymax / bottom) ** 0.4)
        else:
            ax.set_ylim(0, ymax * 1.6)
        ax.set_ylabel("Events / bin [% of sample]")
        ax.set_xlim(lo, hi)
        ax.legend(loc="upper right", fontsize="x-small", ncol=1)  # one column: clear of the label
        rax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel("Flow / MC")
        rax.set_xlabel(axis_label(feature, units=units))
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
) -> tuple[Path, Path]:
    """Panels of correlation(generated) - correlation(MC), one per slice, each (d, d).

    ``outside`` marks, per slice, the entries whose ``|difference|`` exceeds its own MC-vs-MC
    null band (boolean (d, d)); they are drawn with a black dot.
    """
    names = [axis_label(f, units="none") for f in features]
    slices = list(differences)
    d, k = len(features), len(slices)
    scale = max(0.05, max(float(np.max(np.abs(np.asarray(v)))) for v in differences.values()))
    # fixed layout in inches (a layout engine would need extra draws): square panels, room
    # for the rotated feature names left and below, a colour bar on the right
    side, margin, gap, bar = max(4.8, 0.3 * d + 1.0), 1.3, 1.4, 1.4
    width, height = margin + k * side + (k - 1) * gap + bar, side + margin + 0.6
    rects = [((margin + i * (side + gap)) / width, margin / height, side / width, side / height)
             for i in range(k)]
    with _atlas_style():
        fig = plt.figure(figsize=(width, height))
        _label(fig, rects[0], loc=0)
        axes = [fig.add_axes(rect) for rect in rects]
        cax = fig.add_axes(((width - bar + 0.3) / width, margin / height, 0.2 / width,
                            side / height))
        image = None
        for ax, name in zip(axes, slices, strict=True):
            diff = np.asarray(differences[name], dtype=np.float64)
            image = ax.imshow(diff, cmap="RdBu_r", vmin=-scale, vmax=scale, origin="upper",
                              aspect="auto")
            if outside is not None and name in outside:
                rows, cols = np.nonzero(np.asarray(outside[name]))
                ax.scatter(cols, rows, s=12, color="black", marker="o")
            ax.set_xlim(-0.5, d - 0.5)  # the markers must not widen the limits of the image
            ax.set_ylim(d - 0.5, -0.5)
            ax.set_xticks(range(d), names, rotation=90, fontsize="x-small")
            ax.set_yticks(range(d), names, fontsize="x-small")
            ax.minorticks_off()
            ax.set_title(f"{name}: flow $-$ MC", fontsize="small", loc="right")
        bar_axis = fig.colorbar(image, cax=cax, format="%.2f")
        bar_axis.set_label(r"$\Delta$ correlation", fontsize="small")
        fig.text(margin / width, 0.02, "Dots: entries outside their MC-vs-MC 95 % band",
                 fontsize="x-small")
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
    with _atlas_style():
        fig = plt.figure(figsize=(7, 7))
        rect = (0.15, 0.12, 0.81, 0.85)
        _label(fig, rect)
        ax = fig.add_axes(rect)
        for i, res in enumerate(null_results):
            ax.plot(res["fpr"], res["tpr"], color="grey", linewidth=0.8, alpha=0.7,
                    label="MC vs MC" if i == 0 else None)
        ax.plot(
            result["fpr"], result["tpr"], color=CLASS_STYLE[1][2], linewidth=2,
            label=(f"Flow vs MC: AUC = {result['auc']:.3f}"
                   f" [{result['auc_lo']:.3f}, {result['auc_hi']:.3f}]"),
        )
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8,
                label="indistinguishable")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.25)
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


def plot_training_curve(log_csv: Path, out_base: Path) -> tuple[Path, Path]:
    """Training and validation NLL per epoch (and the learning rate, if logged).

    Writes ``out_base``.pdf and .png; the epoch of the best validation NLL is marked, since
    that is the model the pipeline keeps.
    """
    log = read_training_log(log_csv)
    epoch = log["epoch"]
    finite = np.isfinite(log["val_nll"])
    best = int(np.flatnonzero(finite)[np.argmin(log["val_nll"][finite])]) if finite.any() else None
    with _atlas_style():
        fig = plt.figure(figsize=(8, 6))
        rect = (0.14, 0.12, 0.72, 0.84)
        _label(fig, rect)
        ax = fig.add_axes(rect)
        ax.plot(epoch, log["train_nll"], marker="o", markersize=3, label="training")
        ax.plot(epoch, log["val_nll"], marker="s", markersize=3, label="validation")
        if best is not None:
            ax.axvline(epoch[best], color="grey", linestyle=":", linewidth=1,
                       label=f"best: epoch {epoch[best]:g}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Negative log-likelihood per event")
        if "lr" in log and np.all(log["lr"] > 0):
            lax = ax.twinx()
            lax.plot(epoch, log["lr"], color="black", linewidth=0.8, linestyle="--",
                     label="learning rate")
            lax.set_yscale("log")
            lax.set_ylabel("Learning rate")
            lines = ax.get_legend_handles_labels()
            extra = lax.get_legend_handles_labels()
            ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper right",
                      fontsize="small")
        else:
            ax.legend(loc="upper right", fontsize="small")
        return save_figure(fig, out_base)
