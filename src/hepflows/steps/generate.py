"""The ``generate`` step: MC events from the embedded generator (:mod:`hepflows.events.generator`),
one ROOT file per split, one shard of a split, the amplification's truth or the refine
classifier's MC.

Splits are disjoint ranges of one seeded stream (train, then val, then test): independent, and
each reproducible alone.  The truth starts at :data:`TRUTH_START`, the refine MC at
:data:`hepflows.refine.REFINE_START`, far beyond them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hepflows.errors import InputError
from hepflows.steps.common import metadata

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")

#: First event of the amplification's truth sample (``generate --truth``) in the generator's
#: stream: far beyond train + val + test, so the flow never saw any of it.
TRUTH_START = 10**9

#: One file to write: (split, path, first event, events, shard or None).
Job = tuple[str, str, int, int, int | None]


@dataclass(frozen=True)
class Outputs:
    """What ``generate`` is asked to write: the three splits, one shard of a split, the truth
    or the refine MC (the command's options of the same names)."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    split: str | None = None
    shard: int | None = None
    out: str | None = None
    truth: str | None = None
    refine: str | None = None


def run(settings: Settings, outputs: Outputs, progress: bool = True) -> None:
    """Generate the events of each file of ``outputs`` (see :func:`jobs`) and write them.

    Args:
        settings: The validated settings (``seed``, ``data``, the truth and refine MC sizes).
        outputs: The files to write.
        progress: Whether to show a progress bar.
    """
    from hepflows.events.generator import generate_to_root

    data = settings.data
    meta = metadata(settings, ("seed", "data"), source="generator")
    for split, path, start, n, shard in jobs(settings, outputs):
        log.info(
            "generating %d %s events (events %d..%d of seed %d%s) -> %s",
            n,
            split,
            start,
            start + n,
            settings.seed,
            "" if shard is None else f", shard {shard}",
            path,
        )
        extra = (
            {"split": split}
            if shard is None
            else {"split": split, "shard": shard, "shards": data.shards}
        )
        generate_to_root(
            path,
            n,
            seed=settings.seed,
            start=start,
            signal_fraction=data.signal_fraction,
            units=data.units,
            progress=progress,
            metadata=dict(meta, **extra),
        )


def jobs(settings: Settings, outputs: Outputs) -> list[Job]:
    """(split, path, first event, events, shard or None) for each file ``generate`` writes.

    ``shard=K, split=S`` writes only shard K of split S, cut as
    :func:`hepflows.shards.shard_ranges` cuts it into ``data.shards`` pieces.
    """
    from hepflows.shards import shard_range

    data, o = settings.data, outputs
    counts = {"train": data.events.train, "val": data.events.val, "test": data.events.test}
    truth_events = settings.validation.amplification.truth_events
    starts, start = {}, 0
    for split in ("train", "val", "test"):
        starts[split] = start
        start += counts[split]
    if o.refine is not None:
        return [_refine_job(settings, o, start, truth_events)]
    if o.truth is not None:
        if any((o.train, o.val, o.test, o.split, o.out)) or o.shard is not None:
            raise InputError("generate --truth: give only --truth (the truth is one file)")
        if start > TRUTH_START:
            raise InputError(
                f"key data.events: {start} events in all reach the truth's range, "
                f"which starts at event {TRUTH_START}"
            )
        return [("truth", o.truth, TRUTH_START, truth_events, None)]
    if o.shard is None:
        paths = {"train": o.train, "val": o.val, "test": o.test}
        missing = [f"--{k}" for k, v in paths.items() if v is None]
        if missing or o.split or o.out:
            raise InputError(
                "generate: give --train, --val and --test, or --shard with --split and --out"
            )
        return [(k, str(v), starts[k], counts[k], None) for k, v in paths.items()]
    if not (o.split and o.out) or any((o.train, o.val, o.test)):
        raise InputError("generate --shard: give --split and --out (and not --train/--val/--test)")
    lo, hi = shard_range(counts[o.split], data.shards, o.shard, key="data.shards")
    return [(o.split, o.out, starts[o.split] + lo, hi - lo, o.shard)]


def _refine_job(settings: Settings, o: Outputs, n_splits: int, truth_events: int) -> Job:
    """``generate --refine``: the refine classifier's MC, a range beyond the splits and truth."""
    from hepflows.refine import REFINE_START

    if any((o.train, o.val, o.test, o.split, o.out, o.truth)) or o.shard:
        raise InputError("generate --refine: give only --refine (the refine MC is one file)")
    if max(n_splits, TRUTH_START + truth_events) > REFINE_START:
        raise InputError(
            f"keys data.events, validation.amplification.truth_events: the splits or the truth "
            f"reach the refine MC's range, which starts at event {REFINE_START}"
        )
    return ("refine", str(o.refine), REFINE_START, settings.refine.mc_events, None)
