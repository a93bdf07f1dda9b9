"""An ensemble of flows: several models of the same events, sampled evenly (a mixture density).

Members are models trained on the same events with the same preprocessing and differing only
in what their training did not fix (``training.seed``: initial weights and batch order).  A
sample of the ensemble draws chunk ``c`` from member ``c mod k`` (``k`` members) with the
chunk's own seed ``(seed, c)``, so a sample stays reproducible bit for bit and shardable
exactly as a single model's (a shard is a range of chunks), and its density is the members'
average ``p(x) = (1/k) sum_j p_j(x)`` when its chunks are a multiple of ``k`` (an even mix).

The members must agree on everything that gives their numbers a meaning: the features (and
their order), the preprocessing (its config hash and its fitted parameters: one inverse maps
every member's latent draws back), the process labels they were trained on and whether they
are conditional.  A mismatch is an :class:`~hepflows.errors.InputError` naming both files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepflows.errors import InputError

if TYPE_CHECKING:
    import torch

    from hepflows.flows.model import DensityModel
    from hepflows.preprocess import Preprocessor

__all__ = [
    "MEMBER_KEYS",
    "check_even_mix",
    "check_members",
    "member_of_chunk",
    "pick",
    "as_members",
    "event_members",
    "members_record",
    "load_members",
]

log = logging.getLogger(__name__)

#: What every member's model file must hold alike, with how an error names it.
MEMBER_KEYS = {
    "features": "features",
    "context_features": "context columns (conditional or not)",
    "preprocess_hash": "preprocessing hash",
    "preprocess_parameters_hash": "preprocessing parameters' hash",
    "labels": "training labels",
}


def _labels(meta: Mapping[str, Any]) -> list[int] | None:
    labels = meta.get("labels")
    return None if labels is None else sorted(int(v) for v in labels)


def check_members(metas: Sequence[Mapping[str, Any]], paths: Sequence[str | Path]) -> None:
    """Refuse members that do not share :data:`MEMBER_KEYS` with the first one.

    ``metas`` are the model files' metadata (:func:`hepflows.checkpoint.load_model`'s second
    value), ``paths`` their files, in the same order.
    """
    if not metas:
        raise InputError("an ensemble needs at least one model file")
    first = metas[0]
    for meta, path in zip(metas[1:], paths[1:], strict=True):
        for key, name in MEMBER_KEYS.items():
            ours, theirs = (
                (_labels(first), _labels(meta))
                if key == "labels"
                else (first.get(key), meta.get(key))
            )
            if key == "features":
                ours, theirs = list(ours or ()), list(theirs or ())
            if ours != theirs:
                raise InputError(
                    f"{path}: its {name} {theirs!r} differ from those of {paths[0]} ({ours!r}); "
                    "the members of an ensemble must be trained on the same features, "
                    "preprocessing and processes (only training.seed, or the model, differs)"
                )


def member_of_chunk(chunk: int, k: int) -> int:
    """The member (0-based) that draws chunk ``chunk`` of a sample of ``k`` members."""
    return chunk % k


def as_members(flow: DensityModel | Sequence[DensityModel]) -> list[DensityModel]:
    """``flow`` as a list of members: one model is an ensemble of one."""
    import torch

    return [flow] if isinstance(flow, torch.nn.Module) else list(flow)


def pick(flow: DensityModel | Sequence[DensityModel], chunk: int) -> DensityModel:
    """The model that draws chunk ``chunk``: ``flow`` itself, or member ``chunk mod k``."""
    members = as_members(flow)
    return members[member_of_chunk(chunk, len(members))]


def event_members(n_events: int, chunk_size: int, k: int, first_chunk: int = 0) -> np.ndarray:
    """The member (n_events,) int64 that drew each event of a sample written in chunk order
    from chunk ``first_chunk`` on (a whole sample, or its shards merged in order)."""
    chunks = first_chunk + np.arange(n_events, dtype=np.int64) // chunk_size
    return chunks % k


def members_record(paths: Sequence[str | Path], metas: Sequence[Mapping[str, Any]]) -> list[dict]:
    """What a sample records of its members: file, config hash (it holds ``training.seed``),
    best epoch and validation loss of each."""
    return [
        {
            "model": str(path),
            "config_hash": meta.get("config_hash"),
            "epoch": meta.get("epoch"),
            "val_loss": meta.get("val_nll"),
        }
        for path, meta in zip(paths, metas, strict=True)
    ]


def load_members(
    paths: Sequence[str | Path],
    preprocessor: Preprocessor,
    *,
    device: torch.device | str = "cpu",
    config_hash: str | None = None,
) -> tuple[list[DensityModel], list[dict[str, Any]]]:
    """Load every member on ``device`` against ``preprocessor``; returns (flows, metadata).

    The first is checked against the preprocessing file (features, hashes) and against
    ``config_hash`` (the run's model sections), the others against the first
    (:func:`check_members`): members differ in ``training.seed`` by design.
    """
    from hepflows import checkpoint

    if not paths:
        raise InputError("an ensemble needs at least one model file")
    flows, metas = [], []
    for i, path in enumerate(paths):
        # the first against the preprocessing file, the others against the first
        flow, meta = checkpoint.load_model(
            path,
            features=None if i else preprocessor.features,
            preprocess_hash=None if i else preprocessor.config_hash,
            preprocess_parameters_hash=None if i else preprocessor.parameters_hash,
            config_hash=None if i else config_hash,
            device=device,
        )
        flows.append(flow)
        metas.append(meta)
    check_members(metas, paths)
    return flows, metas


def check_even_mix(n_events: int, chunk_size: int, k: int) -> None:
    """Warn when a sample of ``n_events`` in chunks of ``chunk_size`` does not give each of
    ``k`` members the same number of chunks: the mix is then not the members' average."""
    chunks = -(-n_events // chunk_size)
    if k > 1 and (chunks % k or n_events % chunk_size):
        log.warning(
            "ensemble of %d members: %d events in chunks of %d make %d chunk(s), not a multiple "
            "of %d equal chunks; the members are mixed unevenly (set sampling.chunk_size to "
            "a divisor of the events / %d)",
            k,
            n_events,
            chunk_size,
            chunks,
            k,
            k,
        )
