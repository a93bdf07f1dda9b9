"""Base (latent) distributions of a flow.

Every draw takes an optional ``torch.Generator``; with one, a sample is exactly reproducible from
its seed. The draw is made on the generator's device and moved to the distribution's, so a CPU
generator also reproduces the same sample for a model on another device.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["Distribution", "StandardNormal", "GaussianMixture"]

_LOG_2PI = math.log(2 * math.pi)


def _randn(n: int, d: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(n, d, generator=generator, device=device, dtype=like.dtype).to(like.device)


class Distribution(nn.Module):
    """The latent distribution of a flow: ``features`` (``d``), a log-density and draws."""

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()

    features: int

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` (n, d); shape (n,)."""
        raise NotImplementedError

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, d)."""
        raise NotImplementedError


class StandardNormal(Distribution):
    """``N(0, I_d)``; no parameters.

    Arguments:
        features: ``d``.
    """

    _ref: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        # carries the device and dtype the module is moved to
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` (n, d); shape (n,)."""
        return -0.5 * (z * z).sum(dim=-1) - 0.5 * self.features * _LOG_2PI

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, d)."""
        return _randn(n, self.features, self._ref, generator)


class GaussianMixture(Distribution):
    """Mixture of ``K`` diagonal Gaussians with learnable weights, means and scales.

    ``p(z) = sum_k softmax(logits)_k N(z; mu_k, diag(exp(log_sigma_k))^2)``. Weights start equal,
    scales at 1, means from ``N(0, 1)`` (from ``generator`` or torch's global generator) so the
    components start apart.

    Arguments:
        features: ``d``.
        components: ``K``.
        generator: for the initial means.
    """

    def __init__(
        self, features: int, components: int = 8, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.features = features
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, features, generator=generator))
        self.log_scales = nn.Parameter(torch.zeros(components, features))

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` (n, d); shape (n,)."""
        u = (z[:, None, :] - self.means) * torch.exp(-self.log_scales)  # (n, K, d)
        log_comp = -0.5 * (u * u).sum(-1) - self.log_scales.sum(-1) - 0.5 * self.features * _LOG_2PI
        return torch.logsumexp(torch.log_softmax(self.logits, dim=0) + log_comp, dim=-1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, d): a component index per draw, then a Gaussian draw."""
        probs = torch.softmax(self.logits.detach(), dim=0)
        if generator is not None:
            probs = probs.to(generator.device)
        k = torch.multinomial(probs, n, replacement=True, generator=generator).to(self.means.device)
        eps = _randn(n, self.features, self.means, generator)
        return self.means[k] + torch.exp(self.log_scales[k]) * eps
