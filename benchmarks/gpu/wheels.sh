#!/usr/bin/env bash
# Fetch, on this machine, the wheels that the GPU machine lacks for benchmarks/gpu/check.sh.
#
# The GPU machine (Python 3.12, x86_64 Linux, its own torch 2.11 CUDA 13 with numpy, scipy,
# scikit-learn, pandas, pyarrow, matplotlib, pyyaml, tqdm, ...) cannot reach a package index.
# This script lists what hepflows and the throughput peers need there (uproot, awkward, hist,
# mplhep, jsonschema, pyhf, iminuit, vector, zuko, nflows and their own requirements, walked
# from this venv's installed metadata), drops what that machine already has (DEVICE_HAS), and
# downloads each at the version installed here (for hepflows' own dependencies: the pins of
# pyproject.toml) as a cp312 manylinux wheel, --no-deps, into $WHEELS (default .whl, git-ignored).
# A package published only as a source archive (nflows) is built into a pure-Python wheel.
# snakemake is not fetched: the check calls the steps' Python code, not the workflow.
#
#   bash benchmarks/gpu/wheels.sh          # then carry .whl to the device (README "GPU")
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
WHEELS=${WHEELS:-.whl}
LIMIT_MB=${LIMIT_MB:-48}   # the device call carries at most 64 MiB, the repository included

# What the device image already holds (its package list, names normalised): never fetched.
DEVICE_HAS="absl-py accelerate attrs certifi charset-normalizer click cloudpickle colorama
contourpy cycler filelock fonttools fsspec grpcio h5py idna jinja2 joblib kiwisolver markdown
markupsafe matplotlib mpmath networkx numpy packaging pandas pillow pip pluggy protobuf psutil
pyarrow pygments pyparsing pytest python-dateutil pyyaml requests rich scikit-learn scipy
setuptools six sympy tensorboard tensorboard-data-server threadpoolctl torch tqdm
typing-extensions urllib3 werkzeug wheel xxhash zipp"
TOP="uproot awkward hist mplhep jsonschema pyhf iminuit vector zuko nflows"

mkdir -p "$WHEELS"
"$PY" - "$TOP" "$DEVICE_HAS" > "$WHEELS/requirements.txt" <<'PYEOF'
import re, sys
from importlib import metadata
from packaging.markers import default_environment
from packaging.requirements import Requirement

top, has = sys.argv[1].split(), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
env = dict(default_environment(), python_version="3.12", python_full_version="3.12.3",
           sys_platform="linux", platform_machine="x86_64", extra="")
seen, order, todo = set(), [], [norm(n) for n in top]
while todo:
    name = todo.pop(0)
    if name in seen or name in has:
        continue
    seen.add(name)
    dist = metadata.distribution(name)  # installed here: `pip install -e .[bench]` first
    order.append(f"{dist.metadata['Name']}=={dist.version}")
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate(env):
            todo.append(norm(req.name))
print("\n".join(order))
PYEOF
echo "wheels for the device ($WHEELS/requirements.txt):" $(cat "$WHEELS/requirements.txt")

PLATFORMS=()
for p in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do PLATFORMS+=(--platform "$p"); done
while read -r req; do
  [ -n "$req" ] || continue
  name=${req%%==*}
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d "$WHEELS" "$req" 2>/dev/null; then
    echo "  $req: no binary wheel for cp312; building a wheel from its source archive"
    "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$req"
    case "$(ls "$WHEELS" | grep -i "^${name//-/_}-" | tail -1)" in
      *-none-any.whl) ;;
      *) echo "wheels.sh: $req built a platform wheel here; it would not run there" >&2; exit 1 ;;
    esac
  fi
done < "$WHEELS/requirements.txt"

# one version of each: two stop the whole install there
dups=$(ls "$WHEELS"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dups" ] || { echo "wheels.sh: several versions of: $dups" >&2; exit 1; }
size=$(du -sm "$WHEELS" | cut -f1)
echo "$(ls "$WHEELS"/*.whl | wc -l) wheels, ${size} MB in $WHEELS"
[ "$size" -le "$LIMIT_MB" ] || { echo "wheels.sh: ${size} MB is over ${LIMIT_MB} MB" >&2; exit 1; }
