"""Conditioner networks: a plain MLP for couplings and a masked MLP (MADE) for autoregression,
plain or with residual blocks.

Both end in a zero-initialised linear layer, so that every transform they parametrise starts as
the identity (or as whatever the transform maps zero parameters to) and a deep stack trains from
a well-conditioned start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import InputError
from .fused import relu_mlp, workspace_buffer

__all__ = ["ACTIVATIONS", "MLP", "MaskedLinear", "MaskedResidualBlock", "MADE", "MADESweep"]

#: Activation names accepted by the config, mapped to their module constructors.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def activation_module(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def _fused_path(net: MLP | MADE, x: Tensor) -> bool:
    """Whether ``net`` runs on :func:`~hepflows.flows.fused.relu_mlp`: a ReLU network on the CPU,
    in float32 or float64 (under autocast the plain layers let autocast pick each op's type),
    without dropout or in evaluation mode (where dropout is the identity), and not while
    :func:`torch.compile` traces it: the compiler fuses the plain layers' ReLU and bias work
    itself, and inductor's compiled backward of the fused node crashed the process at the seed
    architecture (20 blocks of 2x512, torch 2.13)."""
    return (
        net._fusable
        and not torch.compiler.is_compiling()
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
            layers += [nn.Linear(width, h), activation_module(activation)]
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

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()  # the mask and the units' degrees

    mask: Tensor
    #: set on the hidden layers of a :class:`MADE`: each output unit's degree
    unit_degrees: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))
        with torch.no_grad():
            # A masked-out weight gets no gradient from the loss, only the weight decay's, which
            # Adam scales to full-size steps: they drove it and its moments into subnormal
            # floats, each a slow path on a CPU (benchmarks/denormals.py). At zero it stays
            # zero (its decay is zero too); the layer's map is the same, as is every other
            # weight's training.
            self.weight.mul_(self.mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedResidualBlock(nn.Module):
    """``h + W2 act(W1 act(h))`` on hidden units ``h`` (n, width), both products masked.

    The residual block of the residual MADE of Durkan et al., "Neural Spline Flows"
    (arXiv:1906.04032), as in nflows' ``ResidualMADE``: both masks connect units of the same
    degrees (``mask[o, i] = deg[o] >= deg[i]``), so a unit of the sum still sees only the inputs of
    degree <= its own and the network stays autoregressive. Dropout comes after the second
    activation; the second product starts near zero (uniform in +-1e-3, as in nflows), so that
    every block starts close to the identity.

    Arguments:
        mask: the (width, width) hidden-to-hidden mask.
        activation: one of :data:`ACTIVATIONS`.
        dropout: dropout probability.
    """

    def __init__(self, mask: Tensor, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.first = MaskedLinear(mask)
        self.second = MaskedLinear(mask)
        self.activation = activation_module(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.uniform_(self.second.weight, -1e-3, 1e-3)
        nn.init.uniform_(self.second.bias, -1e-3, 1e-3)

    def forward(self, h: Tensor) -> Tensor:
        t = self.first(self.activation(h))
        return h + self.second(self.dropout(self.activation(t)))


class _SweepStep(NamedTuple):
    """One hidden buffer of a :class:`MADESweep`: ``act?(W @ source + b [+ skip])``, or
    ``act(source)`` when there is no linear layer."""

    linear: MaskedLinear | None
    #: the buffer it reads: an earlier step's index, or -1 for the inputs
    source: int
    #: an earlier step's buffer added to the product (a residual connection), or None
    skip: int | None
    activate: bool


class _SweepPlan(NamedTuple):
    """A :class:`MADE`'s masked weights with the hidden units sorted by degree (see
    :meth:`MADE._sweep_weights`)."""

    #: per step (:meth:`MADE._sweep_steps`) its (out, in) weight in degree order, or None
    weights: list[Tensor | None]
    #: per step its bias in degree order, or None
    biases: list[Tensor | None]
    #: per feature its (rows, in) weight of the last layer, the columns in degree order
    out_weights: list[Tensor]
    #: per feature its bias rows of the last layer
    out_biases: list[Tensor]
    #: ``counts[l][k]``: the units of degree <= k of step ``l``'s buffer, k = 0..d
    counts: list[list[int]]
    #: the steps themselves
    steps: list[_SweepStep]


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015), with context.

    Maps ``x`` (n, d) and ``context`` (n, c) to parameters such that those of feature ``i``
    depend only on ``x[:, :i]`` and the context. Inputs have degrees 1..d, context columns degree
    0 (seen by every unit), hidden units degrees cycling through 1..d-1, and the outputs of
    feature ``i`` see hidden units of degree < i + 1.

    Output layout: one block per entry of ``groups``, each block (d, g) feature-major, flattened:
    ``[group 0 (d * g0) | group 1 (d * g1) | ...]``; the same layout as a coupling conditioner's,
    so the same unpacking serves both.

    With ``residual`` the network is the residual MADE of "Neural Spline Flows" (Durkan et al.,
    arXiv:1906.04032): a masked layer from the inputs to ``width`` units, then one
    :class:`MaskedResidualBlock` per entry of ``hidden`` (all equal to ``width``: the sum needs
    one set of degrees), then the masked output layer, which reads the last sum without an
    activation.

    Arguments:
        features: ``d``.
        groups: parameters per feature, per block (an int: one block).
        context_features: ``c``.
        hidden: hidden widths.
        activation: one of :data:`ACTIVATIONS`.
        dropout: dropout after each hidden activation.
        residual: residual blocks instead of a plain stack.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()

    _feature_rows: Tensor

    def __init__(
        self,
        features: int,
        groups: int | Sequence[int],
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if residual and (not hidden or len(set(hidden)) != 1):
            raise InputError(
                "model.hidden: residual conditioners need one or more hidden layers of equal "
                f"widths, got {list(hidden)}"
            )
        groups = [groups] if isinstance(groups, int) else list(groups)
        self.features = features
        self.groups = groups
        self.context_features = context_features

        in_deg = torch.cat([torch.zeros(context_features), torch.arange(1, features + 1)])
        layers: list[nn.Module] = []
        prev = in_deg
        for h in hidden[:1] if residual else hidden:
            deg = torch.arange(h) % max(1, features - 1) + 1
            hidden_layer = MaskedLinear((deg[:, None] >= prev[None, :]).float())
            hidden_layer.register_buffer("unit_degrees", deg, persistent=False)
            layers.append(hidden_layer)
            if not residual:
                layers.append(activation_module(activation))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            prev = deg
        if residual:
            for _ in hidden:
                block = MaskedResidualBlock(
                    (prev[:, None] >= prev[None, :]).float(), activation, dropout
                )
                for m in (block.first, block.second):
                    m.register_buffer("unit_degrees", prev, persistent=False)
                layers.append(block)
        # the outputs of feature i have degree i + 1 and see strictly lower degrees
        out_deg = torch.cat([torch.arange(1, features + 1).repeat_interleave(g) for g in groups])
        last = MaskedLinear((out_deg[:, None] > prev[None, :]).float())
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)
        self.residual = residual
        self._activation_name = activation
        # the fused kernel chains plain products: a residual network takes the plain layers
        self._fusable = activation == "relu" and not residual
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

    def _sweep_steps(self) -> list[_SweepStep]:
        """The hidden buffers that :class:`MADESweep` fills, in order.

        Plain: one per hidden layer, ``act(W h + b)``. Residual: the input layer's ``h0``, then
        per block ``act(h)``, ``act(W1 act(h) + b1)`` and the new sum ``W2 (...) + b2 + h``; the
        output layer reads the last buffer.
        """
        if not self.residual:
            hidden = [m for m in self.net if isinstance(m, MaskedLinear)][:-1]
            return [_SweepStep(m, i - 1, None, True) for i, m in enumerate(hidden)]
        first = self.net[0]
        assert isinstance(first, MaskedLinear)
        steps = [_SweepStep(first, -1, None, False)]
        for block in list(self.net)[1:-1]:
            assert isinstance(block, MaskedResidualBlock)
            total = len(steps) - 1  # the running sum's buffer
            steps += [
                _SweepStep(None, total, None, True),
                _SweepStep(block.first, total + 1, None, True),
                _SweepStep(block.second, total + 2, total, False),
            ]
        return steps

    def _sweep_weights(self, dtype: torch.dtype, device: torch.device) -> _SweepPlan:
        """The masked weights with the hidden units sorted by degree, for :class:`MADESweep`.

        Per step (:meth:`_sweep_steps`) its (out, in) weight and bias in degree order; for the
        last layer one (rows, in) weight and bias per feature (its rows of the output, the
        columns in degree order); ``counts[l][k]`` the units of degree <= k of step ``l``'s
        buffer, k = 0..d. Cached until a parameter changes (or moves).
        """
        linears = [m for m in self.modules() if isinstance(m, MaskedLinear)]
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
        steps = self._sweep_steps()
        with torch.no_grad():
            weights: list[Tensor | None] = []
            biases: list[Tensor | None] = []
            counts: list[list[int]] = []
            # per step the degree order of its units; the input columns keep their order
            # (context, then features 0..d-1)
            orders: list[Tensor] = []
            for step in steps:
                previous = None if step.source < 0 else orders[step.source]
                m = step.linear
                if m is None:  # an activation: the units and their order of its source
                    assert previous is not None
                    weights.append(None)
                    biases.append(None)
                    counts.append(counts[step.source])
                    orders.append(previous)
                    continue
                deg = m.unit_degrees
                order = torch.argsort(deg, stable=True)
                w = (m.weight * m.mask)[order]
                weights.append((w if previous is None else w[:, previous]).to(dtype).contiguous())
                biases.append(m.bias[order].to(dtype).contiguous())
                counts.append([int((deg <= k).sum()) for k in range(self.features + 1)])
                orders.append(order)
            previous = orders[-1] if orders else None
            last = self.net[-1]
            assert isinstance(last, MaskedLinear)
            w = last.weight * last.mask
            w = (w if previous is None else w[:, previous]).to(dtype)
            b = last.bias.to(dtype)
            rows = self._feature_rows.to(device)
            out_weights = [w[r].contiguous() for r in rows]
            out_biases = [b[r].contiguous() for r in rows]
        plan = _SweepPlan(weights, biases, out_weights, out_biases, counts, steps)
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

    A residual MADE is swept the same way, one buffer per step of :meth:`MADE._sweep_steps`
    (``h0``, then per block ``act(h)``, the block's first product and the new sum): every buffer's
    units share the degrees of ``h0``, so the units of degree ``k`` of the sum are final once
    those of the block are.

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
        self.activation = (
            None if made._activation_name == "relu" else activation_module(made._activation_name)
        )
        # under autocast the products run in its type (as the plain layers would), explicitly
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else x.dtype
        self.dtype = dtype
        plan = made._sweep_weights(dtype, device)
        self.weights, self.biases, self.counts = plan.weights, plan.biases, plan.counts
        self.out_weights, self.out_biases = plan.out_weights, plan.out_biases
        self.out_bias_columns = [b[:, None] for b in plan.out_biases]
        self.steps = plan.steps
        # unit-major inputs: the context rows, then one row per feature (read only once fixed:
        # no need to clear them)
        self.inputs = torch.empty(c + d, n, dtype=dtype, device=device)
        if context is not None:
            self.inputs[:c] = context.t()
        widths = [count[-1] for count in self.counts]
        widest = max([*widths, self.out_weights[0].shape[0]])
        self.reuse = reuse = n * widest <= SWEEP_WORKSPACE_ELEMENTS
        self.hidden = [
            _unit_rows(2 + i, width, n, self.inputs, reuse) for i, width in enumerate(widths)
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
            for layer, h in enumerate(self.hidden):
                lo, hi = self.counts[layer][self.done], self.counts[layer][feature]
                if hi > lo:
                    self._compute(layer, feature, h[lo:hi], lo, hi)
            self.done = feature
            below, below_width = self._buffer(len(self.hidden) - 1, feature)
            w = self.out_weights[feature]
            out = _unit_rows(2 + len(self.hidden), w.shape[0], n, self.inputs, self.reuse)
            torch.addmm(
                self.out_bias_columns[feature], w[:, :below_width], below[:below_width], out=out
            )
            return out.t()

    def _buffer(self, index: int, feature: int) -> tuple[Tensor, int]:
        """Step ``index``'s (units, n) buffer (-1: the inputs) and its rows final for ``feature``."""
        if index < 0:
            return self.inputs, self.context_columns + feature
        return self.hidden[index], self.counts[index][feature]

    def _compute(self, layer: int, feature: int, block: Tensor, lo: int, hi: int) -> None:
        """Units ``lo:hi`` of step ``layer`` into ``block`` (their rows), from the final rows it
        reads."""
        step, w, b = self.steps[layer], self.weights[layer], self.biases[layer]
        below, below_width = self._buffer(step.source, feature)
        if w is None or b is None:
            block.copy_(below[lo:hi])
        else:
            torch.addmm(b[lo:hi, None], w[lo:hi, :below_width], below[:below_width], out=block)
        if step.skip is not None:
            block.add_(self.hidden[step.skip][lo:hi])
        if step.activate:
            if self.activation is None:
                block.relu_()
            else:
                block.copy_(self.activation(block))


def _unit_rows(slot: int, units: int, n: int, like: Tensor, reuse: bool) -> Tensor:
    """A (units, n) buffer: this thread's reusable workspace ``slot`` when ``reuse``, else fresh."""
    if not reuse:
        return torch.empty(units, n, dtype=like.dtype, device=like.device)
    # the workspace is a contiguous (n, units) block: the same memory viewed as (units, n)
    return workspace_buffer(slot, n, units, like).view(units, n)
