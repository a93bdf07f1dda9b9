"""The training loop: it learns, resumes exactly, and keeps non-finite steps off the weights."""

import logging
import math

import pytest
import torch

from hepflows.errors import Interrupted
from hepflows.flows import build_flow
from hepflows.training import Dataset, Trainer, mean_nll, select_device

SETTINGS = {
    "epochs": 3,
    "batch_size": 128,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "scheduler": "cosine",
    "patience": None,
    "grad_clip": 5.0,
    "max_bad_steps": 4,
    "device": "cpu",
}
MODEL = {"coupling": "affine", "blocks": 2, "hidden": [16, 16], "permutation": "lu", "dropout": 0.1}


def correlated(n, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    x = torch.stack([z[:, 0], 0.8 * z[:, 0] + 0.6 * z[:, 1], z[:, 2] * 0.5 + 1.0], dim=1)
    label = (torch.rand(n, 1, generator=g) < 0.5).float()
    return Dataset(x + label, label)


def make_trainer(tmp_path, settings=SETTINGS, name="run", model=MODEL):
    torch.manual_seed(0)
    flow = build_flow(model, 3, 1)
    return Trainer(
        flow,
        correlated(1024, 1),
        correlated(512, 2),
        settings,
        seed=5,
        resume_path=tmp_path / f"{name}.resume.pt",
        log_path=tmp_path / f"{name}.csv",
        progress=False,
    )


def test_training_lowers_validation_nll_and_logs(tmp_path):
    trainer = make_trainer(tmp_path)
    before = mean_nll(trainer.flow, trainer.val_data)
    state = trainer.fit()
    assert state.epoch == 3
    assert state.best_val < before - 0.2
    lines = (tmp_path / "run.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_nll,val_nll,lr,seconds,skipped_steps"
    assert len(lines) == 4
    assert (tmp_path / "run.resume.pt").exists()


def test_early_stopping_stops(tmp_path):
    settings = dict(SETTINGS, epochs=50, patience=1, lr=0.3)  # too high a rate: no improvement
    state = make_trainer(tmp_path, settings).fit()
    assert state.epoch < 50
    assert state.epochs_without_improvement >= 1


class StopAfter(Trainer):
    """A trainer that receives SIGTERM after ``stop_at`` steps."""

    stop_at = 5

    def _step(self, x, context):
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == self.stop_at:
            self._stop_signal = 15
        return super()._step(x, context)


@pytest.mark.parametrize(
    "settings",
    [SETTINGS, dict(SETTINGS, warmup_epochs=1.5, ema=0.9)],
    ids=["plain", "warmup-ema"],
)
def test_interrupted_run_resumes_to_identical_weights(tmp_path, settings):
    reference = make_trainer(tmp_path, settings, name="ref")
    reference.fit()
    torch.manual_seed(0)
    flow = build_flow(MODEL, 3, 1)
    stopped = StopAfter(
        flow,
        correlated(1024, 1),
        correlated(512, 2),
        settings,
        seed=5,
        resume_path=tmp_path / "cut.resume.pt",
        log_path=tmp_path / "cut.csv",
        progress=False,
    )
    stopped.stop_at = 11  # mid-epoch 2 (8 batches an epoch)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        stopped.fit()
    resumed = make_trainer(tmp_path, settings, name="cut")
    torch.manual_seed(123)  # a different global RNG: the checkpoint must restore it
    assert resumed.try_resume()
    assert (resumed.state.epoch, resumed.state.batch) == (1, 3)
    resumed.fit()
    for ref, res in [(reference.flow, resumed.flow), (reference.evaluated, resumed.evaluated)]:
        for (name, a), b in zip(ref.state_dict().items(), res.state_dict().values()):
            assert torch.equal(a, b), name
    assert reference.state.history == [
        dict(row, seconds=ref["seconds"])
        for row, ref in zip(resumed.state.history, reference.state.history)
    ]
    for (name, a), b in zip(reference.state.best_state.items(), resumed.state.best_state.values()):
        assert torch.equal(a, b), name


def test_warmup_ramps_the_rate_then_follows_the_cosine(tmp_path):
    settings = dict(SETTINGS, warmup_epochs=0.5)  # 8 batches an epoch: 4 warm-up steps
    trainer = make_trainer(tmp_path, settings)
    rates = []
    for _ in range(3 * 8):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    lr = settings["lr"]
    assert rates[:5] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr, lr], rel=1e-12)
    after = rates[4:]
    assert all(a > b for a, b in zip(after, after[1:]))  # the cosine over the 20 steps left
    assert after[10] == pytest.approx(lr / 2, rel=1e-12)
    # no warm-up: the same rates as before the key existed (torch's cosine schedule)
    plain = make_trainer(tmp_path, dict(SETTINGS, warmup_epochs=0), name="plain")
    assert isinstance(plain.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    with pytest.raises(ValueError, match="training.warmup_epochs: expected"):
        make_trainer(tmp_path, dict(SETTINGS, warmup_epochs=3), name="bad")


def test_ema_is_validated_and_kept_and_lags_the_weights(tmp_path):
    trainer = make_trainer(tmp_path, dict(SETTINGS, ema=0.95))
    state = trainer.fit()
    live = dict(trainer.flow.named_parameters())
    averaged = dict(trainer.ema.flow.named_parameters())
    assert any(not torch.equal(live[k], averaged[k]) for k in live)
    assert state.history[-1]["val_nll"] == mean_nll(trainer.ema.flow, trainer.val_data)
    best = state.best_state
    if state.best_epoch == state.epoch:
        assert all(torch.equal(best[k], v) for k, v in trainer.ema.flow.state_dict().items())
    with pytest.raises(ValueError, match=r"training.ema: expected null or a decay in \(0, 1\)"):
        make_trainer(tmp_path, dict(SETTINGS, ema=1.0), name="bad")


def test_a_skipped_fast_step_leaves_the_average_alone(tmp_path):
    trainer = make_trainer(tmp_path, dict(SETTINGS, ema=0.9))
    trainer.fast = True
    trainer._scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    trainer.state.batch = 1  # not the first step (which takes the weights as they are)
    x, context = trainer.train_data.batch(torch.arange(128))
    before = [p.clone() for p in trainer.ema.flow.parameters()]
    _, ok = trainer._fast_step(x * math.nan, context)
    assert not ok
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.ema.flow.parameters()))
    _, ok = trainer._fast_step(x, context)
    assert ok
    moved = [not torch.equal(a, b) for a, b in zip(before, trainer.ema.flow.parameters())]
    assert any(moved)
    # decay 0.9: a tenth of the way to the new weights
    for a, b, live in zip(before, trainer.ema.flow.parameters(), trainer.flow.parameters()):
        assert torch.allclose(b, a + 0.1 * (live - a), atol=1e-6)


def test_non_finite_steps_are_skipped_and_recovered(tmp_path, caplog):
    trainer = make_trainer(tmp_path)
    original = trainer.flow.log_prob
    calls = {"n": 0}

    def poisoned(x, context=None):
        calls["n"] += 1
        out = original(x, context)
        if trainer.flow.training and 3 <= calls["n"] < 9:  # six NaN steps in a row
            return out * torch.tensor(math.nan)
        return out

    trainer.flow.log_prob = poisoned
    with caplog.at_level(logging.WARNING, logger="hepflows.training"):
        state = trainer.fit()
    assert state.skipped_steps == 6
    assert state.lr_scale == 0.5
    assert "halved the learning rate" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.flow.parameters())
    assert math.isfinite(state.best_val)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")


def test_training_on_the_cpu_flushes_subnormal_floats_and_restores_the_mode(tmp_path):
    # Masked weights decayed by Adam reach subnormal values that slow every CPU step several
    # times (benchmarks/denormals.py); the trainer flushes them to zero while it trains.
    def subnormal_product() -> float:
        return (torch.tensor([1e-30]) * torch.tensor([1e-10])).item()  # 1e-40: subnormal

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    seen: list[float] = []
    trainer = make_trainer(tmp_path, dict(SETTINGS, epochs=1))
    assert subnormal_product() > 0.0
    trainer.fit(on_epoch=lambda row: seen.append(subnormal_product()))
    assert seen == [0.0]
    assert subnormal_product() > 0.0


def test_masked_out_weights_stay_exactly_zero_under_weight_decay(tmp_path):
    # the source of those subnormals: a weight the mask zeroes, decayed by Adam, and its moments
    from hepflows.flows.nets import MaskedLinear

    made = {"coupling": "rq_autoregressive", "blocks": 2, "hidden": [16, 16]}
    trainer = make_trainer(tmp_path, dict(SETTINGS, epochs=1, weight_decay=1e-2), model=made)
    trainer.fit()
    flow = trainer.flow
    layers = [m for m in flow.modules() if isinstance(m, MaskedLinear)]
    assert layers
    for layer in layers:
        off = layer.mask == 0
        assert off.any() and (layer.weight[off] == 0).all()
        assert (layer.weight[~off] != 0).any()
        state = trainer.optimizer.state[layer.weight]
        assert (state["exp_avg"][off] == 0).all() and (state["exp_avg_sq"][off] == 0).all()
