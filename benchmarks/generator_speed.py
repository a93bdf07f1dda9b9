#!/usr/bin/env python
"""Events per second of the embedded generator, side by side with another version of it.

    taskset -c 0 python benchmarks/generator_speed.py [--other OLD_SRC] [--rounds 3]

Times ``generate(10 * BLOCK_SIZE, seed=k)`` (in GeV) three times per round and keeps the best,
for this source tree's generator and, with ``--other``, for the ``src`` folder of another
hepflows (for example hepflows 0.3.0, the last with version 2 events:
``mkdir /tmp/old && git archive b6218a4 src | tar -x -C /tmp/old`` and ``--other /tmp/old/src``);
the two take turns in every round, so that a load that drifts reaches both alike.  Prints each
round's rates and the ratio of this version to the other one.
Run it on one core (``taskset -c 0``, ``OMP_NUM_THREADS=1``): the generator is single-threaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve()


def load_generator(src: Path) -> ModuleType:
    """The ``hepflows.events.generator`` module of the hepflows source folder ``src``."""
    for name in [m for m in sys.modules if m == "hepflows" or m.startswith("hepflows.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        import hepflows.events.generator as generator
    finally:
        sys.path.pop(0)
    return generator


def best_rate(generator: ModuleType, repeats: int = 3) -> float:
    """Best events/s of ``repeats`` runs of 10 blocks."""
    n = 10 * generator.BLOCK_SIZE
    best = 0.0
    for seed in range(repeats):
        start = time.perf_counter()
        generator.generate(n, seed=seed)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, default=None, help="src folder of another hepflows")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    versions = [load_generator(HERE.parents[1] / "src")]
    if args.other is not None:
        versions.append(load_generator(args.other))
    for round_ in range(args.rounds):
        rates = [best_rate(g) for g in (versions if round_ % 2 == 0 else versions[::-1])]
        if round_ % 2:
            rates = rates[::-1]
        cells = ", ".join(f"version {g.VERSION}: {r:.3g} events/s" for g, r in zip(versions, rates))
        ratio = f"; ratio {rates[0] / rates[1]:.2f}" if len(rates) == 2 else ""
        print(f"round {round_ + 1}: {cells}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
