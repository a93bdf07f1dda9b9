#!/usr/bin/env python
"""Draw the 28 HIGGS features of generated signal and background events side by side.

    python docs/make_generator_plots.py [--events 50000] [--seed 1] [--out docs/img/generator_features.png]

Makes ``docs/img/generator_features.png``: a 4 x 7 grid, one panel per feature in the HIGGS
column order, unit-area histograms of signal (H0 -> W H+-) and background (t tbar) in GeV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hepflows.events.generator import generate  # noqa: E402
from hepflows.events.schema import BTAGS, HIGGS_FEATURES, LABEL, axis_label  # noqa: E402


def edges(feature: str, x: np.ndarray) -> np.ndarray:
    """Bin edges suited to a feature: its physical range for angles and tags, else quantiles."""
    if feature in BTAGS:
        return np.array([-0.5, 0.5, 1.5, 2.5])
    if feature.endswith("_phi"):
        return np.linspace(-np.pi, np.pi, 41)
    if feature.endswith("_eta"):
        return np.linspace(-2.5, 2.5, 41)
    return np.linspace(0.0, float(np.quantile(x, 0.995)), 61)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "img" / "generator_features.png"
    )
    args = parser.parse_args(argv)

    ev = generate(args.events, seed=args.seed)
    sig = ev[LABEL] == 1
    hep.style.use("CMS")
    fig, axes = plt.subplots(4, 7, figsize=(35, 19))
    for ax, f in zip(axes.flat, HIGGS_FEATURES):
        bins = edges(f, ev[f])
        for mask, name, color in ((sig, "signal", "tab:red"), (~sig, r"$t\bar{t}$", "tab:blue")):
            counts, _ = np.histogram(ev[f][mask], bins=bins)
            hep.histplot(counts / max(counts.sum(), 1), bins, ax=ax, label=name, color=color, lw=2)
        # schema.axis_label writes b-tags with \mbox, which matplotlib's mathtext cannot parse.
        label = f"b-tag($j_{f[3]}$)" if f in BTAGS else axis_label(f)
        ax.set_xlabel(label, fontsize=20)
        ax.set_ylabel("fraction of events", fontsize=16)
        ax.tick_params(labelsize=14)
        if f in BTAGS:
            ax.set_xticks([0, 1, 2])
        ax.legend(fontsize=15, loc="best")
    fig.suptitle(
        f"hepflows generator, pp 8 TeV: {int(sig.sum())} signal and {int((~sig).sum())} "
        r"$t\bar{t}$ events after selection (seed " + str(args.seed) + ")",
        fontsize=26,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=60)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
