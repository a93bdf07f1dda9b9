"""The flow library and the training loop on one device: ``HEPFLOWS_TEST_DEVICE`` (default cpu).

The default run checks the CPU; ``benchmarks/gpu/check.sh`` runs this file with
``HEPFLOWS_TEST_DEVICE=cuda``: every layer exact in float64 on the device, a training step with
its fast path, an interrupted run resumed with the device's random states, and sampling
reproducible for the same seed on the device (float32 and, where the device has it, bf16).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_flows import LAYERS, context_for, inputs, per_sample_logdet, randomize

from hepflows.errors import Interrupted
from hepflows.flows import build_flow
from hepflows.sampling import precision_context, resolve_precision, sample_chunk
from hepflows.training import Dataset, Trainer, fast_path_default

DEVICE = torch.device(os.environ.get("HEPFLOWS_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("HEPFLOWS_TEST_DEVICE=cuda but CUDA is not available", allow_module_level=True)
CUDA = DEVICE.type == "cuda"

SETTINGS = {
    "epochs": 2,
    "batch_size": 128,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "scheduler": "cosine",
    "patience": None,
    "grad_clip": 5.0,
    "max_bad_steps": 4,
    "device": str(DEVICE),
}
MODEL = {
    "coupling": "rq_spline",
    "blocks": 2,
    "hidden": [16, 16],
    "permutation": "lu",
    "dropout": 0.1,
    "bins": 4,
}


@pytest.mark.parametrize("context_features", [0, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_exact_in_float64_on_device(name: str, context_features: int) -> None:
    layer = randomize(LAYERS[name](context_features).double(), seed=len(name)).to(DEVICE)
    x = inputs().to(DEVICE)
    ctx = context_for(context_features)
    ctx = None if ctx is None else ctx.to(DEVICE)
    z, ld = layer(x, ctx)
    x_back, ld_inv = layer.inverse(z, ctx)
    assert z.device.type == DEVICE.type and z.dtype == torch.float64
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld, -ld_inv, atol=1e-10, rtol=0)
    assert (z - x).abs().max() > 1e-2
    assert torch.allclose(ld, per_sample_logdet(layer, x, ctx), atol=1e-8, rtol=0)


def data(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    x = torch.stack([z[:, 0], 0.8 * z[:, 0] + 0.6 * z[:, 1], z[:, 2] * 0.5 + 1.0], dim=1)
    label = (torch.rand(n, 1, generator=g) < 0.5).float()
    return Dataset((x + label).to(DEVICE), label.to(DEVICE))


def trainer(tmp_path, name: str, cls: type = Trainer, settings: dict = SETTINGS) -> Trainer:
    torch.manual_seed(0)
    flow = build_flow(MODEL, 3, 1).to(DEVICE)
    return cls(
        flow,
        data(1024, 1),
        data(512, 2),
        settings,
        seed=5,
        resume_path=tmp_path / f"{name}.resume.pt",
        log_path=tmp_path / f"{name}.csv",
        progress=False,
    )


def test_training_step_on_device_lowers_the_loss(tmp_path) -> None:
    t = trainer(tmp_path, "fit")
    before = [p.detach().clone() for p in t.flow.parameters()]
    state = t.fit()
    assert state.epoch == 2 and state.skipped_steps == 0
    assert state.history[-1]["train_nll"] < state.history[0]["train_nll"]
    assert all(p.device.type == DEVICE.type for p in t.flow.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, t.flow.parameters()))


class StopAfter(Trainer):
    """Receives SIGTERM at its 11th step (mid-epoch 2: 8 batches an epoch)."""

    def _count(self) -> None:
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 11:
            self._stop_signal = 15

    def _step(self, x, context):
        self._count()
        return super()._step(x, context)

    def _fast_step(self, x, context):  # the default on CUDA
        self._count()
        return super()._fast_step(x, context)


def test_resume_restores_the_device_random_states(tmp_path) -> None:
    reference = trainer(tmp_path, "ref")
    reference.fit()
    cut = trainer(tmp_path, "cut", StopAfter)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        cut.fit()
    saved = torch.load(tmp_path / "cut.resume.pt", weights_only=True)
    assert (saved["rng_cuda"] is not None) == CUDA
    assert cut.fast == fast_path_default(DEVICE)
    resumed = trainer(tmp_path, "cut")
    torch.manual_seed(123)  # other global states: the checkpoint must restore them
    if CUDA:
        torch.cuda.manual_seed_all(123)
    assert resumed.try_resume()
    if CUDA:
        assert torch.equal(torch.cuda.get_rng_state(DEVICE), saved["rng_cuda"][DEVICE.index or 0])
    assert (resumed.state.epoch, resumed.state.batch) == (1, 3)
    resumed.fit()
    for (name, a), b in zip(
        reference.flow.state_dict().items(), resumed.flow.state_dict().values()
    ):
        if CUDA:  # the same dropout masks; products may round differently (not promised bitwise)
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name
        else:
            assert torch.equal(a, b), name


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_sampling_is_reproducible_for_a_seed_on_device(precision: str) -> None:
    if precision == "bf16" and resolve_precision("auto", DEVICE) != "bf16":
        pytest.skip(f"no bf16 autocast path on {DEVICE}")
    torch.manual_seed(0)
    flow = (
        randomize(build_flow(dict(MODEL, dropout=0.0), 3, 1), seed=3, scale=0.4).to(DEVICE).eval()
    )

    class Identity:  # the preprocessing's inverse is not what this test is about
        features = ("a", "b", "c")
        support: dict = {}  # none: the flow's own draws

        @staticmethod
        def inverse(y, labels=None):
            return np.asarray(y, np.float64)

    def draw(seed: int, chunk: int = 0) -> dict:
        return sample_chunk(
            flow,
            Identity(),
            5000,
            seed=seed,
            chunk=chunk,
            signal_fraction=0.5,
            device=DEVICE,
            precision=precision,
        )

    a, b, c, d = draw(11), draw(11), draw(12), draw(11, chunk=1)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["a"], c["a"]) and not np.array_equal(a["a"], d["a"])
    assert np.isfinite(a["a"]).all() and abs(a["label"].mean() - 0.5) < 0.05
    with torch.no_grad(), precision_context(precision, DEVICE):
        z = flow.sample(
            64,
            torch.ones(64, 1, device=DEVICE),
            generator=torch.Generator(device=DEVICE).manual_seed(1),
        )
    assert z.device.type == DEVICE.type and z.dtype == torch.float32


def fast_trainer(tmp_path, name: str, fast: bool) -> Trainer:
    torch.manual_seed(0)
    flow = build_flow(MODEL, 3, 1).to(DEVICE)
    return Trainer(
        flow,
        data(1024, 1),
        data(512, 2),
        SETTINGS,
        seed=5,
        fast=fast,
        resume_path=tmp_path / f"{name}.resume.pt",
        log_path=tmp_path / f"{name}.csv",
        progress=False,
    )


def test_fast_path_trains_like_the_plain_path(tmp_path) -> None:
    plain, fast = fast_trainer(tmp_path, "plain", False), fast_trainer(tmp_path, "fast", True)
    assert fast.fast and not plain.fast
    torch.manual_seed(7)  # the same dropout masks for both
    plain.fit()
    torch.manual_seed(7)
    fast.fit()
    assert fast.state.skipped_steps == 0 and fast.state.epoch == 2
    for (name, a), b in zip(plain.flow.state_dict().items(), fast.flow.state_dict().values()):
        if CUDA:  # TF32 products on the fast path
            assert torch.allclose(a, b, rtol=1e-2, atol=1e-3), name
        else:  # the same arithmetic: bit for bit
            assert torch.equal(a, b), name
    assert torch.get_float32_matmul_precision() == "highest"  # put back after fit


def test_fast_path_keeps_non_finite_steps_off_the_weights(tmp_path, caplog) -> None:
    import logging
    import math

    t = fast_trainer(tmp_path, "nan", True)
    original, calls = t.flow.log_prob, {"n": 0}

    def poisoned(x, context=None):
        calls["n"] += 1
        out = original(x, context)
        if t.flow.training and 3 <= calls["n"] < 9:  # six NaN steps in a row
            return out * torch.tensor(math.nan, device=out.device)
        return out

    t.flow.log_prob = poisoned
    before = {k: v.clone() for k, v in t.flow.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="hepflows.training"):
        state = t.fit()
    # the flags are read at the epoch's end here (8 batches < CHECK_EVERY): the 4th bad step in
    # a row restores the checkpoint and the two after it are discarded with the window
    assert state.skipped_steps == 4 and state.lr_scale == 0.5
    assert "halved the learning rate" in caplog.text
    assert all(torch.isfinite(v).all() for v in t.flow.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in t.flow.state_dict().items())
    assert math.isfinite(state.best_val)


def test_fast_path_skip_leaves_weights_moments_and_buffers_alone(tmp_path) -> None:
    t = fast_trainer(tmp_path, "skip", True)
    x, c = t.train_data.batch(torch.arange(128, device=DEVICE))
    t._fast_step(x, c)  # a good step, so that Adam has moments
    state = {k: v.clone() for k, v in t.flow.state_dict().items()}
    moments = [v.clone() for s in t.optimizer.state.values() for v in s.values()]
    loss, ok = t._fast_step(x * float("nan"), c)
    assert not bool(ok) and not torch.isfinite(loss)
    for k, v in t.flow.state_dict().items():
        assert torch.equal(state[k], v), k
    after = [v for s in t.optimizer.state.values() for v in s.values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, after))


@pytest.fixture
def sampler():
    from hepflows import preprocess

    torch.manual_seed(0)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8]}, 3, 1)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.1)
    rng = np.random.default_rng(0)
    x = np.stack(
        [rng.exponential(40, 1000) + 25, rng.normal(80, 10, 1000), rng.uniform(-2.5, 2.5, 1000)], 1
    )
    return flow.to(DEVICE).eval(), preprocess.fit(x, ("lepton_pt", "m_jj", "lepton_eta"))


def test_asynchronous_sampling_writes_the_same_events(tmp_path, sampler) -> None:
    from hepflows.events.reader import read_events
    from hepflows.sampling import sample_to_root

    flow, pre = sampler
    for fast in (False, True):
        n = sample_to_root(
            flow,
            pre,
            tmp_path / f"{fast}.root",
            3000,
            seed=4,
            chunk_size=700,
            signal_fraction=0.4,
            device=DEVICE,
            progress=False,
            fast=fast,
        )
        assert n == 3000
    a, b = (read_events(tmp_path / f"{f}.root", pre.features) for f in (False, True))
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_asynchronous_sampling_of_a_broken_model_leaves_no_file(tmp_path, sampler) -> None:
    from hepflows.sampling import sample_to_root

    flow, pre = sampler
    with torch.no_grad():
        next(flow.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite events in chunk 0"):
        sample_to_root(
            flow,
            pre,
            tmp_path / "bad.root",
            1000,
            seed=1,
            chunk_size=300,
            signal_fraction=0.5,
            device=DEVICE,
            progress=False,
            fast=True,
        )
    assert list(tmp_path.iterdir()) == []


#: the other model families and the residual conditioners, tiny
FAMILIES = {
    "made_mog": {"family": "made_mog", "blocks": 1, "hidden": [16, 16], "components": 3},
    "flow_matching": {"family": "flow_matching", "hidden": [16, 16], "ode_steps": 4},
    "residual_ar": {
        "coupling": "rq_autoregressive",
        "blocks": 2,
        "hidden": [16, 16],
        "residual": True,
        "bins": 4,
        "norm": "none",
    },
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_train_with_warmup_and_ema_and_sample_on_device(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = build_flow(FAMILIES[name], 3, 1).to(DEVICE)
    t = Trainer(
        model,
        data(1024, 1),
        data(512, 2),
        dict(SETTINGS, ema=0.9, warmup_epochs=0.5),
        seed=5,
        resume_path=tmp_path / "r.pt",
        log_path=tmp_path / "log.csv",
        progress=False,
    )
    state = t.fit()
    assert state.epoch == 2 and state.skipped_steps == 0 and np.isfinite(state.best_val)
    averaged = t.evaluated.eval()
    assert averaged is not model and all(
        p.device.type == DEVICE.type for p in averaged.parameters()
    )
    assert any(not torch.equal(a, b) for a, b in zip(averaged.parameters(), model.parameters()))
    context = torch.ones(256, 1, device=DEVICE)
    with torch.no_grad():
        draws = [
            averaged.sample(256, context, generator=torch.Generator(DEVICE).manual_seed(s))
            for s in (1, 1, 2)
        ]
        log_prob = averaged.log_prob(draws[0], context)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert torch.isfinite(draws[0]).all() and torch.isfinite(log_prob).all()
