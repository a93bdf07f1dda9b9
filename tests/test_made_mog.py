"""The MADE-MOG family: a normalised, autoregressive mixture density whose samples follow it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from hepflows import checkpoint
from hepflows.flows import DensityModel, MADEMoG, build_flow
from hepflows.flows import made_mog as made_mog_module
from hepflows.model_config import check_model_config
from hepflows.training import Dataset, Trainer

MODEL = {"family": "made_mog", "components": 3, "hidden": [16, 16], "blocks": 2}


def randomised(model: MADEMoG, seed: int = 0, scale: float = 0.3) -> MADEMoG:
    """``model`` with every weight perturbed: a generic member of the family, not its start."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model.eval()


def mixture_cdf(model: MADEMoG, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Per feature ``F_i(x_i | x_<i, c)`` (n, d), from the density's own network pass."""
    log_pi, mu, sigma = model._mixture(model.net(x, context))
    return (log_pi.exp() * torch.special.ndtr((x[..., None] - mu) / sigma)).sum(-1)


def test_build_flow_makes_the_family_and_validates_its_keys() -> None:
    model = build_flow(MODEL, 4, 1)
    assert isinstance(model, MADEMoG) and isinstance(model, DensityModel)
    assert (model.features, model.context_features, model.components) == (4, 1, 3)
    assert check_model_config({})["components"] == 10
    with pytest.raises(ValueError, match=r"^model\.components: expected an integer >= 1"):
        check_model_config(dict(MODEL, components=0))
    with pytest.raises(ValueError, match=r"^model\.hidden: expected for family made_mog"):
        check_model_config(dict(MODEL, hidden=[16, 32]))
    with pytest.raises(ValueError, match="features must be a positive integer"):
        build_flow(MODEL, 0)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_log_prob_integrates_to_one(label: float) -> None:
    torch.manual_seed(0)
    model = randomised(build_flow(MODEL, 2, 1).double())
    edges = torch.linspace(-9, 9, 721, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        density = model.log_prob(grid, torch.full((len(grid), 1), label, dtype=torch.float64))
    integral = density.exp().sum().item() * (edges[1] - edges[0]).item() ** 2
    assert integral == pytest.approx(1.0, abs=1e-4)


def test_feature_parameters_depend_on_earlier_features_only() -> None:
    torch.manual_seed(1)
    model = randomised(build_flow(MODEL, 5, 1).double())
    x = torch.randn(3, 5, dtype=torch.float64)
    context = torch.ones(3, 1, dtype=torch.float64)
    # d(parameters of feature i) / d(x_j), summed over events and parameters: (d, d)
    jac = torch.autograd.functional.jacobian(lambda v: model.net(v, context).sum(0), x)
    dependence = jac.abs().sum(dim=(1, 2))
    assert torch.all(dependence.triu() == 0)
    assert torch.all(dependence.tril(-1)[torch.tril_indices(5, 5, -1).unbind()] > 0)


def test_the_sweep_gives_the_network_s_parameters() -> None:
    torch.manual_seed(2)
    model = randomised(build_flow(dict(MODEL, dropout=0.2), 6, 1).double())
    x = torch.randn(9, 6, dtype=torch.float64)
    context = torch.randint(0, 2, (9, 1)).double()
    full = model.net(x, context)
    sweep = model.net.sweep(x, context)
    for k in range(6):
        assert torch.allclose(sweep.params(k), full[:, k], atol=1e-12), k
        sweep.fix(k, x[:, k])


def test_samples_follow_the_density() -> None:
    """Each sampled feature's conditional CDF, from the density's network, is uniform."""
    torch.manual_seed(3)
    model = randomised(build_flow(MODEL, 3, 1))
    context = torch.randint(0, 2, (4000, 1)).float()
    x = model.sample(4000, context, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        u = mixture_cdf(model, x, context)
    for i in range(3):
        assert stats.kstest(u[:, i].numpy(), "uniform").pvalue > 1e-3, i
    # and sample_and_log_prob's densities are log_prob's
    x2, log_p = model.sample_and_log_prob(50, context[:50], generator=torch.Generator())
    assert torch.allclose(log_p, model.log_prob(x2, context[:50]))


def test_sampling_is_reproducible_and_independent_of_the_tiles(monkeypatch) -> None:
    torch.manual_seed(4)
    model = randomised(build_flow(MODEL, 4, 1))
    context = torch.randint(0, 2, (30, 1)).float()

    def draw(seed: int) -> torch.Tensor:
        return model.sample(30, context, generator=torch.Generator().manual_seed(seed))

    a = draw(7)
    assert torch.equal(a, draw(7)) and not torch.equal(a, draw(8))
    monkeypatch.setattr(made_mog_module, "CPU_SEQUENTIAL_TILE_ROWS", 7)
    assert torch.allclose(draw(7), a, atol=1e-6)
    with pytest.raises(ValueError, match="context"):
        model.sample(30)


def _labelled_toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D events: label 1 a narrow bump at (2, 2 + x0/2), label 0 two bumps at x0 = -1 +- 1."""
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, 1, generator=g) < 0.5).float()
    sign = torch.randint(0, 2, (n, 1), generator=g).float() * 2 - 1
    x0 = torch.where(label > 0, 2.0, -1.0 + sign) + 0.3 * torch.randn(n, 1, generator=g)
    x1 = torch.where(label > 0, 2.0 + x0 / 2, -x0) + 0.3 * torch.randn(n, 1, generator=g)
    return torch.cat([x0, x1], dim=1), label


def test_a_trained_model_samples_like_its_data_for_each_label(tmp_path) -> None:
    x, label = _labelled_toy(3000, 0)
    torch.manual_seed(5)
    model = build_flow(dict(MODEL, components=4, hidden=[32, 32]), 2, 1)
    settings = {
        "epochs": 12,
        "batch_size": 128,
        "lr": 1e-2,
        "weight_decay": 0.0,
        "scheduler": "cosine",
        "patience": None,
        "grad_clip": 5.0,
        "max_bad_steps": 4,
        "device": "cpu",
    }
    val = Dataset(*_labelled_toy(500, 1))
    trainer = Trainer(
        model,
        Dataset(x, label),
        val,
        settings,
        seed=0,
        resume_path=tmp_path / "resume.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
        fast=True,  # the device-side step of the CUDA path, here on the CPU
    )
    state = trainer.fit()
    assert state.history[-1]["val_nll"] < state.history[0]["val_nll"] < 3.0
    model.load_state_dict(state.best_state)
    model.eval()
    for value in (0.0, 1.0):
        data = x[label[:, 0] == value]
        sample = model.sample(
            2000, torch.full((2000, 1), value), generator=torch.Generator().manual_seed(1)
        )
        for i in range(2):
            ks = stats.ks_2samp(sample[:, i].numpy(), data[:, i].numpy()).statistic
            assert ks < 0.06, (value, i, ks)
    # the label changes the density: a label-1 event is far likelier under label 1
    event, ones = torch.tensor([[2.0, 3.0]]), torch.ones(1, 1)
    assert (model.log_prob(event, ones) - model.log_prob(event, 0 * ones)).item() > 5


def test_a_model_file_rebuilds_the_same_density(tmp_path) -> None:
    torch.manual_seed(6)
    model = randomised(build_flow(MODEL, 3, 1))
    path = tmp_path / "model.pt"
    checkpoint.save(
        path,
        {
            "state_dict": model.state_dict(),
            "model": check_model_config(MODEL),
            "features": ["a", "b", "c"],
            "context_features": 1,
        },
    )
    loaded, _ = checkpoint.load_model(path)
    x, context = torch.randn(20, 3), torch.ones(20, 1)
    assert isinstance(loaded, MADEMoG) and not loaded.training
    assert torch.equal(loaded.log_prob(x, context), model.log_prob(x, context))


def test_bf16_autocast_sampling_runs_the_network_in_float32() -> None:
    torch.manual_seed(7)
    model = randomised(build_flow(MODEL, 3, 1))
    context = torch.ones(40, 1)
    plain = model.sample(40, context, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = model.sample(40, context, generator=torch.Generator().manual_seed(2))
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)


@pytest.mark.slow  # the whole pipeline: about 20 s
def test_hepflows_run_with_the_family_writes_events_and_a_verdict(tmp_path, tiny_settings):
    from hepflows.cli import main
    from hepflows.events.reader import read_events

    settings = dict(
        tiny_settings,
        model={"family": "made_mog", "components": 4, "hidden": [16, 16], "blocks": 1},
        preprocess={"transform": "quantile"},
        data={"events": {"train": 1000, "val": 300, "test": 600}},
        sampling={"events": 600, "chunk_size": 400},
        validation=dict(
            tiny_settings["validation"], max_events=300, amplification={"enabled": False}
        ),
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["run", "--config", str(path), "--results", str(tmp_path), "--quiet"]) == 0
    run = tmp_path / "tiny"
    events = read_events(run / "samples" / "generated.root")
    assert len(events["label"]) == settings["sampling"]["events"]
    assert all(np.isfinite(v).all() for v in events.values())
    assert "verdict" in (run / "validation" / "verdict.html").read_text().lower()
    stored = checkpoint.read(run / "model" / "model.pt")
    assert stored["model"]["family"] == "made_mog" and math.isfinite(stored["val_nll"])


@pytest.mark.parametrize("context_features", [0, 1])
def test_one_feature_integrates_to_one_and_samples_it(context_features: int) -> None:
    """With one feature only the context (or nothing) sets the mixture."""
    torch.manual_seed(8)
    model = randomised(build_flow(MODEL, 1, context_features).double())
    grid = torch.linspace(-30, 30, 60001, dtype=torch.float64)[:, None]
    context = torch.ones(len(grid), context_features, dtype=torch.float64)
    with torch.no_grad():
        density = model.log_prob(grid, context if context_features else None).exp()
    assert density.sum().item() * 1e-3 == pytest.approx(1.0, abs=1e-6)
    x = model.sample(3000, context[:3000] if context_features else None)
    with torch.no_grad():
        u = mixture_cdf(model, x, context[:3000] if context_features else None)
    assert stats.kstest(u[:, 0].numpy(), "uniform").pvalue > 1e-3
