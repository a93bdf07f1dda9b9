#!/usr/bin/env python
"""How often the verdict flags a perfect generator when the MC carries NLO-like weights.

The MC is drawn from a wider Gaussian and given importance weights back to the unit Gaussian,
with 5 % of them negated at random (so the signed measure is still the unit Gaussian, times
0.9), a class shift of 1 in the first feature; the "generated" events are drawn from the true
distribution, unweighted.  Each seed runs :func:`hepflows.report.validate_samples` (no
classifier, no plots) and counts the verdict colours of every metric; ``unweighted`` does the
same with unweighted MC, the baseline chance rate.

    python benchmarks/weighted_null.py --seeds 15 weighted
    python benchmarks/weighted_null.py --seeds 15 unweighted
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter

import numpy as np
from scipy import stats

from hepflows.report.runner import validate_samples

FEATURES = ["a", "b", "c"]


def sample(n: int, seed: int, weighted: bool) -> dict:
    """``n`` events of 3 features and a 0/1 label, with signed importance weights if asked."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.5).astype(np.int8)
    if weighted:
        x = rng.normal(0.0, 1.3, (n, 3))
        w = np.prod(stats.norm.pdf(x) / stats.norm.pdf(x, scale=1.3), axis=1)
        w[rng.random(n) < 0.05] *= -1.0
    else:
        x = rng.normal(0.0, 1.0, (n, 3))
    x[:, 0] += label
    events = {"label": label, **{f: x[:, j] for j, f in enumerate(FEATURES)}}
    if weighted:
        events["weight"] = w
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mc", choices=["weighted", "unweighted"])
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--mc-events", type=int, default=4000)
    parser.add_argument("--generated-events", type=int, default=2000)
    args = parser.parse_args()
    colours: Counter[str] = Counter()
    red = 0
    for s in range(args.seeds):
        ref = sample(args.mc_events, 100 + s, args.mc == "weighted")
        gen = sample(args.generated_events, 900 + s, False)
        with tempfile.TemporaryDirectory() as d:
            result = validate_samples(
                ref, gen, FEATURES, d, n_null=20, seed=s, classifier=False, plots=False
            )
        colours.update(v["status"] for v in result["verdict"])
        red += result["overall_status"] == "red"
    total = sum(colours.values())
    print(
        f"{args.mc} MC: {total} metric verdicts over {args.seeds} seeds: "
        + ", ".join(f"{k} {v}" for k, v in sorted(colours.items()))
        + f"; overall red {red} of {args.seeds}"
    )


if __name__ == "__main__":
    main()
