"""Chunked, seeded generation of events, streamed to ROOT.

Events are produced in fixed-size chunks; chunk ``k`` of a run draws its labels and its latent
points from generators seeded by ``(seed, k)`` alone.  So a sample is reproducible bit for bit,
any range of chunks (a shard) can be regenerated on its own, and memory stays bounded by one
chunk whatever the total.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hepflows.events.schema import LABEL
from hepflows.preprocess import Preprocessor


def chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit seed for chunk ``chunk`` of a run with ``seed``, well mixed by SeedSequence."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def chunk_labels(n: int, signal_fraction: float, seed: int, chunk: int) -> np.ndarray:
    """Process labels (n,) int8 of one chunk: 1 signal with probability ``signal_fraction``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk, 1]))
    return (rng.random(n) < signal_fraction).astype(np.int8)


@torch.no_grad()
def sample_chunk(
    flow: torch.nn.Module,
    preprocessor: Preprocessor,
    n: int,
    *,
    seed: int,
    chunk: int,
    signal_fraction: float | None,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Generate chunk ``chunk``: ``n`` events as {feature: float32 (n,), "label": int8 (n,)}.

    ``signal_fraction`` is None for an unconditional flow (no label is drawn or written).
    """
    generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, chunk))
    context = None
    labels = None
    if signal_fraction is not None:
        labels = chunk_labels(n, signal_fraction, seed, chunk)
        context = torch.from_numpy(labels.astype(np.float32)).to(device).unsqueeze(1)
    y = flow.sample(n, context, generator=generator).double().cpu().numpy()
    bad = ~np.isfinite(y).all(axis=1)
    if bad.any():
        raise FloatingPointError(
            f"the flow produced {int(bad.sum())} non-finite events in chunk {chunk}; "
            "the model is numerically broken, retrain it"
        )
    x = preprocessor.inverse(y).astype(np.float32)
    events = {name: x[:, i] for i, name in enumerate(preprocessor.features)}
    if labels is not None:
        events[LABEL] = labels
    return events


def iter_chunks(n_events: int, chunk_size: int, first_chunk: int = 0) -> Iterator[tuple[int, int]]:
    """(chunk index, events in it) covering ``n_events`` from chunk ``first_chunk`` on."""
    chunk = first_chunk
    remaining = n_events
    while remaining > 0:
        size = min(chunk_size, remaining)
        yield chunk, size
        chunk += 1
        remaining -= size


def sample_to_root(
    flow: torch.nn.Module,
    preprocessor: Preprocessor,
    path: str | Path,
    n_events: int,
    *,
    seed: int,
    chunk_size: int = 100_000,
    first_chunk: int = 0,
    signal_fraction: float | None = None,
    compression: str | None = "lz4",
    device: torch.device | str = "cpu",
    metadata: dict | None = None,
    progress: bool = True,
) -> int:
    """Stream ``n_events`` generated events to the ROOT file ``path``; returns the count.

    The file appears only when complete (see :class:`hepflows.events.io.EventWriter`).
    """
    from hepflows.events.io import EventWriter

    device = torch.device(device)
    flow.eval()
    with EventWriter(path, compression=compression, metadata=metadata) as writer, tqdm(
        total=n_events, unit="event", unit_scale=True, desc="sampling", disable=not progress,
        mininterval=5.0,
    ) as bar:
        for chunk, size in iter_chunks(n_events, chunk_size, first_chunk):
            events = sample_chunk(
                flow, preprocessor, size, seed=seed, chunk=chunk,
                signal_fraction=signal_fraction, device=device,
            )
            writer.write(events)
            bar.update(size)
        return writer.n_written
