"""The interface every model family implements: a conditional density that can be sampled.

Training, sampling, checkpoints and the benchmarks call a model through these methods only, so a
:class:`~hepflows.flows.base.Flow` and the other families (:class:`~hepflows.flows.made_mog.MADEMoG`)
are interchangeable wherever :func:`~hepflows.flows.build_flow` hands one out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["NLL", "DensityModel", "mutable_buffers"]

#: The :attr:`DensityModel.loss_name` of a model trained by its negative log-likelihood.
NLL = "NLL"


def mutable_buffers(model: nn.Module) -> list[Tensor]:
    """The buffers of ``model`` that a training-mode forward may change in place.

    A module names its own in a class attribute ``MUTABLE_BUFFERS`` (batch norm's running
    statistics, ActNorm's flag; ``()`` for masks, permutations and other constants); every
    buffer of a module without one counts as mutable. The trainer snapshots these before each
    step, to put them back when the step turns out non-finite.
    """
    found: list[Tensor] = []
    for module in model.modules():
        own = dict(module.named_buffers(recurse=False))
        names = getattr(module, "MUTABLE_BUFFERS", None)
        found += list(own.values()) if names is None else [own[n] for n in names if n in own]
    return found


class DensityModel(nn.Module):
    """A density ``p(x | c)`` over events ``x`` (n, d) given a context ``c`` (n, c).

    Attributes:
        features: the event dimension ``d``.
        context_features: the number of context columns (0 for an unconditional model).
        loss_name: what :meth:`training_loss` is, as the training log names it: :data:`NLL`
            for a model trained by its likelihood, another name for a model with a loss of its
            own (flow matching's).
    """

    features: int
    context_features: int = 0
    loss_name: str = NLL

    def _check(self, x: Tensor | None, context: Tensor | None, n: int | None = None) -> None:
        if x is not None and (x.ndim != 2 or x.shape[1] != self.features):
            raise ValueError(f"expected events of shape (n, {self.features}), got {tuple(x.shape)}")
        if context is None:
            if self.context_features:
                raise ValueError(f"this flow needs a context of {self.context_features} columns")
            return
        if context.ndim != 2 or context.shape[1] != self.context_features:
            raise ValueError(
                f"expected context of shape (n, {self.context_features}), got {tuple(context.shape)}"
            )
        rows = x.shape[0] if x is not None else n
        if context.shape[0] != rows:
            raise ValueError(f"context has {context.shape[0]} rows, expected {rows}")

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-density of events ``x`` (n, d) given ``context`` (n, c); shape (n,)."""
        raise NotImplementedError

    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` events (n, d), one per context row; the same generator state gives the
        same events."""
        raise NotImplementedError

    def sample_and_log_prob(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` events (n, d) and their log-density (n,)."""
        x = self.sample(n, context, generator=generator)
        return x, self.log_prob(x, context)

    def training_loss(
        self,
        x: Tensor,
        context: Tensor | None = None,
        weight: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss training minimises on a batch ``x`` (n, d): a 0-d tensor.

        Here the mean negative log-likelihood, weighted by ``weight`` (n,) of mean 1 over the data
        set when given; a family with a loss of its own overrides this and :attr:`loss_name`.
        ``generator`` seeds the draws of a loss that makes any (this one makes none).
        """
        log_prob = self.log_prob(x, context)
        return -(log_prob.mean() if weight is None else (log_prob * weight).mean())
