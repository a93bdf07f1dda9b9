#!/usr/bin/env python
"""Discrete features: dequantised (the default) against modelled as continuous.

    python benchmarks/discrete.py --out /tmp/discrete --scale 4 --epochs 15

Builds the analysis-like ntuples of ``tests/analysis_ntuples.py`` (``--scale`` times their test
size), takes the configuration of ``docs/own-ntuples.md`` as written, with a small model
(4 blocks of 64 x 64), ``--epochs`` epochs and 4,000 generated events, and runs the workflow up
to validation twice, each in its own folder with ``snakemake --cores 1``: once as it is (``n_bjets``
and ``n_jets`` found discrete) and once with ``preprocess.discrete_values: 0`` (every feature
continuous, as before discrete features existed).  Prints, for each variant and each of the two
integer features, the number of distinct generated values, each value's share in the held-out
MC and in the generated events, and the chi2/ndf of the values with its MC-vs-MC status from
``validation/metrics.csv`` (slice ``all``).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import uproot
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from analysis_ntuples import build  # noqa: E402
from conftest import copy_workflow  # noqa: E402

from hepflows import config  # noqa: E402

FEATURES = ("n_bjets", "n_jets")


def walkthrough() -> dict:
    text = (ROOT / "docs" / "own-ntuples.md").read_text()
    return yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])


def run(work: Path, cfg: dict, scale: float) -> Path:
    build(
        work / "ntuples",
        xsec={"ttbar": 0.8, "wjets": 1.2, "singletop": 0.5, "signal": 1.0},
        scale_events=scale,
    )
    copy_workflow(work, {"bench": cfg})
    target = f"results/{cfg['run']}/validation/metrics.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--configfile",
            "config/bench.yaml",
            "--cores",
            "1",
            target,
        ],
        cwd=work,
        check=True,
    )
    return work / "results" / cfg["run"]


def report(name: str, run_dir: Path) -> None:
    with uproot.open(run_dir / "samples" / "generated.root") as f:
        gen = f["events"].arrays(list(FEATURES), library="np")
    with uproot.open(run_dir / "data" / "test.root") as f:
        mc = f["events"].arrays(list(FEATURES), library="np")
    with open(run_dir / "validation" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["slice"] == "all" and r["metric"] == "chi2_ndf"]
    chi2 = {r["feature"]: r for r in rows}
    for feat in FEATURES:
        values = np.unique(mc[feat])
        shares = ", ".join(
            f"{v:g}: {np.mean(mc[feat] == v):.3f}/{np.mean(gen[feat] == v):.3f}" for v in values
        )
        r = chi2[feat]
        print(
            f"{name:12s} {feat:8s} distinct generated {len(np.unique(gen[feat])):5d}  "
            f"MC/generated share {shares}  chi2/ndf {float(r['value']):.2f} ({r['status']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    top = {
        "model": {"blocks": 4, "hidden": [64, 64]},
        "training": {"epochs": args.epochs, "batch_size": 256, "device": "cpu"},
        "sampling": {"events": 4000, "chunk_size": 2000},
        "validation": {
            "max_events": 4000,
            "n_null": 20,
            "classifier": False,
            "amplification": {"enabled": False},
        },
    }
    for name, limit in (("dequantised", 24), ("continuous", 0)):
        cfg = config.merge(walkthrough(), top | {"preprocess": {"discrete_values": limit}})
        report(name, run(args.out / name, cfg, args.scale))


if __name__ == "__main__":
    main()
