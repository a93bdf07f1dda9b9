"""What training needs from a model is declared on DensityModel: training_loss and loss_name."""

from __future__ import annotations

from pathlib import Path

import torch

from hepflows.flows import DensityModel, build_flow
from hepflows.flows.model import NLL

TRAINING = Path(__file__).resolve().parents[1] / "src" / "hepflows" / "training.py"


def test_every_family_declares_its_loss():
    assert DensityModel.loss_name == NLL
    names = {}
    for family in ("flow", "made_mog", "flow_matching"):
        model = build_flow({"family": family, "blocks": 1, "hidden": [8, 8]}, features=2)
        assert isinstance(model, DensityModel)
        names[family] = model.loss_name
    assert names == {"flow": "NLL", "made_mog": "NLL", "flow_matching": "CFM loss"}


def test_the_default_loss_is_the_weighted_mean_nll():
    torch.manual_seed(0)
    flow = build_flow({"blocks": 2, "hidden": [8]}, features=3)
    x, w = torch.randn(6, 3), torch.rand(6) + 0.5
    log_prob = flow.log_prob(x)
    torch.testing.assert_close(flow.training_loss(x), -log_prob.mean())
    torch.testing.assert_close(flow.training_loss(x, None, w), -(log_prob * w).mean())


def test_training_does_not_probe_the_model():
    assert 'getattr(flow, "training_loss"' not in TRAINING.read_text(encoding="utf-8")
