"""Shards: how a long generation is cut into independent jobs, and how their files are joined.

A sharded step (the generator's ``generate``, the flow's ``sample``) runs as N jobs; job k writes
events ``[start_k, stop_k)`` of the run to its own file.  Both generators are seeded per block or
chunk of events, never per job, so any shard can be rerun alone and gives the same events, and
the N files together hold exactly the events of one unsharded run, in order.

:func:`shard_ranges` says which events each shard holds; :func:`merge_event_files` joins shard
files into one event file, chunk by chunk (memory stays at one chunk whatever the total), keeping
every branch, dtype and event as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepflows.errors import InputError
from hepflows.events.reader import count_events, iterate_events, read_metadata
from hepflows.events.schema import HIGGS_FEATURES, LABEL, TREE_NAME, WEIGHT
from hepflows.events.writer import EventWriter

__all__ = ["file_branches", "merge_event_files", "shard_range", "shard_ranges"]


def shard_ranges(
    n_events: int, shards: int, unit: int = 1, *, key: str = "shards"
) -> list[tuple[int, int]]:
    """Event ranges ``[start, stop)`` of ``shards`` shards covering ``n_events`` events.

    Shards are cut at multiples of ``unit`` (the sampler's chunk size, so that every chunk, and
    with it every chunk seed, stays whole) and hold as equal a number of units as possible; only
    the last may end inside a unit.  ``key`` names the config key in the error raised when there
    are fewer units than shards.
    """
    for name, value, least in (("n_events", n_events, 0), ("shards", shards, 1), ("unit", unit, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{key}: {name} must be an integer >= {least}, got {value!r}")
    units = math.ceil(n_events / unit)
    if shards > max(units, 1):
        raise InputError(
            f"{key}: {shards} shards of whole {unit}-event chunks need more than {n_events} "
            f"events (at most {units} shard(s) possible); use fewer shards or more events"
        )
    edges = [min(k * units // shards * unit, n_events) for k in range(shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def shard_range(
    n_events: int, shards: int, shard: int, unit: int = 1, *, key: str = "shards"
) -> tuple[int, int]:
    """``[start, stop)`` of shard ``shard`` (0-based) in :func:`shard_ranges`."""
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise InputError(f"{key}: shard index must be in 0..{shards - 1}, got {shard!r}")
    return shard_ranges(n_events, shards, unit, key=key)[shard]


def file_branches(path: str | Path) -> tuple[str, ...]:
    """Branch names of an event file's tree: its features (HIGGS ones in schema order, the
    user's in file order), then ``label`` and ``weight``."""
    import uproot

    count_events(path)  # turns a missing, truncated or foreign file into an InputError first
    with uproot.open(path) as f:
        present = list(f[TREE_NAME].keys(recursive=False))
    own = [b for b in present if b not in HIGGS_FEATURES and b not in (LABEL, WEIGHT)]
    return tuple(b for b in (*HIGGS_FEATURES, *own, LABEL, WEIGHT) if b in present)


def _merged_metadata(
    metadata: Sequence[Mapping[str, Any]], files: Sequence[str], counts: Sequence[int]
) -> dict[str, Any]:
    """Keys equal in every input, plus one record per input of its file, events and other keys.

    Nothing is dropped: what differs between shards (their ``start``, ``shard``, ...) stays
    with each shard's record.
    """
    common = (
        {k: v for k, v in metadata[0].items() if all(k in m and m[k] == v for m in metadata[1:])}
        if metadata
        else {}
    )
    parts = [
        {"file": name, "events": n, **{k: v for k, v in m.items() if k not in common}}
        for name, n, m in zip(files, counts, metadata)
    ]
    return {**common, "merged_from": parts}


def merge_event_files(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    compression: str | None = "lz4",
    max_events_per_input: int | None = None,
    step_size: int = 100_000,
    metadata: Mapping[str, object] | None = None,
) -> int:
    """Join event files, in the given order, into ``output``; returns the events written.

    Every input must have the same branches; values and dtypes pass through unchanged, so the
    output holds exactly the inputs' events, each once.  ``max_events_per_input`` takes only the
    first events of each input (a small, even sample of many shards, e.g. for validation).
    Inputs are read ``step_size`` events at a time and the output appears only when complete.
    The output's metadata is that of the inputs (see :func:`_merged_metadata`) plus ``metadata``.
    """
    if not inputs:
        raise InputError(f"{output}: nothing to merge (no input files)")
    if max_events_per_input is not None and max_events_per_input < 1:
        raise InputError(
            f"max_events_per_input: expected an integer >= 1, got {max_events_per_input!r}"
        )
    out = Path(output)
    if any(Path(p).resolve() == out.resolve() for p in inputs):
        raise InputError(f"{output}: the output is also one of the inputs")
    branches = file_branches(inputs[0])
    for path in inputs[1:]:
        other = file_branches(path)
        if other != branches:
            raise InputError(
                f"{path}: branches {list(other)} differ from those of {inputs[0]}: {list(branches)}"
            )
    features = [b for b in branches if b not in (LABEL, WEIGHT)]
    has_label, has_weight = LABEL in branches, WEIGHT in branches
    counts: list[int] = []
    with EventWriter(out, compression=compression, metadata=dict(metadata or {})) as writer:
        # An empty first chunk fixes the branches even if every input is empty.
        writer.write(_empty(branches))
        for path in inputs:
            counts.append(
                _copy(
                    path, writer, features, has_label, has_weight, max_events_per_input, step_size
                )
            )
        writer.metadata = {
            **_merged_metadata(
                [read_metadata(p) for p in inputs], [Path(p).name for p in inputs], counts
            ),
            **writer.metadata,
            "n_events": writer.n_written,
        }
        return writer.n_written


def _empty(branches: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    return {b: np.empty(0, np.int8 if b == LABEL else np.float32) for b in branches}


def _copy(
    path: str | Path,
    writer: EventWriter,
    features: Sequence[str],
    has_label: bool,
    has_weight: bool,
    limit: int | None,
    step_size: int,
) -> int:
    """Append the events of one file (its first ``limit``) to ``writer``; returns how many."""
    n = 0
    for chunk in iterate_events(
        path, features, step_size=step_size, with_label=has_label, with_weight=has_weight
    ):
        size = len(next(iter(chunk.values())))
        if limit is not None and n + size > limit:
            chunk = {k: v[: limit - n] for k, v in chunk.items()}
            size = limit - n
        writer.write(chunk)
        n += size
        if limit is not None and n >= limit:
            break
    return n
