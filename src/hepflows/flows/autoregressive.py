"""Masked autoregressive rational-quadratic spline transform (RQ-NSF, autoregressive variant)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Transform
from .nets import MADE
from .splines import rq_inverse_one, rq_spline

__all__ = ["MaskedRQSAutoregressive"]


class MaskedRQSAutoregressive(Transform):
    """``z_i = f(x_i; theta_i(x_{<i}, context))`` with ``f`` a rational-quadratic spline on
    ``[-B, B]`` (identity tails) and ``theta`` from one MADE pass for all features.

    Density evaluation (``forward``) takes one network pass. The inverse is sequential: ``d``
    passes, pass ``k`` fixing feature ``k``; the spline parameters of the last pass are exact, so
    the returned log-determinant is too.

    Arguments:
        features: ``d``.
        context_features: context columns fed to every hidden unit.
        hidden: MADE hidden widths.
        activation: activation name.
        dropout: dropout in the MADE.
        bins: ``K``.
        tail_bound: ``B``.
        residual: a residual MADE (Durkan et al., "Neural Spline Flows", arXiv:1906.04032; see
            :class:`~hepflows.flows.nets.MADE`), ``hidden`` all of one width.
    """

    sequential_inverse = True

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        bins: int = 8,
        tail_bound: float = 5.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        self.context_features = context_features
        self.bins = bins
        self.tail_bound = tail_bound
        self.net = MADE(
            features,
            [bins, bins, bins - 1],
            context_features,
            hidden,
            activation,
            dropout,
            residual=residual,
        )

    def _spline(
        self, x: Tensor, cond: Tensor, context: Tensor | None, inverse: bool
    ) -> tuple[Tensor, Tensor]:
        if self.context_features and context is None:
            raise ValueError(f"{self.__class__.__name__} needs a context")
        p = self.net(cond, context if self.context_features else None)
        p = p if p.dtype == x.dtype else p.to(x.dtype)  # autocast: spline in the events' precision
        out, ladj = rq_spline(x, p, self.features, self.bins, self.tail_bound, inverse=inverse)
        return out, ladj.sum(dim=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._spline(x, x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.context_features and context is None:
            raise ValueError(f"{self.__class__.__name__} needs a context")
        ctx = context if self.context_features else None
        net = self.net
        differentiable = torch.is_grad_enabled() and (
            z.requires_grad
            or (ctx is not None and ctx.requires_grad)
            or any(p.requires_grad for p in net.parameters())
        )
        if differentiable or (net.training and net._dropout > 0):
            return self._inverse_by_passes(z, ctx)
        # pass k fixes feature k from the features before it; the MADE sweep computes each
        # hidden unit once (see MADESweep), and feature k's parameters in pass k are those the
        # forward pass would compute from the returned x, so its log-determinant is exact
        # feature-major (d, n) copies of z and x: every pass reads and writes contiguous rows
        sweep = net.sweep(z, ctx)
        z_rows = z.t().contiguous()
        x_rows = torch.empty_like(z_rows)
        ladj = z.new_zeros(z.shape[0])
        for k in range(self.features):
            p = sweep.params(k)
            p = p if p.dtype == z.dtype else p.t().to(z.dtype).t()  # keep the row layout
            x_k, ladj_k = rq_inverse_one(z_rows[k], p, self.bins, self.tail_bound)
            x_rows[k] = x_k
            sweep.fix(k, x_k)
            ladj += ladj_k
        return x_rows.t().contiguous(), ladj

    def _inverse_by_passes(self, z: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        # differentiable: pass k runs the network (its last layer for feature k's rows only) and
        # inverts feature k; the last pass inverts every feature from exact parameters and gives
        # the log-determinant
        x = z
        for k in range(self.features - 1):
            p = self.net.feature_params(x, ctx, k)
            p = p if p.dtype == z.dtype else p.to(z.dtype)
            x_k, _ = rq_spline(z[:, k : k + 1], p, 1, self.bins, self.tail_bound, inverse=True)
            x = torch.cat([x[:, :k], x_k, x[:, k + 1 :]], dim=1)
        return self._spline(z, x, ctx, inverse=True)
