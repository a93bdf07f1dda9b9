#!/usr/bin/env python
"""Training steps on the CPU with and without subnormal floats flushed to zero.

A masked autoregressive flow (MADE, arXiv:1502.03509) multiplies a share of its weights by a
zero mask, so their gradient is only the weight decay's. Adam normalises that gradient to
steps of the learning rate's size, which drive those weights to zero; their squared gradients
in Adam's second moment then fall below float32's smallest normal number (1.2e-38), and on an
x86 CPU every operation on such a subnormal number takes a slow microcode path. The training
steps grow several times slower as the epochs go by. :class:`hepflows.training.Trainer`
therefore sets ``torch.set_flush_denormal(True)`` while it trains on the CPU.

This takes a run's resumable checkpoint (``model/model.resume.pt``, written after every
epoch) and its merged config, counts the subnormal numbers in the weights and the optimiser
state, and times training steps on random batches from that state, flush off and on,
alternating (each round starts again from the checkpoint's state):

    OMP_NUM_THREADS=1 python benchmarks/denormals.py results/fidelity/best-generator
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch


def subnormal_count(tensors: list[torch.Tensor]) -> tuple[int, int]:
    """(subnormal, all) floating-point values among ``tensors``."""
    tiny = torch.finfo(torch.float32).tiny
    floats = [t for t in tensors if t.is_floating_point()]
    sub = sum(int(((t.abs() > 0) & (t.abs() < tiny)).sum()) for t in floats)
    return sub, sum(t.numel() for t in floats)


def load(run: Path) -> tuple[torch.nn.Module, dict, dict, int]:
    """The run's flow with its checkpoint's weights, the optimiser state, the training settings
    and the number of features."""
    import json

    from hepflows.settings import Settings
    from hepflows.steps.train import build

    settings = Settings.load(run.with_suffix(".yaml"))
    resume = torch.load(run / "model" / "model.resume.pt", map_location="cpu", weights_only=False)
    n_features = len(json.loads((run / "preprocess.json").read_text())["features"])
    flow = build(settings, n_features, "cpu")
    flow.load_state_dict(resume["model_state"])
    return flow, resume["optimizer"], settings.training, n_features


def time_steps(
    flow: torch.nn.Module, optimizer_state: dict, training, n_features: int, steps: int, flush: bool
) -> float:
    """Seconds per training step from the checkpoint's state (a fresh copy each call)."""
    flow = copy.deepcopy(flow)
    optimizer = torch.optim.Adam(
        flow.parameters(), lr=training.lr, weight_decay=training.weight_decay, fused=True
    )
    optimizer.load_state_dict(copy.deepcopy(optimizer_state))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(steps, training.batch_size, n_features, generator=generator)
    context = torch.randint(0, 2, (steps, training.batch_size, 1), generator=generator).float()
    torch.set_flush_denormal(flush)
    try:
        started = time.perf_counter()
        for i in range(steps):
            optimizer.zero_grad(set_to_none=True)
            flow.training_loss(x[i], context[i]).backward()
            optimizer.step()
        return (time.perf_counter() - started) / steps
    finally:
        torch.set_flush_denormal(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with model/model.resume.pt")
    parser.add_argument("--steps", type=int, default=30, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flow, optimizer_state, training, n_features = load(args.run)
    sub, total = subnormal_count(list(flow.state_dict().values()))
    print(f"weights: {sub:,} of {total:,} values subnormal")
    moments = [t for s in optimizer_state["state"].values() for t in s.values()]
    sub, total = subnormal_count([t for t in moments if torch.is_tensor(t)])
    print(f"Adam's moments: {sub:,} of {total:,} values subnormal")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for flush in (False, True):
            times[flush].append(
                time_steps(flow, optimizer_state, training, n_features, args.steps, flush)
            )
    off, on = min(times[False]), min(times[True])
    print(f"s / step, best of {args.rounds}: flush off {off:.4f}, flush on {on:.4f}")
    print(f"flush on runs x{off / on:.2f} as fast")


if __name__ == "__main__":
    main()
