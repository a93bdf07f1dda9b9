"""Exactness of every flow layer and of whole flows: inverses, log-determinants, densities, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from hepflows.flows import (
    SOLVERS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    BatchNormFlow,
    Flow,
    GaussianMixture,
    LULinear,
    MaskedRQSAutoregressive,
    Permutation,
    QuadraticCoupling,
    RQSplineCoupling,
    StandardNormal,
    build_flow,
    coupling_mask,
)
from hepflows.flows.nets import MADE, MLP
from hepflows.model_config import COUPLINGS, MODEL_DEFAULTS, ODE_SOLVERS, check_model_config

torch.set_num_threads(1)

D = 5  # odd, so coupling halves differ in size
N = 6


def randomize(module: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Give every layer random, non-identity parameters (in place): the conditioners' zero-initialised
    last layers get Gaussian weights, the other layers' parameters get Gaussian perturbations."""
    g = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=g, dtype=t.dtype) * std

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (MLP,)):
                last = m[-1]
                last.weight.copy_(normal(last.weight, scale / math.sqrt(last.in_features)))
                last.bias.copy_(normal(last.bias, scale))
            elif isinstance(m, MADE):
                last = m.net[-1]
                last.weight.copy_(normal(last.weight, scale / math.sqrt(last.in_features)))
                last.bias.copy_(normal(last.bias, scale))
            elif isinstance(m, BatchNormFlow):
                m.log_alpha.copy_(normal(m.log_alpha, scale))
                m.beta.copy_(normal(m.beta, scale))
                m.running_mean.copy_(normal(m.running_mean, scale))
                m.running_var.copy_(torch.exp(normal(m.running_var, scale)))
            elif isinstance(m, ActNorm):
                m.loc.copy_(normal(m.loc, scale))
                m.log_scale.copy_(normal(m.log_scale, scale))
                m.initialized.fill_(True)
            elif isinstance(m, LULinear):
                for p in (m.lower, m.upper, m.log_s, m.bias):
                    p.add_(normal(p, scale))
            elif isinstance(m, GaussianMixture):
                m.logits.copy_(normal(m.logits, 1.0))
                m.log_scales.copy_(normal(m.log_scales, 0.3))
    return module


def context_for(c: int, n: int = N, seed: int = 1) -> torch.Tensor | None:
    if c == 0:
        return None
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def inputs(n: int = N, d: int = D, seed: int = 2, std: float = 1.5) -> torch.Tensor:
    return (
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std
    )


# every layer type, built for ``c`` context columns
LAYERS = {
    "affine-half-0": lambda c: AffineCoupling(coupling_mask("half", D, 0), c, hidden=[16, 16]),
    "affine-half-1": lambda c: AffineCoupling(coupling_mask("half", D, 1), c, hidden=[16, 16]),
    "affine-alternating-0": lambda c: AffineCoupling(
        coupling_mask("alternating", D, 0), c, hidden=[16]
    ),
    "affine-alternating-1": lambda c: AffineCoupling(
        coupling_mask("alternating", D, 1), c, hidden=[16]
    ),
    "affine-checkerboard-2": lambda c: AffineCoupling(
        coupling_mask("checkerboard", D, 2), c, hidden=[16]
    ),
    "affine-checkerboard-5": lambda c: AffineCoupling(
        coupling_mask("checkerboard", D, 5), c, hidden=[16]
    ),
    "affine-unbounded": lambda c: AffineCoupling(
        coupling_mask("half", D, 0), c, hidden=[16], scale_bound=None
    ),
    "additive": lambda c: AdditiveCoupling(coupling_mask("alternating", D, 0), c, hidden=[16, 16]),
    "quadratic": lambda c: QuadraticCoupling(
        coupling_mask("half", D, 1), c, hidden=[16], bins=5, tail_bound=2.0
    ),
    "quadratic-alternating": lambda c: QuadraticCoupling(
        coupling_mask("alternating", D, 0), c, hidden=[16], bins=4, tail_bound=2.0
    ),
    "rq_spline": lambda c: RQSplineCoupling(
        coupling_mask("half", D, 0), c, hidden=[16], bins=6, tail_bound=2.0
    ),
    "rq_spline-checkerboard": lambda c: RQSplineCoupling(
        coupling_mask("checkerboard", D, 3), c, hidden=[16], bins=3, tail_bound=2.0
    ),
    "rq_autoregressive": lambda c: MaskedRQSAutoregressive(
        D, c, hidden=[24, 24], bins=5, tail_bound=2.0
    ),
    "rq_autoregressive-residual": lambda c: MaskedRQSAutoregressive(
        D, c, hidden=[24, 24], bins=5, tail_bound=2.0, residual=True
    ),
    "reverse": lambda c: Permutation.reverse(D),
    "random": lambda c: Permutation.random(D, torch.Generator().manual_seed(3)),
    "lu": lambda c: LULinear(D, torch.Generator().manual_seed(4)),
    "batchnorm-eval": lambda c: BatchNormFlow(D, momentum=0.3).eval(),
    "actnorm": lambda c: ActNorm(D),
}


def per_sample_logdet(f, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """log|det| of the autograd Jacobian of ``f`` (a batch map) at every row of ``x``."""
    out = []
    for i in range(x.shape[0]):
        ctx = None if context is None else context[i : i + 1]
        jac = jacobian(lambda xi, ctx=ctx: f(xi[None], ctx)[0][0], x[i])
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


@pytest.mark.parametrize("context_features", [0, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_inverse_and_logdet(name: str, context_features: int) -> None:
    layer = randomize(LAYERS[name](context_features).double(), seed=len(name))
    x = inputs()
    ctx = context_for(context_features)

    z, ld = layer(x, ctx)
    x_back, ld_inv = layer.inverse(z, ctx)
    assert ld.shape == (N,) and ld_inv.shape == (N,)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld, -ld_inv, atol=1e-10, rtol=0)
    # not secretly the identity
    assert (z - x).abs().max() > 1e-2

    assert torch.allclose(ld, per_sample_logdet(layer, x, ctx), atol=1e-8, rtol=0)
    assert torch.allclose(ld_inv, per_sample_logdet(layer.inverse, z, ctx), atol=1e-8, rtol=0)


@pytest.mark.parametrize(
    "name",
    ["affine-half-0", "rq_spline", "quadratic", "rq_autoregressive", "rq_autoregressive-residual"],
)
def test_layer_uses_context(name: str) -> None:
    layer = randomize(LAYERS[name](2).double())
    x = inputs()
    z1, _ = layer(x, context_for(2, seed=1))
    z2, _ = layer(x, context_for(2, seed=9))
    assert (z1 - z2).abs().max() > 1e-3


@pytest.mark.parametrize(
    "name",
    [
        "affine-half-0",
        "additive",
        "quadratic",
        "rq_spline",
        "rq_autoregressive",
        "rq_autoregressive-residual",
    ],
)
def test_zero_initialised_conditioner_is_identity(name: str) -> None:
    layer = LAYERS[name](2).double()
    x = inputs()
    z, ld = layer(x, context_for(2))
    assert torch.equal(z, x) or torch.allclose(z, x, atol=1e-12, rtol=0)
    assert torch.allclose(ld, torch.zeros(N, dtype=torch.float64), atol=1e-12)


def test_coupling_keeps_conditioning_part() -> None:
    mask = coupling_mask("checkerboard", 6, 2)
    layer = randomize(AffineCoupling(mask, hidden=[8]).double())
    x = inputs(d=6)
    z, _ = layer(x)
    assert torch.equal(z[:, mask], x[:, mask])
    assert (z[:, ~mask] - x[:, ~mask]).abs().min() > 0


def test_masks() -> None:
    assert coupling_mask("half", 5, 0).tolist() == [True, True, False, False, False]
    assert coupling_mask("half", 5, 1).tolist() == [False, False, True, True, True]
    assert coupling_mask("alternating", 4, 0).tolist() == [True, False, True, False]
    assert coupling_mask("alternating", 4, 1).tolist() == [False, True, False, True]
    # period 2 at level 0, 4 at level 1 (blocks 2, 3), back to 2 for d = 4
    assert coupling_mask("checkerboard", 4, 2).tolist() == [True, True, False, False]
    assert coupling_mask("checkerboard", 4, 3).tolist() == [False, False, True, True]
    assert (
        coupling_mask("checkerboard", 4, 4).tolist() == coupling_mask("alternating", 4, 0).tolist()
    )
    for kind in ("half", "alternating", "checkerboard"):
        for block in range(8):
            m = coupling_mask(kind, 2, block)
            assert m.any() and not m.all()
    with pytest.raises(ValueError, match="mask"):
        coupling_mask("stripes", 4)


def test_batchnorm_train_mode_logdet_and_inverse() -> None:
    # momentum 0: the running statistics become the batch statistics, so the evaluation-mode map
    # is the training-mode map with the batch statistics held fixed
    layer = randomize(BatchNormFlow(D, momentum=0.0).double())
    layer.train()
    x = inputs(n=32)
    z, ld = layer(x)
    assert torch.allclose(layer.running_mean, x.mean(0), atol=1e-14)
    assert torch.allclose(layer.running_var, x.var(0, unbiased=False), atol=1e-14)
    x_back, ld_inv = layer.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld, -ld_inv, atol=1e-12, rtol=0)
    layer.eval()
    assert torch.allclose(layer(x)[0], z, atol=1e-12, rtol=0)
    assert torch.allclose(ld[:4], per_sample_logdet(layer, x[:4], None), atol=1e-8, rtol=0)
    # the training-mode output is normalised by the batch statistics
    with torch.no_grad():
        layer.log_alpha.zero_()
        layer.beta.zero_()
    layer.train()
    z, _ = layer(x)
    assert torch.allclose(z.mean(0), torch.zeros(D, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(z.var(0, unbiased=False), torch.ones(D, dtype=torch.float64), atol=1e-3)


def test_batchnorm_momentum_weights_old_value() -> None:
    layer = BatchNormFlow(2, momentum=0.25).double().train()
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    layer(x)
    # running = rho * old + (1 - rho) * batch, old = (0, 1)
    assert torch.allclose(
        layer.running_mean, torch.tensor([0.75 * 2.0, 0.75 * 4.0], dtype=torch.float64)
    )
    assert torch.allclose(
        layer.running_var, torch.tensor([0.25 + 0.75 * 1.0, 0.25 + 0.75 * 4.0], dtype=torch.float64)
    )
    seed_like = BatchNormFlow(2, momentum=1e-5).double().train()
    seed_like(x)
    assert torch.allclose(seed_like.running_mean, x.mean(0), rtol=1e-4)
    with pytest.raises(ValueError):
        BatchNormFlow(2, momentum=1.5)


def test_batchnorm_training_gradient_is_autograds_through_the_batch_statistics() -> None:
    # the training-mode map is one node with a written-out backward (BatchStatisticsNorm): its
    # values and its gradients (with respect to the events, through the batch mean and variance,
    # and to both parameters) must be those of autograd through the same formula
    layer = BatchNormFlow(D, momentum=0.3).double().train()
    with torch.no_grad():
        layer.log_alpha.normal_()
        layer.beta.normal_()
    x = (inputs(n=200) * 3 + 1).requires_grad_(True)
    z, ld = layer(x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    log_std = 0.5 * torch.log(var + layer.eps)
    z_ref = (x - mean) * torch.exp(layer.log_alpha - log_std) + layer.beta
    ld_ref = (layer.log_alpha - log_std).sum().expand(x.shape[0])
    assert torch.allclose(z, z_ref, rtol=0, atol=1e-12) and torch.allclose(ld, ld_ref, atol=1e-12)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(z.shape, generator=g, dtype=torch.float64)
    v = torch.randn(ld.shape, generator=g, dtype=torch.float64)
    leaves = (x, layer.log_alpha, layer.beta)
    got = torch.autograd.grad((z * w).sum() + (ld * v).sum(), leaves)
    want = torch.autograd.grad((z_ref * w).sum() + (ld_ref * v).sum(), leaves)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    small = BatchNormFlow(3).double().train()
    assert torch.autograd.gradcheck(
        lambda e: small(e)[0] * 1.5 + small(e)[1][:, None], (inputs(n=12)[:, :3].requires_grad_(),)
    )


def test_actnorm_data_dependent_init() -> None:
    layer = ActNorm(D).double().train()
    x = inputs(n=64) * 3 + 2
    z, ld = layer(x)
    assert bool(layer.initialized)
    assert torch.allclose(z.mean(0), torch.zeros(D, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(D, dtype=torch.float64), atol=1e-5)
    before = layer.loc.detach().clone()
    layer(x + 10)  # initialises once only
    assert torch.equal(layer.loc.detach(), before)
    fresh = ActNorm(D).double()
    fresh.load_state_dict(layer.state_dict())
    fresh.train()(x + 10)
    assert torch.equal(fresh.loc.detach(), before)


def test_lu_weight_is_orthogonal_at_init_and_factorised() -> None:
    layer = LULinear(6, torch.Generator().manual_seed(0)).double()
    w = layer.weight()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(layer.weight_inverse() @ w, torch.eye(6, dtype=torch.float64), atol=1e-12)
    _, ld = layer(inputs(d=6))
    assert torch.allclose(ld, torch.linalg.slogdet(w).logabsdet.expand(N), atol=1e-12)


def test_made_is_autoregressive() -> None:
    net = randomize(MADE(5, [3, 2], context_features=2, hidden=[20, 20])).double()
    x, ctx = inputs(n=1), context_for(2, n=1)
    jac = jacobian(lambda xi: net(xi[None], ctx)[0], x[0])  # (5 * 3 + 5 * 2, 5)
    per_feature = torch.cat([jac[:15].view(5, 3, 5), jac[15:].view(5, 2, 5)], dim=1)
    dep = per_feature.abs().sum(1) > 0  # dep[i, j]: params of feature i depend on x_j
    assert not torch.triu(dep).any()
    assert torch.tril(dep, -1).sum() > 0
    jc = jacobian(lambda ci: net(x, ci[None])[0], ctx[0])
    assert (jc.abs() > 0).any()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_residual_made_is_autoregressive(activation: str) -> None:
    net = _random_made(
        MADE(5, [3, 2], context_features=2, hidden=[20, 20], activation=activation, residual=True)
    ).double()
    assert not net._fusable  # the fused kernel has no residual connections: the plain layers
    x, ctx = inputs(n=1), context_for(2, n=1)
    jac = jacobian(lambda xi: net(xi[None], ctx)[0], x[0])  # (5 * 3 + 5 * 2, 5)
    per_feature = torch.cat([jac[:15].view(5, 3, 5), jac[15:].view(5, 2, 5)], dim=1)
    dep = per_feature.abs().sum(1) > 0  # dep[i, j]: params of feature i depend on x_j
    assert not torch.triu(dep).any()
    if activation == "tanh":  # no dead units: every earlier feature is seen
        assert torch.equal(dep, torch.ones(5, 5, dtype=torch.bool).tril(-1))
    else:
        assert torch.tril(dep, -1).sum() > 0
    jc = jacobian(lambda ci: net(x, ci[None])[0], ctx[0])
    assert (jc.abs() > 0).any()


def test_residual_made_needs_equal_widths() -> None:
    with pytest.raises(ValueError, match=r"model.hidden: residual .* \[16, 8\]"):
        MADE(4, 3, hidden=[16, 8], residual=True)
    with pytest.raises(ValueError, match="model.hidden: residual"):
        MADE(4, 3, hidden=[], residual=True)


@pytest.mark.parametrize("context", [0, 2])
def test_residual_autoregressive_round_trip_and_logdet(context: int) -> None:
    layer = MaskedRQSAutoregressive(
        D, context, hidden=[16, 16], bins=6, tail_bound=3.0, residual=True
    )
    _random_made(layer.net.double(), seed=8, scale=0.3)
    x, ctx = inputs(n=40), context_for(context, n=40)
    z, ld = layer(x, ctx)
    assert (z - x).abs().max() > 1e-2
    with torch.no_grad():
        back, ld_back = layer.inverse(z, ctx)  # the sweep
    assert torch.allclose(back, x, atol=1e-6, rtol=0)
    assert torch.allclose(ld_back, -ld, atol=1e-6, rtol=0)
    assert torch.allclose(
        ld[:6], per_sample_logdet(layer, x[:6], None if ctx is None else ctx[:6]), atol=1e-8, rtol=0
    )


def test_residual_flow_sampling_is_reproducible_from_a_seed() -> None:
    torch.manual_seed(0)
    model = {"coupling": "rq_autoregressive", "blocks": 2, "hidden": [16, 16], "bins": 4}
    flow = build_flow(dict(model, residual=True, norm="none"), 4, 1)
    for t in flow.transforms:
        if isinstance(t, MaskedRQSAutoregressive):
            _random_made(t.net, seed=5, scale=0.2)
    flow.eval()
    ctx = torch.ones(100, 1)
    with torch.no_grad():
        a, lp = flow.sample_and_log_prob(100, ctx, generator=torch.Generator().manual_seed(1))
        b = flow.sample(100, ctx, generator=torch.Generator().manual_seed(1))
        c = flow.sample(100, ctx, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(flow.log_prob(a, ctx), lp, atol=1e-4, rtol=0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


# ----------------------------------------------------------------------------- distributions


def test_gmm_log_prob_matches_explicit_mixture() -> None:
    gmm = randomize(GaussianMixture(3, 4, torch.Generator().manual_seed(0)).double())
    z = inputs(n=10, d=3)
    w = torch.softmax(gmm.logits, 0)
    dens = torch.zeros(10, dtype=torch.float64)
    for k in range(4):
        normal = torch.distributions.Normal(gmm.means[k], torch.exp(gmm.log_scales[k]))
        dens += w[k] * normal.log_prob(z).sum(-1).exp()
    assert torch.allclose(gmm.log_prob(z), dens.log(), atol=1e-10)


def test_standard_normal_log_prob() -> None:
    z = inputs(n=10, d=3)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(StandardNormal(3).double().log_prob(z), ref, atol=1e-12)


def test_gmm_sample_follows_weights() -> None:
    gmm = GaussianMixture(1, 2)
    with torch.no_grad():
        gmm.logits.copy_(torch.tensor([math.log(0.8), math.log(0.2)]))
        gmm.means.copy_(torch.tensor([[-10.0], [10.0]]))
        gmm.log_scales.fill_(-3.0)
    s = gmm.sample(20000, generator=torch.Generator().manual_seed(0))
    assert abs((s > 0).double().mean().item() - 0.2) < 0.015


# ----------------------------------------------------------------------------- whole flows


def small_flow(
    coupling: str, base: str = "normal", context: int = 0, features: int = 2, **extra
) -> Flow:
    model = {
        "coupling": coupling,
        "blocks": 2,
        "hidden": [16, 16],
        "bins": 4,
        "tail_bound": 3.0,
        "base": base,
        "base_components": 3,
        **extra,
    }
    torch.manual_seed(0)
    flow = build_flow(model, features, context)
    return randomize(flow.double(), seed=5, scale=0.4).eval()


FLOW_CASES = [(c, "normal") for c in COUPLINGS] + [("affine", "gmm"), ("rq_spline", "gmm")]


@pytest.mark.parametrize("coupling,base", FLOW_CASES)
def test_density_integrates_to_one(coupling: str, base: str) -> None:
    flow = small_flow(
        coupling, base, context=1, norm="actnorm" if coupling == "additive" else "batchnorm"
    )
    h = 0.075
    ticks = torch.arange(-15 + h / 2, 15, h, dtype=torch.float64)
    grid = torch.cartesian_prod(ticks, ticks)
    for label in (0.0, 1.0):
        ctx = torch.full((grid.shape[0], 1), label, dtype=torch.float64)
        with torch.no_grad():
            mass = flow.log_prob(grid, ctx).exp().sum().item() * h * h
        assert abs(mass - 1) < 1e-2, (coupling, base, label, mass)


@pytest.mark.parametrize("coupling,base", FLOW_CASES)
def test_sample_then_log_prob_equals_sample_and_log_prob(coupling: str, base: str) -> None:
    flow = small_flow(coupling, base, context=1, features=4, permutation="lu")
    ctx = torch.randint(0, 2, (50, 1), generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        x = flow.sample(50, ctx, generator=torch.Generator().manual_seed(7))
        x2, lp2 = flow.sample_and_log_prob(50, ctx, generator=torch.Generator().manual_seed(7))
        lp = flow.log_prob(x, ctx)
    assert x.shape == (50, 4) and lp.shape == (50,)
    assert torch.allclose(x, x2, atol=1e-12, rtol=0)
    assert torch.allclose(lp, lp2, atol=1e-8, rtol=0)
    z, _ = flow.transform(x, ctx)
    z_base = flow.base.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(z, z_base, atol=1e-9, rtol=0)


@pytest.mark.parametrize("base", ["normal", "gmm"])
def test_sampling_is_reproducible_from_a_seed(base: str) -> None:
    flow = small_flow("rq_spline", base, context=1).float()
    ctx = torch.ones(100, 1)
    with torch.no_grad():
        a = flow.sample(100, ctx, generator=torch.Generator().manual_seed(123))
        b = flow.sample(100, ctx, generator=torch.Generator().manual_seed(123))
        c = flow.sample(100, ctx, generator=torch.Generator().manual_seed(124))
    assert a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_context_changes_samples_and_is_checked() -> None:
    flow = small_flow("affine", context=1)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        s0 = flow.sample(20, torch.zeros(20, 1, dtype=torch.float64), generator=gen())
        s1 = flow.sample(20, torch.ones(20, 1, dtype=torch.float64), generator=gen())
    assert (s0 - s1).abs().max() > 1e-3
    with pytest.raises(ValueError, match="rows"):
        flow.sample(10, torch.zeros(20, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(
            torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
        )


def test_flow_log_prob_is_base_plus_logdet() -> None:
    flow = small_flow("quadratic", "gmm", features=3)
    x = inputs(n=8, d=3)
    z, ld = flow.transform(x)
    assert torch.allclose(flow.log_prob(x), flow.base.log_prob(z) + ld, atol=1e-12)
    ld_jac = per_sample_logdet(lambda xi, c: flow.transform(xi), x, None)
    assert torch.allclose(ld, ld_jac, atol=1e-8)


def test_training_reduces_loss_and_gradients_flow() -> None:
    torch.manual_seed(0)
    flow = build_flow({"coupling": "rq_spline", "blocks": 2, "hidden": [16]}, 2)
    x = torch.randn(256, 2) * torch.tensor([2.0, 0.5]) + 1
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = -flow.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in flow.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize("permutation", ["reverse", "lu"])
def test_build_flow_every_coupling(coupling: str, permutation: str) -> None:
    model = {"coupling": coupling, "blocks": 3, "hidden": [8], "permutation": permutation}
    flow = build_flow(model, 4, context_features=1)
    assert flow.features == 4 and flow.context_features == 1
    x, ctx = torch.randn(10, 4), torch.ones(10, 1)
    flow.train()
    lp = flow.log_prob(x, ctx)
    assert lp.shape == (10,) and torch.isfinite(lp).all()
    flow.eval()
    with torch.no_grad():
        assert flow.sample(7, torch.zeros(7, 1)).shape == (7, 4)


def test_seed_study_model_is_expressible() -> None:
    model = {
        "coupling": "affine",
        "blocks": 20,
        "hidden": [512, 512],
        "activation": "relu",
        "permutation": "lu",
        "norm": "batchnorm",
        "batchnorm_momentum": "1e-5",  # as PyYAML reads 1e-5
    }
    cfg = check_model_config(model)
    assert cfg["batchnorm_momentum"] == 1e-5
    flow = build_flow(cfg, 18, 1)
    kinds = [type(t).__name__ for t in flow.transforms]
    assert kinds[:3] == ["BatchNormFlow", "LULinear", "AffineCoupling"] and len(kinds) == 60
    assert all(t.momentum == 1e-5 for t in flow.transforms if isinstance(t, BatchNormFlow))
    assert flow.transforms[2].net[0].in_features == 9 + 1
    assert flow.transforms[2].net[2].out_features == 512


def test_half_mask_with_reverse_permutation_transforms_every_feature() -> None:
    flow = build_flow({"coupling": "additive", "blocks": 2, "hidden": [4], "norm": "none"}, 5)
    randomize(flow)
    x = torch.randn(3, 5)
    h, changed = x, torch.zeros(5, dtype=torch.bool)
    order = torch.arange(5)
    for t in flow.transforms:
        if isinstance(t, Permutation):
            order = order[t.perm]
            h, _ = t(h)
            continue
        out, _ = t(h)
        changed[order[(out != h).any(0)]] = True
        h = out
    assert changed.all()


def test_check_model_config_fills_defaults() -> None:
    cfg = check_model_config({})
    assert cfg == MODEL_DEFAULTS and cfg is not MODEL_DEFAULTS
    assert check_model_config(None) == MODEL_DEFAULTS
    assert check_model_config({"scale_bound": None})["scale_bound"] is None


@pytest.mark.parametrize(
    "bad,key",
    [
        ({"coupling": "foo"}, "coupling"),
        ({"couplings": "affine"}, "couplings"),
        ({"blocks": 0}, "blocks"),
        ({"blocks": 2.5}, "blocks"),
        ({"blocks": True}, "blocks"),
        ({"hidden": 512}, "hidden"),
        ({"hidden": [512, -1]}, "hidden"),
        ({"activation": "sigmoid"}, "activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"mask": "random"}, "mask"),
        ({"permutation": "shuffle"}, "permutation"),
        ({"norm": "layernorm"}, "norm"),
        ({"batchnorm_momentum": 2}, "batchnorm_momentum"),
        ({"batchnorm_momentum": "fast"}, "batchnorm_momentum"),
        ({"batchnorm_eps": 0}, "batchnorm_eps"),
        ({"scale_bound": -1}, "scale_bound"),
        ({"bins": 0}, "bins"),
        ({"tail_bound": 0.0}, "tail_bound"),
        ({"base": "uniform"}, "base"),
        ({"base_components": 0}, "base_components"),
        ({"residual": "yes"}, "residual"),
        ({"residual": True}, "residual"),  # the default coupling (affine) has no MADE
        ({"residual": True, "coupling": "rq_autoregressive", "hidden": [64, 32]}, "hidden"),
        ({"components": 0}, "components"),
        ({"family": "made_mog", "hidden": [16, 32]}, "hidden"),
        ({"family": "made_mog", "hidden": []}, "hidden"),
        ({"ode_solver": "dopri5"}, "ode_solver"),
        ({"ode_steps": 0}, "ode_steps"),
        ({"sigma_min": 1.0}, "sigma_min"),
    ],
)
def test_check_model_config_errors_name_the_key(bad: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^model\.{key}: "):
        check_model_config(bad)


def test_the_config_names_the_solvers_the_flow_matching_module_has() -> None:
    assert set(ODE_SOLVERS) == set(SOLVERS)
    assert MODEL_DEFAULTS["ode_solver"] in SOLVERS


def test_check_model_config_message_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        check_model_config({"coupling": "foo"})
    assert (
        "expected one of ['affine', 'additive', 'quadratic', 'rq_spline', 'rq_autoregressive'], got 'foo'"
        in str(err.value)
    )
    with pytest.raises(ValueError, match="^model: "):
        check_model_config(["affine"])


# ----------------------------------------------------------------------------- the autoregressive sweep


def _random_made(made: MADE, seed: int = 4, scale: float = 0.4) -> MADE:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in made.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return made


@pytest.mark.parametrize(
    ("hidden", "activation", "context", "residual"),
    [
        ([20, 13], "relu", 2, False),  # two layers, widths not a multiple of d - 1
        ([7], "tanh", 0, False),  # one layer, not the fused path
        ([3, 3], "relu", 1, False),  # narrower than d - 1: some degrees have no units
        ([], "relu", 2, False),  # no hidden layer: the last layer reads the inputs
        ([13, 13], "relu", 2, True),  # two residual blocks
        ([7], "tanh", 0, True),  # one block, another activation
        ([3, 3, 3], "relu", 1, True),  # narrower than d - 1
    ],
)
def test_made_sweep_gives_the_full_networks_parameters(
    hidden, activation, context, residual
) -> None:
    d, groups = 6, [3, 3, 2]
    made = _random_made(
        MADE(d, groups, context, hidden=hidden, activation=activation, residual=residual).double()
    ).eval()
    x, ctx = inputs(n=30, d=d), context_for(context, n=30)
    with torch.no_grad():
        full = made(x, ctx)
        sweep = made.sweep(x, ctx)
        for k in range(d):
            p = sweep.params(k)
            assert p.t().is_contiguous()  # parameter rows: the spline reads them in place
            p = p.clone()
            assert torch.allclose(p, full[:, made._feature_rows[k]], atol=1e-12, rtol=0), k
            sweep.fix(k, x[:, k])
        assert torch.equal(sweep.values, x)
        with pytest.raises(ValueError, match="behind"):
            sweep.params(0)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("bins", [1, 5])
def test_autoregressive_sweep_inverse_equals_the_differentiable_one(
    context: int, bins: int, residual: bool
) -> None:
    hidden = [24, 24] if residual else [24, 17]
    layer = randomize(
        MaskedRQSAutoregressive(
            D, context, hidden=hidden, bins=bins, tail_bound=2.0, residual=residual
        )
    ).double()
    layer.eval()
    x, ctx = inputs(n=200), context_for(context, n=200)
    z, ladj = layer(x, ctx)
    z, ladj = z.detach(), ladj.detach()
    with torch.no_grad():
        back, ladj_back = layer.inverse(z, ctx)  # the sweep
    by_passes, ladj_passes = layer._inverse_by_passes(z, ctx)  # with autograd
    assert torch.allclose(back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ladj_back, -ladj, atol=1e-10, rtol=0)
    assert torch.allclose(back, by_passes.detach(), atol=1e-12, rtol=0)
    assert torch.allclose(ladj_back, ladj_passes.detach(), atol=1e-12, rtol=0)


def test_autoregressive_sampling_is_the_same_with_one_and_two_threads() -> None:
    # the best-fidelity model's shape (smaller): 18 features, 16 bins, two hidden layers, a context,
    # sampled on more than one sequential tile
    from hepflows.flows.base import CPU_SEQUENTIAL_TILE_ROWS

    torch.manual_seed(0)
    flow = build_flow(
        {
            "coupling": "rq_autoregressive",
            "blocks": 2,
            "hidden": [64, 64],
            "bins": 16,
            "permutation": "random",
            "norm": "none",
        },
        18,
        1,
    )
    for t in flow.transforms:
        if isinstance(t, MaskedRQSAutoregressive):
            with torch.no_grad():
                for p in t.parameters():
                    p.add_(0.05 * torch.randn_like(p))
    flow.eval()
    n = CPU_SEQUENTIAL_TILE_ROWS + 100
    context = torch.randint(0, 2, (n, 1), generator=torch.Generator().manual_seed(2)).float()
    threads = torch.get_num_threads()
    samples = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.no_grad():
                samples.append(
                    flow.sample_and_log_prob(n, context, generator=torch.Generator().manual_seed(3))
                )
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(samples[0][0], samples[1][0]) and torch.equal(samples[0][1], samples[1][1])
    assert torch.isfinite(samples[0][0]).all()
    with torch.no_grad():
        assert torch.allclose(
            flow.log_prob(samples[0][0], context), samples[0][1], atol=1e-3, rtol=1e-4
        )


def test_autoregressive_sampling_under_bf16_autocast_keeps_the_map_in_float32() -> None:
    torch.manual_seed(0)
    flow = build_flow(
        {"coupling": "rq_autoregressive", "blocks": 2, "hidden": [16], "bins": 4}, 4, 1
    )
    for t in flow.transforms:
        if isinstance(t, MaskedRQSAutoregressive):
            _random_made(t.net, seed=6, scale=0.1)
    flow.eval()
    context = torch.ones(64, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x, lp = flow.sample_and_log_prob(64, context, generator=torch.Generator().manual_seed(0))
        back, ladj = flow.transform(x, context)
    assert x.dtype == lp.dtype == torch.float32
    assert torch.allclose(flow.base.log_prob(back) + ladj, lp, atol=1e-2)
