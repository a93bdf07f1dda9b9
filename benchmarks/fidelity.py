#!/usr/bin/env python
"""Fidelity of trained flows: the verdict table, on generator data and on real HIGGS rows.

For each model config the real pipeline runs (``hepflows run``: data -> preprocess -> train ->
sample -> validate) on the chosen data, then this prints one table row: training events,
epochs, wall time and device, test NLL (preprocessed space and physical), how many (feature, slice) cells of the KS and chi2/ndf
fall outside the MC-vs-MC 95 % band (against the number expected by chance), the classifier
two-sample AUC with its bootstrap interval next to its MC-vs-MC null, and the signal/background
classifier closure (its AUC on generated events minus its AUC on MC), and the amplification:
how many MC events the flow is worth (``n_equiv``, the smallest over features x slices and over
the joint k-means partition, with its interval or as a lower bound; ``G = n_equiv / n_train``;
:mod:`hepflows.validation.amplification`, arXiv:2008.06545, arXiv:2509.08048).  A run with
``refine.enabled`` (classifier reweighting, :mod:`hepflows.refine`) adds the reweighted
sample's columns: its Kish effective size, KS cells outside, C2ST AUC and n_equiv (its N the
effective size); other rows show "-" there.  A run with ``sampling.ensemble`` (an ensemble of
flows, :mod:`hepflows.ensemble`) adds the members' spread per histogram bin
(:mod:`hepflows.validation.ensemble_spread`): its median relative size, its ratio to the
sampling noise and the n_equiv it gives (arXiv:2509.08048's averaging amplification).

    python benchmarks/fidelity.py config/config.yaml config/best.yaml --data generator
    python benchmarks/fidelity.py config/config.yaml config/best.yaml --data higgs

``--data generator``: the model's config with 100k held-out test events compared (the
generated sample has 100k events, the reference 200k, split in halves for the null).
``--data higgs``: the real HIGGS subset in ../shared/data/higgs/ (15,977 rows): about 10k for
training and validation, the rest split into two equal halves (MC reference and its null).

The amplification's truth: for ``--data generator`` 1M events of the model's seed from a range
of the stream far beyond every split (events 1e9 onwards), for ``--data higgs`` the test split
(then ``n_equiv`` cannot be resolved beyond a few times its size, and shows as a lower bound).
Its rows and figure are written to ``<out>/<run>/amplification/``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
HIGGS = ROOT.parent / "shared" / "data" / "higgs" / "higgs_real_subset.csv.gz"

DATA = {
    "generator": {
        "data": {"source": "generator", "events": {"test": 200_000}},
        "sampling": {"events": 100_000},
        "validation": {"max_events": 100_000},
    },
    "higgs": {
        "data": {
            "source": "higgs_csv",
            "path": str(HIGGS),
            "units": "higgs",
            "split": {"train": 0.57, "val": 0.06, "test": 0.37},
        },
        "sampling": {"events": 6_000},
        "validation": {"max_events": 6_000},
    },
}


def merge_settings(base: dict, settings: list[str]) -> dict:
    """``base`` with each ``section.key=value`` of ``settings`` (value parsed as YAML) set."""
    from hepflows.config import merge

    for item in settings:
        dotted, _, value = item.partition("=")
        *path, key = dotted.split(".")
        patch: dict = {key: yaml.safe_load(value)}
        for part in reversed(path):
            patch = {part: patch}
        base = merge(base, patch)
    return base


def merged_config(path: Path, data: str, out: Path) -> Path:
    """The model's config with the benchmark's data section, written under ``out``."""
    from hepflows.config import merge

    cfg = merge(yaml.safe_load(path.read_text()), DATA[data])
    cfg["run"] = f"{path.stem}-{data}"
    target = out / f"{cfg['run']}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return target


#: Test events the NLL of a continuous flow (``model.family: flow_matching``) is measured on, a
#: seeded subset of the test split: its exact log-density is an ODE solve with one backward pass
#: per feature at every step (about 100 events/s on one core, 30 minutes for 200k events).
CFM_NLL_EVENTS = 10_000


def test_nll(run_dir: Path) -> tuple[float, float, int | None]:
    """Mean NLL per event of the trained flow on the test split: (preprocessed space, physical,
    the size of the seeded subset it was measured on, or None for the whole split).

    The preprocessed-space NLL depends on the transform (logit or quantile); the physical one,
    -log p(x) = -log p(y) - log|dy/dx| (x in the features' units, point masses spread over
    their boxes), compares models with different preprocessing.  A flow-matching model's is
    measured on :data:`CFM_NLL_EVENTS` test events drawn with a fixed seed.
    """
    import torch

    from hepflows import checkpoint
    from hepflows.events.reader import read_events
    from hepflows.events.schema import LABEL
    from hepflows.preprocess import Preprocessor
    from hepflows.training import Dataset, mean_nll

    pre = Preprocessor.load(run_dir / "preprocess.json")
    flow, meta = checkpoint.load_model(
        run_dir / "model" / "model.pt", preprocess_hash=pre.config_hash
    )
    events = read_events(run_dir / "data" / "test.root", pre.features)
    x = np.stack([events[f] for f in pre.features], 1)
    labels = events[LABEL]
    subset = None
    if meta["model"].get("family") == "flow_matching" and len(x) > CFM_NLL_EVENTS:
        keep = np.sort(np.random.default_rng(0).choice(len(x), CFM_NLL_EVENTS, replace=False))
        x, labels, subset = x[keep], labels[keep], CFM_NLL_EVENTS
    y = torch.from_numpy(pre.forward(x, labels).astype(np.float32))
    context = (
        torch.from_numpy(labels.astype(np.float32)).unsqueeze(1)
        if meta["context_features"]
        else None
    )
    nll = mean_nll(flow, Dataset(y, context))
    return nll, nll - float(pre.log_abs_det(pre.dequantize(x), labels).mean()), subset


def closure_auc(run_dir: Path, features: list[str], seed: int) -> tuple[float, float, float]:
    """Signal/background classifier trained on MC: AUC on MC test events and on generated ones.

    Returns (AUC on MC, AUC on generated, binomial error of the difference).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from hepflows.events.reader import read_events

    def matrix(path, stop=None):
        ev = read_events(path, features, entry_stop=stop)
        return np.stack([ev[f] for f in features], 1), ev["label"]

    x_train, y_train = matrix(run_dir / "data" / "train.root")
    x_gen, y_gen = matrix(run_dir / "samples" / "generated.root")
    x_mc, y_mc = matrix(run_dir / "data" / "test.root", len(y_gen))
    clf = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(x_train, y_train)
    auc_mc = roc_auc_score(y_mc, clf.predict_proba(x_mc)[:, 1])
    auc_gen = roc_auc_score(y_gen, clf.predict_proba(x_gen)[:, 1])

    # Hanley-McNeil error of an AUC, for both (independent) samples.
    def err(auc, y):
        n1, n0 = y.sum(), len(y) - y.sum()
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        return np.sqrt(
            (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
        )

    return auc_mc, auc_gen, float(np.hypot(err(auc_mc, y_mc), err(auc_gen, y_gen)))


#: Events of the generator's truth sample for the amplification, and where in the stream they
#: start: far beyond the train/val/test splits, which start at event 0.
TRUTH_EVENTS = 1_000_000
TRUTH_START = 10**9


def amplification_rows(
    run_dir: Path,
    cfg: dict,
    data: str,
    features: list[str],
    sample: str = "generated.root",
    folder: str = "amplification",
) -> list[dict]:
    """Amplification rows of the run's generated sample ``samples/<sample>`` (weighted: its
    Kish effective size is its N), written with their figure to ``run_dir/<folder>`` (its MC
    points: an independent generator sample, or for ``--data higgs`` subsamples of the test
    split)."""
    from hepflows.events.generator import generate
    from hepflows.events.reader import count_events, read_events
    from hepflows.events.schema import LABEL
    from hepflows.report.amplification_plot import plot_amplification
    from hepflows.validation.amplification import (
        amplification,
        mc_divergence_curve,
        write_amplification,
    )

    labelled = bool(cfg["training"]["conditional"])
    path = run_dir / "samples" / sample
    generated = read_events(
        path, features, with_label=labelled, with_weight=sample != "generated.root"
    )

    def stream(n: int, start: int) -> dict:
        return generate(
            n,
            seed=cfg["seed"],
            start=start,
            signal_fraction=cfg["data"]["signal_fraction"],
            units=cfg["data"]["units"],
        )

    mc = None
    test = read_events(run_dir / "data" / "test.root", features)
    truth = test
    if data == "generator":
        # the truth must come from the generator that made the run's events: check that it
        # still reproduces the test split's first events (the code may have changed since)
        events = cfg["data"]["events"]
        again = stream(1000, events["train"] + events["val"])
        if all(np.array_equal(again[f], test[f][:1000]) for f in features):
            truth = stream(TRUTH_EVENTS, TRUTH_START)
            mc = stream(TRUTH_EVENTS // 2, TRUTH_START + TRUTH_EVENTS)
        else:
            print(
                f"{run_dir.name}: the generator no longer reproduces the run's test split: "
                "amplification against the test split",
                file=sys.stderr,
            )
    rows = amplification(
        truth,
        generated,
        features,
        n_train=count_events(run_dir / "data" / "train.root"),
        seed=cfg["seed"],
    )
    out = run_dir / folder
    write_amplification(rows, out)
    n_max = len(truth[LABEL]) // 2 if mc is None else len(mc[LABEL])
    sizes = np.unique(np.geomspace(min(1000, n_max), n_max, 8).astype(int))
    curve = mc_divergence_curve(truth, features, sizes, mc=mc, seed=cfg["seed"])
    plot_amplification(rows, curve, out / "amplification")
    return rows


def _events(n: float) -> str:
    return f"{n:.2g}" if math.isfinite(n) else "inf"


def n_equiv_cell(rows: list[dict]) -> str:
    """The smallest n_equiv of ``rows``: 'value [lo, hi] (feature, slice)', or '>= bound (...)'."""
    r = min(rows, key=lambda r: r["n_equiv"])
    where = f"{r['feature']}, {r['slice']}"
    if r["lower_bound"]:
        return f"≥ {_events(r['n_equiv'])} ({where})"
    return f"{_events(r['n_equiv'])} [{_events(r['n_equiv_lo'])}, {_events(r['n_equiv_hi'])}] ({where})"


def g_cell(rows: list[dict]) -> str:
    """G of the smallest n_equiv over every row (features and joint), '>= ' where a bound."""
    r = min(rows, key=lambda r: r["n_equiv"])
    return ("≥ " if r["lower_bound"] else "") + f"{r['G']:.2g}"


def judges_cell(clf: dict) -> str:
    """Every judge's AUC, the verdict's marked with *: 'gbt 0.568, mlp 0.577*, ...'."""
    return ", ".join(
        f"{j['name']} {j['auc']:.3f}{'*' if j['verdict'] else ''}" for j in clf.get("judges", [])
    )


def outside(verdict: dict) -> str:
    """'cells outside the band / cells tested (expected by chance)'."""
    return f"{verdict['n_outside']}/{verdict['n_tested']} (exp {verdict['n_expected']:.1f})"


def reweighted_columns(run_dir: Path, cfg: dict, data: str, features: list[str]) -> dict:
    """The refine step's columns (config ``refine.enabled``): the reweighted sample's C2ST AUC,
    KS cells outside the band, Kish effective size and n_equiv; empty without refine."""
    path = run_dir / "validation" / "reweighted" / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())
    verdict = {v["metric"]: v for v in metrics["verdict"]}
    clf = metrics.get("classifier") or {}
    weights = json.loads((run_dir / "samples" / "refine.json").read_text())["weights"]
    amp = amplification_rows(
        run_dir, cfg, data, features, "refined.root", "amplification_reweighted"
    )
    return {
        "ESS / N (reweighted)": f"{weights['ess']:.3g} / {weights['events']}",
        "KS outside (reweighted)": outside(verdict["ks"]),
        "C2ST AUC (reweighted)": (
            f"{clf['auc']:.3f} [{clf['auc_lo']:.3f}, {clf['auc_hi']:.3f}]" if clf else "n/a"
        ),
        "judges (reweighted)": judges_cell(clf),
        "n_equiv (joint, reweighted)": n_equiv_cell([r for r in amp if r["feature"] == "joint"]),
        "n_equiv (features x slices, reweighted)": n_equiv_cell(
            [r for r in amp if r["feature"] != "joint"]
        ),
    }


def ensemble_columns(run_dir: Path, features: list[str], n_train: int) -> dict:
    """An ensemble's sample (``sampling.ensemble``): the members' spread per bin of each
    feature x slice (:mod:`hepflows.validation.ensemble_spread`, arXiv:2509.08048's averaging),
    its rows written to ``run_dir/ensemble_spread.json``; empty for a single model's sample."""
    from hepflows.atomic import atomic_write_text
    from hepflows.ensemble import event_members
    from hepflows.events.reader import read_events, read_metadata
    from hepflows.validation.ensemble_spread import feature_spreads

    path = run_dir / "samples" / "generated.root"
    record = read_metadata(path).get("ensemble")
    if not record:
        return {}
    gen = read_events(path, features)
    k = len(record["members"])
    who = event_members(len(gen[features[0]]), record["chunk_size"], k)
    reference = read_events(run_dir / "data" / "test.root", features)
    rows = feature_spreads(reference, gen, who, features, n_train=n_train)
    atomic_write_text(run_dir / "ensemble_spread.json", json.dumps(rows, indent=1))
    worst = min(rows, key=lambda r: r["n_equiv_median"])
    median = float(np.median([r["n_equiv_median"] for r in rows]))
    return {
        "members": k,
        "member spread sigma/p, median bin (median cell; worst)": (
            f"{np.median([r['rel_sigma_median'] for r in rows]):.4f}; "
            f"{worst['rel_sigma_median']:.4f} ({worst['feature']}, {worst['slice']})"
        ),
        "spread / sampling noise (median)": (
            f"{np.median([r['spread_over_noise_median'] for r in rows]):.2f}"
        ),
        "spread n_equiv, median bin (median cell; worst)": (
            f"{_events(median)}; {_events(worst['n_equiv_median'])} "
            f"({worst['feature']}, {worst['slice']})"
        ),
    }


def support_cell(run_dir: Path) -> str:
    """The sample's acceptance per process inside the training support, or 'off'."""
    from hepflows.events.reader import read_metadata

    record = read_metadata(run_dir / "samples" / "generated.root").get("support_acceptance")
    if not record:
        return "off"
    return ", ".join(f"{k} {v['acceptance']:.4f}" for k, v in record.items())


def step_seconds(run_dir: Path, step: str) -> float:
    """Wall seconds of one step of the run (its ``benchmarks/<step>.tsv``): the sample step's
    include its start-up and the ROOT writing, as a user sees them."""
    rows = (run_dir / "benchmarks" / f"{step}.tsv").read_text().splitlines()
    return float(rows[1].split("\t")[0])


def row(config: Path, data: str, out: Path, quiet: bool, skip: list[str] | None = None) -> dict:
    from hepflows.config import load
    from hepflows.events.reader import count_events

    cfg_path = merged_config(config, data, out)
    cfg = load(cfg_path)
    run_dir = out / cfg["run"]
    started = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "hepflows.cli",
        "run",
        "--config",
        str(cfg_path),
        "--results",
        str(out),
    ]
    cmd += ["--skip", *skip] if skip else []
    subprocess.run(cmd + (["--quiet"] if quiet else []), check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((run_dir / "validation" / "metrics.json").read_text())
    log = (run_dir / "model" / "training_log.csv").read_text().splitlines()
    verdict = {v["metric"]: v for v in metrics["verdict"]}
    clf = metrics.get("classifier") or {}
    features = metrics["features"]
    if cfg["training"]["conditional"]:
        auc_mc, auc_gen, auc_err = closure_auc(run_dir, features, cfg["seed"])
        closure = f"{auc_gen - auc_mc:+.4f} ± {auc_err:.4f}"
    else:  # an unconditional flow's events carry no process label
        auc_mc, closure = float("nan"), "n/a"
    amp = amplification_rows(run_dir, cfg, data, features)
    nll, nll_physical, subset = test_nll(run_dir)
    if subset is not None:
        print(
            f"{run_dir.name}: test NLL of the flow-matching model on a seeded subset of "
            f"{subset} test events (its exact density is an ODE solve per event); its "
            "training log's NLL columns hold the CFM loss",
            file=sys.stderr,
        )

    def nll_cell(value: float) -> float | str:
        return round(value, 3) if subset is None else f"{round(value, 3)} ({subset:,} events)"

    import torch

    return {
        "model": config.stem,
        "data": data,
        "train events": cfg["data"]["events"]["train"] if data == "generator" else "~9.1k",
        "epochs": len(log) - 1,
        "wall s": round(wall),
        "train s": round(step_seconds(run_dir, "train")),
        "sampling ev/s": f"{cfg['sampling']['events'] / step_seconds(run_dir, 'sample'):,.0f}",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "test NLL": nll_cell(nll),
        "test NLL (physical)": nll_cell(nll_physical),
        "KS outside": outside(verdict["ks"]),
        "chi2 outside": outside(verdict["chi2_ndf"]),
        "C2ST AUC": f"{clf['auc']:.3f} [{clf['auc_lo']:.3f}, {clf['auc_hi']:.3f}]",
        "MC-vs-MC AUC": f"{clf['null']['empirical_mean']:.3f}",
        "judges": judges_cell(clf),
        "judges s": round(metrics["runtime_s"]["classifier"]),
        "judges' MC-vs-MC": ", ".join(
            f"{j['name']} {j['null_mean']:.3f}" for j in clf.get("judges", [])
        ),
        "support acceptance": support_cell(run_dir),
        "sig/bkg AUC MC": round(auc_mc, 4),
        "gen - MC": closure,
        "n_equiv (features x slices)": n_equiv_cell([r for r in amp if r["feature"] != "joint"]),
        "n_equiv (joint)": n_equiv_cell([r for r in amp if r["feature"] == "joint"]),
        "G": g_cell(amp),
        **reweighted_columns(run_dir, cfg, data, features),
        **ensemble_columns(run_dir, features, count_events(run_dir / "data" / "train.root")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="model configs (config/*.yaml)")
    parser.add_argument("--data", choices=sorted(DATA), default="generator")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fidelity")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="STEP",
        help="steps of `hepflows run` to skip, their outputs reused (generate train: judge the "
        "trained model of an earlier run again; its 'train s' is the earlier run's)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=YAML",
        help="a config value over the model's config, e.g. sampling.support=false",
    )
    args = parser.parse_args()
    if args.data == "higgs" and not HIGGS.exists():
        sys.exit(f"real HIGGS subset not found at {HIGGS}")
    DATA[args.data] = merge_settings(DATA[args.data], args.set)
    rows = [row(c, args.data, args.out, args.quiet, args.skip) for c in args.configs]
    columns = list(dict.fromkeys(c for r in rows for c in r))  # runs without refine: "-"
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "-")) for c in columns) + " |")


if __name__ == "__main__":
    main()
