"""Conversion of a HIGGS CSV into the project's train/val/test event files, and the dealing
of events to the splits that ROOT ingest (:mod:`hepflows.events.inputs`) shares.

One streaming pass: rows are dealt to the splits by a fixed hash of their index (or by the
HIGGS dataset's convention, its last 500,000 rows the test set) and written chunk by chunk, in
a background thread, through :class:`~hepflows.events.writer.EventWriter`.  All outputs appear
together or, on any error, none of them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepflows.errors import InputError
from hepflows.events.higgs_csv import iter_higgs_csv
from hepflows.events.writer import EventWriter, all_or_nothing

__all__ = [
    "HIGGS_TEST_ROWS",
    "SplitRouter",
    "SplitRule",
    "convert_higgs_csv",
    "split_key",
    "split_writers",
]

#: The HIGGS dataset's test set: its last 500,000 rows.
HIGGS_TEST_ROWS = 500_000


def _uniform_from_index(index: np.ndarray, key: int = 0) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) for each row index (n,): splitmix64's finaliser.

    Assigning rows to splits by this hash needs no count of the rows, does not depend on how
    the file is chunked, and gives each split its fraction up to binomial fluctuations.
    ``key`` (a 64-bit integer) starts another stream: :func:`split_key` makes one from the
    seed and an input file's checksum, so that several files' entries are dealt independently
    of their order.  Key 0 is the stream of a single CSV's rows.
    """
    z = index.astype(np.uint64) + np.uint64(key % (1 << 64)) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def split_key(seed: int, checksum: str) -> int:
    """The 64-bit key of :func:`_uniform_from_index` for the entries of one input file:
    from the seed and the file's SHA-256 (its content, not its name or place in the list)."""
    digest = hashlib.sha256(f"hepflows-split:{seed}:{checksum}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


#: The order in which the splits' intervals of cumulative fractions are laid out.
SPLIT_ORDER = ("train", "val", "test")


def canonical_split_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order train, val, test, then any others sorted: independent of the
    order of a mapping's keys."""
    names = list(names)
    return [n for n in SPLIT_ORDER if n in names] + sorted(n for n in names if n not in SPLIT_ORDER)


class SplitRule:
    """How rows are dealt to the outputs.

    * fractions ``{"train": 0.8, "val": 0.1, "test": 0.1}`` (keys = the outputs, summing to 1):
      row i goes to the split whose interval of cumulative fractions, in the order train, val,
      test (not the mapping's order, see :func:`canonical_split_order`),
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
            raise InputError(
                f"split {sorted(split)} and outputs {sorted(outs)} must name the same splits"
            )
        for k, v in split.items():
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise InputError(f"split.{k}: expected a fraction in [0, 1], got {v!r}")
        total = float(sum(split.values()))
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise InputError(f"split: fractions {split} sum to {total}, expected 1")
        # A canonical order (train, val, test, then the others by name), not the mapping's: the
        # intervals of cumulative fractions, hence every event's split, must not depend on how a
        # config file, a JSON dump (sorted keys) or a dict happened to order the keys.
        self.fractions = {k: float(split[k]) for k in canonical_split_order(split)}
        self.description = "fractions " + json.dumps(self.fractions) + " by a hash of the row index"

    def _select(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Indices (ascending) of the rows whose uniform number ``u`` (n,) falls in each split.

        Indices, not boolean masks: the chunk's ~30 columns are then gathered with ``take``,
        an order of magnitude faster than boolean indexing of a random mask.
        """
        edges = np.cumsum(list(self.fractions.values()))
        edges[-1] = 2.0  # every u < 1 lands somewhere despite rounding
        which = np.searchsorted(edges, u, side="right").astype(np.uint8)
        return {name: np.flatnonzero(which == i) for i, name in enumerate(self.fractions)}

    def assign_entries(self, entries: np.ndarray, key: int) -> dict[str, np.ndarray | slice]:
        """Selections of the events with these entry numbers of the file of split key ``key``."""
        if len(self.fractions) == 1:
            return {next(iter(self.fractions)): slice(None)}
        return dict(self._select(_uniform_from_index(entries, key)))

    def assign(self, first_row: int, n: int) -> dict[str, np.ndarray | slice]:
        """Row selections for rows first_row .. first_row + n - 1 (0-based) of the hashed part."""
        if len(self.fractions) == 1:
            return {next(iter(self.fractions)): slice(None)}
        return dict(
            self._select(_uniform_from_index(np.arange(first_row, first_row + n, dtype=np.uint64)))
        )


class SplitRouter:
    """Deal chunks of events to writers by a split rule, holding back the last ``test_rows``
    rows for the tail split (the HIGGS convention) in a bounded FIFO.

    Writes run in one background thread, in order: ROOT compression (the compressors release
    the GIL) then overlaps with the reader thread's parsing (pyarrow and uproot's decompression
    release it too, see :mod:`hepflows.events.prefetch`) and the routing here.  At most
    :attr:`MAX_PENDING` writes wait at a time, so memory stays bounded.  Use as a context
    manager: leaving it waits for the thread, and re-raises the first failed write.
    """

    MAX_PENDING = 4

    def __init__(self, rule: SplitRule, writers: Mapping[str, EventWriter]) -> None:
        self.rule = rule
        self.writers = writers
        self.counts = {k: 0 for k in writers}
        self.next_row = 0  # 0-based index of the next row to route by hash
        self.held: collections.deque[dict[str, np.ndarray]] = collections.deque()
        self.n_held = 0
        self.template: dict[str, np.ndarray] | None = None
        #: called with (split name, events) for every part routed, e.g. to tally weights
        self.tally: Callable[[str, dict[str, np.ndarray]], None] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hepflows-write")
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()

    def __enter__(self) -> SplitRouter:
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
        if self.tally is not None:
            self.tally(name, part)
        self._pending.append(self._pool.submit(self.writers[name].write, part))
        self._drain(self.MAX_PENDING)

    def _route(self, chunk: dict[str, np.ndarray]) -> None:
        n = len(next(iter(chunk.values())))
        for name, sel in self.rule.assign(self.next_row, n).items():
            self._write(name, {k: v[sel] for k, v in chunk.items()})
        self.next_row += n

    def add_keyed(self, chunk: dict[str, np.ndarray], entries: np.ndarray, key: int) -> None:
        """Route events by their entry numbers in a file of split key ``key`` (no tail split)."""
        if self.rule.test_rows:
            raise InputError(
                "split: the 'higgs' convention holds back the last rows of one "
                "file; give fractions for several input files"
            )
        if self.template is None:
            self.template = {k: v[:0] for k, v in chunk.items()}
        for name, sel in self.rule.assign_entries(entries, key).items():
            self._write(name, {k: v[sel] for k, v in chunk.items()})

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


def split_writers(
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
    compression: str | None = "lz4",
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
    (12 MB of arrays per 100k rows; a reader thread parses the next chunks while earlier ones
    are routed and written) plus, for the ``"higgs"`` split, the held-back test rows (58 MB for
    500k).  ``compression``: one of :data:`~hepflows.events.writer.COMPRESSIONS` or None; LZ4,
    the default, keeps up with the parsing (ZLIB, 15% smaller files, runs at a third of the
    speed).
    """
    rule = SplitRule(split, list(outputs))
    source = {"source": os.fspath(path), "source_format": "higgs_csv", "limit": limit}
    writers = split_writers(outputs, compression, metadata, source)
    with all_or_nothing(list(writers.values())), SplitRouter(rule, writers) as router:
        for chunk in iter_higgs_csv(path, chunk_rows=chunk_rows, limit=limit):
            router.add(chunk)
        return router.finish()
