"""Numerical faults: non-finite steps never reach the weights, a loss that stays non-finite ends
in a clear error rather than an endless loop, and generated events are always finite and inside
the range the preprocessing was fitted on.

tests/test_training.py poisons the flow's output for a few steps; here the NaNs come from a real
run whose settings make the loss overflow, from gradients alone, and from a fault that no restore
can cure.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hepflows import checkpoint, preprocess
from hepflows.events.reader import read_events
from hepflows.flows import build_flow
from hepflows.sampling import sample_to_root
from hepflows.training import MAX_RECOVERIES, Dataset, Diverged, Trainer

from .conftest import TINY, assert_names, run_step

SETTINGS = {
    "epochs": 2,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "scheduler": "cosine",
    "patience": None,
    "grad_clip": 5.0,
    "max_bad_steps": 3,
    "device": "cpu",
}
MODEL = {"coupling": "affine", "blocks": 2, "hidden": [16, 16], "permutation": "lu"}


def _data(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    label = (torch.rand(n, 1, generator=g) < 0.5).float()
    return Dataset(x + label, label)


def _trainer(tmp_path: Path, settings: dict = SETTINGS) -> Trainer:
    torch.manual_seed(0)
    return Trainer(
        build_flow(MODEL, 3, 1),
        _data(512, 1),
        _data(256, 2),
        settings,
        seed=4,
        resume_path=tmp_path / "run.resume.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
    )


def _finite(module: torch.nn.Module) -> bool:
    return all(
        torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point()
    )


def test_real_run_with_overflowing_loss_skips_restores_and_finishes(pipeline, tmp_path, caplog):
    """An unclamped affine scale and a large rate make exp() overflow in a real train step."""
    settings = dict(
        TINY,
        model=dict(TINY["model"], scale_bound=None),
        training=dict(TINY["training"], lr=1.0, grad_clip=None, max_bad_steps=3),
    )
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code = run_step(
            "train",
            "--train",
            pipeline.path("train"),
            "--val",
            pipeline.path("val"),
            "--preprocess",
            pipeline.path("preprocess"),
            "--model",
            out / "model.pt",
            "--log",
            out / "log.csv",
            settings=settings,
        )
    assert code == 0
    assert_names(
        caplog.text,
        ["3 non-finite steps in a row", "restored the last checkpoint", "halved the learning rate"],
    )
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TINY["training"]["epochs"]
    assert int(rows[-1]["skipped_steps"]) >= 3
    assert all(
        math.isfinite(float(r["train_nll"])) and math.isfinite(float(r["val_nll"])) for r in rows
    )
    # The first epoch's rate is that of the configured cosine schedule times the halvings.
    assert float(rows[0]["lr"]) < 1.0 * 0.5 * (1 + math.cos(math.pi / 3)) / 2
    flow, _ = checkpoint.load_model(out / "model.pt")
    assert _finite(flow)


def test_non_finite_gradient_never_reaches_the_weights(tmp_path):
    """A finite loss with a NaN gradient: the step is skipped, weights and Adam state unchanged."""
    trainer = _trainer(tmp_path)
    poisoned = {"on": False}
    first = next(trainer.flow.parameters())
    first.register_hook(lambda grad: grad * math.nan if poisoned["on"] else grad)
    x, context = trainer.train_data.batch(torch.arange(64))
    assert trainer._step(x, context) is not None  # a good step creates Adam's state
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    adam_before = {k: v.clone() for k, v in trainer.optimizer.state[first].items()}
    poisoned["on"] = True
    assert trainer._step(x, context) is None
    for name, tensor in trainer.flow.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    for name, tensor in trainer.optimizer.state[first].items():
        assert torch.equal(tensor, adam_before[name]), name
    assert all(p.grad is None for p in trainer.flow.parameters())


def test_gradient_faults_are_counted_in_the_log(tmp_path):
    trainer = _trainer(tmp_path)
    calls = {"n": 0}

    def hook(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * math.inf if calls["n"] in (3, 10, 11) else grad  # never 3 in a row

    next(trainer.flow.parameters()).register_hook(hook)
    state = trainer.fit()
    assert state.skipped_steps == 3 and state.recoveries == 0
    with open(tmp_path / "log.csv") as f:
        # cumulative: one in epoch 1 (8 batches), two more in epoch 2
        assert [int(r["skipped_steps"]) for r in csv.DictReader(f)] == [1, 3]
    assert _finite(trainer.flow)


def test_incurable_fault_ends_in_a_clear_error_not_a_loop(tmp_path, caplog):
    """Every step of epoch 2 is non-finite whatever the rate: restores must stop somewhere."""
    trainer = _trainer(tmp_path)
    original = trainer.flow.log_prob
    calls = {"n": 0}

    def poisoned(x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        calls["n"] += 1
        assert calls["n"] < 5000, "training keeps restoring and retrying for ever"
        out = original(x, context)
        return out * math.nan if trainer.flow.training and trainer.state.epoch == 1 else out

    trainer.flow.log_prob = poisoned
    with caplog.at_level(logging.WARNING), pytest.raises(Diverged) as err:
        trainer.fit()
    assert_names(str(err.value), ["training diverged", str(trainer.resume_path), "training.lr"])
    scales = [r.args[3] for r in caplog.records if "halved the learning rate" in r.getMessage()]
    assert scales == [0.5**k for k in range(1, MAX_RECOVERIES + 1)], "each restore halves again"
    assert trainer.optimizer.param_groups[0]["lr"] < SETTINGS["lr"] * 0.5 ** (MAX_RECOVERIES - 1)
    assert _finite(trainer.flow)
    # The last good checkpoint (end of epoch 1) is still there to inspect or resume from.
    assert checkpoint.read(trainer.resume_path)["state"]["epoch"] == 1


# -- generated events --------------------------------------------------------------------------------
N_EVENTS = 1_000_000


def _assert_inside(events: dict[str, np.ndarray], pre: preprocess.Preprocessor) -> None:
    """Every value of every feature finite and inside the fitted (widened) range.

    The bounds are rounded to float32 like the events: rounding is monotonic, so an event
    inside the float64 range stays inside the rounded one.
    """
    for i, feature in enumerate(pre.features):
        x = events[feature]
        assert len(x) == N_EVENTS
        assert np.isfinite(x).all(), feature
        low, high = np.float32(pre.low[i]), np.float32(pre.high[i])
        assert low <= x.min() and x.max() <= high, (feature, x.min(), x.max(), low, high)


def test_a_million_events_of_the_trained_model_lie_inside_the_fitted_range(pipeline, tmp_path):
    flow, meta = checkpoint.load_model(pipeline.path("model"))
    pre = preprocess.Preprocessor.load(pipeline.path("preprocess"))
    n = sample_to_root(
        flow,
        pre,
        tmp_path / "gen.root",
        N_EVENTS,
        seed=11,
        chunk_size=250_000,
        signal_fraction=meta["signal_fraction"],
        progress=False,
    )
    assert n == N_EVENTS
    _assert_inside(read_events(tmp_path / "gen.root", pre.features), pre)


def test_a_million_events_of_a_wild_flow_lie_inside_the_fitted_range(tmp_path):
    """Random weights far from any trained model push samples into the far tails."""
    torch.manual_seed(5)
    features = ("lepton_pt", "met", "m_bb")
    flow = build_flow({**MODEL, "scale_bound": 3.0, "norm": "none"}, len(features), 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.5)
    rng = np.random.default_rng(3)
    x = np.stack(
        [rng.exponential(40, 2000) + 25, rng.exponential(30, 2000), rng.normal(120, 30, 2000)],
        axis=1,
    )
    pre = preprocess.fit(x, features)
    sample_to_root(
        flow.eval(),
        pre,
        tmp_path / "wild.root",
        N_EVENTS,
        seed=2,
        chunk_size=250_000,
        signal_fraction=0.5,
        progress=False,
        support=False,  # the preprocessing's own guarantee, without the support's redraws
    )
    events = read_events(tmp_path / "wild.root", features)
    _assert_inside(events, pre)
    # The test means something only if the samples do reach the edges of the range.
    for i, feature in enumerate(features):
        width = pre.high[i] - pre.low[i]
        assert (
            events[feature].min() < pre.low[i] + 0.01 * width
            or events[feature].max() > pre.high[i] - 0.01 * width
        ), feature
