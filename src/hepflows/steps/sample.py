"""The ``sample`` step: generate events from a trained flow, streamed to ROOT in seeded chunks.

Chunk ``c`` is seeded by ``(seed, c)`` alone, so a shard (a whole range of chunks) can be rerun
on its own and the shards together are exactly the unsharded sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError
from hepflows.steps.common import features, metadata

if TYPE_CHECKING:
    from hepflows.settings import SamplingSettings, Settings

log = logging.getLogger("hepflows")


@dataclass(frozen=True)
class Chunks:
    """Which events a job writes: ``start..stop`` of the ``total`` events of a sample whose
    chunk 0 is the model's chunk ``first_chunk``, and the shard (None: the whole sample)."""

    total: int
    start: int
    stop: int
    first_chunk: int
    shard: int | None

    @property
    def events(self) -> int:
        """The events this job writes."""
        return self.stop - self.start


def run(
    settings: Settings | None,
    *,
    model: str | Sequence[str],
    out: str,
    preprocess: str | None = None,
    events: int | None = None,
    shard: int | None = None,
    seed: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    refine_draw: bool = False,
    progress: bool = True,
) -> None:
    """Generate N events from a trained flow, streamed to ROOT in chunks (or one shard of them).

    Args:
        settings: The validated settings, or None: then the model alone is the identity (its
            weights and preprocessing) and the sampling settings are the schema's defaults.
        model: The model file, or the folder of a run or model to find it in; or several:
            an ensemble, chunk ``c`` drawn by member ``c mod k`` (:mod:`hepflows.ensemble`;
            the preprocessing is found beside the first); ``sampling.ensemble`` adds members.
        out: The event file to write (ROOT).
        preprocess: The preprocessing file; None finds it beside the model.
        events: How many events; None takes ``sampling.events``.
        shard: Write only this shard of ``sampling.shards`` (0-based), or None for all.
        seed: A seed for another, independent sample of the same model; None takes ``seed``.
        precision: Overrides ``sampling.precision``.
        device: Overrides ``sampling.device``.
        refine_draw: Draw the refine classifier's own sample (``refine.generated_events``
            events, from chunks far beyond every sample's).
        progress: Whether to show a progress bar.
    """
    from hepflows import api, config, training
    from hepflows.ensemble import check_even_mix
    from hepflows.preprocess import Preprocessor
    from hepflows.sampling import resolve_precision, sample_to_root

    with_config = settings is not None
    if settings is None:
        settings = default_settings()
    sampling = settings.sampling
    on = training.select_device(device or sampling.device)
    models = [model] if isinstance(model, str | Path) else list(model)
    models += sampling.ensemble
    model_file, preprocess_file = api.locate(models[0], preprocess)
    model_files = [model_file] + [api.locate(m, preprocess_file)[0] for m in models[1:]]
    pre = Preprocessor.load(preprocess_file, features=features(settings) if with_config else None)
    chunks = plan(settings, events, shard, refine_draw)
    flows, metas = load_models(settings if with_config else None, model_files, pre, on)
    meta = metas[0]
    if len(flows) > 1:
        check_even_mix(chunks.total, sampling.chunk_size, len(flows))
    fraction = signal_fraction(sampling, meta, model_file)
    # --seed draws another, independent sample of the same model (chunk k from (seed, k))
    seed = settings.seed if seed is None else seed
    precision = resolve_precision(precision or sampling.precision, on)
    announce(chunks, on, precision, fraction, out)
    extra = provenance(settings, chunks, model_files, metas, fraction, precision, seed, with_config)
    compression = None if sampling.compression == "none" else sampling.compression
    sample_to_root(
        flows,
        pre,
        out,
        chunks.events,
        seed=seed,
        chunk_size=sampling.chunk_size,
        first_chunk=chunks.first_chunk + chunks.start // sampling.chunk_size,
        signal_fraction=fraction,
        compression=compression,
        device=on,
        metadata=metadata(settings, (*config.MODEL_SECTIONS, "sampling"), **extra),
        progress=progress,
        precision=precision,
        support=sampling.support,
    )


def default_settings() -> Settings:
    """The schema's defaults, for a model sampled without a config."""
    from hepflows import config
    from hepflows.settings import Settings

    return Settings.from_config(config.validate({}, source="defaults"))


def plan(settings: Settings, events: int | None, shard: int | None, refine_draw: bool) -> Chunks:
    """The events of this job: ``events`` (or ``sampling.events``), the refine classifier's
    draw, or one shard of them.

    Shard k is a whole range of chunks, and chunk c is seeded by (seed, c) alone: the shards
    together are exactly the unsharded sample, and any shard can be rerun on its own.
    """
    from hepflows.shards import shard_range

    sampling = settings.sampling
    total, first_chunk = events or sampling.events, 0
    if refine_draw:
        # the refine classifier's draw: its own chunks, far beyond every sample's
        from hepflows.refine import REFINE_FIRST_CHUNK

        if shard is not None:
            raise InputError("sample --refine-draw: the draw is one file, give no --shard")
        total, first_chunk = settings.refine.generated_events, REFINE_FIRST_CHUNK
    start, stop = 0, total
    if shard is not None:
        start, stop = shard_range(
            total, sampling.shards, shard, sampling.chunk_size, key="sampling.shards"
        )
    return Chunks(total, start, stop, first_chunk if refine_draw else 0, shard)


def announce(chunks: Chunks, device: Any, precision: str, fraction: float | None, out: str) -> None:
    """Log what this job draws, where and into which file."""
    where = (
        ""
        if chunks.shard is None
        else f" (shard {chunks.shard}: events {chunks.start}..{chunks.stop} of {chunks.total})"
    )
    log.info(
        "sampling %d events%s on %s in %s, signal fraction %s -> %s",
        chunks.events,
        where,
        device,
        precision,
        fraction,
        out,
    )


def load_models(
    settings: Settings | None, paths: Sequence[Path], pre: Any, device: Any
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The models (one, or an ensemble's members) and their records, checked against the
    preprocessing, each other and (with settings) the settings' model hash."""
    from hepflows import config
    from hepflows.ensemble import load_members

    flows, metas = load_members(
        paths,
        pre,
        config_hash=None if settings is None else settings.section_hash(config.MODEL_SECTIONS),
        device=device,
    )
    return flows, metas


def signal_fraction(sampling: SamplingSettings, meta: dict[str, Any], path: Path) -> float | None:
    """The signal fraction to generate: ``sampling.signal_fraction``, else the training
    data's; None for an unconditional model. Refuses a label the model never saw."""
    from hepflows.sampling import check_trained_labels

    if not meta["context_features"]:
        return None
    fraction = sampling.signal_fraction
    if fraction is None:
        fraction = meta["signal_fraction"]
    check_trained_labels(fraction, meta, where=str(path))
    return fraction


def provenance(
    settings: Settings,
    chunks: Chunks,
    paths: Sequence[Path],
    metas: Sequence[dict[str, Any]],
    fraction: float | None,
    precision: str,
    seed: int,
    with_config: bool,
) -> dict[str, Any]:
    """What the sample's metadata records besides the common provenance; without a config
    (``with_config`` false) the model's own config hash."""
    from hepflows.ensemble import members_record
    from hepflows.normalisation import sample_normalisation

    meta = metas[0]
    extra: dict[str, Any] = {
        "model": str(paths[0]) if len(paths) == 1 else [str(m) for m in paths],
        "start": chunks.start,
        "n_events": chunks.events,
        "precision": precision,
        "seed": seed,
        "model_config_hash": meta.get("config_hash"),
        "process_fractions": None
        if fraction is None
        else {"signal": fraction, "background": 1.0 - fraction},
        "normalisation": sample_normalisation(
            meta.get("normalisation"), chunks.total, fraction, meta.get("signal_fraction")
        ),
    }
    if len(paths) > 1:
        extra["ensemble"] = {
            "members": members_record(paths, metas),
            "chunk_size": settings.sampling.chunk_size,
            "rule": "chunk c drawn by member c mod k",
        }
    if not with_config:
        extra["config_hash"] = meta.get("config_hash")  # the model's: no config was given
    if chunks.first_chunk:  # the refine classifier's draw
        extra["first_chunk"] = chunks.first_chunk
    if chunks.shard is not None:
        extra.update(shard=chunks.shard, shards=settings.sampling.shards)
    return extra
