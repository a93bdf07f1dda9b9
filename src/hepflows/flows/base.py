"""The transform interface and the flow that composes transforms with a base distribution.

Direction convention: every transform maps data ``x`` to latent ``z`` in ``forward`` (the
normalizing direction used for training) and back in ``inverse``. Both return the log of the
absolute Jacobian determinant of the map they compute, one value per event.

Passes without autograd on the CPU (sampling, evaluation) run the whole stack of transforms on
tiles of :data:`CPU_TILE_ROWS` events at a time: every transform of an evaluating flow acts on
each event alone, so tiles give the same events, while the conditioners' activations of one tile
stay in cache and reuse the same heap memory. Untiled, a chunk of 1e5 events makes activations of
200 MB per hidden layer, which the allocator maps fresh (page faults) for every layer: about a
third slower on a 2-core machine. A flow with a sequential inverse (an autoregressive layer, one
pass per feature: many small element-wise operations whose cost is per call, not per event)
samples on tiles of :data:`CPU_SEQUENTIAL_TILE_ROWS` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from .distributions import Distribution
from .model import DensityModel

__all__ = [
    "CPU_TILE_ROWS",
    "CPU_SEQUENTIAL_TILE_ROWS",
    "Transform",
    "Composite",
    "DensityModel",
    "Flow",
]

#: Events per tile of the gradient-free CPU passes (hidden activations of 4 MB at width 512).
CPU_TILE_ROWS = 2048

#: Events per tile of a gradient-free CPU inverse through a transform with a sequential inverse:
#: its passes run about 40 small operations per feature, whose fixed cost per call (and the
#: threads' wake-ups between them) a 2048-event tile does not amortise (about 3x slower sampling
#: of ``config/best.yaml`` on a 2-core machine).
CPU_SEQUENTIAL_TILE_ROWS = 8192


class Transform(nn.Module):
    """A bijection ``x <-> z`` with a tractable log-determinant.

    Subclasses set ``features`` (the event dimension ``d``) and ``context_features`` (the
    number of context columns the transform reads, 0 if it ignores context).
    """

    features: int
    context_features: int = 0
    #: Whether ``inverse`` runs one pass per feature (the flow then samples on larger CPU tiles).
    sequential_inverse: bool = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data ``x`` (n, d) to latent ``z`` (n, d); also return log|det dz/dx| (n,)."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map latent ``z`` (n, d) to data ``x`` (n, d); also return log|det dx/dz| (n,)."""
        raise NotImplementedError


class Composite(Transform):
    """Transforms applied one after another: ``forward`` runs them in order, ``inverse`` backwards.

    Arguments:
        transforms: the transforms, in the data -> latent order; they share ``features``.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        super().__init__()
        if not transforms:
            raise ValueError("Composite needs at least one transform")
        self.transforms = nn.ModuleList(transforms)
        self.features = transforms[0].features
        self.context_features = max(getattr(t, "context_features", 0) for t in transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ladj = t(x, context)
            total = total + ladj
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for t in reversed(self.transforms):
            z, ladj = cast(Transform, t).inverse(z, context)
            total = total + ladj
        return z, total


class Flow(DensityModel):
    """A normalizing flow: ``log p(x) = log p_base(T(x)) + log|det dT/dx|``.

    Arguments:
        transforms: the transforms in the data -> latent order.
        base: the latent distribution; a module with ``features``, ``log_prob(z)`` (n, d) -> (n,)
            and ``sample(n, generator=...)`` -> (n, d).

    Attributes:
        features: the event dimension ``d``.
        context_features: the number of context columns (0 for an unconditional flow).
    """

    def __init__(self, transforms: Sequence[Transform], base: Distribution) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.base: Distribution = base
        self.features = int(base.features)
        self.context_features = max(
            (getattr(t, "context_features", 0) for t in transforms), default=0
        )
        for t in transforms:
            if getattr(t, "features", self.features) != self.features:
                raise ValueError(
                    f"transform {t.__class__.__name__} has {t.features} features, "
                    f"the base distribution {self.features}"
                )

    def _tile_rows(self, n: int, device: torch.device, inverse: bool = False) -> int | None:
        """Rows per tile for a pass over ``n`` events, or None to run them in one piece."""
        rows = CPU_TILE_ROWS
        if inverse and any(getattr(t, "sequential_inverse", False) for t in self.transforms):
            rows = CPU_SEQUENTIAL_TILE_ROWS
        if torch.is_grad_enabled() or device.type != "cpu" or n <= rows:
            return None
        return rows

    def _tiled(
        self,
        run: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]],
        x: Tensor,
        context: Tensor | None,
        tile: int | None,
    ) -> tuple[Tensor, Tensor]:
        """``run(x, context)`` on row tiles of ``x`` (and ``context``), joined back in order."""
        if tile is None:
            return run(x, context)
        pieces = [
            run(x[i : i + tile], None if context is None else context[i : i + tile])
            for i in range(0, x.shape[0], tile)
        ]
        return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ladj = t(x, context)
            total = total + ladj
        return x, total

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for t in reversed(self.transforms):
            z, ladj = cast(Transform, t).inverse(z, context)
            total = total + ladj
        return z, total

    def transform(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data ``x`` (n, d) to latent ``z`` (n, d) and the total log|det dz/dx| (n,)."""
        self._check(x, context)
        # in training mode normalisation layers use batch statistics: never split the batch
        tile = None if self.training else self._tile_rows(x.shape[0], x.device)
        return self._tiled(self._forward, x, context, tile)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-density of events ``x`` (n, d) given ``context`` (n, c); shape (n,)."""
        z, ladj = self.transform(x, context)
        return self.base.log_prob(z) + ladj

    def _generate(
        self, n: int, context: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        self._check(None, context, n)
        z = self.base.sample(n, generator=generator)
        log_p = self.base.log_prob(z)
        # inverses use running statistics only, so sampling may tile in either mode
        x, ladj = self._tiled(self._inverse, z, context, self._tile_rows(n, z.device, inverse=True))
        return x, log_p - ladj

    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` events (n, d); with ``context`` (n, c) one event per context row.

        The only randomness is the base draw, made with ``generator``: the same generator
        state gives the same sample.
        """
        self._check(None, context, n)
        z = self.base.sample(n, generator=generator)
        return self._tiled(self._inverse, z, context, self._tile_rows(n, z.device, inverse=True))[0]

    def sample_and_log_prob(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` events (n, d) and their log-density (n,) in one pass."""
        return self._generate(n, context, generator)
