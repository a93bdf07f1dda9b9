#!/usr/bin/env python
"""Ingest benchmark: HIGGS CSV, TTree and RNTuple -> train/val/test ROOT files, against pandas.

    python benchmarks/ingest.py --rows 2e6 --repeat 3

Makes a HIGGS-format CSV (29 numbers a row, no header) from the project's generator in HIGGS
units, written once into a temporary folder, and the same rows as a ROOT TTree and a ROOT
RNTuple (``events``: 28 float32 features and an int8 ``label``, LZ4), then measures, each in a
fresh process:

* ``convert_higgs_csv``: the streaming conversion of the CSV into three ROOT files
  (LZ4-compressed unless ``--compression`` says otherwise);
* ``convert_inputs``: the same for the TTree and for the RNTuple (``data.inputs``, one file);
* ``pandas.read_csv`` of the CSV (C engine, the usual way to load HIGGS) and, for reference,
  pandas with its pyarrow engine: both load the whole table into memory and write nothing;
* the same processes doing nothing but their imports, so the memory of the work can be told
  from that of the libraries.

Speed is rows per second of the work alone (imports excluded), the median of ``--repeat``
rounds with the slowest and fastest round beside it (the tasks interleaved in each round, so
that a shared machine's load falls on all of them alike); CPU is the process time, every
thread together, also the median.  A ratio against pandas is taken round by round (each
round's two runs ran one after the other) and given as the median and range of the rounds.
Peak memory is the peak resident set size of the process (the largest over the rounds), from
``resource.getrusage(RUSAGE_CHILDREN)`` read by a probe process whose only child is the
measured one.  Ratios are ours / pandas: above 1 means faster, below 1 less memory.  The
conversions' memory stays flat with the file size; pandas' grows with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"
SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}
CSV_NAME = "higgs_like.csv"
NTUPLE_NAMES = {
    "convert-ttree": "higgs_like_ttree.root",
    "convert-rntuple": "higgs_like_rntuple.root",
}


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


def make_ntuples(csv: Path, ttree: Path, rntuple: Path) -> float:
    """Write the CSV's rows as a TTree and as an RNTuple, both ``events``; returns the seconds."""
    import uproot

    from hepflows.events.higgs_csv import iter_higgs_csv

    start = time.perf_counter()
    with uproot.recreate(ttree, compression=uproot.LZ4(4)) as ft:
        with uproot.recreate(rntuple, compression=uproot.LZ4(4)) as fr:
            tree = ntuple = None
            for chunk in iter_higgs_csv(csv, chunk_rows=200_000):
                if tree is None:
                    types = {k: v.dtype for k, v in chunk.items()}
                    tree, ntuple = ft.mktree("events", types), fr.mkrntuple("events", types)
                tree.extend(chunk)
                ntuple.extend(chunk)
    return time.perf_counter() - start


# -- the measured work, run in a child process -----------------------------------------------------
def work(task: str, work_dir: Path, chunk_rows: int, compression: str | None) -> dict:
    """Do one task and return {"rows", "seconds", "cpu_seconds"}; imports happen before the
    clock starts."""
    csv, out = work_dir / CSV_NAME, work_dir / "out"
    outputs = {k: out / f"{k}.root" for k in SPLIT}
    if task == "convert":
        from hepflows.events.convert import convert_higgs_csv

        start, cpu = time.perf_counter(), time.process_time()
        counts = convert_higgs_csv(
            csv, outputs, split=SPLIT, chunk_rows=chunk_rows, compression=compression
        )
        rows = sum(counts.values())
    elif task in ("convert-ttree", "convert-rntuple"):
        from hepflows.events.inputs import InputFile, convert_inputs
        from hepflows.events.schema import HIGGS_FEATURES, LABEL

        path = work_dir / NTUPLE_NAMES[task]
        start, cpu = time.perf_counter(), time.process_time()
        source = InputFile(str(path), 0, "events", None, LABEL, None)
        counts = convert_inputs(
            [source],
            outputs,
            features=HIGGS_FEATURES,
            seed=2014,
            split=SPLIT,
            step_size=chunk_rows,
            compression=compression,
        )
        rows = sum(counts.values())
    elif task in ("pandas", "pandas-pyarrow"):
        import pandas as pd

        start, cpu = time.perf_counter(), time.process_time()
        engine = "pyarrow" if task == "pandas-pyarrow" else "c"
        rows = len(pd.read_csv(csv, header=None, engine=engine))
    elif task == "import-convert":
        import hepflows.events.convert  # noqa: F401
        import hepflows.events.inputs  # noqa: F401

        start, cpu, rows = time.perf_counter(), time.process_time(), 0
    elif task == "import-pandas":
        import pandas  # noqa: F401

        start, cpu, rows = time.perf_counter(), time.process_time(), 0
    else:
        raise SystemExit(f"unknown task {task!r}")
    return {
        "rows": rows,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


def _args(work_dir: Path, chunk_rows: int, compression: str | None) -> list[str]:
    return [
        "--dir",
        str(work_dir),
        "--chunk-rows",
        str(chunk_rows),
        "--compression",
        str(compression),
    ]


def probe(task: str, work_dir: Path, chunk_rows: int, compression: str | None) -> dict:
    """Run ``task`` in a child and add its peak RSS (MB): this process has no other child, so
    getrusage(RUSAGE_CHILDREN) is that child's alone."""
    cmd = [sys.executable, str(HERE), "--worker", task, *_args(work_dir, chunk_rows, compression)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if done.returncode:
        raise SystemExit(f"{task} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss is in kilobytes on Linux.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def measure(task: str, work_dir: Path, chunk_rows: int, compression: str | None) -> dict:
    """Start a fresh probe process for ``task`` and return what it found."""
    cmd = [sys.executable, str(HERE), "--probe", task, *_args(work_dir, chunk_rows, compression)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if done.returncode:
        raise SystemExit(f"probe of {task} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    """A task's median run (seconds and CPU seconds, each the median), the range of its
    seconds, and the largest peak memory of all its runs."""
    seconds = [r["seconds"] for r in runs]
    return {
        "rows": runs[0]["rows"],
        "seconds": statistics.median(seconds),
        "seconds_range": (min(seconds), max(seconds)),
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def paired_speed(ours: list[dict], theirs: list[dict]) -> tuple[float, float, float]:
    """Median, lowest and highest of the rounds' speed ratios ours / theirs."""
    ratios = [t["seconds"] / o["seconds"] for o, t in zip(ours, theirs, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e6, help="rows of the CSV (default 1e6)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows per conversion chunk")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every task (default 3)")
    parser.add_argument(
        "--compression",
        default="lz4",
        help="compression of the ROOT outputs: lz4 (default, that of ingest), zlib, zstd, lzma, "
        "None",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the inputs and outputs here (default: a temp dir)"
    )
    parser.add_argument(
        "--no-pyarrow-engine", action="store_true", help="skip pandas' pyarrow engine"
    )
    # Internal: the probe and worker processes.
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    compression = None if args.compression == "None" else args.compression
    common = (args.dir, args.chunk_rows, compression)

    if args.worker:
        print(json.dumps(work(args.worker, *common)))
        return 0
    if args.probe:
        print(json.dumps(probe(args.probe, *common)))
        return 0

    sys.path.insert(0, str(SRC))
    rows = int(args.rows)
    tasks = [
        "convert",
        "convert-ttree",
        "convert-rntuple",
        "pandas",
        *([] if args.no_pyarrow_engine else ["pandas-pyarrow"]),
        "import-convert",
        "import-pandas",
    ]
    runs: dict[str, list[dict]] = {t: [] for t in tasks}
    with tempfile.TemporaryDirectory(prefix="hepflows-ingest-") as tmp:
        work_dir = args.workdir or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        csv = work_dir / CSV_NAME
        seconds = make_csv(csv, rows)
        size = csv.stat().st_size
        print(
            f"CSV: {rows:,} rows, {size / 1e6:.1f} MB ({size / rows:.0f} bytes/row), "
            f"generated and written in {seconds:.1f} s"
        )
        ntuples = [work_dir / NTUPLE_NAMES[t] for t in ("convert-ttree", "convert-rntuple")]
        seconds = make_ntuples(csv, *ntuples)
        print(
            "TTree, RNTuple (LZ4): "
            + ", ".join(f"{p.stat().st_size / 1e6:.1f} MB" for p in ntuples)
            + f", written in {seconds:.1f} s"
        )
        for _ in range(args.repeat):
            for t in tasks:
                runs[t].append(measure(t, work_dir, *common[1:]))
    res = {t: summary(r) for t, r in runs.items()}

    def rate(t: str) -> float:
        return res[t]["rows"] / res[t]["seconds"]

    names = {
        "convert": f"convert_higgs_csv: CSV -> 3 ROOT ({compression})",
        "convert-ttree": f"convert_inputs: TTree -> 3 ROOT ({compression})",
        "convert-rntuple": f"convert_inputs: RNTuple -> 3 ROOT ({compression})",
        "pandas": "pandas.read_csv (C engine)",
        "pandas-pyarrow": "pandas.read_csv (pyarrow engine)",
    }
    print(
        f"\nmedian [fastest-slowest] of {args.repeat}, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPU(s) at the end"
    )
    header = f"{'':46s} {'rows/s':>9s} {'seconds':>17s} {'CPU s':>6s} {'peak RSS':>9s}"
    print(f"{header} {'vs pandas.read_csv':>24s}")
    for t, name in names.items():
        if t in res:
            r = res[t]
            lo, hi = r["seconds_range"]
            mid, r_lo, r_hi = paired_speed(runs[t], runs["pandas"])
            print(
                f"{name:46s} {rate(t):9.3g} {r['seconds']:6.2f} [{lo:.2f}-{hi:.2f}] "
                f"{r['cpu_seconds']:6.2f} {r['peak_rss_mb']:6.0f} MB "
                f"{f'x{mid:.2f} [x{r_lo:.2f}-x{r_hi:.2f}]':>24s}"
            )
    for t in ("import-convert", "import-pandas"):
        label = "  (imports only: " + t[7:] + ")"
        print(f"{label:46s} {'':9s} {'':17s} {'':6s} {res[t]['peak_rss_mb']:6.0f} MB")
    print("\nratios, ours / pandas (speed: median [range] of the rounds):")
    for ours in ("convert", "convert-ttree", "convert-rntuple"):
        for t in ("pandas", "pandas-pyarrow"):
            if t in res:
                mid, r_lo, r_hi = paired_speed(runs[ours], runs[t])
                print(
                    f"  {ours:16s} vs {names[t]:32s} speed x{mid:.2f} [x{r_lo:.2f}-x{r_hi:.2f}], "
                    f"peak memory x{res[ours]['peak_rss_mb'] / res[t]['peak_rss_mb']:.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
