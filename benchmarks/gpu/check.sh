#!/usr/bin/env bash
# The prepared GPU check (README "GPU"): one command on the device machine, about 8 minutes,
# everything written to $OUT/gpu.json (rewritten after each part) and $OUT/gpu.log.
#
#   bash benchmarks/gpu/check.sh [--device cuda|cpu] [--tiny] [--parts ...] [--budget S]
#
# With --device cuda (the default) the wheels of benchmarks/gpu/wheels.sh (folder $WHEELS,
# default .whl, carried to the device) are installed with --no-deps into a temporary folder put
# on PYTHONPATH, beside src/. On the CPU (`--device cpu --tiny`, tests/test_gpu_check.py) the
# wheels are not needed: the interpreter's own packages serve ($PYTHON, default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
export OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
device=cuda
prev=
for a in "$@"; do [ "$prev" = --device ] && device=$a; prev=$a; done

if [ "$device" != cpu ] && [ -d "$WHEELS" ]; then
  site=$(mktemp -d /tmp/hepflows-site.XXXXXX)
  echo "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $site" | tee -a "$OUT/gpu.log"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$WHEELS"/*.whl >>"$OUT/gpu.log" 2>&1 \
    || { echo "check.sh: installing the wheels failed (see $OUT/gpu.log)" >&2; exit 3; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/gpu.log" 2>&1
exec "$PY" benchmarks/gpu/check.py --out "$OUT" "$@"
