"""CompiledSampler: the compiled inverse draws the events Flow.sample draws for the same seed."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import ROOT

from hepflows.flows import CompiledSampler, build_flow, nets
from hepflows.flows.base import CPU_TILE_ROWS


def tiny_flow(config: str, context: int = 1):
    """The architecture of ``config/<config>.yaml`` with 2 blocks of 16 units, weights off zero."""
    model = yaml.safe_load((ROOT / "config" / f"{config}.yaml").read_text())["model"]
    torch.manual_seed(0)
    flow = build_flow(dict(model, blocks=2, hidden=[16, 16]), 18, context)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return flow.eval()


def draw(sample, n: int, context: torch.Tensor | None, seed: int = 3) -> torch.Tensor:
    return sample(n, context, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config", ["seed-paper", "best"])
def test_traced_inverse_draws_the_eager_events_bit_for_bit(config):
    # more rows than a CPU tile: the tiles and the short last one each get their own trace
    n = CPU_TILE_ROWS + 300
    flow = tiny_flow(config)
    context = (torch.arange(n) % 2).float().unsqueeze(1)
    compiled = CompiledSampler(flow, backend="eager")
    with torch.no_grad():
        expected = draw(flow.sample, n, context)
    got = draw(compiled.sample, n, context)
    assert got.shape == (n, 18)
    assert torch.equal(got, expected)
    assert not torch.equal(draw(compiled.sample, n, context, seed=4), expected)


def test_single_piece_output_is_a_copy():
    flow = tiny_flow("seed-paper", context=0)
    compiled = CompiledSampler(flow, backend="eager")
    first = draw(compiled.sample, 64, None)
    kept = first.clone()
    draw(compiled.sample, 64, None, seed=9)
    assert torch.equal(first, kept)


def test_needs_a_flow_and_its_context():
    made_mog = build_flow({"family": "made_mog", "hidden": [16, 16], "components": 3}, 18, 0)
    with pytest.raises(TypeError, match="needs a Flow, not MADEMoG"):
        CompiledSampler(made_mog)
    compiled = CompiledSampler(tiny_flow("seed-paper"), backend="eager")
    with pytest.raises(ValueError, match="context of 1 columns"):
        compiled.sample(8)


@pytest.mark.slow
def test_inductor_inverse_matches_eager_to_rounding():
    # generated C++ code (needs a compiler): fused element-wise maps, sums in another order
    flow = tiny_flow("seed-paper")
    n = 512
    context = torch.ones(n, 1)
    with torch.no_grad():
        expected = draw(flow.sample, n, context)
    got = draw(CompiledSampler(flow).sample, n, context)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def nll_and_grads(log_prob, flow, x: torch.Tensor, context: torch.Tensor):
    flow.zero_grad(set_to_none=True)
    loss = -log_prob(x, context).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in flow.parameters()]


@pytest.mark.parametrize("config", ["seed-paper", "best"])
def test_traced_training_pass_gives_the_eager_loss_and_gradients(config, monkeypatch):
    # "aot_eager" traces forward and backward without generating code: the same values
    flow = tiny_flow(config).train()
    x, context = torch.randn(256, 18), torch.ones(256, 1)
    traced = torch.compile(flow.log_prob, backend="aot_eager", dynamic=False)
    state = {k: v.clone() for k, v in flow.state_dict().items()}
    loss, grads = nll_and_grads(flow.log_prob, flow, x, context)
    flow.load_state_dict(state)  # batch norm's running statistics moved: start alike

    def fused(*args):  # inductor's backward of the fused node crashes at the seed's size
        raise AssertionError("the compiler traced the fused ReLU network")

    monkeypatch.setattr(nets, "relu_mlp", fused)
    traced_loss, traced_grads = nll_and_grads(traced, flow, x, context)
    torch.testing.assert_close(traced_loss, loss, rtol=1e-6, atol=1e-6)
    assert len(traced_grads) == len(grads) > 0
    for got, expected in zip(traced_grads, grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
