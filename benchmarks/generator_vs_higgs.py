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

With ``--joint`` it runs the joint diagnosis of :mod:`hepflows.events.joint` per process: the
classifier AUC of generator vs real events over the 22 features with its real-vs-real null,
the largest differences of the rank correlation matrices, the pairs of features whose 2-D
histograms differ most, and the events the classifier finds most generator-like and most
real-like, the rank correlations of the jets' pTs within and between the tagged and untagged
pairs, the masses' median and 90 % quantile in events with one and with two tagged jets, and
how often m_bb is the tagged pair's massless mass (with the jet scales that implies), and the
KS distances of observables that physics sets and no feature holds (the objects' distances,
the leptonic W's and the b pair's boosts, the visible system's recoil);
``--joint-plot DIR`` draws the correlation matrices (generator, real, difference)
and the worst pairs into DIR:

    python benchmarks/generator_vs_higgs.py --joint --joint-plot docs/img

``--set NAME=VALUE`` (repeatable) changes a constant of ``hepflows.events.generator`` for the
run (VALUE as JSON, else a string), and ``--refit-scales`` refits the ``units: higgs`` scales to
the real rows first (on ``--events`` events of seed 123, as ``--fit-scales`` does), so that a
tried change is measured as it would be kept:

    python benchmarks/generator_vs_higgs.py --joint --refit-scales --set B_CANDIDATES=all

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


def print_joint(gen: dict[str, np.ndarray], real: dict[str, np.ndarray], seed: int) -> dict:
    """The joint diagnosis per process, printed; returns its numbers for --json."""
    from hepflows.events import joint

    out: dict = {}
    for p in PROCESSES:
        res = joint.classifier_auc(gen, real, p, seed=seed)
        null = joint.real_null_auc(real, p, seed=seed)
        cg, cr = joint.correlations(gen, real, p)
        diff = np.triu(cg - cr, 1)
        worst = np.dstack(np.unravel_index(np.argsort(-np.abs(diff).ravel())[:8], diff.shape))[0]
        pairs = joint.pair_chi2(gen, real, p)
        ext = joint.extreme_events(gen, real, p, k=3, seed=seed)
        print(
            f"{p}: classifier AUC generator vs real {res['auc']:.3f} "
            f"[{res['auc_lo']:.3f}, {res['auc_hi']:.3f}] (target <= {joint.AUC_TARGET}); "
            f"real vs real {null:.3f}"
        )
        print("  rank correlations that differ most (generator, real):")
        for i, j in worst:
            f1, f2 = CALIBRATION_FEATURES[i], CALIBRATION_FEATURES[j]
            print(f"    {f1:<11} {f2:<11} {cg[i, j]:+.2f} {cr[i, j]:+.2f}")
        print("  pairs whose 2-D histograms differ most (chi2/ndf):")
        for f1, f2, c in pairs[:8]:
            print(f"    {f1:<11} {f2:<11} {c:7.1f}")
        pg, pr = joint.jet_pair_correlations(gen, p), joint.jet_pair_correlations(real, p)
        print(
            "  jet pT rank correlations, two tagged jets (generator, real): "
            + ", ".join(f"{k} {pg[k]:+.2f} {pr[k]:+.2f}" for k in pg)
        )
        mg, mr = joint.masses_by_tag_count(gen, p), joint.masses_by_tag_count(real, p)
        print("  masses by tagged jets among the four, median / 90 % (generator | real):")
        for m in MASSES:
            cells = " ".join(
                f"{k} tag{'s' if k > 1 else ' '} {mg[k][m][0]:.2f}/{mg[k][m][1]:.2f} | "
                f"{mr[k][m][0]:.2f}/{mr[k][m][1]:.2f}"
                for k in (1, 2)
            )
            print(f"    {m:<7} {cells}")
        sg, sr = joint.tagged_pair_mass(gen, p), joint.tagged_pair_mass(real, p)
        print(
            "  m_bb = massless mass of the tagged pair to 1 %, by pair (generator, real): "
            + ", ".join(
                f"{k} {sg['pairs'][k]['fraction']:.2f} {sr['pairs'][k]['fraction']:.2f}"
                for k in sg["pairs"]
            )
        )
        print(
            "  jet scales / m_bb's that the pair masses imply (generator, real): "
            + ", ".join(f"{a:.3f} {b:.3f}" for a, b in zip(sg["scales"], sr["scales"], strict=True))
        )
        derived = joint.derived_distances(gen, real, p)
        print("  derived observables: KS, quantiles 1 / 50 / 90 % (generator | real):")
        for name, d in derived.items():
            g, r = d["generator"], d["real"]
            print(
                f"    {name:<18} {d['ks']:.3f}  {g[0]:.2f} / {g[1]:.2f} / {g[2]:.2f} | "
                f"{r[0]:.2f} / {r[1]:.2f} / {r[2]:.2f}"
            )
        for kind in ("most_generator_like", "most_real_like"):
            print(f"  {kind.replace('_', ' ')} events:")
            print("    " + " ".join(f"{f[:8]:>8}" for f in CALIBRATION_FEATURES))
            for row in ext[kind]:
                print("    " + " ".join(f"{v:8.3f}" for v in row))
        out[p] = {
            "auc": res["auc"],
            "auc_interval": [res["auc_lo"], res["auc_hi"]],
            "real_vs_real_auc": null,
            "correlation_generator": cg.tolist(),
            "correlation_real": cr.tolist(),
            "pair_chi2_ndf": pairs,
            "jet_pair_correlations": {"generator": pg, "real": pr},
            "masses_by_tag_count": {"generator": mg, "real": mr},
            "tagged_pair_mass": {"generator": sg, "real": sr},
            "derived_observables": derived,
        }
    return out


def draw_joint(gen: dict[str, np.ndarray], real: dict[str, np.ndarray], folder: Path) -> None:
    """Per process: rank correlation matrices of generator, real events and their difference
    (generator_joint_corr.png), and the four pairs of continuous features whose 2-D histograms
    differ most, both samples as contours (generator_joint_pairs.png; the b-tag pairs are in
    the printed table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hepflows.events import joint
    from hepflows.events.schema import BTAGS

    names = [f.replace("_", " ") for f in CALIBRATION_FEATURES]
    fig, axes = plt.subplots(2, 3, figsize=(24, 16))
    for row, p in enumerate(PROCESSES):
        cg, cr = joint.correlations(gen, real, p)
        for ax, mat, title, lim in (
            (axes[row, 0], cg, f"generator, {p}", 1.0),
            (axes[row, 1], cr, f"real HIGGS, {p}", 1.0),
            (axes[row, 2], cg - cr, f"generator - real, {p}", 0.4),
        ):
            im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(title, fontsize=14)
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
            ax.set_yticks(range(len(names)), names, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Spearman rank correlations of the 22 features", fontsize=18)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / "generator_joint_corr.png", dpi=50)
    plt.close(fig)

    fig, axes = plt.subplots(2, 4, figsize=(24, 11))
    for row, p in enumerate(PROCESSES):
        xg, xr = joint.process_matrix(gen, p), joint.process_matrix(real, p)
        continuous = [t for t in joint.pair_chi2(gen, real, p) if not {t[0], t[1]} & set(BTAGS)]
        for ax, (f1, f2, chi2) in zip(axes[row], continuous[:4], strict=True):
            i, j = CALIBRATION_FEATURES.index(f1), CALIBRATION_FEATURES.index(f2)
            lo = np.quantile(np.concatenate([xr, xg]), 0.005, axis=0)
            hi = np.quantile(np.concatenate([xr, xg]), 0.99, axis=0)
            bins = (np.linspace(lo[i], hi[i], 25), np.linspace(lo[j], hi[j], 25))
            for x, color, label in ((xg, "tab:blue", "generator"), (xr, "k", "real")):
                h = np.histogram2d(x[:, i], x[:, j], bins=bins, density=True)[0]
                ax.contour(
                    0.5 * (bins[0][1:] + bins[0][:-1]),
                    0.5 * (bins[1][1:] + bins[1][:-1]),
                    h.T,
                    levels=np.quantile(h[h > 0], [0.5, 0.8, 0.95]),
                    colors=color,
                )
                ax.plot([], [], color=color, label=label)
            ax.set_xlabel(f1)
            ax.set_ylabel(f2)
            ax.set_title(f"{p}: chi2/ndf {chi2:.1f}", fontsize=12)
            ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "generator_joint_pairs.png", dpi=50)
    plt.close(fig)
    print(f"wrote {folder / 'generator_joint_corr.png'} and {folder / 'generator_joint_pairs.png'}")


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


def apply_settings(settings: list[str]) -> None:
    """Set constants of the generator module from ``NAME=VALUE`` strings (VALUE as JSON, else
    a string); a name the module does not have is an error."""
    from hepflows.events import generator

    for item in settings:
        name, sep, text = item.partition("=")
        if not sep or not hasattr(generator, name) or not name.isupper():
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME a generator constant")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        setattr(generator, name, tuple(value) if isinstance(value, list) else value)


def refit_scales(real: dict[str, np.ndarray], n: int) -> None:
    """Refit HIGGS_SCALE and HIGGS_SCALE_BY_LABEL in place (n events of seed 123)."""
    from hepflows.events.generator import HIGGS_SCALE, HIGGS_SCALE_BY_LABEL

    gev = generate(n, seed=123, signal_fraction=HIGGS_SIGNAL_FRACTION)
    for name, value in fit_higgs_scale(gev, real).items():
        if name in HIGGS_SCALE_BY_LABEL:
            assert isinstance(value, tuple)
            HIGGS_SCALE_BY_LABEL[name] = value
        else:
            assert isinstance(value, float)
            HIGGS_SCALE[name] = value


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
    parser.add_argument("--joint", action="store_true", help="the joint diagnosis per process")
    parser.add_argument("--joint-plot", type=Path, default=None, help="folder for its figures")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a generator constant for this run",
    )
    parser.add_argument(
        "--refit-scales", action="store_true", help="refit the HIGGS scales before comparing"
    )
    args = parser.parse_args(argv)
    apply_settings(args.set)

    if not args.real.exists():
        print(f"no real HIGGS file at {args.real}; give one with --real", file=sys.stderr)
        return 2
    real = read_real(args.real)
    if args.fit_scales:
        gev = generate(args.events, seed=args.seed, signal_fraction=HIGGS_SIGNAL_FRACTION)
        print("HIGGS_SCALE = " + json.dumps(fit_higgs_scale(gev, real), indent=4))
        return 0
    if args.refit_scales:
        refit_scales(real, args.events)
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
    if args.joint:
        print()
        result["joint"] = print_joint(gen, real, args.seed)
    if args.joint_plot:
        draw_joint(gen, real, args.joint_plot)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        draw(gen, real, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
