"""Normalizing flows: invertible transforms, one idea per module, composed into a :class:`Flow`.

Every transform maps data ``x`` (n, d) to latent ``z`` (n, d) in ``forward`` and returns
``(z, log|det dz/dx|)`` with the log-determinant of shape (n,); ``inverse`` maps back and returns
``(x, log|det dx/dz|)``. An optional ``context`` (n, c) conditions couplings and autoregressive
layers. :func:`build_flow` builds a model from the config's ``model:`` block: a flow, or another
family (:class:`MADEMoG`, the continuous :class:`FlowMatching`) behind the same
:class:`DensityModel` interface.
"""

from .autoregressive import MaskedRQSAutoregressive
from .base import Composite, Flow, Transform
from .build import build_flow
from .compiled import CompiledSampler
from .coupling import (
    MASKS,
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    QuadraticCoupling,
    RQSplineCoupling,
    coupling_mask,
)
from .distributions import GaussianMixture, StandardNormal
from .flow_matching import SOLVERS, FlowMatching, VelocityField
from .made_mog import MADEMoG, ResidualMADE
from .model import DensityModel
from .nets import ACTIVATIONS, MADE, MLP, MaskedLinear
from .normalization import ActNorm, BatchNormFlow
from .permutations import LULinear, Permutation
from .splines import piecewise_quadratic_spline, pq_knots, rational_quadratic_spline, rq_knots

__all__ = [
    "ACTIVATIONS",
    "MASKS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "BatchNormFlow",
    "CompiledSampler",
    "Composite",
    "Coupling",
    "DensityModel",
    "Flow",
    "FlowMatching",
    "GaussianMixture",
    "LULinear",
    "MADE",
    "MADEMoG",
    "MLP",
    "MaskedLinear",
    "MaskedRQSAutoregressive",
    "Permutation",
    "QuadraticCoupling",
    "RQSplineCoupling",
    "ResidualMADE",
    "SOLVERS",
    "StandardNormal",
    "Transform",
    "VelocityField",
    "build_flow",
    "coupling_mask",
    "piecewise_quadratic_spline",
    "pq_knots",
    "rational_quadratic_spline",
    "rq_knots",
]
