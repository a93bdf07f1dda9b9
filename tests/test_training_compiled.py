"""training.compile: the trainer's loss through torch.compile learns what eager steps learn."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from conftest import ROOT
from test_training import SETTINGS as TRAINING_SETTINGS
from torch._dynamo.backends.registry import lookup_backend

from hepflows import config, training
from hepflows.errors import InputError
from hepflows.flows import build_flow
from hepflows.training import CompiledLoss, Dataset, Trainer

SETTINGS = dict(TRAINING_SETTINGS, epochs=2)  # test_training.py's, two epochs


def events(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, 1, generator=g) < 0.5).float()
    return Dataset(torch.randn(n, 18, generator=g) * 0.7 + label, label)


def tiny_flow(model_config: str) -> torch.nn.Module:
    """The architecture of ``config/<model_config>.yaml`` with 2 blocks of 16 units."""
    model = yaml.safe_load((ROOT / "config" / f"{model_config}.yaml").read_text())["model"]
    torch.manual_seed(0)
    return build_flow(dict(model, blocks=2, hidden=[16, 16]), 18, 1)


def trained(tmp_path, model_config: str, compile, fast: bool, name: str) -> list[dict]:
    """The training log of ``tiny_flow`` after two epochs with ``training.compile: compile``."""
    trainer = Trainer(
        tiny_flow(model_config),
        events(512, 1),
        events(256, 2),
        dict(SETTINGS, compile=compile),
        seed=5,
        resume_path=tmp_path / f"{name}.resume.pt",
        log_path=tmp_path / f"{name}.csv",
        progress=False,
        fast=fast,
    )
    trainer.fit()
    with (tmp_path / f"{name}.csv").open() as f:
        return list(csv.DictReader(f))


def counting_aot_eager(graphs: list):
    """``aot_eager`` (traces forward and backward, generates no code), counting the graphs."""
    aot_eager = lookup_backend("aot_eager")

    def backend(graph, inputs):
        graphs.append(graph)
        return aot_eager(graph, inputs)

    return backend


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
@pytest.mark.parametrize("model_config", ["seed-paper", "best"])
def test_traced_steps_learn_as_eager_steps(tmp_path, monkeypatch, model_config, fast):
    # The weights themselves are not compared: Adam turns the rounding noise of a gradient
    # that is zero in exact arithmetic into a step of the full learning rate.
    graphs: list = []
    monkeypatch.setattr(training, "COMPILE_BACKEND", counting_aot_eager(graphs))
    eager = trained(tmp_path, model_config, False, fast, "eager")
    traced = trained(tmp_path, model_config, True, fast, "traced")
    assert len(graphs) == 1  # fixed batch shapes: one trace serves every step
    assert [r["epoch"] for r in traced] == ["1", "2"]
    for got, expected in zip(traced, eager):
        for column in ("train_nll", "val_nll"):
            assert float(got[column]) == pytest.approx(float(expected[column]), rel=1e-4)
    assert float(eager[1]["train_nll"]) < float(eager[0]["train_nll"])  # it did learn


def test_losses_are_fresh_tensors(monkeypatch):
    # a CUDA graph overwrites its outputs on the next replay; the fast path keeps losses longer
    monkeypatch.setattr(training, "COMPILE_BACKEND", "aot_eager")
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8, 8]}, 3, 0)
    loss = CompiledLoss(flow)
    x = torch.randn(64, 3)
    first = loss(x, None, None)
    kept = first.detach().clone()
    loss(x * 2, None, None)
    assert torch.equal(first.detach(), kept)
    assert first.requires_grad  # the clone stays in the graph: backward reaches the weights


def test_a_compiler_failure_names_the_setting(monkeypatch):
    def broken(graph, inputs, **options):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(training, "COMPILE_BACKEND", broken)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8, 8]}, 3, 0)
    with pytest.raises(
        InputError, match=r"training\.compile: reduce-overhead: .*no C\+\+ compiler"
    ):
        CompiledLoss(flow, "reduce-overhead")(torch.randn(16, 3), None, None)


def test_schema_takes_the_modes_and_refuses_others():
    cfg = {"training": {"compile": "reduce-overhead"}}
    assert config.validate(cfg)["training"]["compile"] == "reduce-overhead"
    assert config.validate({})["training"]["compile"] is False
    with pytest.raises(InputError, match="training.compile"):
        config.validate({"training": {"compile": "fast"}})


@pytest.mark.slow
def test_inductor_steps_learn_as_eager_steps(tmp_path):
    # generated C++ code (needs a compiler): fused element-wise kernels, sums in another order
    eager = trained(tmp_path, "seed-paper", False, False, "eager")
    compiled = trained(tmp_path, "seed-paper", True, False, "compiled")
    for got, expected in zip(compiled, eager):
        assert float(got["val_nll"]) == pytest.approx(float(expected["val_nll"]), rel=1e-3)
