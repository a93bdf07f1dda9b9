"""Sampling through a compiled inverse: :func:`torch.compile` of a flow's latent -> data pass.

A flow's sampling is ``x = T^{-1}(z)`` with ``z ~ p_base``. :class:`CompiledSampler` keeps the
base draw eager, so that the same generator state gives the same ``z`` as :meth:`Flow.sample`,
and compiles only the inverse, for fixed shapes (``dynamic=False``: one compilation per batch
size, which a sampler of fixed-size chunks reuses). With ``mode="reduce-overhead"`` on CUDA the
compiled inverse is replayed as a CUDA graph, one launch for all its kernels; inductor's fusion
of the element-wise maps between the conditioners' products is the other gain it can bring.

Whether either pays is a property of the device and the batch size, so nothing in hepflows uses
this class by default: ``benchmarks/gpu/check.py`` measures it against the eager path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import Flow

__all__ = ["CompiledSampler"]


class CompiledSampler:
    """``flow.sample`` with the inverse pass compiled by :func:`torch.compile`.

    Arguments:
        flow: the flow, on its device, in evaluation mode for sampling.
        mode: :func:`torch.compile`'s mode (``None``, ``"reduce-overhead"`` for CUDA graphs,
            ``"max-autotune"``, ...).
        backend: :func:`torch.compile`'s backend; ``"eager"`` traces without generating code
            (no compiler needed, the same values as the eager flow).

    The first call for each batch size compiles (seconds to minutes); later calls of that size
    reuse it. Outputs are copies, safe to keep across calls (a CUDA graph overwrites its own).
    """

    def __init__(self, flow: Flow, *, mode: str | None = None, backend: str = "inductor") -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"CompiledSampler needs a Flow, not {type(flow).__name__}")
        self.flow = flow
        self._inverse: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]] = torch.compile(
            flow._inverse, mode=mode, backend=backend, dynamic=False
        )

    @torch.no_grad()
    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` events (n, d) given ``context`` (n, c), as :meth:`Flow.sample` does."""
        flow = self.flow
        flow._check(None, context, n)
        z = flow.base.sample(n, generator=generator)
        tile = flow._tile_rows(n, z.device, inverse=True)
        x, _ = flow._tiled(self._inverse, z, context, tile)
        return x.clone() if tile is None else x  # tiles are joined into a new tensor already
