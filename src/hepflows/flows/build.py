"""Build a flow from the config's ``model:`` block.

A flow is ``blocks`` repetitions of (normalization, permutation, coupling), in the data -> latent
order, on a standard-normal or Gaussian-mixture base, as in the seed study (batch-norm, LU or
reverse permutation, affine coupling, x 20).

Random pieces (random permutations, the LU layer's initial rotation, the mixture's initial means)
are drawn from torch's global generator: call ``torch.manual_seed`` first for a reproducible
initial model. All of them are stored in the state dict.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from numbers import Real
from typing import Any

import torch

from ..errors import InputError
from .autoregressive import MaskedRQSAutoregressive
from .base import Flow, Transform
from .coupling import MASKS, AdditiveCoupling, AffineCoupling, QuadraticCoupling, RQSplineCoupling, coupling_mask
from .distributions import GaussianMixture, StandardNormal
from .nets import ACTIVATIONS
from .normalization import ActNorm, BatchNormFlow
from .permutations import LULinear, Permutation

__all__ = [
    "MODEL_DEFAULTS",
    "COUPLINGS",
    "PERMUTATIONS",
    "NORMS",
    "BASES",
    "check_model_config",
    "build_flow",
]

COUPLINGS = ("affine", "additive", "quadratic", "rq_spline", "rq_autoregressive")
PERMUTATIONS = ("reverse", "random", "lu", "none")
NORMS = ("batchnorm", "actnorm", "none")
BASES = ("normal", "gmm")

#: Every key of the ``model:`` block with its default.
MODEL_DEFAULTS: dict[str, Any] = {
    "coupling": "affine",  # one of COUPLINGS
    "blocks": 20,  # (norm, permutation, coupling) blocks
    "hidden": [512, 512],  # conditioner MLP (or MADE) hidden widths
    "activation": "relu",  # one of ACTIVATIONS
    "dropout": 0.0,  # in the conditioner networks
    "mask": "half",  # one of MASKS (couplings only)
    "permutation": "reverse",  # one of PERMUTATIONS
    "norm": "batchnorm",  # one of NORMS
    "batchnorm_momentum": 0.9,  # rho, weight of the OLD running value (seed study: 1.0e-5)
    "batchnorm_eps": 1e-5,  # added to the variance in the batch-norm layer
    "scale_bound": 3.0,  # affine log-scale soft clamp B*tanh(s/B); null = unbounded
    "bins": 8,  # spline bins K
    "tail_bound": 5.0,  # splines act on [-B, B], identity outside
    "base": "normal",  # one of BASES
    "base_components": 8,  # mixture components for base: gmm
}


def _fail(key: str, expected: str, value: Any) -> InputError:
    return InputError(f"model.{key}: expected {expected}, got {value!r}")


def _choice(key: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(key, f"one of {list(choices)}", value)
    return value


def _integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, f"an integer >= {minimum}", value)
    return int(value)


def _number(key: str, value: Any, low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> float:
    # PyYAML reads exponents without a dot (``1e-5``) as strings; accept what float() accepts
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    lo = "(" if open_low else "["
    hi = ")" if open_high else "]"
    expected = f"a number in {lo}{low}, {high}{hi}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _fail(key, expected, value)
    value = float(value)
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if below or above or value != value:
        raise _fail(key, expected, value)
    return value


def check_model_config(model: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a ``model:`` block and fill in defaults.

    Returns a new dict with every key of :data:`MODEL_DEFAULTS`. Raises
    :class:`~hepflows.errors.InputError` (a ``ValueError``) naming the offending key, e.g.
    ``model.coupling: expected one of [...], got 'foo'``, for unknown keys, wrong types and bad
    values.
    """
    if model is None:
        model = {}
    if not isinstance(model, Mapping):
        raise InputError(f"model: expected a mapping of settings, got {model!r}")
    unknown = sorted(set(model) - set(MODEL_DEFAULTS), key=str)
    if unknown:
        raise InputError(f"model.{unknown[0]}: unknown key; expected one of {sorted(MODEL_DEFAULTS)}")
    cfg = copy.deepcopy(MODEL_DEFAULTS)
    cfg.update(copy.deepcopy(dict(model)))

    cfg["coupling"] = _choice("coupling", cfg["coupling"], COUPLINGS)
    cfg["blocks"] = _integer("blocks", cfg["blocks"], 1)
    hidden = cfg["hidden"]
    if isinstance(hidden, bool) or not isinstance(hidden, (list, tuple)):
        raise _fail("hidden", "a list of positive integers", hidden)
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise _fail("hidden", "a list of positive integers", hidden)
    cfg["hidden"] = [int(h) for h in hidden]
    cfg["activation"] = _choice("activation", cfg["activation"], sorted(ACTIVATIONS))
    cfg["dropout"] = _number("dropout", cfg["dropout"], 0.0, 1.0, open_high=True)
    cfg["mask"] = _choice("mask", cfg["mask"], MASKS)
    cfg["permutation"] = _choice("permutation", cfg["permutation"], PERMUTATIONS)
    cfg["norm"] = _choice("norm", cfg["norm"], NORMS)
    cfg["batchnorm_momentum"] = _number("batchnorm_momentum", cfg["batchnorm_momentum"], 0.0, 1.0)
    cfg["batchnorm_eps"] = _number("batchnorm_eps", cfg["batchnorm_eps"], 0.0, float("inf"), open_low=True, open_high=True)
    if cfg["scale_bound"] is not None:
        cfg["scale_bound"] = _number("scale_bound", cfg["scale_bound"], 0.0, float("inf"), open_low=True, open_high=True)
    cfg["bins"] = _integer("bins", cfg["bins"], 1)
    cfg["tail_bound"] = _number("tail_bound", cfg["tail_bound"], 0.0, float("inf"), open_low=True, open_high=True)
    cfg["base"] = _choice("base", cfg["base"], BASES)
    cfg["base_components"] = _integer("base_components", cfg["base_components"], 1)
    return cfg


def _norm(cfg: Mapping[str, Any], features: int) -> Transform | None:
    if cfg["norm"] == "batchnorm":
        return BatchNormFlow(features, momentum=cfg["batchnorm_momentum"], eps=cfg["batchnorm_eps"])
    if cfg["norm"] == "actnorm":
        return ActNorm(features)
    return None


def _coupling(cfg: Mapping[str, Any], mask: torch.Tensor, context_features: int) -> Transform:
    net = dict(context_features=context_features, hidden=cfg["hidden"], activation=cfg["activation"], dropout=cfg["dropout"])
    kind = cfg["coupling"]
    if kind == "affine":
        return AffineCoupling(mask, scale_bound=cfg["scale_bound"], **net)
    if kind == "additive":
        return AdditiveCoupling(mask, **net)
    if kind == "quadratic":
        return QuadraticCoupling(mask, bins=cfg["bins"], tail_bound=cfg["tail_bound"], **net)
    return RQSplineCoupling(mask, bins=cfg["bins"], tail_bound=cfg["tail_bound"], **net)


def build_flow(model: Mapping[str, Any] | None, features: int, context_features: int = 0) -> Flow:
    """Build the flow described by a ``model:`` block (validated by :func:`check_model_config`).

    Each block is ``[norm], [permutation], coupling`` in the data -> latent direction.

    Masks: a block's mask pattern (``half``, ``alternating``, ``checkerboard``; see
    :func:`~hepflows.flows.coupling.coupling_mask`) flips from block to block. With the
    ``reverse`` permutation the pattern refers to the original feature order (the reversals are
    tracked), because a reversal followed by a flipped ``half`` mask would transform the same
    features in every block and leave the others untouched. With ``random``, ``lu`` or ``none``
    the pattern refers to the current order.

    Arguments:
        model: the ``model:`` block.
        features: the event dimension ``d`` (>= 2 for couplings, >= 1 for ``rq_autoregressive``).
        context_features: the number of context columns (the pipeline passes 1: the label).
    """
    cfg = check_model_config(model)
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive integer, got {features!r}")
    if cfg["coupling"] != "rq_autoregressive" and features < 2:
        raise ValueError(f"model.coupling: {cfg['coupling']!r} needs at least 2 features, got {features}")
    if isinstance(context_features, bool) or not isinstance(context_features, int) or context_features < 0:
        raise ValueError(f"context_features must be an integer >= 0, got {context_features!r}")

    transforms: list[Transform] = []
    order = torch.arange(features)  # original feature index at each current position
    for block in range(cfg["blocks"]):
        norm = _norm(cfg, features)
        if norm is not None:
            transforms.append(norm)
        if cfg["permutation"] == "reverse":
            perm = Permutation.reverse(features)
            order = order[perm.perm]
            transforms.append(perm)
        elif cfg["permutation"] == "random":
            transforms.append(Permutation.random(features))
        elif cfg["permutation"] == "lu":
            transforms.append(LULinear(features))
        if cfg["coupling"] == "rq_autoregressive":
            transforms.append(
                MaskedRQSAutoregressive(
                    features,
                    context_features,
                    hidden=cfg["hidden"],
                    activation=cfg["activation"],
                    dropout=cfg["dropout"],
                    bins=cfg["bins"],
                    tail_bound=cfg["tail_bound"],
                )
            )
        else:
            mask = coupling_mask(cfg["mask"], features, block)[order]
            transforms.append(_coupling(cfg, mask, context_features))

    if cfg["base"] == "gmm":
        base = GaussianMixture(features, cfg["base_components"])
    else:
        base = StandardNormal(features)
    flow = Flow(transforms, base)
    flow.context_features = context_features
    return flow
