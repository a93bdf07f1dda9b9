"""Reading the HIGGS CSV: 29 comma-separated numbers a row, no header, the label then the 28
features in :data:`~hepflows.events.schema.HIGGS_FEATURES` order; plain or gzip.

Parsed a slab of text at a time with ``pyarrow.csv.read_csv`` (:data:`PARSE_THREADS` slabs
at once) and never held whole in memory.  Bad input raises
:class:`hepflows.errors.InputError` naming the file, the row (1-based line number) and the
column.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import gzip
import os
import re
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from hepflows.errors import InputError
from hepflows.events.checks import path_text as _where
from hepflows.events.prefetch import prefetch
from hepflows.events.schema import HIGGS_FEATURES, LABEL

__all__ = ["CSV_BLOCK_SIZE", "CSV_COLUMNS", "PARSE_THREADS", "PREFETCH_SLABS", "iter_higgs_csv"]

#: Columns of the HIGGS CSV.
CSV_COLUMNS: tuple[str, ...] = (LABEL, *HIGGS_FEATURES)

#: Bytes of text pyarrow parses at a time, ~1500 rows of the original HIGGS.csv.  Measured on a
#: 150 MB file: 1 MiB blocks parse twice as fast as 16 MiB ones (they stay in the CPU caches).
CSV_BLOCK_SIZE = 1 << 20

#: Bytes of text read and parsed in one call, ~25k rows of the original HIGGS.csv; the tables
#: are joined into chunks of ``chunk_rows``.
CSV_SLAB_SIZE = 16 << 20

#: Slabs of text parsed at the same time, each by one thread.
PARSE_THREADS = 2

#: Slabs parsed ahead of the consumer (memory: this many parsed slabs more in flight, about
#: 4 MB of float32 columns each for HIGGS rows).
PREFETCH_SLABS = 4


_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\Z", re.IGNORECASE
)
_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _column_name(j: int) -> str:
    """Name of the 1-based column j of the HIGGS CSV."""
    return CSV_COLUMNS[j - 1] if 1 <= j <= len(CSV_COLUMNS) else "?"


def _locate_csv_error(path: Path, rows_ok: int, cause: BaseException) -> InputError:
    """Find the first bad row after ``rows_ok`` good ones with the csv module.

    pyarrow's messages do not reliably carry row numbers, so on its failure the text is read
    again, rows 1..rows_ok skipped without parsing, to name the row and column at fault.
    """
    where = _where(path)
    gz = _is_gzip(path)
    row = 0
    try:
        opener = gzip.open(path, "rt", newline="") if gz else open(path, newline="")
        with opener as fh:
            # Skip the rows pyarrow already read correctly: lines, as it splits them.
            for _ in range(rows_ok):
                if not fh.readline():
                    break
                row += 1
            for fields in csv.reader(fh):
                row += 1
                if len(fields) != len(CSV_COLUMNS):
                    found = "an empty line" if not fields else f"{len(fields)} value(s)"
                    return InputError(
                        f"{where}: row {row}: found {found}, expected {len(CSV_COLUMNS)} "
                        "comma-separated numbers (the label, then the 28 features)"
                    )
                for j, token in enumerate(fields, start=1):
                    if not _NUMBER.match(token.strip()):
                        return InputError(
                            f"{where}: row {row}, column {j} ({_column_name(j)}): {token!r} is "
                            "not a number"
                        )
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        kind = "gzip stream is truncated or corrupt" if gz else "file cannot be read as text"
        return InputError(f"{where}: {kind} after row {row}: {exc}")
    return InputError(f"{where}: cannot parse the CSV after row {rows_ok}: {cause}")


def _complete_gzip_rows(path: Path) -> int:
    """Number of complete lines before a gzip stream breaks off.

    zlib directly, not the gzip module: the latter drops the data decompressed from a block
    when the stream ends early.
    """
    rows = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh, contextlib.suppress(zlib.error):
        for block in iter(lambda: fh.read(1 << 20), b""):
            while block:
                rows += d.decompress(block).count(b"\n")
                # A file may hold several gzip members one after the other.
                block = d.unused_data if d.eof else b""
                if d.eof:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return rows


def _csv_error(path: Path, rows_ok: int, exc: BaseException) -> InputError:
    msg = str(exc)
    if isinstance(exc, OSError) and re.search(
        r"compress|gzip|zlib|inflate|truncat", msg, re.IGNORECASE
    ):
        # pyarrow decompresses ahead of parsing, so count the rows that did arrive intact.
        rows = _complete_gzip_rows(path) if _is_gzip(path) else rows_ok
        return InputError(
            f"{_where(path)}: gzip stream is truncated or corrupt after row {rows} "
            f"(the last complete line): {msg}"
        )
    return _locate_csv_error(path, rows_ok, exc)


def _check_csv_chunk(chunk: dict[str, np.ndarray], path: Path, first_row: int) -> None:
    """Finite features and 0/1 labels; ``first_row`` is the 1-based row of the chunk's start."""
    where = _where(path)
    problems = []
    for j, name in enumerate(HIGGS_FEATURES, start=2):
        bad = ~np.isfinite(chunk[name])
        if bad.any():
            problems.append(
                f"column {j} ({name}): {int(bad.sum())} (first at row "
                f"{first_row + int(np.argmax(bad))})"
            )
    if problems:
        last = first_row + len(chunk[LABEL]) - 1
        raise InputError(
            f"{where}: NaN or Inf values in rows {first_row}-{last}, expected finite numbers: "
            + "; ".join(problems)
        )
    label = chunk[LABEL]
    bad = (label != 0) & (label != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{where}: row {first_row + i}, column 1 ({LABEL}): label {float(label[i])!r}, "
            f"expected 0 or 1 ({int(bad.sum())} such row(s) in rows {first_row}-"
            f"{first_row + len(label) - 1})"
        )


def _float32_column(table: pa.Table, i: int) -> np.ndarray:
    """Column ``i`` of a table of float32 columns without nulls, as one new array (n,).

    Read from the Arrow buffers: ``to_numpy`` imports pandas on its first call (0.4 s of CPU
    and 50 MB, a third of the conversion of 400k rows).  The copy is what callers own.
    """
    parts = [
        np.frombuffer(c.buffers()[1], dtype=np.float32, count=len(c), offset=c.offset * 4)
        for c in table.column(i).chunks
    ]
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def _slabs(stream: pa.NativeFile, buffers: int = 1) -> Generator[memoryview, None, None]:
    """The text of ``stream`` in pieces of at most :data:`CSV_SLAB_SIZE` bytes, each ending at
    a line end (the last where the text ends).

    Every piece is a view of one of ``buffers`` buffers, taken in turn: the piece in a buffer
    stays as it is until ``buffers - 1`` more pieces have been handed on, then that buffer is
    read into again.  Fresh memory for each slab costs a quarter more CPU (page faults) and
    doubles the resident size.  A line longer than a buffer (not a HIGGS row) is handed on
    cut, for the parser to refuse by its row.
    """
    bufs = [bytearray(CSV_SLAB_SIZE) for _ in range(buffers)]
    i = 0
    buf, view = bufs[0], memoryview(bufs[0])
    kept = 0  # bytes of an unfinished line at the front of the buffer
    while True:
        got = stream.readinto(view[kept:])
        end = kept + got
        if got == 0:
            if kept:
                yield view[:kept]
            return
        cut = buf.rfind(b"\n", 0, end) + 1
        if cut == 0:  # no line end yet
            if end < len(buf):
                kept = end
                continue
            cut = end
        yield view[:cut]
        i = (i + 1) % buffers
        nxt = memoryview(bufs[i])
        nxt[: end - cut] = view[cut:end]  # the unfinished line, to the next buffer's front
        buf, view, kept = bufs[i], nxt, end - cut


def _csv_tables(path: Path) -> Generator[pa.Table, None, None]:
    """pyarrow tables of the CSV, a slab of text each, float32 columns; the first exception
    propagates.

    Each slab is parsed by one ``pyarrow.csv.read_csv`` call, with the GIL released
    throughout: the streaming reader (``open_csv``) takes the GIL back after every block, and
    with the router and the writer thread beside it each take can wait for the interpreter's
    switch interval.  :data:`PARSE_THREADS` slabs are parsed at a time, each by one thread
    (``use_threads=False``): parsing is most of the work, and Arrow's own pool on top of the
    other threads cost 8 % more CPU on a loaded 2-core machine.
    """
    compression = "gzip" if _is_gzip(path) else None
    read_options = pacsv.ReadOptions(
        column_names=list(CSV_COLUMNS), block_size=CSV_BLOCK_SIZE, use_threads=False
    )
    # Empty lines are errors, not skipped: row numbers stay line numbers.
    parse_options = pacsv.ParseOptions(delimiter=",", ignore_empty_lines=False)
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.float32() for c in CSV_COLUMNS},
        # No token means "missing": every value must be a number (nan/inf included).
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )

    def parse(slab: memoryview) -> pa.Table:
        return pacsv.read_csv(
            pa.py_buffer(slab),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )

    parsing: collections.deque[concurrent.futures.Future[pa.Table]] = collections.deque()
    with (
        pa.input_stream(os.fspath(path), compression=compression) as stream,
        concurrent.futures.ThreadPoolExecutor(PARSE_THREADS, "hepflows-parse") as pool,
    ):
        try:
            # a buffer a slab being parsed: the next slab is read into the one whose table has
            # been taken
            for slab in _slabs(stream, buffers=PARSE_THREADS):
                parsing.append(pool.submit(parse, slab))
                if len(parsing) == PARSE_THREADS:
                    yield parsing.popleft().result()
            while parsing:
                yield parsing.popleft().result()
        finally:
            for f in parsing:  # stopped early: no slab left parsing from a buffer
                f.cancel()


def iter_higgs_csv(
    path: str | Path, *, chunk_rows: int = 500_000, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a HIGGS CSV (plain or gzip, by content) in chunks of ``chunk_rows`` rows.

    Yields ``{"label": int8 (n,), feature: float32 (n,) for the 28 features}``; the last chunk
    may be shorter.  At most ``limit`` rows are read.  A reader thread parses up to
    :data:`PREFETCH_SLABS` slabs of text ahead (:func:`~hepflows.events.prefetch.prefetch`),
    so memory holds those parsed slabs and the chunk being made more than the caller keeps.  Raises InputError for a missing or empty file, a row without
    29 values, a token that is not a number, NaN or Inf, labels other than 0/1, and a
    truncated or corrupt gzip stream, naming the row (1-based) and column.
    """
    p = Path(path)
    where = _where(p)
    if chunk_rows < 1:
        raise InputError(f"{where}: chunk_rows must be >= 1, got {chunk_rows}")
    if limit is not None and limit < 1:
        raise InputError(f"{where}: limit must be >= 1 or None, got {limit}")
    if not p.exists():
        raise InputError(f"{where}: no such file")
    if not p.is_file():
        raise InputError(f"{where}: not a regular file")
    if p.stat().st_size == 0:
        raise InputError(f"{where}: empty file, expected HIGGS CSV rows")
    yield from _chunks(p, chunk_rows, limit)


def _chunks(p: Path, chunk_rows: int, limit: int | None) -> Iterator[dict[str, np.ndarray]]:
    """The chunks of :func:`iter_higgs_csv`: the parsing runs in a reader thread, up to
    :data:`PREFETCH_SLABS` slabs ahead; the arrays and their checks are made here."""
    where = _where(p)
    pending: list[pa.Table] = []
    n_pending = 0
    rows_read = 0  # rows pyarrow has parsed without error
    rows_out = 0  # rows yielded
    # Parsing is most of the work: its thread does nothing else, so that on two cores the
    # arrays, the routing and the writing fit beside it.
    tables = prefetch(_csv_tables(p), depth=PREFETCH_SLABS)

    def flush(n: int) -> dict[str, np.ndarray]:
        nonlocal pending, n_pending, rows_out
        table = pa.concat_tables(pending)
        head, rest = table.slice(0, n), table.slice(n)
        pending = [rest] if rest.num_rows else []
        n_pending = rest.num_rows
        chunk = {c: _float32_column(head, i) for i, c in enumerate(CSV_COLUMNS)}
        _check_csv_chunk(chunk, p, rows_out + 1)
        chunk[LABEL] = chunk[LABEL].astype(np.int8)
        rows_out += n
        return chunk

    while limit is None or rows_read < limit:
        try:
            table = next(tables)
        except StopIteration:
            break
        except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            if rows_read == 0 and "Empty CSV file" in str(exc):
                raise InputError(f"{where}: empty file, expected HIGGS CSV rows") from exc
            raise _csv_error(p, rows_read, exc) from exc
        if limit is not None and rows_read + table.num_rows > limit:
            table = table.slice(0, limit - rows_read)
        rows_read += table.num_rows
        pending.append(table)
        n_pending += table.num_rows
        while n_pending >= chunk_rows:
            yield flush(chunk_rows)
    tables.close()
    if n_pending:
        yield flush(n_pending)
    if rows_out == 0:
        raise InputError(f"{where}: empty file, expected HIGGS CSV rows")
