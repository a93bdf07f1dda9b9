#!/usr/bin/env python
"""Several models of one run side by side before the same quick judges.

Each model (a run folder or a model file with the run's ``preprocess.json``) draws ``--events``
events with one seed; the validation's two judge families, on the features, the label and the
derived observables, each compare them with the same ``--events`` events of ``--reference``
(the run's test split: events no model saw) and give their held-out AUC with its bootstrap
interval.  Cheaper than a whole validation, on the same footing for every model:

    python benchmarks/judge_models.py results/a results/b --reference results/a/data/test.root
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from checkpoint_selection import design

from hepflows.events.reader import read_events
from hepflows.events.schema import LABEL
from hepflows.validation.classifier import FAMILIES, classifier_two_sample
from hepflows.validation.derived import derived_expressions

#: Seed of every model's draw: not the run's own sample (seed 1).
DRAW_SEED = 2**42


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--preprocess", type=Path, help="the models' preprocess.json")
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()

    import hepflows

    for path in args.models:
        model = hepflows.load(path, preprocess=args.preprocess)
        features = list(model.features)
        derived = derived_expressions(None, features)
        ref = read_events(args.reference, features, with_label=True, entry_stop=args.events)
        n = len(ref[LABEL])
        gen = design(model.sample(n, seed=DRAW_SEED), features, derived)
        row: dict = {"model": str(path), "events": n}
        for family in FAMILIES:
            result = classifier_two_sample(
                design(ref, features, derived), gen, seed=3, n_bootstrap=200, family=family
            )
            row[f"{family}+derived"] = [round(result[k], 4) for k in ("auc", "auc_lo", "auc_hi")]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
