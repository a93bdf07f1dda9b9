#!/usr/bin/env python
"""Where the validation step spends its time, in one process and shared by a pool.

Runs :func:`hepflows.report.validate_samples` on events of the embedded generator (two
independent streams: a perfect generator) at the default config's size (20k MC, 10k
generated, the 18 continuous features: what ``hepflows validate`` reads with
``validation.max_events: 10000``) and at the tiny config's (1k and 500, 6 features), with the
classifier judges and the figures, once with ``workers=1`` (every part in this process, as
before the pool) and once with ``workers=2``, alternating, and prints each part's wall time
(``metrics.json``'s ``runtime_s``: the metrics of the value and null pairs; the verdicts and the
classifier judges; the figures) and checks that both ways wrote the same numbers.

    python benchmarks/validate_cost.py                 # both sizes, one round
    python benchmarks/validate_cost.py --sizes default --rounds 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hepflows.events.generator import generate
from hepflows.events.schema import CONTINUOUS_FEATURES
from hepflows.report.runner import validate_samples

#: name: (MC events, generated events, features)
SIZES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "default": (20_000, 10_000, CONTINUOUS_FEATURES),
    "tiny": (1_000, 500, ("lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb")),
}
PARTS = ("metrics", "classifier", "plots", "total")


def one_run(size: str, workers: int, out: Path) -> dict:
    """Validate the events of ``size`` with ``workers``; the result without its timings."""
    n_ref, n_gen, features = SIZES[size]
    result = validate_samples(
        generate(n_ref, seed=1),
        generate(n_gen, seed=2),
        features,
        out,
        n_null=20,
        seed=1,
        workers=workers,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="the pool's processes")
    args = parser.parse_args()
    print("size     workers  " + "  ".join(f"{p:>10}" for p in PARTS) + "   (seconds)")
    for size in args.sizes:
        for r in range(args.rounds):
            numbers = []
            for workers in (1, args.workers):
                with tempfile.TemporaryDirectory() as tmp:
                    result = one_run(size, workers, Path(tmp))
                    runtime = result.pop("runtime_s")
                    numbers.append(json.dumps(result, sort_keys=True))
                print(
                    f"{size:8} {workers:7}  "
                    + "  ".join(f"{runtime[p]:10.1f}" for p in PARTS)
                    + (f"   round {r + 1}" if args.rounds > 1 else "")
                )
            print(f"{'':8} same numbers: {numbers[0] == numbers[1]}")


if __name__ == "__main__":
    main()
