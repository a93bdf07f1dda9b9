#!/usr/bin/env python
"""The tensor operations of one training step, counted: what a GPU launches per step.

On a GPU an eager step launches one kernel (or a few) for every tensor operation that is not a
view, and the host spends a few microseconds on each, so a step of many small operations is
bound by the host, not by the device. This script runs one step of the ``Trainer`` (the fast
path, as on CUDA) for the architecture and training settings of a config, on the CPU, and
counts the operations that reach a kernel (views, shape queries and empty allocations left
out), by name.

    python benchmarks/step_ops.py [--config config/seed-paper.yaml] [--batch 64] [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hepflows import config  # noqa: E402
from hepflows.events.schema import CONTINUOUS_FEATURES  # noqa: E402
from hepflows.flows import build_flow  # noqa: E402
from hepflows.training import Dataset, Trainer  # noqa: E402

#: Operations that launch no kernel: views, metadata and allocation without a fill.
NO_KERNEL = frozenset(
    "view _unsafe_view t transpose as_strided slice select expand unsqueeze squeeze split "
    "split_with_sizes detach alias permute unbind reshape _reshape_alias narrow chunk lift_fresh "
    "empty empty_like empty_strided new_empty new_empty_strided _local_scalar_dense is_nonzero "
    "item set_ _has_compatible_shallow_copy_type".split()
)


class OperationCounter(TorchDispatchMode):
    """Counts the kernel-launching ATen operations run under it, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in NO_KERNEL:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def step_operations(config_path: Path, batch: int) -> collections.Counter[str]:
    """The operations of one fast-path training step (after one warm-up step)."""
    cfg = config.load(config_path)
    context = 1 if cfg["training"]["conditional"] else 0
    features = len(CONTINUOUS_FEATURES)
    torch.manual_seed(0)
    flow = build_flow(cfg["model"], features, context)
    x = torch.randn(4 * batch, features)
    c = torch.ones(len(x), 1) if context else None
    settings = dict(cfg["training"], batch_size=batch, epochs=1, device="cpu")
    with tempfile.TemporaryDirectory(prefix="hepflows-ops-") as tmp:
        trainer = Trainer(
            flow,
            Dataset(x, c),
            Dataset(x[:batch], None if c is None else c[:batch]),
            settings,
            seed=0,
            resume_path=Path(tmp) / "resume.pt",
            log_path=Path(tmp) / "log.csv",
            progress=False,
            fast=True,
        )
        flow.train()
        batch_x, batch_c = x[:batch], None if c is None else c[:batch]
        trainer._fast_step(batch_x, batch_c)  # first step: data-dependent initialisations
        counter = OperationCounter()
        with counter:
            trainer._fast_step(batch_x, batch_c)
    return counter.counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "seed-paper.yaml")
    p.add_argument("--batch", type=int, default=64, help="events a step (does not change counts)")
    p.add_argument("--top", type=int, default=15, help="operations listed by name")
    args = p.parse_args(argv)
    counts = step_operations(args.config, args.batch)
    print(f"{args.config}: {sum(counts.values())} kernel-launching operations in one step")
    for name, n in counts.most_common(args.top):
        print(f"  {n:6d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
