#!/usr/bin/env python
"""Checkpoint selection by fidelity: which epoch of a training do the judges find best?

Training keeps the epoch of the lowest validation NLL.  This judges the flow of every saved
epoch instead: ``--events`` generated events against as many events of the run's validation
split (never the test split, which gives the final verdict) by the validation's judges of
both families on the features, the label and the derived observables
(:mod:`hepflows.validation.derived`), one held-out AUC each; an epoch's score is its largest
AUC.  The epoch with the lowest score is written as the model of a copy of the run
(``OUT/<run's name>``), to be judged as any run:

    python benchmarks/checkpoint_selection.py results/fidelity/best-generator \\
        --epochs results/epochs --out results/selected
    python benchmarks/fidelity.py config/best.yaml --data generator \\
        --out results/selected --skip generate train

``--epochs`` holds one file per epoch, ``epoch<N>.pt``: the training's resumable checkpoint
(``model.resume.pt``, rewritten after every epoch) copied as the epochs end, or a model file.  With 30k
events against 30k the AUC's noise is about 0.003, and taking the lowest of many noisy scores
favours luck: the selected epoch's verdict must come from the test split.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
from run_copy import copy_run

from hepflows import checkpoint
from hepflows.events.reader import read_events
from hepflows.events.schema import LABEL
from hepflows.validation.classifier import FAMILIES, classifier_two_sample
from hepflows.validation.derived import derived_columns, derived_expressions

#: Seed of the epochs' draws: not the run's sample (seed 1 and its chunks).
DRAW_SEED = 2**41


def design(events: dict, features: list[str], derived: dict) -> np.ndarray:
    """Features, label and derived observables (n, d + 1 + k), as the validation's judges."""
    x = np.column_stack([np.asarray(events[f], np.float64) for f in features])
    return np.column_stack(
        [x, events[LABEL].astype(np.float64), derived_columns(x, features, derived)]
    )


def epoch_files(folder: Path) -> dict[int, Path]:
    """``epoch<N>.pt`` files of ``folder`` by N."""
    found = {}
    for path in folder.glob("epoch*.pt"):
        match = re.fullmatch(r"epoch(\d+)\.pt", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def state(path: Path) -> dict:
    """The flow's weights in ``path``: a resumable checkpoint's or a model file's."""
    data = checkpoint.read(path)
    return data["model_state"] if "model_state" in data else data["state_dict"]


def judge(model, ref: np.ndarray, features: list[str], derived: dict, n: int) -> dict:
    """The judges' AUCs of ``n`` events of ``model`` against ``ref`` (n, k)."""
    events = model.sample(n, seed=DRAW_SEED)
    gen = design(events, features, derived)
    aucs = {
        family: classifier_two_sample(ref, gen, seed=7, n_bootstrap=0, family=family)["auc"]
        for family in FAMILIES
    }
    return {**aucs, "score": max(aucs.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with data/, preprocess.json, model/")
    parser.add_argument("--epochs", type=Path, required=True, help="folder of epoch<N>.pt files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args()

    import hepflows

    model = hepflows.load(args.run)
    features = list(model.features)
    derived = derived_expressions(None, features)
    val = read_events(args.run / "data" / "val.root", features, with_label=True)
    n = min(args.events, len(val[LABEL]))
    ref = design({k: v[:n] for k, v in val.items()}, features, derived)
    nll = {}
    with open(args.run / "model" / "training_log.csv") as f:
        for row in csv.DictReader(f):
            nll[int(row["epoch"])] = float(row["val_nll"])
    rows = []
    for epoch, path in epoch_files(args.epochs).items():
        model.flow.load_state_dict(state(path))
        row = {"epoch": epoch, "val_nll": nll.get(epoch), **judge(model, ref, features, derived, n)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    chosen = min(rows, key=lambda r: r["score"])
    by_nll = min(rows, key=lambda r: r["val_nll"] if r["val_nll"] is not None else np.inf)
    model.flow.load_state_dict(state(epoch_files(args.epochs)[chosen["epoch"]]))
    dest = copy_run(args.run, args.out)
    checkpoint.save_with_weights(
        dest / "model" / "model.pt",
        dest / "model" / "model.pt",
        model.flow,
        epoch=chosen["epoch"],
        selected_by="largest judge AUC against the validation split (lowest)",
    )
    summary = {"epochs": rows, "chosen": chosen, "by_val_nll": by_nll, "copy": str(dest)}
    (dest / "checkpoint_selection.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"chosen epoch {chosen['epoch']} (score {chosen['score']:.4f}); by validation NLL "
        f"epoch {by_nll['epoch']} (score {by_nll['score']:.4f}) -> {dest}"
    )


if __name__ == "__main__":
    main()
