"""The grid's models side by side as one figure: classifier AUC, cells outside, MC events worth.

Reads the rows of :func:`hepflows.report.compare.model_summary` (one a model) and draws three
panels, one model a row on a shared y axis:

* the classifier two-sample AUC with its bootstrap interval, against the MC-vs-MC AUC (0.5:
  indistinguishable);
* the cells (feature x slice) of the KS and chi2/ndf tests outside the MC-vs-MC null band,
  against the number expected by chance;
* ``n_equiv``, the MC events the model is worth (worst feature x slice and joint; a lower bound
  drawn as an arrow), on a log axis (Butter et al., "GANplifying event samples",
  arXiv:2008.06545).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# plots first: it selects the file-only matplotlib backend before pyplot is imported
from hepflows.report.plots import atlas_style, save_figure  # isort: skip
import matplotlib.pyplot as plt

__all__ = ["plot_comparison"]

#: The counted metrics drawn, as (column of the comparison row, legend label).
CELLS = (("KS outside", "KS"), ("chi2/ndf outside", r"$\chi^2$/ndf"))
#: The n_equiv columns drawn, as (column, legend label, marker).
EQUIV = (("n_equiv features", "worst feature", "o"), ("n_equiv joint", "joint", "s"))


def _count(text: str) -> float:
    """'19/54' -> 19.0; '' -> nan."""
    return float(text.split("/")[0]) if text else math.nan


def _equiv(text: str) -> tuple[float, bool]:
    """'≥1.2e+04' -> (12000.0, True); '3.1e3' -> (3100.0, False); '' -> (nan, False)."""
    if not text:
        return math.nan, False
    bound = text.startswith("≥")
    return float(text.lstrip("≥")), bound


def _auc_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for y, r in enumerate(rows):
        auc = r["classifier AUC"]
        if math.isnan(auc):
            continue
        lo, hi = (float(v) for v in r["AUC interval"].strip("[]").split(","))
        ax.errorbar(auc, y, xerr=[[auc - lo], [hi - auc]], fmt="o", color="black", capsize=3)
        ax.plot(r["MC-vs-MC AUC"], y, "|", color="tab:green", ms=14, mew=2)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlim(left=0.48)
    ax.set_xlabel("classifier AUC (green: MC vs MC)")


def _cells_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for k, (column, label) in enumerate(CELLS):
        counts = [_count(r[column]) for r in rows]
        ys = [y + (k - 0.5) * 0.25 for y in range(len(rows))]
        ax.barh(ys, counts, height=0.25, label=label)
    expected = [r[CELLS[0][0] + " expected"] for r in rows]
    ax.plot(expected, range(len(rows)), "|", color="black", ms=14, mew=2, label="by chance")
    ax.set_xlabel("cells outside the MC-vs-MC band")
    ax.legend(
        fontsize="x-small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False
    )


def _equiv_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    drawn = False
    for column, label, marker in EQUIV:
        for y, r in enumerate(rows):
            value, bound = _equiv(r.get(column, ""))
            if math.isnan(value):
                continue
            ax.plot(
                value,
                y,
                marker,
                color="tab:blue" if marker == "o" else "tab:red",
                label=label if y == 0 else None,
            )
            if bound:  # a lower bound: the model is worth at least this
                ax.annotate(
                    "",
                    xy=(value * 3, y),
                    xytext=(value, y),
                    arrowprops={"arrowstyle": "->", "color": "grey"},
                )
            drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.legend(
            fontsize="x-small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False
        )
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(r"MC events worth, $n_\mathrm{equiv}$")


def plot_comparison(rows: Sequence[Mapping[str, Any]], out_base: str | Path) -> tuple[Path, Path]:
    """Draw the models of ``rows`` side by side; writes ``out_base``.pdf and .png atomically."""
    if not rows:
        raise ValueError("no models to compare")
    height = 1.8 + 0.45 * len(rows)
    with atlas_style():
        fig, axes = plt.subplots(1, 3, figsize=(13, height), sharey=True)
        _auc_panel(axes[0], rows)
        _cells_panel(axes[1], rows)
        _equiv_panel(axes[2], rows)
        axes[0].set_yticks(range(len(rows)), [str(r["model"]) for r in rows])
        axes[0].set_ylim(-0.7, len(rows) - 0.3)
        axes[0].invert_yaxis()
        for ax in axes:
            ax.tick_params(labelsize="small")
            ax.xaxis.label.set_size("small")
        fig.suptitle(
            "hepflows Simulation, the models of the grid", fontsize="medium", x=0.02, ha="left"
        )
        fig.subplots_adjust(
            left=0.15, right=0.98, bottom=0.75 / height, top=1 - 0.75 / height, wspace=0.08
        )
        return save_figure(fig, Path(out_base))
