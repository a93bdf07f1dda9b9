#!/usr/bin/env python
"""Pipeline step `refine`: `python scripts/refine.py --help` lists its arguments.

The same step is `hepflows refine`; the Snakemake rule of the same name calls this script.
"""

import sys
from pathlib import Path

try:
    from hepflows.cli import main
except ImportError:  # run from a checkout whose package is not installed (e.g. a conda env)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from hepflows.cli import main

if __name__ == "__main__":
    sys.exit(main(["refine", *sys.argv[1:]]))
