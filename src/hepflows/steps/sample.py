"""The ``sample`` step: generate events from a trained flow, streamed to ROOT in seeded chunks.

Chunk ``c`` is seeded by ``(seed, c)`` alone, so a shard (a whole range of chunks) can be rerun
on its own and the shards together are exactly the unsharded sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hepflows.errors import InputError
from hepflows.steps.common import features, metadata

log = logging.getLogger("hepflows")


def run(
    cfg: dict[str, Any] | None,
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
        cfg: The validated settings, or None: then the model alone is the identity (its
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
    from hepflows.ensemble import check_even_mix, load_members, members_record
    from hepflows.normalisation import sample_normalisation
    from hepflows.preprocess import Preprocessor
    from hepflows.sampling import check_trained_labels, resolve_precision, sample_to_root
    from hepflows.shards import shard_range

    with_config = cfg is not None
    if cfg is None:
        cfg = config.validate({}, source="defaults")
    sampling = cfg["sampling"]
    on = training.select_device(device or sampling["device"])
    models = [model] if isinstance(model, str | Path) else list(model)
    models += sampling["ensemble"]
    model_file, preprocess_file = api.locate(models[0], preprocess)
    model_files = [model_file] + [api.locate(m, preprocess_file)[0] for m in models[1:]]
    pre = Preprocessor.load(preprocess_file, features=features(cfg) if with_config else None)
    total = events or sampling["events"]
    chunk_size = sampling["chunk_size"]
    # the refine classifier's draw: its own chunks, far beyond every sample's
    first_chunk = 0
    if refine_draw:
        from hepflows.refine import REFINE_FIRST_CHUNK

        if shard is not None:
            raise InputError("sample --refine-draw: the draw is one file, give no --shard")
        total, first_chunk = cfg["refine"]["generated_events"], REFINE_FIRST_CHUNK
    # Shard k is a whole range of chunks, and chunk c is seeded by (seed, c) alone: the shards
    # together are exactly the unsharded sample, and any shard can be rerun on its own.
    start, stop = 0, total
    if shard is not None:
        start, stop = shard_range(
            total, sampling["shards"], shard, chunk_size, key="sampling.shards"
        )
    flows, metas = load_members(
        model_files,
        pre,
        config_hash=config.section_hash(cfg, config.MODEL_SECTIONS) if with_config else None,
        device=on,
    )
    meta = metas[0]
    if len(flows) > 1:
        check_even_mix(total, chunk_size, len(flows))
    fraction = None
    if meta["context_features"]:
        fraction = sampling["signal_fraction"]
        if fraction is None:
            fraction = meta["signal_fraction"]
        check_trained_labels(fraction, meta, where=str(model_file))
    # --seed draws another, independent sample of the same model (chunk k from (seed, k))
    seed = cfg["seed"] if seed is None else seed
    where = "" if shard is None else f" (shard {shard}: events {start}..{stop} of {total})"
    precision = resolve_precision(precision or sampling["precision"], on)
    log.info(
        "sampling %d events%s on %s in %s, signal fraction %s -> %s",
        stop - start,
        where,
        on,
        precision,
        fraction,
        out,
    )
    compression = None if sampling["compression"] == "none" else sampling["compression"]
    extra: dict[str, Any] = {
        "model": str(model_file) if len(flows) == 1 else [str(m) for m in model_files],
        "start": start,
        "n_events": stop - start,
        "precision": precision,
        "seed": seed,
        "model_config_hash": meta.get("config_hash"),
        "process_fractions": None
        if fraction is None
        else {"signal": fraction, "background": 1.0 - fraction},
        "normalisation": sample_normalisation(
            meta.get("normalisation"), total, fraction, meta.get("signal_fraction")
        ),
    }
    if len(flows) > 1:
        extra["ensemble"] = {
            "members": members_record(model_files, metas),
            "chunk_size": chunk_size,
            "rule": "chunk c drawn by member c mod k",
        }
    if not with_config:
        extra["config_hash"] = meta.get("config_hash")  # the model's: no config was given
    if refine_draw:
        extra["first_chunk"] = first_chunk
    if shard is not None:
        extra.update(shard=shard, shards=sampling["shards"])
    sample_to_root(
        flows,
        pre,
        out,
        stop - start,
        seed=seed,
        chunk_size=chunk_size,
        first_chunk=first_chunk + start // chunk_size,
        signal_fraction=fraction,
        compression=compression,
        device=on,
        metadata=metadata(cfg, (*config.MODEL_SECTIONS, "sampling"), **extra),
        progress=progress,
        precision=precision,
        support=sampling["support"],
    )
