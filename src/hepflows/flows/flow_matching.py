"""A continuous normalizing flow trained by conditional flow matching.

Lipman et al., "Flow Matching for Generative Modeling", arXiv:2210.02747. A velocity field
``v_theta(t, x, c)`` carries the standard normal at ``t = 0`` to the data at ``t = 1``; it is
regressed onto the optimal-transport conditional path between a noise point ``x_0 ~ N(0, I)``
and a data event ``x_1``::

    x_t = (1 - (1 - sigma_min) t) x_0 + t x_1,     u_t = x_1 - (1 - sigma_min) x_0,
    loss = E_{t ~ U(0, 1), x_0, x_1} |v_theta(t, x_t, c) - u_t|^2.

Sampling integrates ``dx/dt = v`` from noise (``t = 0``) to ``t = 1`` with a fixed-step solver.
The density follows from the instantaneous change of variables (Chen et al., "Neural Ordinary
Differential Equations", arXiv:1806.07366), integrating backwards from the event at ``t = 1``::

    log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div_x v(t, x_t, c) dt,

with the exact divergence (one backward pass per feature). Both are approximations of the
continuous flow, of the order of the solver (:data:`SOLVERS`) in the step ``1 / steps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from .base import CPU_TILE_ROWS
from .distributions import StandardNormal
from .model import DensityModel
from .nets import MLP

__all__ = ["SOLVERS", "TIME_FREQUENCIES", "VelocityField", "FlowMatching", "integrate"]

#: Sine/cosine pairs of the time embedding: ``sin(k pi t), cos(k pi t)``, ``k = 1..K``.
TIME_FREQUENCIES = 8

#: A state of the ODE (the events, and the divergence integral when computing densities) and
#: its time derivative: ``f(t, state) -> d state / dt``.
State = tuple[Tensor, ...]
Field = Callable[[float, State], State]


def _axpy(state: State, h: float, slope: State) -> State:
    return tuple(s + h * k for s, k in zip(state, slope))


def _euler(f: Field, t: float, h: float, y: State) -> State:
    return _axpy(y, h, f(t, y))


def _midpoint(f: Field, t: float, h: float, y: State) -> State:
    return _axpy(y, h, f(t + h / 2, _axpy(y, h / 2, f(t, y))))


def _rk4(f: Field, t: float, h: float, y: State) -> State:
    k1 = f(t, y)
    k2 = f(t + h / 2, _axpy(y, h / 2, k1))
    k3 = f(t + h / 2, _axpy(y, h / 2, k2))
    k4 = f(t + h, _axpy(y, h, k3))
    slope = tuple((a + 2 * b + 2 * c + d) / 6 for a, b, c, d in zip(k1, k2, k3, k4))
    return _axpy(y, h, slope)


#: Fixed-step solvers by name, with their order: Euler (1, one evaluation of ``v`` per step),
#: explicit midpoint (2, two) and the classical Runge-Kutta (4, four).
SOLVERS: dict[str, Callable[[Field, float, float, State], State]] = {
    "euler": _euler,
    "midpoint": _midpoint,
    "rk4": _rk4,
}


def integrate(f: Field, y: State, t0: float, t1: float, steps: int, solver: str) -> State:
    """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (either order) in ``steps`` equal
    steps of ``solver`` (one of :data:`SOLVERS`); returns ``y(t1)``."""
    step = SOLVERS[solver]
    h = (t1 - t0) / steps
    for i in range(steps):
        y = step(f, t0 + i * h, h, y)
    return y


class VelocityField(nn.Module):
    """The network ``v_theta(t, x, c)``: an MLP on ``[x, embed(t), c]``.

    ``embed(t) = [t, sin(k pi t), cos(k pi t) for k = 1..K]`` (``K`` = :data:`TIME_FREQUENCIES`),
    so that the field can change quickly in time without a large first layer.

    Arguments:
        features: the event dimension ``d``.
        context_features: the context columns ``c`` (0: unconditional).
        hidden: the MLP's hidden widths (see :class:`~hepflows.flows.nets.MLP`).
        activation: the MLP's activation.
        dropout: the MLP's dropout.
    """

    MUTABLE_BUFFERS: ClassVar[tuple[str, ...]] = ()

    frequencies: Tensor

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features, self.context_features = features, context_features
        self.register_buffer(
            "frequencies",
            math.pi * torch.arange(1, TIME_FREQUENCIES + 1, dtype=torch.float32),
            persistent=False,
        )
        width = features + 1 + 2 * TIME_FREQUENCIES + context_features
        # a random last layer: a zero field would give every sample at the origin's density
        self.net = MLP(width, features, hidden, activation, dropout, zero_init=False)

    def embed_time(self, t: Tensor) -> Tensor:
        """``t`` (n, 1) -> its embedding (n, 1 + 2K)."""
        angles = t * self.frequencies
        return torch.cat([t, angles.sin(), angles.cos()], dim=1)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The velocity (n, d) at times ``t`` (n, 1) and events ``x`` (n, d)."""
        parts = [x, self.embed_time(t.to(x.dtype))]
        if context is not None:
            parts.append(context.to(x.dtype))
        return self.net(torch.cat(parts, dim=1))


class FlowMatching(DensityModel):
    """A continuous normalizing flow ``x_0 ~ N(0, I) -> x_1`` along ``dx/dt = v_theta(t, x, c)``.

    Arguments:
        features: the event dimension ``d``.
        context_features: the context columns ``c`` (the pipeline's is the process label).
        hidden: the velocity MLP's hidden widths.
        activation: the velocity MLP's activation.
        dropout: the velocity MLP's dropout.
        sigma_min: the width of the conditional path at ``t = 1`` (arXiv:2210.02747, eq. 20).
        solver: one of :data:`SOLVERS`, for sampling and densities.
        steps: fixed solver steps from ``t = 0`` to ``t = 1``.
    """

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        *,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
        dropout: float = 0.0,
        sigma_min: float = 1e-4,
        solver: str = "midpoint",
        steps: int = 32,
    ) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {sorted(SOLVERS)}, got {solver!r}")
        self.features, self.context_features = features, context_features
        self.velocity = VelocityField(features, context_features, hidden, activation, dropout)
        self.base = StandardNormal(features)
        self.sigma_min, self.solver, self.steps = float(sigma_min), solver, int(steps)

    #: An exact NLL every epoch would cost an ODE solve with a divergence per event.
    loss_name = "CFM loss"

    # -- training ------------------------------------------------------------------------------
    def training_loss(
        self,
        x: Tensor,
        context: Tensor | None = None,
        weight: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The conditional flow-matching loss of a batch of events ``x`` (n, d): a 0-d tensor.

        Per event ``|v(t, x_t, c) - u_t|^2`` at one draw of ``t`` and ``x_0`` (from
        ``generator``, on the events' device, or torch's global generator), averaged over the
        batch, weighted by ``weight`` (n,) of mean 1 when given, as the NLL is in training.
        """
        self._check(x, context)
        n = x.shape[0]
        t = torch.rand(n, 1, generator=generator, device=x.device, dtype=x.dtype)
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        shrink = 1 - self.sigma_min
        xt = (1 - shrink * t) * x0 + t * x
        target = x - shrink * x0
        loss = (self.velocity(t, xt, context) - target).square().sum(dim=1)
        return loss.mean() if weight is None else (loss * weight).mean()

    # -- sampling ------------------------------------------------------------------------------
    def _tiles(self, n: int, device: torch.device) -> list[slice]:
        """Row ranges integrated one after another: on the CPU tiles of :data:`CPU_TILE_ROWS`
        (the activations stay in cache over the many evaluations of ``v``), else one piece."""
        rows = CPU_TILE_ROWS if device.type == "cpu" else max(n, 1)
        return [slice(i, i + rows) for i in range(0, n, rows)]

    def _time(self, t: float, like: Tensor) -> Tensor:
        return torch.full((like.shape[0], 1), t, device=like.device, dtype=like.dtype)

    @torch.no_grad()
    def _push(self, z: Tensor, context: Tensor | None) -> Tensor:
        def f(t: float, state: State) -> State:
            return (self.velocity(self._time(t, state[0]), state[0], context).to(z.dtype),)

        return integrate(f, (z,), 0.0, 1.0, self.steps, self.solver)[0]

    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` events (n, d): noise from ``generator`` pushed from ``t = 0`` to ``1``.

        The same generator state gives the same sample. Autocast is switched off inside: the
        state stays float32 and bfloat16 velocities would add their rounding at every step.
        """
        self._check(None, context, n)
        z = self.base.sample(n, generator=generator)
        with torch.autocast(z.device.type, enabled=False):
            pieces = [
                self._push(z[rows], None if context is None else context[rows])
                for rows in self._tiles(n, z.device)
            ]
        return torch.cat(pieces) if pieces else z

    # -- densities -----------------------------------------------------------------------------
    def _velocity_and_divergence(
        self, t: float, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``v(t, x)`` (n, d) and its exact divergence ``sum_i dv_i/dx_i`` (n,), detached."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = self.velocity(self._time(t, x), x, context)
            divergence = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
            for i in range(self.features):
                (grad,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)
                divergence = divergence + grad[:, i]
        return v.detach(), divergence.detach()

    def _pull(self, x: Tensor, context: Tensor | None) -> Tensor:
        def f(t: float, state: State) -> State:
            return self._velocity_and_divergence(t, state[0], context)

        # integral(t=1 -> 0) of div v = -integral(0 -> 1): what log N(x_0) is corrected by
        x0, correction = integrate(
            f, (x, x.new_zeros(x.shape[0])), 1.0, 0.0, self.steps, self.solver
        )
        return self.base.log_prob(x0) + correction

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-density of events ``x`` (n, d) given ``context`` (n, c); shape (n,).

        Not differentiable (training uses :meth:`training_loss`); runs under ``torch.no_grad``
        too, enabling autograd inside for the divergence. Costs ``1 + d`` network passes per
        evaluation of ``v``: far more than a sample of the same size.
        """
        self._check(x, context)
        with torch.autocast(x.device.type, enabled=False):
            pieces = [
                self._pull(x[rows], None if context is None else context[rows])
                for rows in self._tiles(x.shape[0], x.device)
            ]
        return torch.cat(pieces) if pieces else x.new_zeros(0)
