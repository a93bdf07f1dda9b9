"""Conditioner networks: a plain MLP for couplings and a masked MLP (MADE) for autoregression.

Both end in a zero-initialised linear layer, so that every transform they parametrise starts as
the identity (or as whatever the transform maps zero parameters to) and a deep stack trains from
a well-conditioned start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .fused import relu_mlp

__all__ = ["ACTIVATIONS", "MLP", "MaskedLinear", "MADE"]

#: Activation names accepted by the config, mapped to their module constructors.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def _fused_path(net: nn.Module, x: Tensor) -> bool:
    """Whether ``net`` runs on :func:`~hepflows.flows.fused.relu_mlp`: a ReLU network on the CPU,
    in float32 or float64 (under autocast the plain layers let autocast pick each op's type),
    without dropout or in evaluation mode (where dropout is the identity)."""
    return (
        net._fusable
        and (net._dropout == 0 or not net.training)
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
    )


class MLP(nn.Sequential):
    """Fully connected network ``(n, in_features) -> (n, out_features)``.

    Layout ``Linear, act, [Dropout,] Linear, act, ..., Linear``; dropout modules appear only when
    ``dropout > 0``, so that without dropout the layer indices match other libraries' MLPs.

    Arguments:
        in_features: input width.
        out_features: output width.
        hidden: hidden layer widths.
        activation: one of :data:`ACTIVATIONS`.
        dropout: dropout probability after each hidden activation.
        zero_init: zero the last layer's weight and bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        zero_init: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        last = nn.Linear(width, out_features)
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features
        self._fusable = activation == "relu"
        self._dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        if _fused_path(self, x):
            linears = [m for m in self if isinstance(m, nn.Linear)]
            return relu_mlp(x, [m.weight for m in linears], [m.bias for m in linears])
        return super().forward(x)


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015), with context.

    Maps ``x`` (n, d) and ``context`` (n, c) to parameters such that those of feature ``i``
    depend only on ``x[:, :i]`` and the context. Inputs have degrees 1..d, context columns degree
    0 (seen by every unit), hidden units degrees cycling through 1..d-1, and the outputs of
    feature ``i`` see hidden units of degree < i + 1.

    Output layout: one block per entry of ``groups``, each block (d, g) feature-major, flattened:
    ``[group 0 (d * g0) | group 1 (d * g1) | ...]``; the same layout as a coupling conditioner's,
    so the same unpacking serves both.

    Arguments:
        features: ``d``.
        groups: parameters per feature, per block (an int: one block).
        context_features: ``c``.
        hidden: hidden widths.
        activation: one of :data:`ACTIVATIONS`.
        dropout: dropout after each hidden activation.
    """

    def __init__(
        self,
        features: int,
        groups: int | Sequence[int],
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        groups = [groups] if isinstance(groups, int) else list(groups)
        self.features = features
        self.groups = groups
        self.context_features = context_features

        in_deg = torch.cat([torch.zeros(context_features), torch.arange(1, features + 1)])
        layers: list[nn.Module] = []
        prev = in_deg
        for h in hidden:
            deg = torch.arange(h) % max(1, features - 1) + 1
            layers += [MaskedLinear((deg[:, None] >= prev[None, :]).float()), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = deg
        # the outputs of feature i have degree i + 1 and see strictly lower degrees
        out_deg = torch.cat([torch.arange(1, features + 1).repeat_interleave(g) for g in groups])
        last = MaskedLinear((out_deg[:, None] > prev[None, :]).float())
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)
        self._fusable = activation == "relu"
        self._dropout = dropout
        # rows of the last layer that give feature i's parameters, one group after another
        offsets = [0]
        for g in groups[:-1]:
            offsets.append(offsets[-1] + features * g)
        self.register_buffer(
            "_feature_rows",
            torch.stack([
                torch.cat([torch.arange(o + i * g, o + (i + 1) * g) for o, g in zip(offsets, groups)])
                for i in range(features)
            ]),
            persistent=False,
        )

    def _masked(self) -> tuple[list[Tensor], list[Tensor]]:
        linears = [m for m in self.net if isinstance(m, MaskedLinear)]
        return [m.weight * m.mask for m in linears], [m.bias for m in linears]

    def _input(self, x: Tensor, context: Tensor | None) -> Tensor:
        return x if context is None else torch.cat([context, x], dim=-1)

    def feature_params(self, x: Tensor, context: Tensor | None, feature: int) -> Tensor:
        """The parameters of one feature only, (n, sum(groups)) as ``[group 0 | group 1 | ...]``.

        Sampling fixes one feature per pass; the last layer, most of the network's products, is
        then computed for that feature's rows alone.
        """
        weights, biases = self._masked()
        rows = self._feature_rows[feature]
        if _fused_path(self, x):
            return relu_mlp(self._input(x, context), weights[:-1] + [weights[-1][rows]],
                            biases[:-1] + [biases[-1][rows]])
        h = self._input(x, context)
        for module in list(self.net)[:-1]:
            h = module(h)
        return F.linear(h, weights[-1][rows], biases[-1][rows])

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Parameters (n, d * sum(groups)) in block layout."""
        x = self._input(x, context)
        if _fused_path(self, x):
            return relu_mlp(x, *self._masked())
        return self.net(x)
