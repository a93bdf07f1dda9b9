"""MADE-MOG: an autoregressive density whose every conditional is a mixture of Gaussians.

Papamakarios, Pavlakou and Murray, "Masked Autoregressive Flow for Density Estimation"
(arXiv:1705.07057), the MADE MoG model; the masks of Germain, Gregor, Murray and Larochelle,
"MADE: Masked Autoencoder for Distribution Estimation" (arXiv:1502.03509), here with residual
blocks as in nflows' ``ResidualMADE``. Gavranovic and Kersevan, "Systematic evaluation of
generative machine learning capability to simulate distributions of observables at the Large
Hadron Collider" (arXiv:2310.08994) found it the best of their models on HIGGS (32 components,
gauss-rank preprocessing, about 2M training events).

.. math::

    p(x \\mid c) = \\prod_{i=1}^{d} \\sum_{k=1}^{K} \\pi_{ik}\\,
        \\mathcal{N}(x_i;\\, \\mu_{ik}, \\sigma_{ik}),
    \\qquad (\\log\\pi, \\mu, \\sigma)_i = f_i(x_{<i}, c)

One network pass gives every feature's mixture, so the density costs one pass; sampling fixes
one feature after the other (``d`` passes, each computing only the hidden units the feature
needs, see :class:`ResidualMADESweep`). The weights are a ``log_softmax`` of the network's
logits, the density a ``logsumexp`` over components, and every scale is ``softplus(s) + floor``
so that no component can shrink onto a single event and make the likelihood unbounded.
"""

from __future__ import annotations

import math
from typing import ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import CPU_SEQUENTIAL_TILE_ROWS
from .model import DensityModel
from .nets import MaskedLinear, activation_module

__all__ = ["ResidualMADE", "ResidualMADESweep", "MADEMoG"]

#: Lower bound of every component's scale, in the preprocessed space (unit-variance marginals).
MIN_SCALE = 1e-3


def hidden_degrees(width: int, features: int, context_features: int) -> Tensor:
    """MADE degrees of a hidden layer, sorted (units of degree <= k are a prefix).

    A unit of degree ``j`` sees the context (degree 0) and the features of degree <= ``j``
    (features ``0..j-1``). With a context the degrees cycle through ``0..d-1``: the units of
    degree 0 see the context alone and carry it to feature 0, which sees no feature. Without one
    they cycle through ``1..max(1, d-1)`` as in :class:`~hepflows.flows.nets.MADE`.
    """
    if context_features:
        degrees = torch.arange(width) % features
    else:
        degrees = torch.arange(width) % max(1, features - 1) + 1
    return torch.sort(degrees).values


class ResidualMADE(nn.Module):
    """A MADE whose hidden layers are residual blocks: ``(n, d)``, ``(n, c)`` -> ``(n, d, p)``.

    ``h_0 = W_0 [c, x]``; each block ``h_{b+1} = h_b + L_m(a(... a(L_1(a(h_b)) + V_b c) ...))``
    with masked square layers ``L_j`` (one width, equal degrees in and out, so the sum stays
    autoregressive), ``a`` the activation and dropout before every layer after the first; the
    outputs ``W_out a(h_B)``, feature ``i``'s ``p`` parameters seeing the units of degree
    ``<= i`` only. The context enters the first layer (degree 0) and every block (``V_b``).
    The last layer of every block and the output weights start at zero: the blocks start as the
    identity and every feature's parameters as the output biases.

    Arguments:
        features: ``d``.
        params: parameters per feature ``p``.
        context_features: ``c``.
        width: the hidden width.
        blocks: the residual blocks.
        layers: masked layers per block.
        activation: one of :data:`~hepflows.flows.nets.ACTIVATIONS`.
        dropout: dropout probability inside the blocks.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()

    degrees: Tensor

    def __init__(
        self,
        features: int,
        params: int,
        context_features: int = 0,
        width: int = 128,
        blocks: int = 2,
        layers: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features, self.params, self.context_features = features, params, context_features
        degrees = hidden_degrees(width, features, context_features)
        self.register_buffer("degrees", degrees, persistent=False)
        in_degrees = torch.cat([torch.zeros(context_features), torch.arange(1, features + 1)])
        self.first = MaskedLinear((degrees[:, None] >= in_degrees[None, :]).float())
        square = (degrees[:, None] >= degrees[None, :]).float()
        self.blocks = nn.ModuleList(
            nn.ModuleList(MaskedLinear(square) for _ in range(layers)) for _ in range(blocks)
        )
        self.context_layers = nn.ModuleList(
            nn.Linear(context_features, width) for _ in range(blocks if context_features else 0)
        )
        out_degrees = torch.arange(1, features + 1).repeat_interleave(params)
        self.last = MaskedLinear((out_degrees[:, None] > degrees[None, :]).float())
        for block in self.block_layers:
            nn.init.zeros_(block[-1].weight)
            nn.init.zeros_(block[-1].bias)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.activation = activation_module(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        #: ``counts[k]``: the hidden units of degree <= k, k = 0..d
        self.counts = [int((degrees <= k).sum()) for k in range(features + 1)]

    @property
    def block_layers(self) -> list[list[MaskedLinear]]:
        """Every block's masked layers, in order."""
        return [[cast(MaskedLinear, m) for m in cast(nn.ModuleList, b)] for b in self.blocks]

    def hidden(self, x: Tensor, context: Tensor | None) -> Tensor:
        """The last hidden layer after its activation, (n, width)."""
        h = self.first(x if context is None else torch.cat([context, x], dim=1))
        for b, block in enumerate(self.block_layers):
            t = h
            for j, layer in enumerate(block):
                t = self.activation(t)
                if j > 0:
                    t = self.dropout(t)
                t = layer(t)
                if j == 0 and context is not None:
                    t = t + self.context_layers[b](context)
            h = h + t
        return self.activation(h)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Every feature's parameters, (n, d, p): those of feature ``i`` depend on ``x[:, :i]``
        and the context only."""
        return self.last(self.hidden(x, context)).view(x.shape[0], self.features, self.params)

    def sweep(self, x: Tensor, context: Tensor | None) -> ResidualMADESweep:
        """A feature-by-feature evaluation for sampling; see :class:`ResidualMADESweep`."""
        return ResidualMADESweep(self, x, context)


class ResidualMADESweep:
    """A :class:`ResidualMADE` evaluated one feature after another, each hidden unit once.

    Feature ``k``'s parameters see the hidden units of degree <= ``k``, which see features
    ``0..k-1`` only: once those are fixed the units of degree ``k`` are final, and pass ``k``
    computes just them in every layer (the degrees are sorted, so they are the columns
    ``counts[k-1]:counts[k]``, from the prefix ``:counts[k]`` of the layer below) and feature
    ``k``'s rows of the output layer. Over the ``d`` passes the hidden layers cost one network
    pass instead of ``d``; the products are the full network's without its masked-out zeros.
    Gradient-free, without dropout (the network as in evaluation mode), in float32 or float64.

    Usage::

        sweep = net.sweep(x, context)    # x: (n, d), only its shape and type are used
        for k in range(d):
            p = sweep.params(k)          # (n, p): feature k's parameters
            sweep.fix(k, value_k)        # (n,): feature k, final
    """

    def __init__(self, net: ResidualMADE, x: Tensor, context: Tensor | None) -> None:
        n, d = x.shape
        c = 0 if context is None else context.shape[1]
        self.net, self.features, self.context_columns = net, d, c
        with torch.no_grad():
            self.first = (net.first.weight * net.first.mask).to(x.dtype)
            self.first_bias = net.first.bias.to(x.dtype)
            block_layers = net.block_layers
            self.block_weights = [
                [(m.weight * m.mask).to(x.dtype) for m in block] for block in block_layers
            ]
            self.block_biases = [[m.bias.to(x.dtype) for m in block] for block in block_layers]
            # the context's share of every block's first layer, for all units at once
            self.context_terms = (
                [layer(context).to(x.dtype) for layer in net.context_layers]
                if context is not None
                else []
            )
            last = (net.last.weight * net.last.mask).to(x.dtype)
            p = net.params
            self.out_weights = [last[k * p : (k + 1) * p] for k in range(d)]
            self.out_biases = [net.last.bias[k * p : (k + 1) * p].to(x.dtype) for k in range(d)]
        width = self.first.shape[0]
        self.inputs = torch.empty(n, c + d, dtype=x.dtype, device=x.device)
        if context is not None:
            self.inputs[:, :c] = context
        blocks = len(self.block_weights)
        layers = len(self.block_weights[0]) if blocks else 0

        def buffer() -> Tensor:
            return torch.empty(n, width, dtype=x.dtype, device=x.device)

        self.h = [buffer() for _ in range(blocks + 1)]  # each block's input, then the output
        self.t = [[buffer() for _ in range(layers)] for _ in range(blocks)]  # layer outputs
        self.a = [[buffer() for _ in range(layers)] for _ in range(blocks)]  # layer inputs
        self.out = buffer()  # the activated last hidden layer
        self.done = 0  # hidden units computed (a prefix of every layer)

    def fix(self, feature: int, value: Tensor) -> None:
        """Set feature ``feature`` (final from now on: its dependants read it)."""
        column = self.context_columns + feature
        self.inputs[:, column] = value.reshape(-1)

    @torch.no_grad()
    def params(self, feature: int) -> Tensor:
        """The parameters of ``feature`` (n, p); the features before it must be fixed."""
        lo, hi = self.done, self.net.counts[feature]
        if hi < lo:
            raise ValueError(f"feature {feature} is behind the sweep")
        act = self.net.activation
        if hi > lo:
            seen = self.context_columns + feature
            torch.addmm(
                self.first_bias[lo:hi],
                self.inputs[:, :seen],
                self.first[lo:hi, :seen].t(),
                out=self.h[0][:, lo:hi],
            )
            for b, (weights, biases) in enumerate(zip(self.block_weights, self.block_biases)):
                below = self.h[b]
                for j, (w, bias) in enumerate(zip(weights, biases)):
                    a = self.a[b][j]
                    a[:, lo:hi] = act(below[:, lo:hi])
                    t = self.t[b][j]
                    torch.addmm(bias[lo:hi], a[:, :hi], w[lo:hi, :hi].t(), out=t[:, lo:hi])
                    if j == 0 and self.context_terms:
                        t[:, lo:hi] += self.context_terms[b][:, lo:hi]
                    below = t
                torch.add(self.h[b][:, lo:hi], below[:, lo:hi], out=self.h[b + 1][:, lo:hi])
            self.out[:, lo:hi] = act(self.h[-1][:, lo:hi])
            self.done = hi
        w = self.out_weights[feature]
        return torch.addmm(self.out_biases[feature], self.out[:, :hi], w[:, :hi].t())


class MADEMoG(DensityModel):
    """``p(x | c) = prod_i sum_k pi_ik N(x_i; mu_ik, sigma_ik)`` from a :class:`ResidualMADE`.

    Per feature the network gives ``K`` logits, ``K`` means and ``K`` raw scales ``s``:
    ``log pi = log_softmax(logits)``, ``sigma = softplus(s) + min_scale``. The output biases
    start as a fixed mixture for every feature: equal weights, the means at the normal
    quantiles of ``(k + 1/2) / K`` and one scale that makes its variance about 1 (the
    preprocessed marginals' scale); distinct means break the symmetry between components.

    Arguments:
        features: ``d``.
        context_features: ``c`` (the pipeline passes 1: the process label).
        components: ``K``.
        width: the hidden width of the network.
        blocks: its residual blocks.
        layers: masked layers per block.
        activation: one of :data:`~hepflows.flows.nets.ACTIVATIONS`.
        dropout: dropout inside the blocks.
        min_scale: the floor of every scale.
    """

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        components: int = 10,
        width: int = 128,
        blocks: int = 2,
        layers: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
        min_scale: float = MIN_SCALE,
    ) -> None:
        super().__init__()
        self.features, self.context_features = features, context_features
        self.components, self.min_scale = components, min_scale
        self.net = ResidualMADE(
            features, 3 * components, context_features, width, blocks, layers, activation, dropout
        )
        with torch.no_grad():
            k = components
            means = torch.special.ndtri((torch.arange(k, dtype=torch.float64) + 0.5) / k)
            scale = math.sqrt(max(1.0 - float(means.var(unbiased=False)), 0.1))
            raw = math.log(math.expm1(scale - min_scale))
            bias = torch.cat([torch.zeros(k), means.float(), torch.full((k,), raw)])
            self.net.last.bias.copy_(bias.repeat(features))

    def _mixture(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi, mu, sigma), each (..., K), from parameters (..., 3K), in float32 at least
        (the network's output under autocast is bfloat16)."""
        if params.dtype not in (torch.float32, torch.float64):
            params = params.float()
        logits, mu, raw = params.split(self.components, dim=-1)
        return F.log_softmax(logits, dim=-1), mu, F.softplus(raw) + self.min_scale

    def _context(self, x: Tensor | None, context: Tensor | None, n: int) -> Tensor | None:
        """The context the network reads (None when unconditional), after the shape checks."""
        self._check(x, context, n)
        return context if self.context_features else None

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(x | c)`` (n,) for events ``x`` (n, d): one network pass."""
        context = self._context(x, context, x.shape[0])
        log_pi, mu, sigma = self._mixture(self.net(x, context))
        z = (x.to(mu.dtype)[..., None] - mu) / sigma
        log_normal = -0.5 * z.square() - sigma.log() - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_pi + log_normal, dim=-1).sum(dim=1)

    @torch.no_grad()
    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` events (n, d), one per context row; gradient-free.

        Every random number is drawn up front from ``generator`` (a uniform per feature for the
        component, a normal for the value), so a generator state gives the same events however
        the CPU tiles the pass. Feature ``k``'s mixture comes from the features before it
        (:class:`ResidualMADESweep`). The network runs in float32 outside any autocast: its
        products are the small ones of one pass, and a mixture's means need float32.
        """
        context = self._context(None, context, n)
        param = self.net.last.weight
        device, dtype = param.device, param.dtype
        u = torch.rand(n, self.features, generator=generator, device=device, dtype=dtype)
        eps = torch.randn(n, self.features, generator=generator, device=device, dtype=dtype)
        tile = CPU_SEQUENTIAL_TILE_ROWS if device.type == "cpu" else max(n, 1)
        with torch.autocast(device.type, enabled=False):
            pieces = [
                self._sample_tile(
                    u[i : i + tile],
                    eps[i : i + tile],
                    None if context is None else context[i : i + tile].to(dtype),
                )
                for i in range(0, n, tile)
            ]
        return torch.cat(pieces) if pieces else u

    def _sample_tile(self, u: Tensor, eps: Tensor, context: Tensor | None) -> Tensor:
        sweep = self.net.sweep(u, context)
        x = torch.empty_like(u)
        for k in range(self.features):
            log_pi, mu, sigma = self._mixture(sweep.params(k))
            # the component whose cumulative weight first exceeds u
            cumulative = log_pi.exp().cumsum(dim=1)
            index = (cumulative < u[:, k : k + 1]).sum(dim=1, keepdim=True)
            index = index.clamp_(max=self.components - 1)
            x_k = mu.gather(1, index) + sigma.gather(1, index) * eps[:, k : k + 1]
            x[:, k] = x_k[:, 0].to(x.dtype)
            sweep.fix(k, x[:, k])
        return x
