#!/usr/bin/env python
"""The scaling law: fidelity against the number of training events, from fidelity runs.

Reads run folders that ``benchmarks/fidelity.py --data generator`` wrote (one model family at
several ``data.events.train``) and prints one table row each: training events, epochs (best
epoch), the training's wall time (the sum of the training log's epoch seconds), the verdict's
classifier AUC with its interval and judge, the KS cells outside the MC-vs-MC band, and
n_equiv (the worst feature x slice and the worst joint slice, :mod:`hepflows.validation.
amplification`) with G = n_equiv / n_train; then draws them against the training events:

    python benchmarks/scaling.py results/scaling-30k/best-generator \\
        results/scaling-100k/best-generator results/fidelity/best-generator \\
        --figure docs/img/scaling.png
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def _n_equiv(rows: list[dict], joint: bool) -> dict:
    rows = [r for r in rows if (r["feature"] == "joint") == joint]
    return min(rows, key=lambda r: r["n_equiv"] if r["n_equiv"] is not None else float("inf"))


def _batch_size(run: Path) -> int:
    """The training batch size of a fidelity run (its merged config beside the run folder,
    validated: the schema's default where the config leaves it out)."""
    from hepflows.settings import Settings

    return Settings.load(run.with_suffix(".yaml")).training.batch_size


def _step_seconds(log: list[dict], n_train: int, batch_size: int) -> list[float]:
    """Seconds per training step of each epoch (the epoch's wall over its steps): their spread
    is what a user can expect from one machine's load to the next."""
    steps = -(-n_train // batch_size)
    return [float(r["seconds"]) / steps for r in log]


def point(run: Path) -> dict:
    """One run's row: events, epochs, training wall, verdict, KS count, n_equiv."""
    from hepflows import checkpoint
    from hepflows.events.reader import count_events

    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    verdict = {v["metric"]: v for v in metrics["verdict"]}
    clf = metrics["classifier"]
    judge = next((j["name"] for j in clf.get("judges", []) if j["verdict"]), "")
    amp = json.loads((run / "amplification" / "amplification.json").read_text())["rows"]
    with open(run / "model" / "training_log.csv") as f:
        log = list(csv.DictReader(f))
    cell, joint = _n_equiv(amp, False), _n_equiv(amp, True)
    n_train = count_events(run / "data" / "train.root")
    return {
        "n_train": n_train,
        "epochs": len(log),
        "step_s": _step_seconds(log, n_train, _batch_size(run)),
        "best_epoch": checkpoint.read(run / "model" / "model.pt").get("epoch"),
        "train_s": sum(float(r["seconds"]) for r in log),
        "auc": clf["auc"],
        "auc_lo": clf["auc_lo"],
        "auc_hi": clf["auc_hi"],
        "judge": judge,
        "auc_gbt": next((j["auc"] for j in clf.get("judges", []) if j["name"] == "gbt"), None),
        "ks_outside": verdict["ks"]["n_outside"],
        "ks_tested": verdict["ks"]["n_tested"],
        "ks_expected": verdict["ks"]["n_expected"],
        "cell": cell,
        "joint": joint,
    }


def _ev(r: dict) -> str:
    lo, hi = r.get("n_equiv_lo"), r.get("n_equiv_hi")
    bound = "≥ " if r.get("lower_bound") else ""
    interval = "" if r.get("lower_bound") or lo is None or hi is None else f" [{lo:.2g}, {hi:.2g}]"
    return f"{bound}{r['n_equiv']:.2g}{interval} ({r['feature']}, {r['slice']})"


def _auc(p: dict) -> str:
    if p.get("auc") is None:
        return "not measured"
    return f"{p['auc']:.3f} [{p['auc_lo']:.3f}, {p['auc_hi']:.3f}] ({p['judge']})"


def _steps(p: dict) -> str:
    if not p.get("step_s"):
        return "not recorded"
    s = sorted(p["step_s"])
    return f"{s[len(s) // 2]:.3f} [{s[0]:.3f}, {s[-1]:.3f}]"


def table(points: list[dict]) -> str:
    head = (
        "| training events | epochs (best) | training wall | s / step, median [range] "
        "| verdict AUC | gbt judge AUC "
        "| KS cells outside | n_equiv, worst feature × slice | n_equiv, joint (worst slice) "
        "| G (worst cell, joint) |"
    )
    lines = [head, "| ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- |"]
    for p in points:
        mark = f" ({p['source']})" if p.get("source") else ""
        lines.append(
            f"| {p['n_train']:,}{mark} | {p['epochs']} ({p['best_epoch']}) "
            f"| {p['train_s'] / 60:.0f} min | {_steps(p)} | {_auc(p)} | {p['auc_gbt']:.3f} "
            f"| {p['ks_outside']}/{p['ks_tested']} (exp {p['ks_expected']:.1f}) "
            f"| {_ev(p['cell'])} | {_ev(p['joint'])} "
            f"| {p['cell']['n_equiv'] / p['n_train']:.2g}, "
            f"{p['joint']['n_equiv'] / p['n_train']:.2g} |"
        )
    return "\n".join(lines)


def _err(points: list[dict], key: str) -> list[list[float]]:
    """Asymmetric error bars of n_equiv (zero where an end is not bounded)."""
    lo = [
        max(p[key]["n_equiv"] - (p[key].get("n_equiv_lo") or p[key]["n_equiv"]), 0) for p in points
    ]
    hi = [
        max((p[key].get("n_equiv_hi") or p[key]["n_equiv"]) - p[key]["n_equiv"], 0) for p in points
    ]
    return [lo, hi]


def figure(points: list[dict], path: Path) -> None:
    """n_equiv (worst cell, joint) with the G = 1 line, the judges' AUC and the KS count, each
    against the training events (log scale); points of an earlier measurement hollow."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["n_train"] for p in points]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax = axes[0]
    for key, label, marker in (("cell", "worst feature × slice", "o"), ("joint", "joint", "s")):
        ax.errorbar(
            n,
            [p[key]["n_equiv"] for p in points],
            yerr=_err(points, key),
            marker=marker,
            capsize=3,
            label=f"n_equiv, {label}",
        )
    lims = [min(n) / 1.5, max(n) * 1.5]
    ax.plot(lims, lims, "k--", lw=1, label="G = 1 (worth its training events)")
    ax.set(
        xscale="log", yscale="log", xlabel="training events", ylabel="MC events the model is worth"
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    new = [p for p in points if p.get("auc") is not None]
    ax.errorbar(
        [p["n_train"] for p in new],
        [p["auc"] for p in new],
        yerr=[[p["auc"] - p["auc_lo"] for p in new], [p["auc_hi"] - p["auc"] for p in new]],
        marker="o",
        capsize=3,
        label="verdict (most sensitive of 4 judges)",
    )
    ax.plot(n, [p["auc_gbt"] for p in points], marker="s", label="gbt on the features")
    ax.axhline(0.55, color="r", ls=":", label="target 0.55")
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set(xscale="log", xlabel="training events", ylabel="classifier AUC, 100k vs 100k")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(n, [p["ks_outside"] for p in points], marker="o", label="KS cells outside the band")
    ax.axhline(points[0]["ks_expected"], color="k", ls=":", label="expected by chance")
    ax.set(
        xscale="log",
        xlabel="training events",
        ylabel=f"of {points[0]['ks_tested']} cells",
        ylim=(0, points[0]["ks_tested"] + 2),
    )
    for p in points:
        ax.annotate(
            f"{p['train_s'] / 60:.0f} min",
            (p["n_train"], p["ks_outside"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.legend(fontsize=8, loc="lower left")
    for ax in axes:
        ax.set_xticks(n, [f"{v / 1000:g}k" for v in n])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for p in points:  # an earlier measurement's points drawn hollow
        if p.get("source"):
            for ax, ys in (
                (axes[0], (p["cell"]["n_equiv"], p["joint"]["n_equiv"])),
                (axes[1], (p["auc_gbt"],)),
                (axes[2], (p["ks_outside"],)),
            ):
                for y in ys:
                    ax.plot(p["n_train"], y, "o", mfc="white", mec="k", ms=9, zorder=5)
    hollow = " (hollow: earlier measurement)" if any(p.get("source") for p in points) else ""
    fig.suptitle(f"config/best.yaml against its training events{hollow}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="fidelity run folders")
    parser.add_argument("--figure", type=Path, help="the figure to write (.png)")
    parser.add_argument(
        "--earlier",
        type=Path,
        help="a JSON list of points measured before (the keys of point(), auc null where the "
        "judge panel did not exist, and 'source'), drawn hollow",
    )
    args = parser.parse_args()
    points = [point(r) for r in args.runs]
    if args.earlier:
        points += json.loads(args.earlier.read_text())
    points.sort(key=lambda p: p["n_train"])
    print(table(points))
    if args.figure:
        figure(points, args.figure)


if __name__ == "__main__":
    main()
