#!/usr/bin/env python
"""Where the HIGGS CSV conversion spends its time: CPU seconds per stage, and per thread.

    python benchmarks/ingest_profile.py --rows 1e6 --repeat 3

Makes a HIGGS-format CSV as ``benchmarks/ingest.py`` does (or reads ``--csv``), then, in
``--repeat`` interleaved rounds in this process:

* **stages**: each stage of CSV -> 3 ROOT files alone, one after the other in this thread:
  ``parse`` (``pyarrow.csv.read_csv`` of the slabs, float32 columns), ``arrays`` (the float32
  arrays, the finite and 0/1 checks, the int8 labels), ``split`` (the hash of the row index
  and the gather of each split's rows), ``write`` (the ROOT files, LZ4);
* **threads**: the conversion itself (``convert_higgs_csv``) with each thread's CPU seconds
  and the seconds it waited for a CPU while ready to run (the run-queue wait), from
  ``/proc/thread-self/schedstat`` (Linux);
* **pandas**: ``pandas.read_csv`` (C engine) of the same file, its CPU seconds (it runs in
  one thread), when pandas is installed (the ``bench`` extra);
* with ``--variants``, instead: the ``parse`` stage alone with other settings (pyarrow's block
  size, its own thread pool, no quoting, float64 columns, smaller or larger slabs).

CPU seconds hardly depend on what else runs on the machine; wall seconds do.  On a machine
shared with other jobs the run-queue wait says how much of the wall time was the load's: the
conversion's wall time on an idle machine is at least its busiest thread's CPU seconds.
Prints the median and the range of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))
sys.path.insert(0, str(HERE.parent))

SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}
CHUNK_ROWS = 100_000


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def stages(csv: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each stage, run alone in this thread."""
    import numpy as np
    import pyarrow as pa

    from hepflows.events import higgs_csv as hc
    from hepflows.events.convert import SplitRule, split_writers
    from hepflows.events.writer import all_or_nothing

    out = {}
    start = _clock()
    table = pa.concat_tables(list(hc._csv_tables(csv)))
    out["parse"] = _since(start)
    start, chunks = _clock(), []
    for first in range(0, table.num_rows, CHUNK_ROWS):
        head = table.slice(first, CHUNK_ROWS)
        chunk = {c: hc._float32_column(head, i) for i, c in enumerate(hc.CSV_COLUMNS)}
        hc._check_csv_chunk(chunk, csv, first + 1)
        chunk["label"] = chunk["label"].astype(np.int8)
        chunks.append(chunk)
    out["arrays"] = _since(start)
    del table
    rule, row, parts = SplitRule(SPLIT, list(SPLIT)), 0, []
    start = _clock()
    for chunk in chunks:
        n = len(chunk["label"])
        for name, sel in rule.assign(row, n).items():
            parts.append((name, {k: v[sel] for k, v in chunk.items()}))
        row += n
    out["split"] = _since(start)
    with tempfile.TemporaryDirectory(prefix="hepflows-ingest-profile-") as tmp:
        writers = split_writers({k: Path(tmp) / f"{k}.root" for k in SPLIT}, "lz4", None, {})
        start = _clock()
        with all_or_nothing(list(writers.values())):
            for name, part in parts:
                writers[name].write(part)
        out["write"] = _since(start)
    return out


def _schedstat() -> tuple[float, float]:
    """This thread's CPU seconds and run-queue wait so far."""
    with open("/proc/thread-self/schedstat") as fh:
        cpu, wait, _ = (int(x) for x in fh.read().split())
    return cpu / 1e9, wait / 1e9


def threads(csv: Path) -> dict[str, tuple[float, float]]:
    """(CPU, run-queue wait) seconds of each thread of one conversion, and its wall seconds
    under ``"wall"``: every thread's figures are taken where its last piece of work ends."""
    from hepflows.events import convert, higgs_csv
    from hepflows.events.writer import EventWriter

    seen: dict[str, tuple[float, float]] = {}

    def noted(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                seen[threading.current_thread().name] = _schedstat()

        return wrapper

    def noted_gen(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            finally:
                seen[threading.current_thread().name] = _schedstat()

        return wrapper

    saved = (higgs_csv.pacsv.read_csv, higgs_csv._csv_tables, EventWriter.write)
    higgs_csv.pacsv.read_csv = noted(saved[0])
    higgs_csv._csv_tables = noted_gen(saved[1])
    EventWriter.write = noted(saved[2])  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="hepflows-ingest-profile-") as tmp:
            outputs = {k: Path(tmp) / f"{k}.root" for k in SPLIT}
            start, main = time.perf_counter(), _schedstat()
            convert.convert_higgs_csv(csv, outputs, split=SPLIT, chunk_rows=CHUNK_ROWS)
            wall = time.perf_counter() - start
            now = _schedstat()
    finally:
        higgs_csv.pacsv.read_csv, higgs_csv._csv_tables, EventWriter.write = saved
    seen.pop("MainThread", None)
    return {"wall": (wall, 0.0), "main": (now[0] - main[0], now[1] - main[1]), **seen}


def _parse(csv: Path, *, block: int, threads: bool, quote: bool, float32: bool) -> int:
    """Rows of ``csv`` parsed a slab at a time in this thread, with these settings."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from hepflows.events import higgs_csv as hc

    read = pacsv.ReadOptions(
        column_names=list(hc.CSV_COLUMNS), block_size=block, use_threads=threads
    )
    no_quotes = {"quote_char": False, "double_quote": False}
    parse = pacsv.ParseOptions(
        delimiter=",", ignore_empty_lines=False, **({} if quote else no_quotes)
    )
    kind = pa.float32() if float32 else pa.float64()
    convert = pacsv.ConvertOptions(
        column_types={c: kind for c in hc.CSV_COLUMNS},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    rows = 0
    with pa.input_stream(str(csv)) as stream:
        for slab in hc._slabs(stream):
            table = pacsv.read_csv(
                pa.py_buffer(slab), read_options=read, parse_options=parse, convert_options=convert
            )
            rows += table.num_rows
    return rows


def variants(csv: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the parse stage with each setting changed from ingest's."""
    from hepflows.events import higgs_csv as hc

    base = {"block": hc.CSV_BLOCK_SIZE, "threads": False, "quote": True, "float32": True}
    changed: dict[str, dict[str, Any]] = {
        f"as ingest (block {hc.CSV_BLOCK_SIZE >> 10} KiB, slab {hc.CSV_SLAB_SIZE >> 20} MiB)": {},
        "block 256 KiB": {"block": 256 << 10},
        "block 4 MiB": {"block": 4 << 20},
        "pyarrow's thread pool": {"threads": True},
        "no quoting": {"quote": False},
        "float64 columns": {"float32": False},
        "slab 4 MiB": {"slab": 4 << 20},
        "slab 64 MiB": {"slab": 64 << 20},
    }
    out = {}
    slab = hc.CSV_SLAB_SIZE
    for name, change in changed.items():
        hc.CSV_SLAB_SIZE = change.pop("slab", slab)
        try:
            start = _clock()
            _parse(csv, **{**base, **change})
            out[name] = _since(start)
        finally:
            hc.CSV_SLAB_SIZE = slab
    return out


def pandas_cpu(csv: Path) -> tuple[float, float] | None:
    """(wall, CPU) seconds of ``pandas.read_csv`` (C engine); None without pandas."""
    try:
        import pandas as pd
    except ImportError:
        return None
    start = _clock()
    pd.read_csv(csv, header=None, engine="c")
    return _since(start)


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e6, help="rows of the CSV (default 1e6)")
    parser.add_argument("--csv", type=Path, help="profile this HIGGS CSV instead of a new one")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--variants", action="store_true", help="time the parse stage with other settings"
    )
    args = parser.parse_args(argv)
    import os

    from ingest import make_csv

    with tempfile.TemporaryDirectory(prefix="hepflows-ingest-profile-") as tmp:
        csv = args.csv
        if csv is None:
            csv = Path(tmp) / "higgs_like.csv"
            make_csv(csv, int(args.rows))
        if args.variants:
            found = [variants(csv) for _ in range(args.repeat)]
            print(f"median [range] of {args.repeat} rounds; load average {os.getloadavg()[0]:.1f}")
            print(f"{'parse stage':46s} wall s              CPU s")
            for name in found[0]:
                wall = [r[name][0] for r in found]
                cpu = [r[name][1] for r in found]
                print(f"  {name:44s} {_fmt(wall)}  {_fmt(cpu)}")
            return 0
        rounds = [(stages(csv), threads(csv), pandas_cpu(csv)) for _ in range(args.repeat)]
    print(f"median [range] of {args.repeat} rounds; load average {os.getloadavg()[0]:.1f}")
    print("stages, alone in one thread        wall s              CPU s")
    for name in rounds[0][0]:
        wall = [r[0][name][0] for r in rounds]
        cpu = [r[0][name][1] for r in rounds]
        print(f"  {name:32s} {_fmt(wall)}  {_fmt(cpu)}")
    print("convert_higgs_csv, per thread      CPU s               run-queue wait s")
    print(f"  {'(wall seconds)':32s} {_fmt([r[1]['wall'][0] for r in rounds])}")
    names = sorted({k for r in rounds for k in r[1] if k != "wall"})
    for name in names:
        cpu = [r[1][name][0] for r in rounds if name in r[1]]
        wait = [r[1][name][1] for r in rounds if name in r[1]]
        print(f"  {name:32s} {_fmt(cpu)}  {_fmt(wait)}")
    total = [sum(v[0] for k, v in r[1].items() if k != "wall") for r in rounds]
    print(f"  {'all threads':32s} {_fmt(total)}")
    if rounds[0][2] is not None:
        wall = [r[2][0] for r in rounds if r[2] is not None]
        cpu = [r[2][1] for r in rounds if r[2] is not None]
        print(f"pandas.read_csv (C engine)           wall {_fmt(wall)}  CPU {_fmt(cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
