#!/usr/bin/env python
"""Ingest benchmark: HIGGS CSV -> train/val/test ROOT files, against pandas.read_csv.

    python benchmarks/ingest.py --rows 2000000

Makes a HIGGS-format CSV (29 numbers a row, no header) from the project's generator in HIGGS
units, written once into a temporary folder, then measures, each in a fresh process:

* ``convert_higgs_csv``: the streaming conversion into three ROOT files (zlib-compressed
  unless ``--compression`` says otherwise);
* ``pandas.read_csv`` (C engine, the usual way to load HIGGS) and, for reference, pandas with
  its pyarrow engine: both load the whole table into memory and write nothing;
* the same processes doing nothing but their imports, so the memory of the work can be told
  from that of the libraries.

Speed is rows per second of the work alone (imports excluded); peak memory is the peak resident
set size of the process, from ``resource.getrusage(RUSAGE_CHILDREN)`` read by a probe process
whose only child is the measured one.  Ratios are ours / pandas: above 1 means faster, below 1
less memory.  The conversion's memory stays flat with the file size; pandas' grows with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"
SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


# -- the CSV ---------------------------------------------------------------------------------------
def make_csv(path: Path, rows: int, *, seed: int = 2014, chunk: int = 200_000) -> float:
    """Write ``rows`` generated events as a HIGGS CSV; returns the seconds it took.

    Values are written as float64 renderings of the float32 features (~18 characters each,
    like the ~25 of the original HIGGS.csv), the label as 0/1.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from hepflows.events.generator import generate
    from hepflows.events.schema import HIGGS_FEATURES, LABEL

    start = time.perf_counter()
    schema = pa.schema([(LABEL, pa.int8()), *((f, pa.float64()) for f in HIGGS_FEATURES)])
    options = pacsv.WriteOptions(include_header=False)
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for first in range(0, rows, chunk):
            ev = generate(min(chunk, rows - first), seed=seed, start=first, units="higgs")
            cols = [ev[LABEL], *(ev[f].astype(np.float64) for f in HIGGS_FEATURES)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    return time.perf_counter() - start


# -- the measured work, run in a child process -----------------------------------------------------
def work(task: str, csv: Path, out: Path, chunk_rows: int, compression: str | None) -> dict:
    """Do one task and return {"rows", "seconds"}; imports happen before the clock starts."""
    if task == "convert":
        from hepflows.events.io import convert_higgs_csv

        start = time.perf_counter()
        outputs = {k: out / f"{k}.root" for k in SPLIT}
        counts = convert_higgs_csv(
            csv, outputs, split=SPLIT, chunk_rows=chunk_rows, compression=compression
        )
        rows = sum(counts.values())
    elif task in ("pandas", "pandas-pyarrow"):
        import pandas as pd

        start = time.perf_counter()
        engine = "pyarrow" if task == "pandas-pyarrow" else "c"
        rows = len(pd.read_csv(csv, header=None, engine=engine))
    elif task == "import-convert":
        import hepflows.events.io  # noqa: F401

        start, rows = time.perf_counter(), 0
    elif task == "import-pandas":
        import pandas  # noqa: F401

        start, rows = time.perf_counter(), 0
    else:
        raise SystemExit(f"unknown task {task!r}")
    return {"rows": rows, "seconds": time.perf_counter() - start}


def _args(csv: Path, out: Path, chunk_rows: int, compression: str | None) -> list[str]:
    return [
        "--csv",
        str(csv),
        "--out",
        str(out),
        "--chunk-rows",
        str(chunk_rows),
        "--compression",
        str(compression),
    ]


def probe(task: str, csv: Path, out: Path, chunk_rows: int, compression: str | None) -> dict:
    """Run ``task`` in a child and add its peak RSS (MB): this process has no other child, so
    getrusage(RUSAGE_CHILDREN) is that child's alone."""
    cmd = [sys.executable, str(HERE), "--worker", task, *_args(csv, out, chunk_rows, compression)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if done.returncode:
        raise SystemExit(f"{task} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss is in kilobytes on Linux.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def measure(task: str, csv: Path, out: Path, chunk_rows: int, compression: str | None) -> dict:
    """Start a fresh probe process for ``task`` and return what it found."""
    cmd = [sys.executable, str(HERE), "--probe", task, *_args(csv, out, chunk_rows, compression)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if done.returncode:
        raise SystemExit(f"probe of {task} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=2e6, help="rows of the CSV (default 2e6)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows per conversion chunk")
    parser.add_argument(
        "--compression",
        default="zlib",
        help="compression of the ROOT outputs: zlib (default), lz4, zstd, lzma, None",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the CSV and outputs here (default: a temp dir)"
    )
    parser.add_argument(
        "--no-pyarrow-engine", action="store_true", help="skip pandas' pyarrow engine"
    )
    # Internal: the probe and worker processes.
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    compression = None if args.compression == "None" else args.compression
    common = (args.csv, args.out, args.chunk_rows, compression)

    if args.worker:
        print(json.dumps(work(args.worker, *common)))
        return 0
    if args.probe:
        print(json.dumps(probe(args.probe, *common)))
        return 0

    sys.path.insert(0, str(SRC))
    rows = int(args.rows)
    with tempfile.TemporaryDirectory(prefix="hepflows-ingest-") as tmp:
        work_dir = args.workdir or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        csv, out = work_dir / "higgs_like.csv", work_dir / "out"
        seconds = make_csv(csv, rows)
        size = csv.stat().st_size
        print(
            f"CSV: {rows:,} rows, {size / 1e6:.1f} MB ({size / rows:.0f} bytes/row), "
            f"generated and written in {seconds:.1f} s"
        )
        tasks = [
            "convert",
            "pandas",
            *([] if args.no_pyarrow_engine else ["pandas-pyarrow"]),
            "import-convert",
            "import-pandas",
        ]
        res = {t: measure(t, csv, out, args.chunk_rows, compression) for t in tasks}

    def rate(t: str) -> float:
        return res[t]["rows"] / res[t]["seconds"]

    names = {
        "convert": f"convert_higgs_csv -> 3 ROOT ({compression})",
        "pandas": "pandas.read_csv (C engine)",
        "pandas-pyarrow": "pandas.read_csv (pyarrow engine)",
    }
    print(f"\n{'':36s} {'rows/s':>10s} {'seconds':>8s} {'peak RSS':>10s}")
    for t, name in names.items():
        if t in res:
            print(
                f"{name:36s} {rate(t):10.3g} {res[t]['seconds']:8.2f} {res[t]['peak_rss_mb']:7.0f} MB"
            )
    for t in ("import-convert", "import-pandas"):
        print(
            f"{'  (imports only: ' + t[7:] + ')':36s} {'':10s} {'':8s} {res[t]['peak_rss_mb']:7.0f} MB"
        )
    print("\nratios, ours / pandas:")
    for t in ("pandas", "pandas-pyarrow"):
        if t in res:
            print(
                f"  vs {names[t]:32s} speed x{rate('convert') / rate(t):.2f}, "
                f"peak memory x{res['convert']['peak_rss_mb'] / res[t]['peak_rss_mb']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
