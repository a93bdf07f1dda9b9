"""Event files: ROOT in and out (uproot), and the HIGGS CSV in.

ROOT event files hold one TTree ``events`` with one float32 branch per feature (named as in
:mod:`hepflows.events.schema`), an int8 ``label`` (1 signal, 0 background) and, optionally, a
float32 ``weight``.  A JSON dictionary of metadata may sit beside the tree as a ``TObjString``
under the key ``hepflows_metadata``.

Every file is written atomically (:class:`hepflows.atomic.AtomicFile`): into a temporary file in
the target's directory, renamed into place only when complete, with the umask's mode, and removed
on any error, so a reader never sees half a file.

The HIGGS CSV (29 comma-separated numbers a row, no header: the label, then the 28 features in
:data:`~hepflows.events.schema.HIGGS_FEATURES` order; plain or gzip) is streamed in chunks with
``pyarrow.csv.open_csv`` and never held whole in memory.

Bad input raises :class:`hepflows.errors.InputError` naming the file, the place inside it (row
and column, tree, branch) and what was expected.  Row numbers are 1-based line numbers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import uproot

from hepflows.atomic import AtomicFile
from hepflows.errors import InputError
from hepflows.events.schema import HIGGS_FEATURES, LABEL, TREE_NAME, WEIGHT

__all__ = [
    "COMPRESSIONS",
    "METADATA_KEY",
    "EventWriter",
    "convert_higgs_csv",
    "convert_root",
    "count_events",
    "iter_higgs_csv",
    "iterate_events",
    "read_events",
    "read_metadata",
    "write_events",
]

#: Key of the JSON metadata string in event files.
METADATA_KEY = "hepflows_metadata"

#: Compression algorithms and the levels used for them (ROOT's usual choices).
COMPRESSIONS: dict[str, tuple[type, int]] = {
    "zlib": (uproot.ZLIB, 1),
    "lz4": (uproot.LZ4, 4),
    "zstd": (uproot.ZSTD, 5),
    "lzma": (uproot.LZMA, 4),
}

#: Columns of the HIGGS CSV.
CSV_COLUMNS: tuple[str, ...] = (LABEL, *HIGGS_FEATURES)

#: Bytes of text pyarrow parses at a time, ~1500 rows of the original HIGGS.csv.  Measured on a
#: 150 MB file: 1 MiB blocks parse twice as fast as 16 MiB ones (they stay in the CPU caches),
#: and memory in flight stays a few MB; batches are joined into chunks of ``chunk_rows``.
CSV_BLOCK_SIZE = 1 << 20

#: The HIGGS dataset's test set: its last 500,000 rows.
HIGGS_TEST_ROWS = 500_000

_FEATURE_DTYPE = np.dtype(np.float32)
_BRANCH_DTYPES = {LABEL: np.dtype(np.int8), WEIGHT: np.dtype(np.float32)}


# ================================================================================================
# Writing
# ================================================================================================
def _compression(name: str | None) -> Any:
    """The uproot compression object for a name in :data:`COMPRESSIONS`, or None."""
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in COMPRESSIONS:
        raise InputError(
            f"compression {name!r}: expected one of {sorted(COMPRESSIONS)} or None"
        )
    cls, level = COMPRESSIONS[name.lower()]
    return cls(level)


def _where(path: str | Path) -> str:
    return os.fspath(path)


def _check_labels(label: np.ndarray, where: str, first_row: int = 0, unit: str = "entry") -> None:
    """Raise InputError if any label is not 0 or 1; ``first_row`` numbers the first element."""
    bad = (label != 0) & (label != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{where}: {int(bad.sum())} label(s) other than 0 or 1; the first at {unit} "
            f"{first_row + i}, with value {label[i].item()!r}"
        )


def _check_finite(
    arrays: Mapping[str, np.ndarray], names: Sequence[str], where: str, first_entry: int = 0
) -> None:
    """Raise InputError if a branch of ``names`` holds NaN or Inf, naming branch and entry.

    A NaN read from a ROOT file would pass unnoticed until it poisons a fit or a histogram far
    from its source; it is stopped where its file and entry are still known.
    """
    for name in names:
        a = arrays[name]
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"{where}: branch {name!r}: {int(bad.sum())} NaN or Inf value(s), the first at "
                f"entry {first_entry + i} ({a[i].item()!r}); expected finite numbers"
            )


def _prepare(arrays: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Validate a chunk of events and cast it to the file's branch types.

    Features become float32, ``label`` int8 (0/1 only), ``weight`` float32; branches come in
    schema order.  Raises InputError for unknown names, non-numeric or non-1-D arrays,
    unequal lengths and bad labels.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError(f"{where}: expected a non-empty mapping of branch name -> array")
    known = (*HIGGS_FEATURES, LABEL, WEIGHT)
    unknown = [k for k in arrays if k not in known]
    if unknown:
        raise InputError(
            f"{where}: unknown branch name(s) {unknown}; expected features of "
            f"hepflows.events.schema, {LABEL!r} or {WEIGHT!r}"
        )
    out: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    for name in (k for k in known if k in arrays):
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "biuf":
            raise InputError(f"{where}: branch {name!r} has non-numeric dtype {a.dtype}")
        if a.ndim != 1:
            raise InputError(f"{where}: branch {name!r} must be 1-D, got shape {a.shape}")
        if name == LABEL:
            _check_labels(a, f"{where}: branch {name!r}")
        out[name] = a.astype(_BRANCH_DTYPES.get(name, _FEATURE_DTYPE), copy=False)
        lengths[name] = a.shape[0]
    if len(set(lengths.values())) > 1:
        raise InputError(f"{where}: branches have different lengths {lengths}")
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _metadata_json(metadata: Mapping[str, object], where: str) -> str:
    try:
        return json.dumps(dict(metadata), default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: metadata cannot be stored as JSON: {exc}") from exc


class EventWriter:
    """Stream chunks of events into one ROOT file, which appears only when complete.

    >>> with EventWriter("out.root", metadata={"seed": 1}) as w:   # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)

    The first :meth:`write` fixes the branches (``mktree``); every chunk is appended with
    ``extend`` (one basket per branch per chunk, so chunks of 1e4-1e6 events suit ROOT
    readers best).  On a clean exit the temporary file is renamed to ``path``; on an exception
    it is deleted and the exception propagates.  :attr:`metadata` may be updated until then:
    it is stored as JSON under :data:`METADATA_KEY` when the file is closed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        compression: str | None = "lz4",
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        self.path = Path(path)
        self.compression = compression
        self._uproot_compression = _compression(compression)
        self.metadata: dict[str, object] = dict(metadata or {})
        _metadata_json(self.metadata, _where(self.path))  # fail early, before any work
        self.n_written = 0
        self._tmp: AtomicFile | None = None
        self._file: Any = None
        self._tree: Any = None
        self._branches: tuple[str, ...] | None = None

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> EventWriter:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self._finish()
                self._publish()
            except BaseException:
                self._discard()
                raise
        else:
            self._discard()

    # -- the three steps of a write, separate so that several files can be committed together
    def _open(self) -> None:
        if self._file is not None:
            raise RuntimeError(f"{self.path}: EventWriter is already open")
        self._tmp = AtomicFile(self.path)
        try:
            self._file = uproot.recreate(self._tmp.tmp, compression=self._uproot_compression)
        except BaseException:
            self._discard()
            raise

    def _finish(self) -> None:
        """Store the metadata and close the temporary file."""
        if self._file is None:
            return
        if self.metadata:
            self._file[METADATA_KEY] = _metadata_json(self.metadata, _where(self.path))
        self._file.close()
        self._file = None

    def _publish(self) -> None:
        """Rename the finished temporary file to its final name."""
        if self._tmp is not None:
            self._tmp.publish()
            self._tmp = None

    def _discard(self) -> None:
        """Close and delete the temporary file (errors while closing are secondary)."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.discard()
            self._tmp = None

    # -- data ----------------------------------------------------------------------------------
    @property
    def branches(self) -> tuple[str, ...] | None:
        """Branch names fixed by the first chunk (None before it)."""
        return self._branches

    def write(self, arrays: Mapping[str, Any]) -> int:
        """Append a chunk: name -> 1-D array, all of one length.  Returns the chunk's length.

        Names are features of the schema, ``label`` and ``weight``; every chunk must have the
        branches of the first.  A chunk of length 0 only creates the tree.
        """
        if self._file is None:
            raise RuntimeError(f"{self.path}: use EventWriter in a 'with' block to write")
        where = _where(self.path)
        chunk = _prepare(arrays, where)
        names = tuple(chunk)
        if self._branches is None:
            self._tree = self._file.mktree(TREE_NAME, {k: v.dtype for k, v in chunk.items()})
            self._branches = names
        elif names != self._branches:
            raise InputError(
                f"{where}: the chunk after event {self.n_written} has branches {list(names)}, "
                f"but the file was started with {list(self._branches)}"
            )
        n = len(next(iter(chunk.values())))
        if n:
            self._tree.extend(chunk)
            self.n_written += n
        return n


def write_events(
    path: str | Path,
    arrays: Mapping[str, Any],
    *,
    compression: str | None = "zlib",
    metadata: Mapping[str, object] | None = None,
) -> None:
    """Write events (name -> 1-D array) to the ROOT file ``path`` atomically.

    Features are stored as float32, ``label`` as int8, ``weight`` as float32; ``compression``
    is one of :data:`COMPRESSIONS` or None; ``metadata`` is stored as JSON.
    """
    with EventWriter(path, compression=compression, metadata=metadata) as writer:
        writer.write(arrays)


@contextlib.contextmanager
def _all_or_nothing(writers: Sequence[EventWriter]) -> Iterator[Sequence[EventWriter]]:
    """Open several writers; publish all of them or none.

    On an error every temporary file is deleted (and any output already renamed into place by
    this call is removed again), so a multi-file conversion never leaves part of its outputs.
    """
    published: list[EventWriter] = []
    try:
        for w in writers:
            w._open()
        yield writers
        for w in writers:
            w._finish()
        for w in writers:
            w._publish()
            published.append(w)
    except BaseException:
        for w in writers:
            w._discard()
        for w in published:
            w.path.unlink(missing_ok=True)
        raise


# ================================================================================================
# Reading ROOT
# ================================================================================================
@contextlib.contextmanager
def _open_root(path: str | Path) -> Iterator[Any]:
    """Open a ROOT file, turning every way it can be unreadable into an InputError."""
    where = _where(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{where}: no such file")
    if not p.is_file():
        raise InputError(f"{where}: not a regular file")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"root":
        raise InputError(
            f"{where}: not a ROOT file (it starts with {magic!r}, a ROOT file with b'root')"
        )
    try:
        f = uproot.open(p)
    except Exception as exc:
        raise InputError(f"{where}: cannot open as a ROOT file (truncated or corrupt?): {exc}") from exc
    try:
        end = int(getattr(f.file, "fEND", 0) or 0)
        if end > size:
            raise InputError(
                f"{where}: truncated ROOT file: {size} bytes on disk, but its header says {end}"
            )
        yield f
    finally:
        f.close()


def _get_tree(f: Any, tree: str, where: str) -> Any:
    keys = sorted({k.split(";")[0] for k in f.keys(recursive=False)})
    if tree not in keys:
        raise InputError(f"{where}: no tree {tree!r}; the file has keys {keys}")
    try:
        obj = f[tree]
    except Exception as exc:
        raise InputError(f"{where}: cannot read {tree!r} (truncated or corrupt?): {exc}") from exc
    if not isinstance(obj, uproot.behaviors.TTree.TTree):
        raise InputError(f"{where}: {tree!r} is a {f.classname_of(tree)}, expected a TTree")
    return obj


def _check_branches(t: Any, branches: Sequence[str], where: str) -> None:
    """Raise InputError unless every branch exists and is a numeric scalar per entry."""
    present = list(t.keys(recursive=False))
    missing = [b for b in branches if b not in present]
    if missing:
        raise InputError(
            f"{where}: tree {t.name!r} lacks branch(es) {missing}; it has {present}"
        )
    jagged, non_numeric = [], []
    for b in branches:
        try:
            interp = t[b].interpretation
        except Exception:
            non_numeric.append(f"{b} (uninterpretable)")
            continue
        if isinstance(interp, uproot.interpretation.jagged.AsJagged):
            jagged.append(b)
        elif not isinstance(interp, uproot.interpretation.numerical.AsDtype):
            non_numeric.append(f"{b} ({type(interp).__name__})")
        else:
            dt = interp.to_dtype
            if dt.shape != ():
                jagged.append(f"{b} (fixed-size array {dt.shape})")
            elif dt.kind not in "biuf":
                non_numeric.append(f"{b} ({dt})")
    if jagged:
        raise InputError(
            f"{where}: tree {t.name!r}: branch(es) {jagged} hold several values per event; "
            "expected one number per event"
        )
    if non_numeric:
        raise InputError(
            f"{where}: tree {t.name!r}: branch(es) {non_numeric} are not numeric; "
            "expected integer or floating-point numbers"
        )


def _resolve_features(features: Sequence[str] | None, t: Any, where: str) -> tuple[str, ...]:
    if features is None:
        present = set(t.keys(recursive=False))
        found = tuple(f for f in HIGGS_FEATURES if f in present)
        if not found:
            raise InputError(
                f"{where}: tree {t.name!r} has none of the HIGGS feature branches; it has "
                f"{sorted(present)}"
            )
        return found
    if isinstance(features, str):
        features = [features]
    unknown = [f for f in features if f not in HIGGS_FEATURES]
    if unknown:
        raise InputError(
            f"{where}: unknown feature name(s) {unknown}; expected names from "
            f"hepflows.events.schema.HIGGS_FEATURES"
        )
    return tuple(features)


def _cast_events(
    raw: Mapping[str, np.ndarray],
    features: Sequence[str],
    *,
    with_label: bool,
    with_weight: bool,
    where: str,
    first_entry: int,
) -> dict[str, np.ndarray]:
    out = {f: np.asarray(raw[f], dtype=np.float32) for f in features}
    _check_finite(out, features, where, first_entry)
    n = len(next(iter(raw.values()))) if raw else 0
    if with_label:
        label = np.asarray(raw[LABEL])
        _check_labels(label, f"{where}: branch {LABEL!r}", first_entry)
        out[LABEL] = label.astype(np.int8)
    if with_weight:
        out[WEIGHT] = (
            np.asarray(raw[WEIGHT], dtype=np.float32) if WEIGHT in raw
            else np.ones(n, dtype=np.float32)
        )
        _check_finite(out, [WEIGHT], where, first_entry)
    return out


def _branches_to_read(
    t: Any, features: tuple[str, ...], with_label: bool, with_weight: bool, where: str
) -> list[str]:
    names = list(features)
    if with_label:
        names.append(LABEL)
    if with_weight and WEIGHT in t.keys(recursive=False):
        names.append(WEIGHT)
    _check_branches(t, names, where)
    return names


def read_events(
    path: str | Path,
    features: Sequence[str] | None = None,
    *,
    tree: str = TREE_NAME,
    with_label: bool = True,
    with_weight: bool = False,
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> dict[str, np.ndarray]:
    """Read events from a ROOT file: feature name -> float32 array (n,).

    ``features``: names from the schema, or None for every feature branch the tree has.
    Adds ``label`` (int8, checked to be 0/1) if ``with_label``, and ``weight`` (float32; ones
    when the file has none) if ``with_weight``.  ``entry_start``/``entry_stop`` select a range
    of entries as in uproot.
    """
    where = _where(path)
    with _open_root(path) as f:
        t = _get_tree(f, tree, where)
        feats = _resolve_features(features, t, where)
        names = _branches_to_read(t, feats, with_label, with_weight, where)
        try:
            raw = t.arrays(names, library="np", entry_start=entry_start, entry_stop=entry_stop)
        except Exception as exc:
            raise InputError(
                f"{where}: cannot read tree {tree!r} (truncated or corrupt?): {exc}"
            ) from exc
        start = entry_start or 0
        if start < 0:
            start += t.num_entries
        return _cast_events(
            raw, feats, with_label=with_label, with_weight=with_weight, where=where,
            first_entry=max(start, 0),
        )


def iterate_events(
    path: str | Path,
    features: Sequence[str] | None = None,
    *,
    step_size: int | str = 100_000,
    tree: str = TREE_NAME,
    with_label: bool = True,
    with_weight: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Read a ROOT event file in chunks of ``step_size`` entries (uproot.iterate).

    Yields dictionaries like :func:`read_events`.  The file is checked before the first chunk.
    """
    where = _where(path)
    with _open_root(path) as f:
        t = _get_tree(f, tree, where)
        feats = _resolve_features(features, t, where)
        names = _branches_to_read(t, feats, with_label, with_weight, where)
    first = 0
    chunks = uproot.iterate(
        {os.fspath(path): tree}, names, step_size=step_size, library="np"
    )
    while True:
        try:
            raw = next(chunks)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(
                f"{where}: cannot read tree {tree!r} after entry {first} (truncated or corrupt?): "
                f"{exc}"
            ) from exc
        out = _cast_events(
            raw, feats, with_label=with_label, with_weight=with_weight, where=where,
            first_entry=first,
        )
        first += len(raw[names[0]])
        yield out


def count_events(path: str | Path, tree: str = TREE_NAME) -> int:
    """Number of entries of the tree ``tree`` in a ROOT file."""
    with _open_root(path) as f:
        return int(_get_tree(f, tree, _where(path)).num_entries)


def branch_names(path: str | Path, tree: str = TREE_NAME) -> tuple[str, ...]:
    """Names of the branches of the tree ``tree`` in a ROOT file."""
    with _open_root(path) as f:
        return tuple(_get_tree(f, tree, _where(path)).keys())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata stored in an event file; an empty dict if it has none."""
    where = _where(path)
    with _open_root(path) as f:
        keys = {k.split(";")[0] for k in f.keys(recursive=False)}
        if METADATA_KEY not in keys:
            return {}
        try:
            text = str(f[METADATA_KEY])
            meta = json.loads(text)
        except Exception as exc:
            raise InputError(f"{where}: key {METADATA_KEY!r} is not a JSON string: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{where}: key {METADATA_KEY!r} holds {type(meta).__name__}, expected a dict")
    return meta


# ================================================================================================
# HIGGS CSV
# ================================================================================================
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


def _writable(a: np.ndarray) -> np.ndarray:
    """pyarrow hands out read-only views of its buffers; callers get ordinary arrays."""
    return a if a.flags.writeable else a.copy()


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """pyarrow record batches of the CSV, float32 columns; the first exception propagates."""
    compression = "gzip" if _is_gzip(path) else None
    stream = pa.input_stream(os.fspath(path), compression=compression)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=list(CSV_COLUMNS), block_size=CSV_BLOCK_SIZE),
            # Empty lines are errors, not skipped: row numbers stay line numbers.
            parse_options=pacsv.ParseOptions(delimiter=",", ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.float32() for c in CSV_COLUMNS},
                # No token means "missing": every value must be a number (nan/inf included).
                null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
    finally:
        stream.close()


def iter_higgs_csv(
    path: str | Path, *, chunk_rows: int = 500_000, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a HIGGS CSV (plain or gzip, by content) in chunks of ``chunk_rows`` rows.

    Yields ``{"label": int8 (n,), feature: float32 (n,) for the 28 features}``; the last chunk
    may be shorter.  At most ``limit`` rows are read.  Memory holds about one chunk plus
    pyarrow's blocks in flight.  Raises InputError for a missing or empty file, a row without
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

    pending: list[pa.RecordBatch] = []
    n_pending = 0
    rows_read = 0  # rows pyarrow has parsed without error
    rows_out = 0  # rows yielded
    batches = _csv_batches(p)

    def flush(n: int) -> dict[str, np.ndarray]:
        nonlocal pending, n_pending, rows_out
        table = pa.Table.from_batches(pending)
        head, rest = table.slice(0, n), table.slice(n)
        pending = rest.to_batches() if rest.num_rows else []
        n_pending = rest.num_rows
        chunk = {c: _writable(head.column(i).to_numpy()) for i, c in enumerate(CSV_COLUMNS)}
        _check_csv_chunk(chunk, p, rows_out + 1)
        chunk[LABEL] = chunk[LABEL].astype(np.int8)
        rows_out += n
        return chunk

    while limit is None or rows_read < limit:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            if rows_read == 0 and "Empty CSV file" in str(exc):
                raise InputError(f"{where}: empty file, expected HIGGS CSV rows") from exc
            raise _csv_error(p, rows_read, exc) from exc
        if limit is not None and rows_read + batch.num_rows > limit:
            batch = batch.slice(0, limit - rows_read)
        rows_read += batch.num_rows
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= chunk_rows:
            yield flush(chunk_rows)
    batches.close()
    if n_pending:
        yield flush(n_pending)
    if rows_out == 0:
        raise InputError(f"{where}: empty file, expected HIGGS CSV rows")


# ================================================================================================
# Conversion into train/val/test ROOT files
# ================================================================================================
def _uniform_from_index(index: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) for each row index (n,): splitmix64's finaliser.

    Assigning rows to splits by this hash needs no count of the rows, does not depend on how
    the file is chunked, and gives each split its fraction up to binomial fluctuations.
    """
    z = index.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


class _SplitRule:
    """How rows are dealt to the outputs.

    * fractions ``{"train": 0.8, "val": 0.1, "test": 0.1}`` (keys = the outputs, summing to 1):
      row i goes to the split whose interval of cumulative fractions, in the mapping's order,
      holds :func:`_uniform_from_index` (i);
    * ``"higgs"`` or ``{"convention": "higgs", "val": 0.1, "test_rows": 500_000}``: the
      dataset's convention, the last ``test_rows`` rows are the test set; the others go to
      train and val by the hash, val with fraction ``val`` (outputs: train, val, test; or
      train, test when val is 0);
    * None: one output takes every row.
    """

    def __init__(self, split: Mapping[str, Any] | str | None, outputs: Sequence[str]) -> None:
        self.test_rows = 0
        self.tail_split: str | None = None
        outs = list(outputs)
        if not outs:
            raise InputError("outputs: expected at least one split name -> file path")
        if split is None:
            if len(outs) != 1:
                raise InputError(
                    f"split: None needs exactly one output, got {outs}; give fractions or 'higgs'"
                )
            self.fractions = {outs[0]: 1.0}
            self.description = f"all rows to {outs[0]}"
            return
        if isinstance(split, str):
            if split != "higgs":
                raise InputError(f"split {split!r}: expected 'higgs' or a mapping of fractions")
            split = {"convention": "higgs"}
        if not isinstance(split, Mapping):
            raise InputError(f"split: expected a mapping or 'higgs', got {type(split).__name__}")
        if "convention" in split:
            self._higgs(dict(split), outs)
        else:
            self._fractions(dict(split), outs)

    def _higgs(self, split: dict[str, Any], outs: list[str]) -> None:
        if split.pop("convention") != "higgs":
            raise InputError("split.convention: expected 'higgs'")
        val = split.pop("val", 0.1)
        test_rows = split.pop("test_rows", HIGGS_TEST_ROWS)
        if split:
            raise InputError(f"split: unknown key(s) {sorted(split)}; expected val, test_rows")
        if not (isinstance(val, (int, float)) and 0.0 <= val < 1.0):
            raise InputError(f"split.val: expected a fraction in [0, 1), got {val!r}")
        if not (isinstance(test_rows, int) and test_rows >= 1):
            raise InputError(f"split.test_rows: expected an integer >= 1, got {test_rows!r}")
        expected = ["train", "val", "test"] if val > 0 else ["train", "test"]
        if sorted(outs) != sorted(expected):
            raise InputError(f"outputs {outs}: the 'higgs' split writes exactly {expected}")
        self.test_rows = test_rows
        self.tail_split = "test"
        self.fractions = {"train": 1.0 - val, "val": val} if val > 0 else {"train": 1.0}
        self.description = (
            f"higgs convention: last {test_rows} rows test, the rest train/val by a hash of the "
            f"row index with val fraction {val}"
        )

    def _fractions(self, split: dict[str, Any], outs: list[str]) -> None:
        if sorted(split) != sorted(outs):
            raise InputError(f"split {sorted(split)} and outputs {sorted(outs)} must name the same splits")
        for k, v in split.items():
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise InputError(f"split.{k}: expected a fraction in [0, 1], got {v!r}")
        total = float(sum(split.values()))
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise InputError(f"split: fractions {split} sum to {total}, expected 1")
        self.fractions = {k: float(v) for k, v in split.items()}
        self.description = (
            "fractions " + json.dumps(self.fractions) + " by a hash of the row index"
        )

    def assign(self, first_row: int, n: int) -> dict[str, np.ndarray | slice]:
        """Row selections for rows first_row .. first_row + n - 1 (0-based) of the hashed part."""
        if len(self.fractions) == 1:
            return {next(iter(self.fractions)): slice(None)}
        u = _uniform_from_index(np.arange(first_row, first_row + n, dtype=np.uint64))
        edges = np.cumsum(list(self.fractions.values()))
        edges[-1] = 2.0  # every u < 1 lands somewhere despite rounding
        which = np.searchsorted(edges, u, side="right")
        return {name: which == i for i, name in enumerate(self.fractions)}


class _Router:
    """Deal chunks of events to writers by a split rule, holding back the last ``test_rows``
    rows for the tail split (the HIGGS convention) in a bounded FIFO.

    Writes run in one background thread, in order: ROOT compression (zlib releases the GIL)
    then overlaps with CSV parsing (pyarrow releases it too).  At most
    :attr:`MAX_PENDING` writes wait at a time, so memory stays bounded.  Use as a context
    manager: leaving it waits for the thread, and re-raises the first failed write.
    """

    MAX_PENDING = 4

    def __init__(self, rule: _SplitRule, writers: Mapping[str, EventWriter]) -> None:
        self.rule = rule
        self.writers = writers
        self.counts = {k: 0 for k in writers}
        self.next_row = 0  # 0-based index of the next row to route by hash
        self.held: collections.deque[dict[str, np.ndarray]] = collections.deque()
        self.n_held = 0
        self.template: dict[str, np.ndarray] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hepflows-write")
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()

    def __enter__(self) -> _Router:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self._drain()
            else:  # failing anyway: stop queued writes, wait for the running one
                for f in self._pending:
                    f.cancel()
        finally:
            self._pool.shutdown(wait=True)

    def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def _write(self, name: str, part: dict[str, np.ndarray]) -> None:
        self.counts[name] += len(next(iter(part.values())))
        self._pending.append(self._pool.submit(self.writers[name].write, part))
        self._drain(self.MAX_PENDING)

    def _route(self, chunk: dict[str, np.ndarray]) -> None:
        n = len(next(iter(chunk.values())))
        for name, sel in self.rule.assign(self.next_row, n).items():
            self._write(name, {k: v[sel] for k, v in chunk.items()})
        self.next_row += n

    def add(self, chunk: dict[str, np.ndarray]) -> None:
        if self.template is None:
            self.template = {k: v[:0] for k, v in chunk.items()}
        if not self.rule.test_rows:
            self._route(chunk)
            return
        self.held.append(chunk)
        self.n_held += len(next(iter(chunk.values())))
        excess = self.n_held - self.rule.test_rows
        while excess > 0:
            oldest = self.held[0]
            m = len(next(iter(oldest.values())))
            if m <= excess:
                self.held.popleft()
                self._route(oldest)
                self.n_held -= m
                excess -= m
            else:
                self._route({k: v[:excess] for k, v in oldest.items()})
                self.held[0] = {k: v[excess:] for k, v in oldest.items()}
                self.n_held -= excess
                excess = 0

    def finish(self) -> dict[str, int]:
        """Write the held-back rows, give empty splits an empty tree; rows per split."""
        if self.rule.tail_split is not None:
            while self.held:
                self._write(self.rule.tail_split, self.held.popleft())
        self._drain()
        if self.template is not None:
            for w in self.writers.values():
                if w.branches is None:
                    w.write(self.template)
        for name, w in self.writers.items():
            w.metadata.update(split=name, rows=self.counts[name], split_rule=self.rule.description)
        return dict(self.counts)


def _writers(
    outputs: Mapping[str, str | Path],
    compression: str | None,
    metadata: Mapping[str, object] | None,
    source: Mapping[str, object],
) -> dict[str, EventWriter]:
    paths = {k: Path(v) for k, v in outputs.items()}
    if len(set(p.resolve() for p in paths.values())) != len(paths):
        raise InputError(f"outputs: two splits write the same file: {outputs}")
    meta = {**source, **dict(metadata or {})}
    return {k: EventWriter(p, compression=compression, metadata=meta) for k, p in paths.items()}


def convert_higgs_csv(
    path: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    split: Mapping[str, Any] | str,
    limit: int | None = None,
    chunk_rows: int = 100_000,
    compression: str | None = "zlib",
    metadata: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """Convert a HIGGS CSV into one ROOT event file per split, in one streaming pass.

    ``outputs``: split name -> ROOT file.  ``split``: fractions such as
    ``{"train": 0.8, "val": 0.1, "test": 0.1}`` (rows dealt by a fixed hash of the row index:
    no counting pass, reproducible, independent of chunking), or ``"higgs"`` /
    ``{"convention": "higgs", "val": 0.1, "test_rows": 500_000}`` (the last ``test_rows`` rows
    are the test set, as in the dataset's publication; the rest go to train/val by the hash).
    ``limit`` reads only the first rows.  Returns the rows written per split.

    All outputs appear together or, on any error, none of them.  Memory stays at a few chunks
    (12 MB of arrays per 100k rows; writes of earlier chunks overlap the parsing of later ones)
    plus, for the ``"higgs"`` split, the held-back test rows (58 MB for 500k).
    """
    rule = _SplitRule(split, list(outputs))
    source = {"source": os.fspath(path), "source_format": "higgs_csv", "limit": limit}
    writers = _writers(outputs, compression, metadata, source)
    with _all_or_nothing(list(writers.values())), _Router(rule, writers) as router:
        for chunk in iter_higgs_csv(path, chunk_rows=chunk_rows, limit=limit):
            router.add(chunk)
        return router.finish()


def convert_root(
    path: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    tree: str = TREE_NAME,
    branch_map: Mapping[str, str] | None = None,
    label_branch: str | None = LABEL,
    label_value: int | None = None,
    split: Mapping[str, Any] | str | None = None,
    limit: int | None = None,
    step_size: int | str = 100_000,
    compression: str | None = "zlib",
    metadata: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """Convert a ROOT ntuple into the project's event files, one per split, chunk by chunk.

    ``branch_map``: feature -> branch of ``tree``; empty or None maps every feature the tree
    has under its own name.  The label comes from ``label_branch`` (values 0/1), or is
    ``label_value`` for every event (e.g. a file of one process), or is absent when both are
    None.  ``split`` as in :func:`convert_higgs_csv` (entry index for row index), or None for a
    single output.  Branches must hold one number per event; jagged ones are refused by name.
    Returns the events written per split; all outputs or none appear.
    """
    where = _where(path)
    if label_branch is not None and label_value is not None:
        raise InputError(f"{where}: give label_branch or label_value, not both")
    if label_value is not None and label_value not in (0, 1):
        raise InputError(f"{where}: label_value must be 0 or 1, got {label_value!r}")
    rule = _SplitRule(split, list(outputs))
    with _open_root(path) as f:
        t = _get_tree(f, tree, where)
        present = list(t.keys(recursive=False))
        if branch_map:
            unknown = [k for k in branch_map if k not in HIGGS_FEATURES]
            if unknown:
                raise InputError(
                    f"branch_map: unknown feature name(s) {unknown}; expected names from "
                    "hepflows.events.schema.HIGGS_FEATURES"
                )
            fmap = {feat: branch_map[feat] for feat in HIGGS_FEATURES if feat in branch_map}
        else:
            fmap = {feat: feat for feat in HIGGS_FEATURES if feat in present}
            if not fmap:
                raise InputError(
                    f"{where}: tree {tree!r} has no branch named like a HIGGS feature and no "
                    f"branch_map was given; it has {present}"
                )
        needed = list(dict.fromkeys([*fmap.values(), *([label_branch] if label_branch else [])]))
        _check_branches(t, needed, where)
        n_total = t.num_entries if limit is None else min(limit, t.num_entries)
        if n_total == 0:
            # As for an empty CSV: converting nothing is a mistake in the input, not a result.
            raise InputError(f"{where}: tree {tree!r} has no entries, expected events to convert")
        source = {
            "source": os.fspath(path), "source_format": "root", "tree": tree,
            "branch_map": fmap, "label_branch": label_branch, "label_value": label_value,
            "limit": limit,
        }
        writers = _writers(outputs, compression, metadata, source)
        with _all_or_nothing(list(writers.values())), _Router(rule, writers) as router:
            router.template = {feat: np.empty(0, np.float32) for feat in fmap}
            if label_branch is not None or label_value is not None:
                router.template[LABEL] = np.empty(0, np.int8)
            # TTree.iterate is uproot.iterate for one open file; it takes an entry range.
            chunks = t.iterate(needed, step_size=step_size, library="np", entry_stop=n_total)
            first = 0
            while first < n_total:
                try:
                    raw = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:
                    raise InputError(
                        f"{where}: cannot read tree {tree!r} after entry {first} (truncated or "
                        f"corrupt?): {exc}"
                    ) from exc
                n = len(raw[needed[0]])
                chunk = {feat: np.asarray(raw[b], dtype=np.float32) for feat, b in fmap.items()}
                _check_finite({b: chunk[feat] for feat, b in fmap.items()}, list(fmap.values()),
                              where, first)
                if label_branch is not None:
                    lab = np.asarray(raw[label_branch])
                    _check_labels(lab, f"{where}: branch {label_branch!r}", first)
                    chunk[LABEL] = lab.astype(np.int8)
                elif label_value is not None:
                    chunk[LABEL] = np.full(n, label_value, dtype=np.int8)
                router.add(chunk)
                first += n
            return router.finish()
