"""Coupling transforms: one part of the features, ``x_a``, is kept and conditions an element-wise
bijection of the other part, ``x_b``.

A binary mask ``b`` selects the kept part (``b = 1``); the layer computes

    z_a = x_a,   z_b = f(x_b; theta),   theta = NN(x_a, context),

with one conditioner network emitting every parameter of ``f`` for every transformed feature in
one pass. The parts are taken by index selection (plain slices when a part is contiguous, as for
``half`` masks) and put back by a concatenation or an index copy, never by multiplying with the
mask, which would spend work on the features that do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from .base import Transform
from .nets import MLP
from .splines import (
    piecewise_quadratic_spline,
    pq_knots,
    rq_params_per_feature,
    rq_spline,
)

__all__ = [
    "MASKS",
    "coupling_mask",
    "Coupling",
    "BinnedCoupling",
    "AffineCoupling",
    "AdditiveCoupling",
    "QuadraticCoupling",
    "RQSplineCoupling",
]

#: Mask kinds accepted by :func:`coupling_mask`.
MASKS = ("half", "alternating", "checkerboard")


def coupling_mask(kind: str, features: int, block: int = 0) -> Tensor:
    """The kept-part mask (bool, shape (features,); True = kept, conditions the rest) of a block.

    - ``half``: the first ``features // 2`` features are kept in even blocks, the others in odd
      blocks.
    - ``alternating``: even-indexed features are kept in even blocks, odd-indexed ones in odd
      blocks.
    - ``checkerboard``: a 1-D checkerboard whose period doubles every second block (cells of 1,
      2, 4, ... features, as long as a cell is shorter than the vector), its phase flipping every
      block; so after a few blocks every pair of features has sat on opposite sides, which the
      even/odd mask alone never arranges for neighbours at even distance.
    """
    if features < 2:
        raise ValueError(f"a coupling needs at least 2 features, got {features}")
    j = torch.arange(features)
    parity = block % 2
    if kind == "half":
        mask = j < features // 2
        return mask if parity == 0 else ~mask
    if kind == "alternating":
        return j % 2 == parity
    if kind == "checkerboard":
        levels = [level for level in range(features.bit_length()) if 2**level < features]
        level = levels[(block // 2) % len(levels)]
        return (j >> level) % 2 == parity
    raise ValueError(f"mask: expected one of {list(MASKS)}, got {kind!r}")


def _as_slice(index: Tensor) -> slice | None:
    """A slice equal to a sorted index vector, or None if the indices are not contiguous."""
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == len(index):
        return slice(first, last + 1)
    return None


class Coupling(Transform):
    """Base of coupling transforms; subclasses define the element-wise map.

    Arguments:
        mask: (d,) bool, True for the kept (conditioning) features; both parts non-empty.
        context_features: context columns appended to the conditioner input.
        hidden: conditioner hidden widths.
        activation: conditioner activation name.
        dropout: conditioner dropout.

    Subclasses set ``params_per_feature`` and implement :meth:`_map`.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()  # the mask and its index vectors

    params_per_feature: int = 1
    mask: Tensor
    idx_a: Tensor
    idx_b: Tensor

    def __init__(
        self,
        mask: Tensor,
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.ndim != 1 or mask.all() or not mask.any():
            raise ValueError(
                "coupling mask must be a vector with both kept and transformed entries"
            )
        self.features = mask.numel()
        self.context_features = context_features
        self.register_buffer("mask", mask)
        self.register_buffer("idx_a", mask.nonzero().squeeze(-1))
        self.register_buffer("idx_b", (~mask).nonzero().squeeze(-1))
        self.features_b = len(self.idx_b)
        # contiguous parts are sliced and concatenated, which beats gather/scatter
        sa, sb = _as_slice(self.idx_a), _as_slice(self.idx_b)
        self._slices = (sa, sb) if sa is not None and sb is not None else None
        self.net = MLP(
            len(self.idx_a) + context_features,
            self.features_b * self.params_per_feature,
            hidden,
            activation,
            dropout,
        )

    def extra_repr(self) -> str:
        mask = "".join("1" if b else "0" for b in self.mask.tolist())
        return f"mask={mask}, context_features={self.context_features}"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._slices is not None:
            sa, sb = self._slices
            return x[:, sa], x[:, sb]
        return x.index_select(1, self.idx_a), x.index_select(1, self.idx_b)

    def _merge(self, x: Tensor, x_a: Tensor, z_b: Tensor) -> Tensor:
        if self._slices is not None:
            sa, sb = self._slices
            return torch.cat([x_a, z_b] if sa.start == 0 else [z_b, x_a], dim=1)
        return x.index_copy(1, self.idx_b, z_b)

    def _params(self, x_a: Tensor, context: Tensor | None) -> Tensor:
        dtype = x_a.dtype
        if self.context_features:
            if context is None:
                raise ValueError(f"{self.__class__.__name__} needs a context")
            x_a = torch.cat([x_a, context.to(dtype)], dim=1)
        params = self.net(x_a)
        # under autocast the network may answer in bfloat16; the element-wise map and its
        # log-determinant always run in the events' precision
        return params if params.dtype == dtype else params.to(dtype)

    def _map(self, x_b: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Element-wise map of ``x_b`` (n, d_b) given ``params`` (n, d_b * P) -> (out, ladj (n,))."""
        raise NotImplementedError

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self._split(x)
        z_b, ladj = self._map(x_b, self._params(x_a, context), inverse=False)
        return self._merge(x, x_a, z_b), ladj

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_a, z_b = self._split(z)
        x_b, ladj = self._map(z_b, self._params(z_a, context), inverse=True)
        return self._merge(z, z_a, x_b), ladj


class AffineCoupling(Coupling):
    """RealNVP affine coupling (Dinh et al. 2017, arXiv:1605.08803): ``z_b = x_b * exp(s) + t``
    with ``log|det| = sum(s)``.

    The conditioner emits ``[s_raw (d_b) | t (d_b)]``; ``s = B tanh(s_raw / B)`` bounds the
    log-scale to ``(-B, B)`` so deep stacks cannot blow up (``scale_bound=None``: ``s = s_raw``).
    """

    params_per_feature = 2

    def __init__(
        self,
        mask: Tensor,
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        *,
        scale_bound: float | None = 3.0,
    ) -> None:
        super().__init__(mask, context_features, hidden, activation, dropout)
        self.scale_bound = scale_bound

    def log_scale(self, raw: Tensor) -> Tensor:
        """The soft clamp of the raw log-scale."""
        if self.scale_bound is None:
            return raw
        return self.scale_bound * torch.tanh(raw / self.scale_bound)

    def _map(self, x_b: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raw, t = params.split(self.features_b, dim=1)
        s = self.log_scale(raw)
        if inverse:
            return (x_b - t) * torch.exp(-s), -s.sum(dim=1)
        return x_b * torch.exp(s) + t, s.sum(dim=1)


class AdditiveCoupling(Coupling):
    """NICE additive coupling: ``z_b = x_b + t``, volume preserving (log|det| = 0)."""

    params_per_feature = 1

    def _map(self, x_b: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        zero = x_b.new_zeros(x_b.shape[0])
        return (x_b - params, zero) if inverse else (x_b + params, zero)


class BinnedCoupling(Coupling):
    """A coupling whose map is a spline of ``bins`` bins on ``[-B, B]`` (``B = tail_bound``),
    the identity outside; a subclass says how many conditioner outputs a feature takes
    (:meth:`params_for`) and what the map is (``_map``)."""

    def __init__(
        self,
        mask: Tensor,
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        *,
        bins: int = 8,
        tail_bound: float = 5.0,
    ) -> None:
        self.bins = bins
        self.params_per_feature = self.params_for(bins)
        super().__init__(mask, context_features, hidden, activation, dropout)
        self.tail_bound = tail_bound

    @staticmethod
    def params_for(bins: int) -> int:
        """Conditioner outputs per transformed feature for ``bins`` bins."""
        raise NotImplementedError


class RQSplineCoupling(BinnedCoupling):
    """Rational-quadratic spline coupling (Durkan et al. 2019, arXiv:1906.04032) on ``[-B, B]``,
    identity tails.

    Per transformed feature the conditioner emits ``K`` widths, ``K`` heights and ``K - 1``
    interior derivatives, laid out in blocks ``[widths | heights | derivatives]`` (see
    :func:`~hepflows.flows.splines.unpack_rq_params`).
    """

    @staticmethod
    def params_for(bins: int) -> int:
        return rq_params_per_feature(bins)

    def _map(self, x_b: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        out, ladj = rq_spline(
            x_b, params, self.features_b, self.bins, self.tail_bound, inverse=inverse
        )
        return out, ladj.sum(dim=1)


class QuadraticCoupling(BinnedCoupling):
    """Piecewise-quadratic coupling (Müller et al. 2019, arXiv:1808.03856).

    The published layer acts on the unit hypercube; here data are standardised reals, so the layer
    maps ``[-B, B]`` affinely onto ``[0, 1]``, applies the piecewise-quadratic CDF there, maps back,
    and is the identity outside ``[-B, B]`` (a continuous bijection; the density may jump at
    ``+-B``). Per transformed feature the conditioner emits ``K`` widths and ``K + 1`` vertex
    heights, in blocks ``[widths (d_b, K) | heights (d_b, K + 1)]`` (see
    :func:`~hepflows.flows.splines.pq_knots`).
    """

    @staticmethod
    def params_for(bins: int) -> int:
        return 2 * bins + 1

    def _map(self, x_b: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        n, db, k = x_b.shape[0], self.features_b, self.bins
        knots = pq_knots(params[:, : db * k].view(n, db, k), params[:, db * k :].view(n, db, k + 1))
        out, ladj = piecewise_quadratic_spline(x_b, *knots, self.tail_bound, inverse=inverse)
        return out, ladj.sum(dim=1)
