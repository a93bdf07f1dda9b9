#!/usr/bin/env python
"""DiscFlow fine-tuning of a trained run's model (:mod:`hepflows.discflow`), and its control.

Copies the run folder ``RUN`` (its data, preprocessing and model; the data hard-linked) to
``OUT/<RUN's name>``, fine-tunes the copy's model on the classifier-weighted NLL and writes it
there as ``model/model.pt``; ``--control`` instead continues the training for the same epochs
at the same learning rate with every weight 1, so that what the weights add is seen apart from
what more training does.  Then judge the copy as any run, without training again:

    python benchmarks/discflow.py results/fidelity/best-generator \\
        --config results/fidelity/best-generator.yaml --out results/discflow
    python benchmarks/fidelity.py config/best.yaml --data generator \\
        --out results/discflow --skip generate train

(``--out`` of the second command is this one's ``--out``, so that it finds the copy.)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from run_copy import copy_run

from hepflows import config as hconfig
from hepflows.discflow import DiscFlowSettings, finetune, save, weighted_fit
from hepflows.events.reader import read_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with data/, preprocess.json, model/")
    parser.add_argument("--config", type=Path, required=True, help="the run's config (YAML)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--draw", type=int, default=200_000)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=["gbt"])
    parser.add_argument("--control", action="store_true", help="the same epochs, weights 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import hepflows

    cfg = hconfig.load(args.config)
    settings = DiscFlowSettings(
        rounds=args.rounds,
        epochs=args.epochs,
        draw_events=args.draw,
        alpha=args.alpha,
        lr=args.lr,
        folds=args.folds,
        families=tuple(args.families),
    )
    dest = copy_run(args.run, args.out)
    model = hepflows.load(dest)
    with_label = model.conditional
    train = read_events(dest / "data" / "train.root", model.features, with_label=with_label)
    val = read_events(dest / "data" / "val.root", model.features, with_label=with_label)
    started = time.perf_counter()
    if args.control:
        ones = np.ones(len(train[model.features[0]])), np.ones(len(val[model.features[0]]))
        records = []
        for r in range(settings.rounds):
            state = weighted_fit(model, train, val, *ones, cfg["training"], settings, seed=r)
            records.append({"round": r + 1, "control": True, "best_epoch": state.best_epoch})
    else:
        records = finetune(model, train, val, cfg["training"], settings, seed=cfg["seed"])
    seconds = time.perf_counter() - started
    save(model, str(dest / "model" / "model.pt"), records, settings)
    summary = {
        "run": str(args.run),
        "copy": str(dest),
        "control": args.control,
        "seconds": round(seconds, 1),
        "rounds": [{k: v for k, v in r.items() if k != "history"} for r in records],
    }
    (dest / "discflow.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
