#!/usr/bin/env python
"""Pipeline step `toys`: the seed study's Figure 7 (three 2-D toys, an affine and a spline flow).

`python scripts/toys.py --help` lists its arguments; the Snakemake rule of the same name calls
this script.  Code: hepflows.toys.make_toy_figure.
"""

import argparse
import sys
from pathlib import Path

try:
    from hepflows.toys import make_toy_figure
except ImportError:  # run from a checkout whose package is not installed (e.g. a conda env)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from hepflows.toys import make_toy_figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output base: writes <out>.png and .pdf")
    parser.add_argument("--events", type=int, default=4000, help="events per toy")
    parser.add_argument("--steps", type=int, default=300, help="training steps per flow")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in make_toy_figure(args.out, events=args.events, steps=args.steps, seed=args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
