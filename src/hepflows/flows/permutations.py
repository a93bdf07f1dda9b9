"""Feature mixing between couplings: fixed permutations and the LU-decomposed linear layer
(Glow: Kingma & Dhariwal 2018, arXiv:1807.03039)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .base import Transform

__all__ = ["Permutation", "LULinear"]


class Permutation(Transform):
    """Fixed permutation ``z = x[:, perm]``; volume preserving.

    Arguments:
        perm: (d,) a permutation of ``0..d-1``; stored as a buffer, so it is saved with the model.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()

    perm: Tensor
    inv_perm: Tensor

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if not torch.equal(perm.sort().values, torch.arange(len(perm))):
            raise ValueError(f"not a permutation: {perm.tolist()}")
        self.features = len(perm)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    @classmethod
    def reverse(cls, features: int) -> Permutation:
        """The order reversal ``(x_{d-1}, ..., x_0)``."""
        return cls(torch.arange(features - 1, -1, -1))

    @classmethod
    def random(cls, features: int, generator: torch.Generator | None = None) -> Permutation:
        """A random permutation drawn once (from ``generator`` or torch's global generator)."""
        return cls(torch.randperm(features, generator=generator))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.inv_perm), z.new_zeros(z.shape[0])


class LULinear(Transform):
    """Invertible linear layer ``z = W x + bias`` with ``W = P L (U + diag(s))`` (Glow).

    ``P`` is a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper triangular and
    ``s = sign * exp(log_s)`` with fixed signs, so ``log|det W| = sum(log_s)`` and ``W`` can never
    become singular. ``W`` starts as the orthogonal ``Q`` of a QR decomposition of a Gaussian
    matrix (drawn from ``generator`` or torch's global generator); ``bias`` starts at 0.

    Arguments:
        features: ``d``.
        generator: for the initial rotation.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()  # the fixed permutation, signs and identity

    permutation: Tensor
    sign_s: Tensor
    eye: Tensor

    def __init__(self, features: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.features = features
        q, _ = torch.linalg.qr(
            torch.randn(features, features, generator=generator, dtype=torch.float64)
        )
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("eye", torch.eye(features))

    def _factors(self) -> tuple[Tensor, Tensor]:
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W`` (d, d)."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def weight_inverse(self) -> Tensor:
        """``W^{-1}`` (d, d) by two triangular solves, exact to rounding."""
        lower, upper = self._factors()
        pt = self.permutation.T
        tmp = torch.linalg.solve_triangular(lower, pt, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, tmp, upper=True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # a d x d mixing is cheap and must stay exactly invertible: never in autocast's bf16
        with torch.autocast(x.device.type, enabled=False):
            z = torch.addmm(self.bias, x, self.weight().T)
        return z, self.log_s.sum().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.autocast(z.device.type, enabled=False):
            x = (z - self.bias) @ self.weight_inverse().T
        return x, (-self.log_s.sum()).expand(z.shape[0])
