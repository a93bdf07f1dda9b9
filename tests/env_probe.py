"""Run pipeline steps in one process and say which installed packages they imported.

    python tests/env_probe.py SPEC.json

SPEC: ``{"steps": [[argv of hepflows.cli.main], ...]}``.  Run it with ``python -S`` and
``PYTHONPATH`` a folder holding only the environment's packages (tests/test_step_envs.py makes
one), or with the python of a venv made from the environment.
Prints, as the last line, the JSON list of the distributions whose modules were imported.
Used by tests/test_step_envs.py; not a test itself.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import packages_distributions
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from hepflows.cli import main as hepflows

    for argv in spec["steps"]:
        code = hepflows(argv)
        if code != 0:
            print(f"step {argv[0]} exited with {code}", file=sys.stderr)
            return code
    dists = packages_distributions()
    used = {d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])}
    print(json.dumps(sorted(used)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
