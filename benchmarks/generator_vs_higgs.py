#!/usr/bin/env python
"""Calibration of the embedded generator against real HIGGS events.

    python benchmarks/generator_vs_higgs.py [--real ../shared/data/higgs/higgs_real_subset.csv.gz]
        [--events 60000] [--seed 7] [--plot docs/img/generator_vs_higgs.png] [--json FILE]

Generates ``--events`` events in ``units="higgs"`` with the HIGGS signal fraction and compares
them, per process (signal, t tbar background), with the real rows: for each of the 22 features
without azimuths the two-sample Kolmogorov-Smirnov distance (:func:`scipy.stats.ks_2samp`), and
for each of the seven masses the peak position (the mode of a smoothed histogram) and the width
(full width at half maximum over the peak position).  The signal fractions are compared too.
The targets of the calibration are printed beside each number: median KS <= 0.04 and every
feature <= 0.08 per process; peak positions within 3 % and widths within 20 %.

With ``--plot`` it draws both samples overlaid per feature and process (unit-area histograms,
generator as lines, real events as markers).

With ``--fit-scales`` it prints the constants of ``HIGGS_SCALE`` fitted to the real rows (the
ratio of the medians, :func:`hepflows.events.calibration.fit_higgs_scale`), the command that
made the ones in the generator:

    python benchmarks/generator_vs_higgs.py --fit-scales --events 200000 --seed 123

With ``--ablation`` it measures what each effect of ``generator.EFFECTS`` does: the median and
largest KS distance per process with that effect switched off (the scales kept as fitted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))

from hepflows.events.calibration import (  # noqa: E402
    CALIBRATION_FEATURES,
    KS_FEATURE_TARGET,
    KS_MEDIAN_TARGET,
    MASSES,
    PEAK_POSITION_TOLERANCE,
    PEAK_WIDTH_TOLERANCE,
    PROCESSES,
    compare,
    fit_higgs_scale,
    read_real,
)
from hepflows.events.generator import EFFECTS, HIGGS_SIGNAL_FRACTION, generate  # noqa: E402

DEFAULT_REAL = HERE.parents[2] / "shared" / "data" / "higgs" / "higgs_real_subset.csv.gz"


def print_report(result: dict) -> None:
    """The comparison as three plain-text tables: KS, peaks, and the target summary."""
    print(f"{'feature':<12}" + "".join(f"{'KS ' + p:>14}" for p in PROCESSES))
    for f in CALIBRATION_FEATURES:
        row = "".join(
            f"{result['ks'][p][f]:>13.3f}{'*' if result['ks'][p][f] > KS_FEATURE_TARGET else ' '}"
            for p in PROCESSES
        )
        print(f"{f:<12}{row}")
    print()
    print(
        f"{'mass':<8}{'process':<12}{'peak gen':>9}{'peak real':>10}{'shift':>8}"
        f"{'FWHM/peak gen':>15}{'real':>7}{'ratio':>7}"
    )
    for p in PROCESSES:
        for m in MASSES:
            pk = result["peaks"][p][m]
            print(
                f"{m:<8}{p:<12}{pk['gen_position']:>9.3f}{pk['real_position']:>10.3f}"
                f"{pk['position_shift']:>+8.3f}{pk['gen_width']:>15.3f}{pk['real_width']:>7.3f}"
                f"{pk['width_ratio']:>7.2f}"
            )
    print()
    for p in PROCESSES:
        s = result["summary"][p]
        print(
            f"{p}: median KS {s['ks_median']:.3f} (target <= {KS_MEDIAN_TARGET}), "
            f"max KS {s['ks_max']:.3f} in {s['ks_max_feature']} (<= {KS_FEATURE_TARGET}); "
            f"peaks outside +-{PEAK_POSITION_TOLERANCE:.0%}: {s['peaks_shifted'] or 'none'}; "
            f"widths outside +-{PEAK_WIDTH_TOLERANCE:.0%}: {s['widths_off'] or 'none'}"
        )
    print(
        f"signal fraction: generator {result['signal_fraction']['generator']:.3f}, "
        f"real {result['signal_fraction']['real']:.3f}"
    )


def print_ablation(real: dict[str, np.ndarray], n: int, seed: int) -> None:
    """Median and largest KS distance per process, all effects on and each one off."""
    print(f"{'effects':<24}" + "".join(f"{p + ' median':>18}{p + ' max':>26}" for p in PROCESSES))
    for off in (None, *EFFECTS):
        gen = generate(n, seed=seed, units="higgs", effects={off: False} if off else None)
        summary = compare(gen, real)["summary"]
        cells = "".join(
            f"{summary[p]['ks_median']:>18.3f}{summary[p]['ks_max']:>10.3f} {summary[p]['ks_max_feature']:<15}"
            for p in PROCESSES
        )
        print(f"{'all on' if off is None else off + ' off':<24}{cells}")


def draw(gen: dict[str, np.ndarray], real: dict[str, np.ndarray], path: Path) -> None:
    """Unit-area histograms per feature (rows) and process: generator lines, real markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    from hepflows.events.schema import BTAGS, LABEL

    hep.style.use("ATLAS")
    fig, axes = plt.subplots(4, 11, figsize=(44, 15))
    colors = {"signal": "tab:red", "background": "tab:blue"}
    for k, f in enumerate(CALIBRATION_FEATURES):
        ax = axes[(k // 11) * 2, k % 11]
        ax_ratio = axes[(k // 11) * 2 + 1, k % 11]
        values = np.concatenate([real[f], gen[f]])
        if f in BTAGS:
            levels = np.unique(real[f])
            bins = np.concatenate(
                [[levels[0] - 0.5], (levels[1:] + levels[:-1]) / 2, [levels[-1] + 0.5]]
            )
        else:
            bins = np.linspace(*np.quantile(values, [0.002, 0.995]), 41)
        for p, label in (("signal", 1), ("background", 0)):
            g = np.histogram(gen[f][gen[LABEL] == label], bins=bins)[0].astype(float)
            r = np.histogram(real[f][real[LABEL] == label], bins=bins)[0].astype(float)
            centers = 0.5 * (bins[1:] + bins[:-1])
            hep.histplot(g / g.sum(), bins, ax=ax, color=colors[p], lw=1.5, label=f"generator {p}")
            ax.errorbar(
                centers,
                r / r.sum(),
                yerr=np.sqrt(r) / r.sum(),
                fmt="o",
                ms=3,
                color=colors[p],
                label=f"HIGGS {p}",
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                ax_ratio.plot(centers, (r / r.sum()) / (g / g.sum()), "o", ms=3, color=colors[p])
        ax.set_xlabel(f, fontsize=12)
        ax.tick_params(labelsize=9)
        ax_ratio.axhline(1.0, color="k", lw=0.8)
        ax_ratio.set_ylim(0.5, 1.5)
        ax_ratio.set_ylabel("real / gen", fontsize=9)
        ax_ratio.tick_params(labelsize=9)
        if k == 0:
            ax.legend(fontsize=8)
    fig.suptitle(
        "hepflows generator (lines) vs real HIGGS events (markers), unit area", fontsize=20
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--fit-scales", action="store_true", help="print HIGGS_SCALE fitted to the real rows"
    )
    parser.add_argument(
        "--ablation", action="store_true", help="KS summary with each effect switched off"
    )
    args = parser.parse_args(argv)

    if not args.real.exists():
        print(f"no real HIGGS file at {args.real}; give one with --real", file=sys.stderr)
        return 2
    real = read_real(args.real)
    if args.fit_scales:
        gev = generate(args.events, seed=args.seed, signal_fraction=HIGGS_SIGNAL_FRACTION)
        print("HIGGS_SCALE = " + json.dumps(fit_higgs_scale(gev, real), indent=4))
        return 0
    if args.ablation:
        print_ablation(real, args.events, args.seed)
        return 0
    t0 = time.perf_counter()
    gen = generate(
        args.events, seed=args.seed, signal_fraction=HIGGS_SIGNAL_FRACTION, units="higgs"
    )
    rate = args.events / (time.perf_counter() - t0)
    result = compare(gen, real)
    print(
        f"{args.events} generated events ({rate:.3g} events/s incl. units), "
        f"{len(real['label'])} real rows from {args.real}\n"
    )
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        draw(gen, real, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
