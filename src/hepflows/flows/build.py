"""Build a flow from the config's ``model:`` block.

A flow is ``blocks`` repetitions of (normalization, permutation, coupling), in the data -> latent
order, on a standard-normal or Gaussian-mixture base, as in the seed study (batch-norm, LU or
reverse permutation, affine coupling, x 20).

Random pieces (random permutations, the LU layer's initial rotation, the mixture's initial means)
are drawn from torch's global generator: call ``torch.manual_seed`` first for a reproducible
initial model. All of them are stored in the state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..settings import ModelSettings
from .autoregressive import MaskedRQSAutoregressive
from .base import Flow, Transform
from .coupling import (
    AdditiveCoupling,
    AffineCoupling,
    QuadraticCoupling,
    RQSplineCoupling,
    coupling_mask,
)
from .distributions import Distribution, GaussianMixture, StandardNormal
from .flow_matching import FlowMatching
from .made_mog import MADEMoG
from .model import DensityModel
from .normalization import ActNorm, BatchNormFlow
from .permutations import LULinear, Permutation

__all__ = ["build_flow"]


def _norm(cfg: ModelSettings, features: int) -> Transform | None:
    if cfg.norm == "batchnorm":
        return BatchNormFlow(features, momentum=cfg.batchnorm_momentum, eps=cfg.batchnorm_eps)
    if cfg.norm == "actnorm":
        return ActNorm(features)
    return None


def _coupling(cfg: ModelSettings, mask: torch.Tensor, context_features: int) -> Transform:
    net: dict[str, Any] = dict(
        context_features=context_features,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
    )
    kind = cfg.coupling
    if kind == "affine":
        return AffineCoupling(mask, scale_bound=cfg.scale_bound, **net)
    if kind == "additive":
        return AdditiveCoupling(mask, **net)
    if kind == "quadratic":
        return QuadraticCoupling(mask, bins=cfg.bins, tail_bound=cfg.tail_bound, **net)
    return RQSplineCoupling(mask, bins=cfg.bins, tail_bound=cfg.tail_bound, **net)


def _made_mog(cfg: ModelSettings, features: int, context_features: int) -> MADEMoG:
    """Family ``made_mog``: ``blocks`` residual blocks of ``len(hidden)`` masked layers of width
    ``hidden[0]`` (the widths are equal), ``components`` Gaussians per feature."""
    return MADEMoG(
        features,
        context_features,
        components=cfg.components,
        width=cfg.hidden[0],
        blocks=cfg.blocks,
        layers=len(cfg.hidden),
        activation=cfg.activation,
        dropout=cfg.dropout,
    )


def _flow_matching(cfg: ModelSettings, features: int, context_features: int) -> FlowMatching:
    return FlowMatching(
        features,
        context_features,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
        sigma_min=cfg.sigma_min,
        solver=cfg.ode_solver,
        steps=cfg.ode_steps,
    )


def build_flow(
    model: ModelSettings | Mapping[str, Any] | None, features: int, context_features: int = 0
) -> DensityModel:
    """Build the model described by a ``model:`` block: its settings, or the block as a model
    file stores it (checked and filled by :func:`~hepflows.model_config.check_model_config`).

    Family ``flow`` (the default) is a :class:`Flow`, described below; family ``made_mog`` a
    :class:`~hepflows.flows.made_mog.MADEMoG` (see :func:`_made_mog`); family
    ``flow_matching`` a :class:`~hepflows.flows.flow_matching.FlowMatching` from ``hidden``,
    ``activation``, ``dropout``, ``sigma_min``, ``ode_solver`` and ``ode_steps``.

    Each block is ``[norm], [permutation], coupling`` in the data -> latent direction.

    Masks: a block's mask pattern (``half``, ``alternating``, ``checkerboard``; see
    :func:`~hepflows.flows.coupling.coupling_mask`) flips from block to block. With the
    ``reverse`` permutation the pattern refers to the original feature order (the reversals are
    tracked), because a reversal followed by a flipped ``half`` mask would transform the same
    features in every block and leave the others untouched. With ``random``, ``lu`` or ``none``
    the pattern refers to the current order.

    Arguments:
        model: the ``model:`` settings or block.
        features: the event dimension ``d`` (>= 2 for couplings, >= 1 for ``rq_autoregressive``).
        context_features: the number of context columns (the pipeline passes 1: the label).
    """
    cfg = model if isinstance(model, ModelSettings) else ModelSettings.from_block(model)
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive integer, got {features!r}")
    if (
        isinstance(context_features, bool)
        or not isinstance(context_features, int)
        or context_features < 0
    ):
        raise ValueError(f"context_features must be an integer >= 0, got {context_features!r}")
    if cfg.family == "made_mog":
        return _made_mog(cfg, features, context_features)
    if cfg.family == "flow_matching":
        return _flow_matching(cfg, features, context_features)
    if cfg.coupling != "rq_autoregressive" and features < 2:
        raise ValueError(
            f"model.coupling: {cfg.coupling!r} needs at least 2 features, got {features}"
        )

    transforms: list[Transform] = []
    order = torch.arange(features)  # original feature index at each current position
    for block in range(cfg.blocks):
        norm = _norm(cfg, features)
        if norm is not None:
            transforms.append(norm)
        if cfg.permutation == "reverse":
            perm = Permutation.reverse(features)
            order = order[perm.perm]
            transforms.append(perm)
        elif cfg.permutation == "random":
            transforms.append(Permutation.random(features))
        elif cfg.permutation == "lu":
            transforms.append(LULinear(features))
        if cfg.coupling == "rq_autoregressive":
            transforms.append(
                MaskedRQSAutoregressive(
                    features,
                    context_features,
                    hidden=cfg.hidden,
                    activation=cfg.activation,
                    dropout=cfg.dropout,
                    bins=cfg.bins,
                    tail_bound=cfg.tail_bound,
                    residual=cfg.residual,
                )
            )
        else:
            mask = coupling_mask(cfg.mask, features, block)[order]
            transforms.append(_coupling(cfg, mask, context_features))

    base: Distribution
    if cfg.base == "gmm":
        base = GaussianMixture(features, cfg.base_components)
    else:
        base = StandardNormal(features)
    flow = Flow(transforms, base)
    flow.context_features = context_features
    return flow
