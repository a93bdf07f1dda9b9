"""Splines at their edges and in float32, and cross-checks against zuko."""

from __future__ import annotations

import math

import pytest
import torch
import zuko
from zuko.transforms import MonotonicRQSTransform

from hepflows.flows import (
    AffineCoupling,
    Flow,
    StandardNormal,
    piecewise_quadratic_spline,
    pq_knots,
    rational_quadratic_spline,
    rq_knots,
)
from hepflows.flows.splines import _search, rq_inverse_one, rq_spline, unpack_rq_params

torch.set_num_threads(1)

K = 6
B = 3.0


def raw_rq(n: int, scale: float, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        (torch.randn(n, m, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_(True)
        for m in (K, K, K - 1)
    )


def raw_pq(n: int, scale: float, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        (torch.randn(n, m, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_(True)
        for m in (K, K + 1)
    )


def edge_points(knots: torch.Tensor, bound: float) -> torch.Tensor:
    """Per row: every knot, its float neighbours, +-B and their neighbours, and tail points (n, m)."""
    n = knots.shape[0]
    big = torch.full_like(knots, 1e6)
    special = torch.tensor(
        [bound, -bound, 1.5 * bound, -1.5 * bound, 100.0, -100.0], dtype=knots.dtype
    )
    special = special.expand(n, -1)
    pts = torch.cat(
        [knots, torch.nextafter(knots, big), torch.nextafter(knots, -big), special], dim=1
    )
    return torch.cat([pts, torch.nextafter(special, torch.zeros_like(special))], dim=1).detach()


def assert_finite_with_grads(out: torch.Tensor, ladj: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert torch.isfinite(out).all() and torch.isfinite(ladj).all()
    grads = torch.autograd.grad(out.sum() + ladj.sum(), leaves, allow_unused=True)
    for g in grads:
        assert g is not None and torch.isfinite(g).all()


# ----------------------------------------------------------------------------- rational-quadratic


def test_rq_knots_are_valid_and_zero_is_identity() -> None:
    w, h, d = raw_rq(50, 3.0, torch.float64)
    kx, ky, kd = rq_knots(w, h, d, B)
    for k in (kx, ky):
        assert (k[:, 0] == -B).all() and (k[:, -1] == B).all()
        assert (k.diff(dim=-1) > 0).all()
    assert (kd > 0).all() and (kd[:, 0] == 1).all() and (kd[:, -1] == 1).all()

    zeros = [torch.zeros(4, m, dtype=torch.float64) for m in (K, K, K - 1)]
    x = torch.linspace(-2 * B, 2 * B, 4 * 25, dtype=torch.float64).view(4, 25)
    knots = [k[:, None, :].expand(4, 25, K + 1) for k in rq_knots(*zeros, B)]
    y, ladj = rational_quadratic_spline(x, *knots)
    assert torch.allclose(y, x, atol=1e-14) and torch.allclose(
        ladj, torch.zeros_like(ladj), atol=1e-14
    )


def test_unpacking_block_layout_equals_rq_knots() -> None:
    n, db = 4, 3
    flat = torch.randn(
        n, db * (3 * K - 1), generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    fused = unpack_rq_params(flat, db, K, B)
    blocks = flat.split([db * K, db * K, db * (K - 1)], dim=1)
    plain = rq_knots(
        blocks[0].view(n, db, K), blocks[1].view(n, db, K), blocks[2].view(n, db, K - 1), B
    )
    for a, b in zip(fused, plain):
        assert a.shape == (n, db, K + 1) and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inverse", [False, True])
def test_rq_edges_tails_and_bounds_are_finite(dtype: torch.dtype, inverse: bool) -> None:
    leaves = raw_rq(40, 4.0, dtype, seed=1)
    kx, ky, kd = rq_knots(*leaves, B)
    x = edge_points(ky if inverse else kx, B).requires_grad_(True)
    m = x.shape[1]
    knots = [k[:, None, :].expand(-1, m, -1) for k in (kx, ky, kd)]
    out, ladj = rational_quadratic_spline(x, *knots, inverse=inverse)
    assert_finite_with_grads(out, ladj, x, *leaves)

    # the knots map onto the knots, the tails are the identity
    target = kx if inverse else ky
    assert torch.allclose(out[:, : K + 1], target, atol=1e-5 if dtype == torch.float32 else 1e-12)
    tails = x.abs() > B
    assert torch.equal(out[tails], x[tails]) and (ladj[tails] == 0).all()
    # and back again
    back, ladj_back = rational_quadratic_spline(out, *knots, inverse=not inverse)
    if dtype == torch.float32:
        # where a map is flat, float32 cannot resolve its input from its output, and these extreme
        # splines change slope within a few ulps: a loose check in output units
        assert ((back - x).abs() * ladj.exp()).max() < 1e-3
    else:
        assert torch.allclose(back, x, atol=1e-10, rtol=0)
    if dtype == torch.float64:
        # (loose: these extreme splines change slope by orders of magnitude within a few ulps next
        # to a knot, so the log-slope at x and at its round trip differ; in float32 even by O(1))
        assert torch.allclose(ladj + ladj_back, torch.zeros_like(ladj), atol=1e-5)


def test_rq_inverse_survives_negative_discriminant_in_float32() -> None:
    # extreme parameters in float32, outputs at and just below the knots: the discriminant of the
    # inverse quadratic rounds below zero for some of them
    n = 4000
    leaves = raw_rq(n, 20.0, torch.float32, seed=2)
    kx, ky, kd = rq_knots(*leaves, B)
    g = torch.Generator().manual_seed(3)
    y = ky.gather(-1, torch.randint(0, K + 1, (n, 1), generator=g)).squeeze(-1).detach()
    y = torch.where(torch.rand(n, generator=g) < 0.5, torch.nextafter(y, torch.zeros_like(y)), y)

    k = _search(ky, y)
    k01 = torch.cat([k, k + 1], dim=-1)
    x0, x1 = kx.gather(-1, k01).unbind(-1)
    y0, y1 = ky.gather(-1, k01).unbind(-1)
    d0, d1 = kd.gather(-1, k01).unbind(-1)
    s = (y1 - y0) / (x1 - x0)
    c2 = d0 + d1 - 2 * s
    a = (y1 - y0) * (s - d0) + (y - y0) * c2
    b = (y1 - y0) * d0 - (y - y0) * c2
    c = -s * (y - y0)
    assert ((b * b - 4 * a * c) < 0).any(), "the case this test is for did not occur"

    y = y.requires_grad_(True)
    x, ladj = rational_quadratic_spline(y, kx, ky, kd, inverse=True)
    assert_finite_with_grads(x, ladj, y, *leaves)
    assert ((x >= -B) & (x <= B)).all()


def test_rq_float32_dense_roundtrip() -> None:
    leaves = raw_rq(64, 2.0, torch.float32, seed=4)
    kx, ky, kd = rq_knots(*leaves, B)
    x = torch.linspace(-1.2 * B, 1.2 * B, 64 * 200).view(64, 200).requires_grad_(True)
    knots = [k[:, None, :].expand(-1, 200, -1) for k in (kx, ky, kd)]
    y, ladj = rational_quadratic_spline(x, *knots)
    assert_finite_with_grads(y, ladj, x, *leaves)
    back, _ = rational_quadratic_spline(y, *knots, inverse=True)
    # where the spline is flat, float32 cannot resolve x from y: compare in y units
    assert ((back - x).abs() * ladj.exp()).max() < 1e-5
    assert (back - x).abs().median() < 1e-6


def test_rq_is_continuous_with_unit_slope_at_the_bounds() -> None:
    leaves = raw_rq(10, 2.0, torch.float64, seed=5)
    kx, ky, kd = (k[:, None, :].expand(-1, 4, -1) for k in rq_knots(*leaves, B))
    eps = 1e-11
    x = torch.tensor([-B - eps, -B + eps, B - eps, B + eps], dtype=torch.float64).expand(10, 4)
    y, ladj = rational_quadratic_spline(x, kx, ky, kd)
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-9) and torch.allclose(
        y[:, 2], y[:, 3], atol=1e-9
    )
    assert torch.allclose(ladj, torch.zeros_like(ladj), atol=1e-4)


# ----------------------------------------------------------------------------- piecewise-quadratic


def test_pq_knots_define_a_normalised_density() -> None:
    w, v, ku, kc = pq_knots(*raw_pq(30, 3.0, torch.float64))
    mass = (0.5 * (v[:, :-1] + v[:, 1:]) * w).sum(-1)
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-12)
    assert (
        (ku[:, 0] == 0).all()
        and (ku[:, -1] == 1).all()
        and (kc[:, 0] == 0).all()
        and (kc[:, -1] == 1).all()
    )
    assert (v > 0).all() and (kc.diff(dim=-1) > 0).all()
    # the CDF at the edges is the integral of the density
    u = torch.linspace(0, 1, 20001, dtype=torch.float64)
    x = (2 * u - 1) * B
    knots = [k[:1, None, :].expand(1, len(u), -1) for k in (w, v, ku, kc)]
    y, ladj = piecewise_quadratic_spline(x[None], *knots, B)
    cdf = torch.cumulative_trapezoid(ladj.exp()[0], u)
    assert torch.allclose((y[0, 1:] + B) / (2 * B), cdf, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inverse", [False, True])
def test_pq_edges_tails_and_bounds_are_finite(dtype: torch.dtype, inverse: bool) -> None:
    leaves = raw_pq(40, 4.0, dtype, seed=6)
    w, v, ku, kc = pq_knots(*leaves)
    edges = (2 * (kc if inverse else ku) - 1) * B
    x = edge_points(edges, B).requires_grad_(True)
    m = x.shape[1]
    knots = [k[:, None, :].expand(-1, m, -1) for k in (w, v, ku, kc)]
    out, ladj = piecewise_quadratic_spline(x, *knots, B, inverse=inverse)
    assert_finite_with_grads(out, ladj, x, *leaves)
    tails = x.abs() > B
    assert torch.equal(out[tails], x[tails]) and (ladj[tails] == 0).all()
    back, ladj_back = piecewise_quadratic_spline(out, *knots, B, inverse=not inverse)
    if dtype == torch.float32:
        # where a map is flat, float32 cannot resolve its input from its output, and these extreme
        # splines change slope within a few ulps: a loose check in output units
        assert ((back - x).abs() * ladj.exp()).max() < 1e-3
    else:
        assert torch.allclose(back, x, atol=1e-10, rtol=0)
    if dtype == torch.float64:
        # (loose: these extreme splines change slope by orders of magnitude within a few ulps next
        # to a knot, so the log-slope at x and at its round trip differ; in float32 even by O(1))
        assert torch.allclose(ladj + ladj_back, torch.zeros_like(ladj), atol=1e-5)


# ----------------------------------------------------------------------------- zuko cross-checks


def test_rq_spline_matches_zuko() -> None:
    g = torch.Generator().manual_seed(7)
    n = 500
    w, h, d = (torch.randn(n, m, generator=g, dtype=torch.float64) * 2 for m in (K, K, K - 1))
    ref = MonotonicRQSTransform(w, h, d, bound=B)
    x = torch.randn(n, generator=g, dtype=torch.float64) * B  # about a third in the tails
    knots = (ref.horizontal, ref.vertical, ref.derivatives)
    y, ladj = rational_quadratic_spline(x, *knots)
    y_ref, ladj_ref = ref.call_and_ladj(x)
    assert torch.allclose(y, y_ref, atol=1e-12, rtol=0)
    assert torch.allclose(ladj, ladj_ref, atol=1e-10, rtol=0)
    x_back, _ = rational_quadratic_spline(y, *knots, inverse=True)
    assert torch.allclose(x_back, ref.inv(y_ref), atol=1e-10, rtol=0)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert (ladj != 0).sum() > n // 2


class ZukoClampedAffine(AffineCoupling):
    """Our coupling with zuko's soft clamp of the log-scale, ``a / (1 + |a / log(slope)|)``."""

    def log_scale(self, raw: torch.Tensor) -> torch.Tensor:
        return raw / (1 + abs(raw / math.log(1e-3)))


@pytest.mark.parametrize("context", [0, 3])
def test_affine_coupling_flow_matches_zuko_realnvp(context: int) -> None:
    torch.manual_seed(0)
    features, hidden, blocks = 5, (16, 16), 3
    ref = zuko.flows.RealNVP(features, context, transforms=blocks, hidden_features=hidden).double()
    for p in ref.parameters():  # away from zuko's (non-zero) defaults, same weights below
        p.data.add_(0.2 * torch.randn_like(p))

    layers = []
    for t in ref.transform.transforms:
        ours = ZukoClampedAffine(t.mask, context, hidden=list(hidden)).double()
        db = int((~t.mask).sum())
        state = {k: v.clone() for k, v in t.hyper.state_dict().items()}
        last = str(len(t.hyper) - 1)
        # zuko emits (shift, scale) interleaved per feature; ours [scale block | shift block]
        order = torch.cat([torch.arange(db) * 2 + 1, torch.arange(db) * 2])
        state[f"{last}.weight"] = state[f"{last}.weight"][order]
        state[f"{last}.bias"] = state[f"{last}.bias"][order]
        ours.net.load_state_dict(state)
        layers.append(ours)
    flow = Flow(layers, StandardNormal(features)).double()

    g = torch.Generator().manual_seed(8)
    x = torch.randn(64, features, generator=g, dtype=torch.float64) * 2
    c = torch.randn(64, context, generator=g, dtype=torch.float64) if context else None
    dist = ref(c)
    z, ld = flow.transform(x, c)
    z_ref, ld_ref = dist.transform.call_and_ladj(x)
    assert torch.allclose(z, z_ref, atol=1e-12, rtol=0)
    assert torch.allclose(ld, ld_ref, atol=1e-12, rtol=0)
    assert torch.allclose(flow.log_prob(x, c), dist.log_prob(x), atol=1e-10, rtol=0)
    assert (ld.abs() > 1e-3).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [1, 2, K, 16])
def test_one_feature_inverse_equals_the_general_spline(dtype: torch.dtype, bins: int) -> None:
    # the autoregressive inverse's one-feature spline, from raw parameters, against unpacking the
    # same parameters and the general inverse: at and next to every knot, at +-B, in the tails.
    # It sums the softmax over the bins in another order, so its knots may differ in the last
    # bit; the inverse amplifies that by |dx/dy| (up to ~1e3 here), and its log-determinant,
    # near a knot where the slope changes fast, by more: x is compared to a tolerance scaled by
    # |dx/dy|, and in float32 both inverses are held to the float64 evaluation of the same
    # inputs, ours no less accurate than the general one
    n = 40
    g = torch.Generator().manual_seed(11)
    params = (torch.randn(n, 3 * bins - 1, generator=g, dtype=torch.float64) * 3.0).to(dtype)
    kx, ky, kd = unpack_rq_params(params, 1, bins, B)
    y = edge_points(ky[:, 0], B)
    y = torch.cat(
        [y, (torch.rand(n, 20, generator=g, dtype=torch.float64) * 2.4 * B - 1.2 * B).to(dtype)], 1
    )
    m = y.shape[1]
    rows = params.repeat_interleave(m, dim=0)
    x, ladj = rq_inverse_one(y.reshape(-1), rows, bins, B)
    x, ladj = x.view(n, m), ladj.view(n, m)

    def general(params: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        knots = [k.expand(n, m, bins + 1) for k in unpack_rq_params(params, 1, bins, B)]
        return rational_quadratic_spline(y, *knots, inverse=True)

    x_ref, ladj_ref = general(params, y)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    conditioning = 1 + ladj_ref.double().exp()  # 1 + |dx/dy|
    assert torch.isfinite(x).all() and torch.isfinite(ladj).all()
    assert ((x - x_ref).abs() <= tol * conditioning).all()
    if dtype == torch.float64:
        # a last-bit change of a knot moves log|dx/dy| by up to ~1e-5 where the slope at the
        # knot is near its floor; everywhere else by rounding
        assert torch.allclose(ladj, ladj_ref, atol=1e-4, rtol=0)
        assert (ladj - ladj_ref).abs().mean() < 1e-8
    else:
        x_64, ladj_64 = general(params.double(), y.double())
        for ours, theirs, exact in ((x, x_ref, x_64), (ladj, ladj_ref, ladj_64)):
            error, error_ref = (ours - exact).abs(), (theirs - exact).abs()
            assert error.max() <= 2 * error_ref.max() + tol
            assert error.mean() <= 2 * error_ref.mean() + tol
    tails = y.abs() > B
    assert torch.equal(x[tails], y[tails]) and (ladj[tails] == 0).all()


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("bins", [1, 2, 8, 16])
def test_spline_from_params_equals_unpacking_and_its_gradient_is_autograds(
    inverse: bool, bins: int
) -> None:
    # rq_spline finds the bin's knots in one node with a hand-written backward: its values must
    # be those of unpacking the parameters and the general spline, to the bit, at and next to
    # every knot, at +-B and in the tails; its gradient that of autograd through the unpacking
    n, features = 30, 3
    g = torch.Generator().manual_seed(5)
    params = (
        torch.randn(n, features * (3 * bins - 1), generator=g, dtype=torch.float64) * 2
    ).requires_grad_(True)
    kx, ky, kd = unpack_rq_params(params, features, bins, B)
    edges = edge_points((ky if inverse else kx)[:, 0], B)
    x = edges[:, : 3 * (edges.shape[1] // 3)].reshape(-1, features).detach().requires_grad_(True)
    rows = params.repeat_interleave(x.shape[0] // n, dim=0)
    out, ladj = rq_spline(x, rows, features, bins, B, inverse=inverse)
    knots = unpack_rq_params(rows, features, bins, B)
    out_ref, ladj_ref = rational_quadratic_spline(x, *knots, inverse=inverse)
    assert torch.equal(out, out_ref) and torch.equal(ladj, ladj_ref)

    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    v = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grad, grad_x = torch.autograd.grad((out * w + ladj * v).sum(), (params, x))
    grad_ref, grad_x_ref = torch.autograd.grad((out_ref * w + ladj_ref * v).sum(), (params, x))
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, grad_ref, rtol=1e-9, atol=1e-9 * grad_ref.abs().max().item())
    assert torch.equal(grad_x, grad_x_ref)  # through the same map of the same knots
    if bins == 1:
        assert (grad == 0).all()  # one bin: the identity, whatever the parameters


def test_spline_from_params_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(6)
    params = torch.randn(12, 2 * (3 * 4 - 1), generator=g, dtype=torch.float64)
    x = torch.rand(12, 2, generator=g, dtype=torch.float64) * 8 - 4  # some in the tails
    for inverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda p, inverse=inverse: rq_spline(x, p, 2, 4, B, inverse=inverse),
            (params.requires_grad_(True),),
        )


@pytest.mark.parametrize("bins", [1, 2])
def test_the_sampler_inverse_and_the_differentiable_inverse_share_one_map(
    bins: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one evaluation of the map inside a bin serves the sampler's inverse (without autograd) and
    # the differentiable inverse (with it). With one or two bins both find the knots by the same
    # additions, so the two inverses agree to the bit; gradients flow through the second
    from hepflows.flows import splines

    calls: list[bool] = []
    in_bin = splines._rq_in_bin

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(torch.is_grad_enabled())
        return in_bin(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(splines, "_rq_in_bin", spy)
    g = torch.Generator().manual_seed(12)
    n = 500
    params = torch.randn(3 * bins - 1, n, generator=g, dtype=torch.float64).t() * 3
    y = torch.randn(n, generator=g, dtype=torch.float64) * 2  # some in the tails
    with torch.no_grad():
        x_fast, ladj_fast = rq_inverse_one(y, params, bins, B)
    p = params.detach().clone().requires_grad_(True)
    y_grad = y.clone().requires_grad_(True)
    x, ladj = rq_spline(y_grad[:, None], p, 1, bins, B, inverse=True)
    assert calls == [False, True]
    assert torch.equal(x_fast, x[:, 0].detach()) and torch.equal(ladj_fast, ladj[:, 0].detach())
    (dx_dy,) = torch.autograd.grad(x.sum(), y_grad, retain_graph=True)
    grad_p, grad_y = torch.autograd.grad(x.sum() + ladj.sum(), (p, y_grad))
    assert torch.isfinite(grad_p).all() and torch.isfinite(grad_y).all()
    inside = y.abs() < B
    assert (dx_dy[inside] > 0).all() and (dx_dy[~inside] == 1).all()
    assert (grad_p != 0).any() if bins > 1 else (grad_p == 0).all()
