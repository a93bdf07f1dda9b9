"""The fused CPU path of the conditioners and the tiled no-grad passes give the plain results."""

from __future__ import annotations

import pytest
import torch

from hepflows.flows import build_flow
from hepflows.flows.base import CPU_TILE_ROWS
from hepflows.flows.fused import affine, matmul
from hepflows.flows.nets import MADE, MLP, _fused_path

torch.set_num_threads(1)


def _plain(mlp: MLP):
    """Run ``mlp`` through nn.Sequential's own forward (the unfused reference)."""
    return lambda x: torch.nn.Sequential.forward(mlp, x)


@pytest.mark.parametrize("shape", [(7, 3, 5), (300, 40, 9), (9, 200, 300), (256, 512, 18)])
def test_matmul_and_affine_either_orientation(shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g, dtype=torch.float64)
    b = torch.randn(k, n, generator=g, dtype=torch.float64)
    bias = torch.randn(n, generator=g, dtype=torch.float64)
    assert torch.allclose(matmul(a, b), a @ b, atol=1e-12, rtol=0)
    assert torch.allclose(affine(a, b.t(), bias), a @ b + bias, atol=1e-12, rtol=0)


@pytest.mark.parametrize("hidden", [[16], [32, 24], [8, 8, 8]])
@pytest.mark.parametrize("rows", [5, 130])
def test_fused_mlp_matches_autograd(hidden: list[int], rows: int) -> None:
    torch.manual_seed(0)
    mlp = MLP(6, 10, hidden, zero_init=False).double()
    x = torch.randn(rows, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(rows, 10, dtype=torch.float64)

    out = mlp(x)
    grads = torch.autograd.grad((out * w).sum(), [x, *mlp.parameters()])
    ref = _plain(mlp)(x)
    ref_grads = torch.autograd.grad((ref * w).sum(), [x, *mlp.parameters()])
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-10, rtol=0)
    with torch.no_grad():
        assert torch.allclose(mlp(x), ref, atol=1e-12, rtol=0)


def test_fused_mlp_passes_gradcheck() -> None:
    torch.manual_seed(1)
    mlp = MLP(3, 4, [5, 5], zero_init=False).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, *p: mlp(v), (x, *mlp.parameters()))


def test_fused_mlp_input_gradient_only_where_needed() -> None:
    mlp = MLP(4, 6, [8], zero_init=False)
    x = torch.randn(3, 4)  # no grad wanted for the input
    mlp(x).sum().backward()
    assert all(p.grad is not None for p in mlp.parameters())


def test_other_activations_and_training_dropout_keep_the_plain_path() -> None:
    x = torch.randn(3, 4)
    assert not _fused_path(MLP(4, 2, [8], activation="tanh"), x)
    assert not _fused_path(MLP(4, 2, [8], dropout=0.1).train(), x)
    assert _fused_path(MLP(4, 2, [8], dropout=0.1).eval(), x)  # dropout is the identity there
    assert _fused_path(MLP(4, 2, [8]), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _fused_path(MLP(4, 2, [8]), x)


@pytest.mark.parametrize("context", [0, 2])
def test_made_fused_path_and_single_feature_rows_match_the_plain_network(context: int) -> None:
    torch.manual_seed(0)
    made = MADE(5, [3, 3, 2], context, hidden=[12, 12]).double()
    for p in made.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(40, context, dtype=torch.float64) if context else None
    out = made(x, c)
    ref = made.net(x if c is None else torch.cat([c, x], 1))
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    g, g_ref = (torch.autograd.grad(o.square().sum(), x)[0] for o in (out, ref))
    assert torch.allclose(g, g_ref, atol=1e-10, rtol=0)
    for i in range(5):  # [group 0 | group 1 | group 2] of feature i
        cols = torch.cat(
            [
                torch.arange(3 * i, 3 * i + 3),
                15 + torch.arange(3 * i, 3 * i + 3),
                30 + torch.arange(2 * i, 2 * i + 2),
            ]
        )
        assert torch.allclose(made.feature_params(x, c, i), ref[:, cols], atol=1e-12, rtol=0)


def test_autoregressive_sampling_passes_invert_exactly() -> None:
    torch.manual_seed(0)
    flow = (
        build_flow(
            {
                "coupling": "rq_autoregressive",
                "blocks": 2,
                "hidden": [16, 16],
                "dropout": 0.1,
                "bins": 5,
                "tail_bound": 3.0,
            },
            6,
            1,
        )
        .double()
        .eval()
    )
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.3)
    c = torch.randint(0, 2, (50, 1)).double()
    with torch.no_grad():
        x, lp = flow.sample_and_log_prob(50, c, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(flow.log_prob(x, c), lp, atol=1e-9, rtol=0)


@pytest.mark.parametrize("coupling", ["affine", "rq_spline"])
def test_tiled_sampling_and_density_match_one_piece(coupling: str) -> None:
    torch.manual_seed(0)
    flow = build_flow({"coupling": coupling, "blocks": 2, "hidden": [8]}, 4, 1).double()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    flow.eval()
    n = 2 * CPU_TILE_ROWS + 17
    context = torch.randint(0, 2, (n, 1)).double()
    with torch.no_grad():
        x = flow.sample(n, context, generator=torch.Generator().manual_seed(3))
        tiled = flow.log_prob(x, context)
        x2, lp2 = flow.sample_and_log_prob(n, context, generator=torch.Generator().manual_seed(3))
    whole = flow.log_prob(x, context)  # with autograd: one piece
    assert torch.allclose(tiled, whole.detach(), atol=1e-10, rtol=0)
    assert torch.equal(x, x2)
    assert torch.allclose(lp2, whole.detach(), atol=1e-9, rtol=0)


def test_training_mode_density_is_never_tiled() -> None:
    torch.manual_seed(0)
    flow = build_flow({"blocks": 1, "hidden": [8]}, 4).double().train()
    x = torch.randn(CPU_TILE_ROWS + 5, 4, dtype=torch.float64) * 3 + 1
    x[: CPU_TILE_ROWS // 2] += 5  # tiles would have different batch statistics
    with torch.no_grad():
        lp = flow.log_prob(x)
    assert torch.allclose(lp, flow.log_prob(x).detach(), atol=1e-10, rtol=0)


def test_bf16_autocast_keeps_the_map_in_float32() -> None:
    torch.manual_seed(0)
    flow = build_flow({"blocks": 2, "hidden": [8], "permutation": "lu"}, 4, 1).eval()
    context = torch.ones(10, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x, lp = flow.sample_and_log_prob(10, context, generator=torch.Generator().manual_seed(0))
        back, ladj = flow.transform(x, context)
    assert x.dtype == lp.dtype == torch.float32
    assert torch.allclose(flow.base.log_prob(back) + ladj, lp, atol=1e-4)


def test_no_grad_outputs_never_share_the_workspaces() -> None:
    torch.manual_seed(0)
    mlp = MLP(5, 7, [80, 96], zero_init=False)
    a, b = torch.randn(300, 5), torch.randn(300, 5)
    with torch.no_grad():
        out_a = mlp(a)
        expected = out_a.clone()
        out_b = mlp(b)
        again = mlp(a)
    assert torch.equal(out_a, expected)  # the second call did not write into the first's output
    assert torch.allclose(out_b, _plain(mlp)(b).detach(), atol=1e-5)
    assert torch.equal(again, expected)
