"""Conditioner networks: a plain MLP for couplings and a masked MLP (MADE) for autoregression.

Both end in a zero-initialised linear layer, so that every transform they parametrise starts as
the identity (or as whatever the transform maps zero parameters to) and a deep stack trains from
a well-conditioned start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .fused import _workspace, relu_mlp

__all__ = ["ACTIVATIONS", "MLP", "MaskedLinear", "MADE", "MADESweep"]

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
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def _fused_path(net: MLP | MADE, x: Tensor) -> bool:
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

    mask: Tensor
    #: set on the hidden layers of a :class:`MADE`: each output unit's degree
    unit_degrees: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class _SweepPlan(NamedTuple):
    """A :class:`MADE`'s masked weights with the hidden units sorted by degree (see
    :meth:`MADE._sweep_weights`)."""

    #: per hidden layer its (out, in) weight in degree order
    weights: list[Tensor]
    #: per hidden layer its bias in degree order
    biases: list[Tensor]
    #: per feature its (rows, in) weight of the last layer, the columns in degree order
    out_weights: list[Tensor]
    #: per feature its bias rows of the last layer
    out_biases: list[Tensor]
    #: ``counts[l][k]``: the units of degree <= k of hidden layer ``l``, k = 0..d
    counts: list[list[int]]


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

    _feature_rows: Tensor

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
            hidden_layer = MaskedLinear((deg[:, None] >= prev[None, :]).float())
            hidden_layer.register_buffer("unit_degrees", deg, persistent=False)
            layers += [hidden_layer, _activation(activation)]
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
            torch.stack(
                [
                    torch.cat(
                        [torch.arange(o + i * g, o + (i + 1) * g) for o, g in zip(offsets, groups)]
                    )
                    for i in range(features)
                ]
            ),
            persistent=False,
        )

    def _sweep_weights(self, dtype: torch.dtype, device: torch.device) -> _SweepPlan:
        """The masked weights with the hidden units sorted by degree, for :class:`MADESweep`.

        Per hidden layer its (out, in) weight and bias in degree order; for the last layer one
        (rows, in) weight and bias per feature (its rows of the output, the columns in degree
        order); ``counts[l][k]`` the units of degree <= k of hidden layer ``l``, k = 0..d. Cached
        until a parameter changes (or moves).
        """
        linears = [m for m in self.net if isinstance(m, MaskedLinear)]
        key = (
            dtype,
            device,
            *(
                (m.weight.data_ptr(), m.weight._version, m.bias.data_ptr(), m.bias._version)
                for m in linears
            ),
        )
        cached: tuple[tuple[object, ...], _SweepPlan] | None = getattr(self, "_sweep_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            weights: list[Tensor] = []
            biases: list[Tensor] = []
            counts: list[list[int]] = []
            previous: Tensor | None = (
                None  # the input columns keep their order: context, then features 0..d-1
            )
            for m in linears[:-1]:
                deg = m.unit_degrees
                order = torch.argsort(deg, stable=True)
                w = (m.weight * m.mask)[order]
                weights.append((w if previous is None else w[:, previous]).to(dtype).contiguous())
                biases.append(m.bias[order].to(dtype).contiguous())
                counts.append([int((deg <= k).sum()) for k in range(self.features + 1)])
                previous = order
            last = linears[-1]
            w = last.weight * last.mask
            w = (w if previous is None else w[:, previous]).to(dtype)
            b = last.bias.to(dtype)
            rows = self._feature_rows.to(device)
            out_weights = [w[r].contiguous() for r in rows]
            out_biases = [b[r].contiguous() for r in rows]
        plan = _SweepPlan(weights, biases, out_weights, out_biases, counts)
        self._sweep_cache = (key, plan)
        return plan

    def sweep(self, x: Tensor, context: Tensor | None) -> MADESweep:
        """A feature-by-feature evaluation for the sequential inverse; see :class:`MADESweep`."""
        return MADESweep(self, x, context)

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
            return relu_mlp(
                self._input(x, context),
                weights[:-1] + [weights[-1][rows]],
                biases[:-1] + [biases[-1][rows]],
            )
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


#: Largest (rows x width) of a hidden layer whose :class:`MADESweep` buffers are reused from call
#: to call (16 MB in float32: an 8192-event tile at width 512).
SWEEP_WORKSPACE_ELEMENTS = 1 << 22


class MADESweep:
    """A MADE evaluated one feature after another, each hidden unit computed once.

    The sequential inverse of an autoregressive transform fixes feature ``k`` in pass ``k`` from
    parameters that depend on the features before it only. A hidden unit of degree ``j`` sees the
    inputs of degree <= ``j`` (the context and features ``0..j-1``), and feature ``k``'s outputs
    see the units of degree <= ``k``; so once features ``0..k-1`` are fixed, the units of degree
    ``k`` are final, and pass ``k`` computes just those (in every hidden layer, from the final
    units of the layer below) and feature ``k``'s rows of the last layer. Over the ``d`` passes
    every hidden unit is computed once: the sequential inverse costs one network pass in the
    hidden layers instead of ``d``. The units are sorted by degree, so that the units of degree
    <= ``k`` are a prefix of each layer.

    Layout: every activation is held unit-major, ``(units, n)``, one row per unit (and per input
    column and output parameter) with the events along it. A pass then writes whole contiguous
    rows (event-major, its units would be a strided block of columns, which the product writes
    through a temporary and a copy), and the parameters it returns are rows, so that the spline
    that reads them reduces over bins across rows, vectorised along the events (see
    :func:`~hepflows.flows.splines.rq_inverse_one`).

    The same products as the full network, without the masked-out zeros: only the blocking of
    the sums (and so the last bits of rounding) may differ. Gradient-free only (the hidden
    layers are written in place): :meth:`MADE.feature_params` is the differentiable way.

    Usage::

        sweep = made.sweep(x, context)       # x: (n, d), only its shape and type are used
        for k in range(d):
            p = sweep.params(k)              # (n, sum(groups)) for feature k, a transposed
                                             # view of (sum(groups), n) rows, valid until
                                             # the next call (it may be a reused buffer)
            sweep.fix(k, value_k)            # (n,) or (n, 1): feature k, final
        x = sweep.values                     # (n, d): the fixed features
    """

    def __init__(self, made: MADE, x: Tensor, context: Tensor | None) -> None:
        n, d = x.shape
        c = 0 if context is None else context.shape[1]
        device = x.device
        self.made = made
        self.features = d
        self.context_columns = c
        # the layout is MaskedLinear, activation, [Dropout,] ...: net[1] is the activation
        self.activation = None if made._fusable or len(made.net) == 1 else made.net[1]
        # under autocast the products run in its type (as the plain layers would), explicitly
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else x.dtype
        self.dtype = dtype
        plan = made._sweep_weights(dtype, device)
        self.weights, self.biases, self.counts = plan.weights, plan.biases, plan.counts
        self.out_weights, self.out_biases = plan.out_weights, plan.out_biases
        self.out_bias_columns = [b[:, None] for b in plan.out_biases]
        # unit-major inputs: the context rows, then one row per feature (read only once fixed:
        # no need to clear them)
        self.inputs = torch.empty(c + d, n, dtype=dtype, device=device)
        if context is not None:
            self.inputs[:c] = context.t()
        widest = max([w.shape[0] for w in self.weights] + [self.out_weights[0].shape[0]])
        self.reuse = reuse = n * widest <= SWEEP_WORKSPACE_ELEMENTS
        self.hidden = [
            _unit_rows(2 + i, w.shape[0], n, self.inputs, reuse) for i, w in enumerate(self.weights)
        ]
        self.done = 0  # hidden units of degree <= done are computed

    @property
    def values(self) -> Tensor:
        """(n, d): the features fixed so far (zeros where not yet fixed), in the sweep's type; a
        transposed view of the sweep's (d, n) rows."""
        return self.inputs[self.context_columns :].t()

    def fix(self, feature: int, value: Tensor) -> None:
        """Set feature ``feature`` (final from now on: its dependants will read it)."""
        self.inputs[self.context_columns + feature] = value.reshape(-1)

    def params(self, feature: int) -> Tensor:
        """The parameters of ``feature`` (n, sum(groups)), the transposed view of contiguous
        (sum(groups), n) rows; features ``< feature`` must be fixed."""
        if feature < self.done:
            raise ValueError(f"feature {feature} is behind the sweep (at {self.done})")
        n = self.inputs.shape[1]
        with torch.autocast(self.inputs.device.type, enabled=False):
            below, below_width = self.inputs, self.context_columns + feature
            for layer, (w, b, h) in enumerate(zip(self.weights, self.biases, self.hidden)):
                lo, hi = self.counts[layer][self.done], self.counts[layer][feature]
                if hi > lo:
                    block = h[lo:hi]
                    torch.addmm(
                        b[lo:hi, None], w[lo:hi, :below_width], below[:below_width], out=block
                    )
                    if self.activation is None:
                        block.relu_()
                    else:
                        block.copy_(self.activation(block))
                below, below_width = h, hi
            self.done = feature
            w = self.out_weights[feature]
            out = _unit_rows(2 + len(self.hidden), w.shape[0], n, self.inputs, self.reuse)
            torch.addmm(
                self.out_bias_columns[feature], w[:, :below_width], below[:below_width], out=out
            )
            return out.t()


def _unit_rows(slot: int, units: int, n: int, like: Tensor, reuse: bool) -> Tensor:
    """A (units, n) buffer: this thread's reusable workspace ``slot`` when ``reuse``, else fresh."""
    if not reuse:
        return torch.empty(units, n, dtype=like.dtype, device=like.device)
    # the workspace is a contiguous (n, units) block: the same memory viewed as (units, n)
    return _workspace(slot, n, units, like).view(units, n)
