"""The ``model:`` block of a config: its keys, their defaults and their checks, without torch.

:func:`check_model_config` is what config validation runs (the Snakefile and every step,
including those whose environment has no torch); :func:`hepflows.flows.build_flow` builds the
flow from its result.  The names of the choices here are the ones the flow modules implement
(``tests/test_flows.py`` checks that they agree).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.settings import ModelSettings

__all__ = [
    "ACTIVATIONS",
    "BASES",
    "COUPLINGS",
    "FAMILIES",
    "MASKS",
    "MODEL_DEFAULTS",
    "NORMS",
    "ODE_SOLVERS",
    "PERMUTATIONS",
    "check_model_config",
    "model_kind",
]

#: Conditioner activations (:data:`hepflows.flows.nets.ACTIVATIONS` holds their modules).
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu")
#: Coupling masks (:func:`hepflows.flows.coupling.coupling_mask`).
MASKS = ("half", "alternating", "checkerboard")
COUPLINGS = ("affine", "additive", "quadratic", "rq_spline", "rq_autoregressive")
PERMUTATIONS = ("reverse", "random", "lu", "none")
NORMS = ("batchnorm", "actnorm", "none")
BASES = ("normal", "gmm")
#: Model families: ``flow`` (the transforms below), ``made_mog`` (an autoregressive Gaussian
#: mixture), ``flow_matching`` (a continuous flow trained by conditional flow matching).
FAMILIES = ("flow", "made_mog", "flow_matching")
#: Fixed-step ODE solvers of ``flow_matching`` (:data:`hepflows.flows.flow_matching.SOLVERS`).
ODE_SOLVERS = ("euler", "midpoint", "rk4")

#: Every key of the ``model:`` block with its default.
MODEL_DEFAULTS: dict[str, Any] = {
    "family": "flow",  # one of FAMILIES
    "coupling": "affine",  # one of COUPLINGS
    "blocks": 20,  # (norm, permutation, coupling) blocks; made_mog: residual blocks
    # conditioner MLP (or MADE) hidden widths; made_mog: the equal widths of the masked layers
    # of each residual block (their count is the layers per block)
    "hidden": [512, 512],
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
    "residual": False,  # rq_autoregressive: residual MADE conditioners (equal hidden widths)
    "base": "normal",  # one of BASES
    "base_components": 8,  # mixture components for base: gmm
    # family made_mog: Gaussian components per feature (Gavranovic and Kersevan used 32)
    "components": 10,
    # family flow_matching only (hidden, activation, dropout: the velocity MLP)
    "ode_solver": "midpoint",  # one of ODE_SOLVERS, for sampling and densities
    "ode_steps": 32,  # fixed solver steps from noise (t = 0) to data (t = 1)
    "sigma_min": 1e-4,  # width of the conditional path at the data end
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


def _number(
    key: str,
    value: Any,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
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
        raise InputError(
            f"model.{unknown[0]}: unknown key; expected one of {sorted(MODEL_DEFAULTS)}"
        )
    cfg = copy.deepcopy(MODEL_DEFAULTS)
    cfg.update(copy.deepcopy(dict(model)))

    cfg["family"] = _choice("family", cfg["family"], FAMILIES)
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
    cfg["batchnorm_eps"] = _number(
        "batchnorm_eps", cfg["batchnorm_eps"], 0.0, float("inf"), open_low=True, open_high=True
    )
    if cfg["scale_bound"] is not None:
        cfg["scale_bound"] = _number(
            "scale_bound", cfg["scale_bound"], 0.0, float("inf"), open_low=True, open_high=True
        )
    cfg["bins"] = _integer("bins", cfg["bins"], 1)
    cfg["tail_bound"] = _number(
        "tail_bound", cfg["tail_bound"], 0.0, float("inf"), open_low=True, open_high=True
    )
    if not isinstance(cfg["residual"], bool):
        raise _fail("residual", "true or false", cfg["residual"])
    if cfg["residual"] and cfg["coupling"] != "rq_autoregressive":
        raise _fail("residual", "false unless coupling is rq_autoregressive", True)
    if cfg["residual"] and len(set(cfg["hidden"])) != 1:
        raise _fail("hidden", "one or more equal widths with residual: true", cfg["hidden"])
    cfg["base"] = _choice("base", cfg["base"], BASES)
    cfg["base_components"] = _integer("base_components", cfg["base_components"], 1)
    cfg["components"] = _integer("components", cfg["components"], 1)
    if cfg["family"] == "made_mog" and (not cfg["hidden"] or len(set(cfg["hidden"])) != 1):
        # a residual block adds its output to its input: every masked layer has one width
        raise _fail("hidden", "for family made_mog a non-empty list of equal widths", hidden)
    cfg["ode_solver"] = _choice("ode_solver", cfg["ode_solver"], ODE_SOLVERS)
    cfg["ode_steps"] = _integer("ode_steps", cfg["ode_steps"], 1)
    cfg["sigma_min"] = _number("sigma_min", cfg["sigma_min"], 0.0, 1.0, open_high=True)
    return cfg


def model_kind(model: ModelSettings) -> str:
    """What the ``model:`` settings build, in a few words: the coupling of a flow, or the
    family with its own defining setting (``made_mog, 32 components``)."""
    if model.family == "made_mog":
        return f"made_mog, {model.components} components"
    if model.family == "flow_matching":
        return f"flow_matching, {model.ode_solver} x {model.ode_steps} steps"
    return model.coupling
