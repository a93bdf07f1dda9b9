"""Normalization layers of a flow: the batch-norm flow layer (RealNVP, arXiv:1605.08803; MAF,
arXiv:1705.07057) and ActNorm (Glow, arXiv:1807.03039)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .base import Transform

__all__ = ["BatchNormFlow", "BatchStatisticsNorm", "ActNorm"]


def _normalize(
    x: Tensor, mean: Tensor, var: Tensor, log_alpha: Tensor, beta: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``z = (x - mean) exp(a) + beta`` with ``a = log_alpha - 0.5 log(var + eps)``; returns
    ``z`` (n, d), the log-scale ``a`` (d,) and ``x - mean`` (n, d)."""
    log_scale = log_alpha - 0.5 * torch.log(var + eps)
    centred = x - mean
    return centred * torch.exp(log_scale) + beta, log_scale, centred


class BatchNormFlow(Transform):
    """Batch normalization as an invertible layer.

    ``z = alpha * (x - mu) / sqrt(var + eps) + beta`` with ``alpha = exp(log_alpha)`` (kept
    positive) and ``log|det| = sum(log alpha - 0.5 log(var + eps))``.

    - In training mode ``mu`` and ``var`` (biased) are the batch statistics, treated in the
      log-determinant as constants of the map, and the running statistics are updated.
    - In evaluation mode ``mu`` and ``var`` are the running statistics.
    - ``inverse`` always uses the running statistics (a latent sample has no batch statistics of
      data); so in evaluation mode it inverts ``forward`` exactly, and in training mode it does so
      only when ``momentum = 0`` (running = last batch).

    Momentum convention: ``momentum`` (rho) weights the OLD running value,

        running <- rho * running + (1 - rho) * batch,

    as in the seed study and in MAF/RealNVP code (rho = 1e-5 there: the running statistics are
    essentially those of the last training batch). This is the opposite of
    ``torch.nn.BatchNorm1d(momentum=m)``, which weights the new value (``m = 1 - rho``).

    Arguments:
        features: ``d``.
        momentum: rho, in [0, 1].
        eps: added to the variance.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, features: int, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.features = features
        self.momentum = momentum
        self.eps = eps
        self.log_alpha = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def extra_repr(self) -> str:
        return f"{self.features}, momentum={self.momentum} (weight of the old running value), eps={self.eps}"

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training:
            with torch.no_grad():
                mean = x.mean(dim=0)
                # the biased variance in two passes: torch.var's value to rounding, several times
                # faster over the events of an (n, d) batch (its reduction along a strided
                # dimension runs a scalar loop)
                var = (x - mean).square_().mean(dim=0)
                rho = self.momentum
                self.running_mean.mul_(rho).add_((1 - rho) * mean)
                self.running_var.mul_(rho).add_((1 - rho) * var)
            z, log_det = BatchStatisticsNorm.apply(
                x, mean, var, self.log_alpha, self.beta, self.eps
            )
            return z, log_det.expand(x.shape[0])
        z, log_scale, _ = _normalize(
            x, self.running_mean, self.running_var, self.log_alpha, self.beta, self.eps
        )
        return z, log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_std = 0.5 * torch.log(self.running_var + self.eps)
        x = (z - self.beta) * torch.exp(log_std - self.log_alpha) + self.running_mean
        return x, (log_std - self.log_alpha).sum().expand(z.shape[0])


class BatchStatisticsNorm(torch.autograd.Function):
    """The training-mode map of :class:`BatchNormFlow` as one autograd node.

    ``z = (x - mu) s + beta`` with ``s = exp(a)``, ``a = log_alpha - 0.5 log(var + eps)`` and
    ``log|det| = sum(a)``, where ``mu`` and ``var`` are the batch mean and biased variance of
    ``x`` (passed in, computed without autograd) and still depend on ``x``: the gradient is the
    one autograd takes through them, written out. With ``xc = x - mu``, ``g = dL/dz`` and ``G``
    the gradient of the log-determinant,

        dL/dbeta = sum_n g,    dL/dlog_alpha = s sum_n g xc + G,
        dL/dx = s (g - mean_n g) - (dL/dlog_alpha) xc / (n (var + eps)),

    the last two terms being the paths through ``mu`` and ``var``. Autograd of the same forward
    keeps a node for each of a dozen operations on (n, d) tensors; this is one.

    Arguments of ``apply``: ``x`` (n, d), ``mean`` and ``var`` (d,), ``log_alpha`` and ``beta``
    (d,), ``eps``. Returns ``z`` (n, d) and ``log|det|`` (a 0-d tensor, the same for every event).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        mean: Tensor,
        var: Tensor,
        log_alpha: Tensor,
        beta: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor]:
        z, log_scale, centred = _normalize(x, mean, var, log_alpha, beta, eps)
        ctx.save_for_backward(centred, log_scale.exp(), var)
        ctx.eps = eps  # type: ignore[attr-defined]
        return z, log_scale.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, g_z: Tensor, g_log_det: Tensor
    ) -> tuple[Tensor | None, ...]:
        centred, scale, var = ctx.saved_tensors  # type: ignore[attr-defined]
        n = centred.shape[0]
        g_beta = g_z.sum(dim=0)
        g_log_alpha = (g_z * centred).sum(dim=0).mul_(scale).add_(g_log_det)
        g_x = (g_z - g_beta / n).mul_(scale)
        g_x.sub_(centred * (g_log_alpha / (n * (var + ctx.eps))))  # type: ignore[attr-defined]
        return g_x, None, None, g_log_alpha, g_beta, None


class ActNorm(Transform):
    """Per-feature affine normalization ``z = (x - loc) * exp(-log_scale)`` (Glow).

    Data-dependent initialisation: the first ``forward`` in training mode sets ``loc`` and
    ``log_scale`` to the batch mean and log standard deviation, so that batch leaves with zero mean
    and unit variance; afterwards both are ordinary parameters. The ``initialized`` flag is a
    buffer, so a loaded model is not initialised again.

    Arguments:
        features: ``d``.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ("initialized",)

    initialized: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))
        # a Python mirror of the buffer, so training steps do not read a device tensor each call
        self._ready = False

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``loc``/``log_scale`` from a batch ``x`` (n, d)."""
        self.loc.copy_(x.mean(dim=0))
        self.log_scale.copy_(torch.log(x.std(dim=0, unbiased=False) + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self._ready:
            if not bool(self.initialized):
                self.initialize(x)
            self._ready = True
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * torch.exp(self.log_scale) + self.loc, self.log_scale.sum().expand(z.shape[0])
