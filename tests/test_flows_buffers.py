"""mutable_buffers: a training step changes no buffer outside them, for every model of config/."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import ROOT

from hepflows.flows import build_flow
from hepflows.flows.model import mutable_buffers
from hepflows.training import _nll

CONFIGS = sorted(
    str(p.relative_to(ROOT / "config"))
    for p in [*(ROOT / "config").glob("*.yaml"), *(ROOT / "config" / "fidelity").glob("*.yaml")]
)


def tiny_model(name: str):
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    model = dict(cfg.get("model", {}), blocks=2, hidden=[16, 16])
    torch.manual_seed(0)
    return build_flow(model, 18, 1)


def test_every_config_is_covered():
    assert len(CONFIGS) >= 15 and "seed-paper.yaml" in CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_a_step_changes_only_the_mutable_buffers(name):
    model = tiny_model(name).train()
    mutable = {id(b) for b in mutable_buffers(model)}
    before = {k: b.clone() for k, b in model.named_buffers()}
    x, context = torch.randn(64, 18), torch.ones(64, 1)
    for _ in range(2):  # the first step also runs data-dependent initialisations
        _nll(model, x, context, None).backward()  # the family's training loss
    for key, buffer in model.named_buffers():
        if id(buffer) not in mutable:
            assert torch.equal(buffer, before[key]), f"{name}: {key} changed but is not mutable"


def test_the_seed_study_snapshots_its_running_statistics_only():
    model = tiny_model("seed-paper.yaml")
    names = {id(b): k for k, b in model.named_buffers()}
    found = sorted(names[id(b)].rsplit(".", 1)[1] for b in mutable_buffers(model))
    assert found == ["running_mean"] * 2 + ["running_var"] * 2
    assert len(list(model.buffers())) > 4 * len(found) // 2  # masks, permutations: constants


def test_a_module_without_a_declaration_counts_every_buffer():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 3))
    assert len(mutable_buffers(model)) == len(list(model.buffers())) == 3
