"""The flow-matching family: its loss, its ODE solvers, its densities, samples and pipeline run."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import ks_2samp
from torch import Tensor, nn

from hepflows import checkpoint
from hepflows.cli import main
from hepflows.events.reader import read_events
from hepflows.flows import SOLVERS, FlowMatching, build_flow
from hepflows.flows.flow_matching import integrate
from hepflows.model_config import ODE_SOLVERS, check_model_config
from hepflows.training import Dataset, Trainer, validation_loss

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

SHIFT = 3.0  # the toy's label moves its first feature by this much


def toy(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """A conditional 2-D toy: a skewed (log-normal) x_0 and an x_1 correlated with it; the label
    shifts x_0 by :data:`SHIFT`."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (n, 1), generator=g).float()
    a = (0.6 * torch.randn(n, generator=g)).exp() - 1
    b = 0.8 * a + 0.3 * torch.randn(n, generator=g)
    return torch.stack([a + SHIFT * label[:, 0], b], 1), label


@pytest.fixture(scope="module")
def trained() -> tuple[FlowMatching, list[float]]:
    """A small conditional model trained on the toy by the CFM loss (a few seconds)."""
    torch.manual_seed(0)
    flow = FlowMatching(2, 1, hidden=[64, 64], activation="silu", solver="midpoint", steps=16)
    x, c = toy(4096, seed=1)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800)
    losses = []
    g = torch.Generator().manual_seed(2)
    for _ in range(800):
        index = torch.randint(0, len(x), (256,), generator=g)
        loss = flow.training_loss(x[index], c[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return flow.eval(), losses


def test_cfm_loss_decreases_and_samples_match_the_toy(trained):
    flow, losses = trained
    assert np.mean(losses[-100:]) < 0.7 * np.mean(losses[:20])
    x, c = toy(3000, seed=7)
    untrained = FlowMatching(2, 1, hidden=[64, 64], steps=16)
    with torch.no_grad():
        y = flow.sample(3000, c, generator=torch.Generator().manual_seed(3))
        y0 = untrained.sample(3000, c, generator=torch.Generator().manual_seed(3))
    for i in range(2):
        assert ks_2samp(y[:, i].numpy(), x[:, i].numpy()).statistic < 0.06, i
        assert ks_2samp(y0[:, i].numpy(), x[:, i].numpy()).statistic > 0.1, i
        for label in (0, 1):
            rows = c[:, 0] == label
            assert ks_2samp(y[rows, i].numpy(), x[rows, i].numpy()).statistic < 0.1, (i, label)


def test_the_label_moves_the_samples_as_in_the_toy(trained):
    flow, _ = trained
    n = 2000
    with torch.no_grad():
        signal = flow.sample(n, torch.ones(n, 1), generator=torch.Generator().manual_seed(4))
        background = flow.sample(n, torch.zeros(n, 1), generator=torch.Generator().manual_seed(4))
    shift = (signal[:, 0] - background[:, 0]).mean().item()
    assert shift == pytest.approx(SHIFT, abs=0.2)
    assert (signal[:, 1].mean() - background[:, 1].mean()).abs() < 0.15


def test_trained_log_prob_beats_the_normal_on_the_toy(trained):
    flow, _ = trained
    x, c = toy(500, seed=9)
    with torch.no_grad():
        lp = flow.log_prob(x, c)
    gaussian = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T)).log_prob(
        x
    )  # the best single Gaussian, fitted on the test events themselves
    assert lp.shape == (500,) and torch.isfinite(lp).all()
    assert lp.mean() > gaussian.mean() + 0.2


class LinearField(nn.Module):
    """``v(t, x) = A x``: the flow from t = 0 to 1 is ``x_1 = exp(A) x_0``."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        return x @ self.a.T


A = torch.tensor([[0.3, -0.8], [0.5, -0.2]], dtype=torch.float64)


def linear_model(solver: str, steps: int) -> FlowMatching:
    flow = FlowMatching(2, solver=solver, steps=steps).double()
    flow.velocity = LinearField(A)  # type: ignore[assignment]
    return flow


@pytest.mark.parametrize("solver", ODE_SOLVERS)
def test_log_prob_and_sample_of_a_known_linear_field(solver):
    flow = linear_model(solver, 64)
    m = torch.linalg.matrix_exp(A)
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # x_1 = M x_0 with x_0 ~ N(0, I): N(0, M M^T), whose log-density at x is exact
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=A.dtype), m @ m.T)
    with torch.no_grad():
        lp = flow.log_prob(x)
    tolerance = {"euler": 0.1, "midpoint": 1e-4, "rk4": 1e-8}[solver]  # 64 steps of order 1, 2, 4
    assert torch.allclose(lp, exact.log_prob(x), atol=tolerance)
    z = flow.base.sample(50, generator=torch.Generator().manual_seed(5)).double()
    y = flow.sample(50, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(y, z @ m.T, atol=tolerance)


def test_rk4_converges_faster_than_euler():
    y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    exact = y0 @ torch.linalg.matrix_exp(A).T

    def error(solver: str, steps: int) -> float:
        (y,) = integrate(lambda t, s: (s[0] @ A.T,), (y0,), 0.0, 1.0, steps, solver)
        return (y - exact).abs().max().item()

    # halving the step divides the error by about 2^order
    assert error("euler", 8) / error("euler", 16) == pytest.approx(2, rel=0.2)
    assert error("midpoint", 8) / error("midpoint", 16) == pytest.approx(4, rel=0.2)
    assert error("rk4", 8) / error("rk4", 16) == pytest.approx(16, rel=0.2)
    assert error("rk4", 8) < 1e-3 * error("euler", 8)
    assert set(SOLVERS) == set(ODE_SOLVERS)


def test_a_random_model_density_integrates_to_one_under_no_grad():
    torch.manual_seed(3)
    flow = FlowMatching(2, hidden=[32], activation="tanh", solver="rk4", steps=12).double().eval()
    with torch.no_grad():  # the divergence needs autograd: log_prob enables it inside
        for p in flow.parameters():
            p.mul_(2.0)  # a field far from zero, so the density is far from the normal
        edges = torch.linspace(-7, 7, 141, dtype=torch.float64)
        centers = (edges[1:] + edges[:-1]) / 2
        grid = torch.cartesian_prod(centers, centers)
        density = flow.log_prob(grid).exp()
    area = (edges[1] - edges[0]) ** 2
    assert (density * area).sum().item() == pytest.approx(1.0, abs=0.01)
    normal = flow.base.log_prob(grid).exp()
    assert (density - normal).abs().max() > 0.02  # the check is not the base's own integral


def test_sampling_is_reproducible_and_the_context_matters():
    torch.manual_seed(1)
    flow = FlowMatching(3, 1, hidden=[16], steps=4).eval()
    c = torch.ones(10, 1)

    def draw(seed: int, context: Tensor) -> Tensor:
        return flow.sample(10, context, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(0, c), draw(0, c))
    assert not torch.allclose(draw(0, c), draw(1, c))
    assert not torch.allclose(draw(0, c), draw(0, torch.zeros(10, 1)))
    with pytest.raises(ValueError, match="context"):
        flow.sample(10)


def test_sampling_under_bf16_autocast_stays_float32():
    torch.manual_seed(1)
    flow = FlowMatching(3, hidden=[16], steps=4).eval()
    plain = flow.sample(20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cast = flow.sample(20, generator=torch.Generator().manual_seed(0))
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)


def test_tiles_give_the_same_events_and_densities(monkeypatch):
    torch.manual_seed(1)
    flow = FlowMatching(2, hidden=[8], activation="relu", steps=3).eval()
    with torch.no_grad():
        whole = flow.sample(50, generator=torch.Generator().manual_seed(0))
        lp = flow.log_prob(whole)
        monkeypatch.setattr("hepflows.flows.flow_matching.CPU_TILE_ROWS", 7)
        tiled = flow.sample(50, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(tiled, whole, atol=1e-6)
        assert torch.allclose(flow.log_prob(whole), lp, atol=1e-5)


def test_weighted_loss_is_the_weighted_mean():
    torch.manual_seed(0)
    flow = FlowMatching(2, hidden=[8])
    x = torch.randn(6, 2)
    w = torch.tensor([0.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    weighted = flow.training_loss(x, weight=w, generator=torch.Generator().manual_seed(1))
    # the same draws for the last three events alone
    g = torch.Generator().manual_seed(1)
    t, x0 = torch.rand(6, 1, generator=g), torch.randn(6, 2, generator=g)
    xt = (1 - (1 - flow.sigma_min) * t) * x0 + t * x
    per_event = (flow.velocity(t, xt) - (x - (1 - flow.sigma_min) * x0)).square().sum(1)
    assert weighted.item() == pytest.approx(per_event[3:].mean().item(), rel=1e-5)


def test_build_flow_and_the_model_keys():
    flow = build_flow(
        {"family": "flow_matching", "hidden": [8, 8], "ode_solver": "rk4", "ode_steps": 5}, 4, 1
    )
    assert isinstance(flow, FlowMatching)
    assert (flow.features, flow.context_features, flow.solver, flow.steps) == (4, 1, "rk4", 5)
    assert check_model_config({})["ode_solver"] == "midpoint"


@pytest.mark.parametrize("fast", [False, True])
def test_the_trainer_minimises_the_cfm_loss_and_validates_on_it(tmp_path, fast):
    torch.manual_seed(0)
    flow = build_flow({"family": "flow_matching", "hidden": [16]}, 2, 1)
    x, c = toy(1024, seed=0)
    train, val = Dataset(x[:768], c[:768]), Dataset(x[768:], c[768:])
    settings = {
        "epochs": 3,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "scheduler": "none",
        "patience": None,
        "grad_clip": None,
        "max_bad_steps": 5,
    }
    before = validation_loss(flow, val)
    assert validation_loss(flow, val) == before  # seeded draws: the same every epoch
    trainer = Trainer(
        flow,
        train,
        val,
        settings,
        seed=0,
        resume_path=tmp_path / "resume.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
        fast=fast,
    )
    state = trainer.fit()
    assert flow.loss_name == "CFM loss"
    assert state.best_val < before
    assert state.history[-1]["train_nll"] < before


def test_hepflows_run_with_flow_matching(tmp_path, monkeypatch):
    settings = {
        "run": "cfm",
        "seed": 2,
        "features": ["lepton_pt", "lepton_eta", "met", "m_bb"],
        "data": {"events": {"train": 1000, "val": 300, "test": 600}},
        "model": {"family": "flow_matching", "hidden": [16, 16], "ode_steps": 4},
        "training": {"epochs": 2, "batch_size": 256, "device": "cpu"},
        "sampling": {"events": 500, "chunk_size": 300},
        "validation": {
            "max_events": 300,
            "n_null": 20,
            "classifier": False,
            "amplification": {"enabled": False},
        },
    }
    path = tmp_path / "cfm.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["run", "--config", str(path), "--results", str(tmp_path), "--quiet"]) == 0
    run = tmp_path / "cfm"
    generated = read_events(run / "samples" / "generated.root", settings["features"])
    assert len(generated["label"]) == 500
    assert all(np.isfinite(generated[f]).all() for f in settings["features"])
    metrics = json.loads((run / "validation" / "metrics.json").read_text())
    assert {v["metric"] for v in metrics["verdict"]} >= {"ks", "chi2_ndf"}
    flow, meta = checkpoint.load_model(run / "model" / "model.pt")
    assert isinstance(flow, FlowMatching) and meta["model"]["family"] == "flow_matching"
    assert math.isfinite(meta["val_nll"])
    # the fidelity benchmark's test NLL of this family: on a seeded subset of the test split
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "benchmarks" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    monkeypatch.setattr(fidelity, "CFM_NLL_EVENTS", 100)
    nll, physical, subset = fidelity.test_nll(run)
    assert subset == 100 and math.isfinite(nll) and math.isfinite(physical)
