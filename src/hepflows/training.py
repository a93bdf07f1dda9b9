"""The training loop: maximum likelihood with checkpoints, early stopping and fault handling.

The loop minimises the negative log-likelihood per event (in nats, in the preprocessed space)
with Adam.  Every epoch it writes a resumable checkpoint (model, optimiser, scheduler, RNG
states) by write-then-rename; on SIGTERM (what batch systems send before pre-emption) it saves
the exact position inside the epoch and exits, and a rerun resumes from there.  A non-finite
loss or gradient never reaches the weights: the step is skipped; too many in a row restore the
last checkpoint with half the learning rate, and a loss that stays non-finite through
:data:`MAX_RECOVERIES` such restores stops training with :class:`Diverged` instead of looping.

On the CPU the loop runs on a fixed number of intra-op threads (``training.threads``, 1 by
default), not on as many as the job was given: the weight gradients of a matrix product are
sums over the batch that the math library splits between threads, and the rounding of those sums
depends on the split, so without a fixed count the same seed gives other weights under another
``--cores``.

**The CUDA fast path** (``fast=None``: on for a CUDA device only; ``HEPFLOWS_FAST_PATH=1`` or
``0`` forces it either way, as the GPU check does on the CPU): TF32 matrix products (the
log-determinants and element-wise maps stay float32), and no host synchronisation per step.  A
step's finiteness is decided on the device: a non-finite loss or gradient norm poisons the
gradients, which :class:`torch.amp.GradScaler` (at a fixed scale of 1, so every value is
unchanged) turns into a skipped fused-Adam step inside the kernel, and the normalisation
buffers are put back with ``torch.where``.  The host reads the losses and the skip flags every
:data:`CHECK_EVERY` steps (and at the epoch's end or a signal), counts the skipped steps and
restores the last checkpoint after ``max_bad_steps`` in a row, as the plain path does, only
detected up to :data:`CHECK_EVERY` steps later.  The data already lives on the training
device (the datasets are built there) and Adam is the fused kernel on both paths.

**A compiled loss** (``compile`` in the settings, off by default): the batch loss, forward and
backward, through :func:`torch.compile` (:class:`CompiledLoss`), for fixed batch shapes (the
ragged last batch is dropped anyway). ``True`` is the compiler's default mode (inductor's fused
element-wise kernels), a mode name is passed on (``"reduce-overhead"``: the steps replayed as
CUDA graphs, one launch for the hundreds of small kernels of a step). The first steps compile;
the weights then round as the compiled kernels do, not as eager training's.

**Warm-up and weight averaging.**  ``warmup_epochs`` ramps the learning rate linearly from
``lr / steps`` to ``lr`` over its first optimiser steps before the ``scheduler`` takes over for
the rest (:func:`lr_factor`).  ``ema`` keeps an exponential moving average of the weights
(:class:`WeightAverage`), which the validation NLL, early stopping and the saved model use.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from hepflows import checkpoint
from hepflows.atomic import atomic_write_text
from hepflows.errors import InputError, Interrupted
from hepflows.flows.model import NLL, mutable_buffers
from hepflows.settings import TrainingSettings

if TYPE_CHECKING:
    from hepflows.flows.model import DensityModel

#: What ``signal.signal`` takes and returns: a handler, SIG_DFL/SIG_IGN, or None.
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None

log = logging.getLogger("hepflows.training")

LOG_COLUMNS = ("epoch", "train_nll", "val_nll", "lr", "seconds", "skipped_steps")

#: Restores of the last checkpoint (each halving the learning rate) without finishing an epoch
#: before training gives up: the rate has then fallen by 256, and a loss that is still
#: non-finite will not be cured by smaller steps (the data or the model is broken).
MAX_RECOVERIES = 8

#: Steps between two host reads of the losses and skip flags on the fast path.
CHECK_EVERY = 64

#: :func:`torch.compile`'s backend for ``compile`` (the tests trace with ``"aot_eager"``, which
#: generates no code and so needs no C++ compiler).
COMPILE_BACKEND = "inductor"


def flushing_subnormals() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormal floats to zero now (torch can set
    the mode, :func:`torch.set_flush_denormal`, but not read it)."""
    return bool((torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0.0)


def fast_path_default(device: torch.device) -> bool:
    """Whether the fast path is on when the trainer is not told: on CUDA, or as the environment's
    ``HEPFLOWS_FAST_PATH`` (1/0) says."""
    forced = os.environ.get("HEPFLOWS_FAST_PATH")
    if forced in ("0", "1"):
        return forced == "1"
    return device.type == "cuda"


class Diverged(InputError):
    """The loss stayed non-finite through :data:`MAX_RECOVERIES` restores at ever lower rates.

    An :class:`InputError` because the cure is in the input: a lower ``training.lr`` or data
    that the flow can represent.
    """


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


@dataclass
class Dataset:
    """Preprocessed events on the training device: ``x`` (n, d), ``context`` (n, c) or None,
    and ``weight`` (n,) or None: event weights scaled to mean 1 (negative ones allowed), which
    make every loss the weighted NLL, sum(w * nll) / sum(w)."""

    x: torch.Tensor
    context: torch.Tensor | None
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[index], None if self.context is None else self.context[index]

    def weights(self, index: torch.Tensor) -> torch.Tensor | None:
        return None if self.weight is None else self.weight[index]


def _nll(
    flow: DensityModel, x: torch.Tensor, context: torch.Tensor | None, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean (weighted, weights of mean 1 over the data set) negative log-likelihood of a batch,
    or the model's own training loss where it has one (a flow-matching model's)."""
    return flow.training_loss(x, context, weight)


class CompiledLoss:
    """:func:`_nll` of ``flow`` through :func:`torch.compile`, forward and backward.

    Arguments:
        flow: the model being trained.
        mode: ``True`` for the compiler's default mode, or a mode name (``"reduce-overhead"``,
            ``"max-autotune"``, ...).

    Called as ``loss(x, context, weight)`` with ``x`` (n, d), ``context`` (n, c) or None and
    ``weight`` (n,) or None; returns the 0-d loss, a fresh tensor (a CUDA graph's own output is
    overwritten by its next replay, and the fast path keeps losses for :data:`CHECK_EVERY` steps).
    """

    def __init__(self, flow: DensityModel, mode: bool | str = True) -> None:
        self.mode = None if mode is True else str(mode)

        def loss(
            x: torch.Tensor, context: torch.Tensor | None, weight: torch.Tensor | None
        ) -> torch.Tensor:
            return _nll(flow, x, context, weight)

        self._compiled = torch.compile(loss, mode=self.mode, backend=COMPILE_BACKEND, dynamic=False)

    def __call__(
        self, x: torch.Tensor, context: torch.Tensor | None, weight: torch.Tensor | None
    ) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # a new step: earlier graph outputs are done
        try:
            loss = self._compiled(x, context, weight)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            cause = getattr(exc, "inner_exception", None) or exc  # without dynamo's hints
            raise InputError(
                f"training.compile: {self.mode or 'true'}: torch.compile of the training loss "
                f"failed on {x.device.type} ({type(cause).__name__}: {cause}); "
                "set training.compile: false"
            ) from exc
        return loss.clone()


def loss_function(
    flow: DensityModel, compile: bool | str = False
) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:
    """The batch loss ``loss(x, context, weight)`` of ``flow``: :func:`_nll`, or its
    :class:`CompiledLoss` when ``compile`` is True or a mode name."""
    if not compile:
        return functools.partial(_nll, flow)
    return CompiledLoss(flow, compile)


@dataclass
class State:
    """Everything a resumed run needs to continue exactly where the last one stopped."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed inside the current epoch
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    epochs_without_improvement: int = 0
    lr_scale: float = 1.0
    history: list[dict] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    skipped_steps: int = 0
    recoveries: int = 0  # restores after non-finite steps since the last finished epoch


def lr_factor(step: int, warmup: int, total: int, cosine: bool) -> float:
    """The learning rate of optimiser step ``step`` (0-based) over ``training.lr``.

    A linear warm-up over the first ``warmup`` steps, ``(step + 1) / warmup``, so that the first
    step takes ``lr / warmup`` and step ``warmup - 1`` the full rate; then, with ``cosine``, the
    half cosine ``(1 + cos(pi t / T)) / 2`` over the remaining ``T = total - warmup`` steps
    (``t = step - warmup``, held at ``T`` past the end), else 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


class WeightAverage:
    """An exponential moving average of a flow's weights, updated after every optimiser step.

    ``theta_ema <- theta_ema + (1 - beta) (theta - theta_ema)`` with the decay ``beta``; the
    buffers (normalisation statistics) are copied.  The average of the iterates is a better
    estimate than the last of them (Polyak & Juditsky, "Acceleration of Stochastic Approximation
    by Averaging", SIAM J. Control Optim. 30, 1992); its exponential form is what diffusion
    models are trained and sampled with (Ho et al., "Denoising Diffusion Probabilistic Models",
    arXiv:2006.11239).

    ``flow`` is the averaged copy (no gradients).  An update decided on the device (``ok``, a
    0-d bool tensor: the step was taken) moves it by ``1 - beta`` where ``ok`` and by 0 where
    not, without a host synchronisation.

    Arguments:
        source: the trained flow.
        decay: ``beta`` in (0, 1).
    """

    def __init__(self, source: DensityModel, decay: float) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise InputError(f"training.ema: expected null or a decay in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.source = source
        self.flow = copy.deepcopy(source).requires_grad_(False)
        # the constant buffers (masks, permutations) were copied here once and for all
        self._buffers = mutable_buffers(self.flow)
        self._source_buffers = mutable_buffers(source)

    @torch.no_grad()
    def update(self, first: bool = False, ok: torch.Tensor | None = None) -> None:
        """Average in the source's weights; ``first``: take them as they are (the first step,
        after which data-dependent initialisations such as ActNorm's have been made)."""
        live: list[torch.Tensor] = list(self.source.parameters())
        averaged: list[torch.Tensor] = list(self.flow.parameters())
        fraction = 1.0 if first else 1.0 - self.decay
        weight = torch.full((), fraction, dtype=averaged[0].dtype, device=averaged[0].device)
        if ok is not None:
            weight = torch.where(ok, weight, 0.0)
        steps = torch._foreach_sub(live, averaged)
        torch._foreach_mul_(steps, weight)
        torch._foreach_add_(averaged, list(steps))
        if self._buffers:  # a model may have none
            torch._foreach_copy_(self._buffers, self._source_buffers)


def _seeded_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of an epoch: a function of (seed, epoch) only, so resuming replays it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


@torch.no_grad()
def mean_nll(flow: DensityModel, data: Dataset, *, batch_size: int = 16384) -> float:
    """Mean negative log-likelihood per event (nats) in eval mode."""
    was_training = flow.training
    flow.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.x.device)
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.x.device)
        log_prob = flow.log_prob(*data.batch(index)).double()
        w = data.weights(index)
        total += -(log_prob if w is None else log_prob * w.double()).sum()
    flow.train(was_training)
    norm = len(data) if data.weight is None else data.weight.double().sum().item()
    return total.item() / norm


#: Seed of the draws (times, noise) of a training-loss validation: the same every epoch.
VALIDATION_SEED = 0


@torch.no_grad()
def validation_loss(flow: DensityModel, data: Dataset, *, batch_size: int = 16384) -> float:
    """The per-epoch validation metric: :func:`mean_nll`, or for a model with its own training
    loss that loss on ``data`` in eval mode, with draws seeded by :data:`VALIDATION_SEED` so
    that epochs compare on the same draws."""
    if flow.loss_name == NLL:
        return mean_nll(flow, data, batch_size=batch_size)
    was_training = flow.training
    flow.eval()
    generator = torch.Generator(device=data.x.device).manual_seed(VALIDATION_SEED)
    total = 0.0
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.x.device)
        x, context = data.batch(index)
        loss = flow.training_loss(x, context, data.weights(index), generator=generator)
        total += loss.double().item() * len(index)
    flow.train(was_training)
    norm = len(data) if data.weight is None else data.weight.double().sum().item()
    return total / norm


class Trainer:
    """Trains ``flow`` on ``train`` with early stopping on ``val``; see the module docstring.

    ``settings`` is the config's ``training`` settings (a block that leaves keys out is filled
    with the schema's defaults, :meth:`TrainingSettings.from_block`); ``resume_path`` the resumable checkpoint;
    ``log_path`` the per-epoch CSV log (epoch, train_nll, val_nll, lr, seconds, skipped_steps).
    """

    def __init__(
        self,
        flow: DensityModel,
        train: Dataset,
        val: Dataset,
        settings: TrainingSettings | Mapping[str, Any],
        *,
        seed: int,
        resume_path: str | Path,
        log_path: str | Path,
        config_hash: str = "",
        progress: bool = True,
        fast: bool | None = None,
    ) -> None:
        self.flow, self.train_data, self.val_data = flow, train, val
        if not isinstance(settings, TrainingSettings):
            settings = TrainingSettings.from_block(settings)
        self.settings = settings
        self.seed = seed
        self.resume_path, self.log_path = Path(resume_path), Path(log_path)
        self.config_hash = config_hash
        self.progress = progress
        for name, data in (("training", train), ("validation", val)):
            if len(data) == 0:
                raise InputError(f"the {name} events are empty (0 events), expected at least one")
        self.batch_size = min(settings.batch_size, len(train))
        self.batches_per_epoch = len(train) // self.batch_size  # drop the ragged last batch
        # The fused kernel updates all parameters at once: several times faster than the
        # per-tensor loop on the CPU, where the flow's many small tensors make Adam a hot spot.
        self.optimizer = torch.optim.Adam(
            flow.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, fused=True
        )
        self.scheduler = self._make_scheduler()
        self.ema = None if settings.ema is None else WeightAverage(flow, settings.ema)
        self.state = State()
        self._stop_signal: int | None = None
        self._checkpoint_is_ours = False  # the file at resume_path was written by this run
        self.fast = fast_path_default(train.x.device) if fast is None else fast
        # at a fixed scale of 1 the scaler only carries the skip flag into the fused Adam kernel
        self._scaler = (
            torch.amp.GradScaler(train.x.device.type, init_scale=1.0) if self.fast else None
        )
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (loss, ok) not yet read
        self._loss = loss_function(flow, settings.compile)
        # what a step may change besides the weights, put back after a non-finite step (fixed:
        # the trainer never moves the flow; a step of the seed study has 40 of its 161 buffers)
        self._mutable_buffers = mutable_buffers(flow)
        self._snapshot = [b.clone() for b in self._mutable_buffers]  # rewritten every step

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        total = self.settings.epochs * self.batches_per_epoch
        cosine = self.settings.scheduler == "cosine"
        warmup = self._warmup_steps()
        if warmup > 0:
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: lr_factor(step, warmup, total, cosine)
            )
        if cosine:
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(total, 1))
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)

    def _warmup_steps(self) -> int:
        """``training.warmup_epochs`` in optimiser steps (a positive fraction: at least one)."""
        epochs = self.settings.warmup_epochs
        if (
            isinstance(epochs, bool)
            or not isinstance(epochs, (int, float))
            or not 0 <= epochs < self.settings.epochs
        ):
            raise InputError(
                "training.warmup_epochs: expected a number >= 0 and below training.epochs "
                f"({self.settings.epochs}), got {epochs!r}"
            )
        return math.ceil(epochs * self.batches_per_epoch)

    def _average(self, ok: torch.Tensor | None = None) -> None:
        """Move the weight average (if any) after an optimiser step; see :class:`WeightAverage`."""
        if self.ema is not None:
            first = self.state.epoch == 0 and self.state.batch == 0
            self.ema.update(first, ok)

    @property
    def evaluated(self) -> DensityModel:
        """The flow that is validated and kept as the best: the weight average when there is one."""
        return self.flow if self.ema is None else self.ema.flow

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        checkpoint.save(
            self.resume_path,
            {
                "config_hash": self.config_hash,
                "model_state": self.flow.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema_state": None if self.ema is None else self.ema.flow.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "state": self.state.__dict__,
            },
        )
        self._checkpoint_is_ours = True

    def try_resume(self) -> bool:
        """Load the resumable checkpoint if it exists and belongs to this config."""
        if not self.resume_path.exists():
            return False
        try:
            data = checkpoint.read(self.resume_path)
        except InputError as err:
            raise InputError(f"{err}; delete it to start training afresh") from None
        if data.get("config_hash") != self.config_hash:
            log.warning("ignoring %s: it was made with another configuration", self.resume_path)
            return False
        self._restore(data)
        self._checkpoint_is_ours = True
        log.info(
            "resumed from %s at epoch %d, batch %d",
            self.resume_path,
            self.state.epoch + 1,
            self.state.batch,
        )
        return True

    def _restore(self, data: Mapping[str, Any]) -> None:
        self.flow.load_state_dict(data["model_state"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if self.ema is not None:
            self.ema.flow.load_state_dict(data["ema_state"])
        torch.set_rng_state(data["rng_cpu"])
        if data.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(data["rng_cuda"])
        self.state = State(**data["state"])

    # -- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _install_signal_handlers(self) -> dict[int, _SignalHandler]:
        previous: dict[int, _SignalHandler] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    # -- the loop ------------------------------------------------------------------------------
    def _pin_threads(self) -> int:
        """Fix the CPU intra-op threads for reproducibility; returns the previous count."""
        previous = torch.get_num_threads()
        threads = self.settings.threads
        if threads is not None and self.train_data.x.device.type == "cpu":
            torch.set_num_threads(int(threads))
            if threads != previous:
                log.info(
                    "CPU training on %d thread(s) of the %d available, so that a seed gives "
                    "the same weights whatever the cores",
                    threads,
                    previous,
                )
        return previous

    def fit(self, on_epoch: Callable[[dict], None] | None = None) -> State:
        """Train until ``epochs`` or early stopping; returns the final :class:`State`."""
        previous = self._install_signal_handlers()
        threads = self._pin_threads()
        matmul_precision = torch.get_float32_matmul_precision()
        if self.fast:
            torch.set_float32_matmul_precision("high")  # TF32 products on CUDA; no-op on the CPU
        # Weights a mask zeroes get only the weight decay's gradient, which Adam turns into
        # steps that drive them, and their second moments, below float32's smallest normal
        # number; on the CPU each operation on such a subnormal takes a slow path, and the
        # steps grew several times slower epoch by epoch (benchmarks/denormals.py). Flushed to
        # zero they cost nothing; no value that matters is that small.
        flush = self.train_data.x.device.type == "cpu" and not flushing_subnormals()
        if flush:
            torch.set_flush_denormal(True)
        try:
            if not self._checkpoint_is_ours:
                # Something to restore if the first epoch already meets non-finite steps (and
                # never a stale file of another configuration, which try_resume ignored).
                self.save_checkpoint()
            while self.state.epoch < self.settings.epochs and not self._early_stopped():
                started = time.perf_counter()
                self._run_epoch()
                row = self._finish_epoch(time.perf_counter() - started)
                if on_epoch is not None:
                    on_epoch(row)
        finally:
            if flush:
                torch.set_flush_denormal(False)
            torch.set_float32_matmul_precision(matmul_precision)
            torch.set_num_threads(threads)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.state

    def _early_stopped(self) -> bool:
        patience = self.settings.patience
        return patience is not None and self.state.epochs_without_improvement >= patience

    def _run_epoch(self) -> None:
        order = _seeded_permutation(len(self.train_data), self.seed, self.state.epoch)
        order = order.to(self.train_data.x.device)
        self.flow.train()
        bar = tqdm(
            total=self.batches_per_epoch,
            initial=self.state.batch,
            disable=not self.progress,
            desc=f"epoch {self.state.epoch + 1}/{self.settings.epochs}",
            unit="batch",
            mininterval=5.0,
            leave=False,
        )
        self._bad_in_row = 0
        while self.state.batch < self.batches_per_epoch:
            if self._stop_signal is not None:
                if self._settle():
                    continue  # a restore came first: the position is the checkpoint's
                self.save_checkpoint()
                raise Interrupted(
                    f"stopped by signal {self._stop_signal} at epoch {self.state.epoch + 1}, "
                    f"batch {self.state.batch}; checkpoint saved to {self.resume_path}"
                )
            start = self.state.batch * self.batch_size
            index = order[start : start + self.batch_size]
            if self.fast:
                self._pending.append(self._fast_step(*self._batch(index)))
                self.state.batch += 1
                bar.update(1)
                if len(self._pending) >= CHECK_EVERY or self.state.batch == self.batches_per_epoch:
                    self._settle()
                continue
            if self._account(self._step(*self._batch(index))):
                continue
            self.state.batch += 1
            bar.update(1)
        bar.close()

    def _batch(self, index: torch.Tensor) -> tuple:
        """(x, context) of a batch, and its weights when the training events are weighted."""
        w = self.train_data.weights(index)
        return (*self.train_data.batch(index), *(() if w is None else (w,)))

    def _account(self, loss: float | None) -> bool:
        """Book one step's loss (None: skipped); True when it triggered a restore."""
        if loss is None:
            self._bad_in_row += 1
            self.state.skipped_steps += 1
            if self._bad_in_row >= self.settings.max_bad_steps:
                self._recover(self._bad_in_row)
                self._bad_in_row = 0
                return True
            return False
        self._bad_in_row = 0
        self.state.epoch_loss_sum += loss
        self.state.epoch_loss_count += 1
        return False

    def _settle(self) -> bool:
        """Fast path: read the pending steps' losses and flags (one host synchronisation) and
        book them in order; True when they triggered a restore (the rest are then discarded)."""
        if not self._pending:
            return False
        losses = torch.stack([loss for loss, _ in self._pending]).double().cpu().tolist()
        oks = torch.stack([ok for _, ok in self._pending]).cpu().tolist()
        self._pending = []
        for loss, ok in zip(losses, oks):
            if self._account(loss if ok else None):
                return True
        return False

    def _fast_step(
        self, x: torch.Tensor, context: torch.Tensor | None, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step decided on the device: (loss, finite flag), both 0-d device tensors.

        The same arithmetic as :meth:`_step` (the scaler's scale is 1), so on the CPU it gives
        the same weights bit for bit; a non-finite loss or norm adds NaN to one gradient, the
        scaler reports it to the fused Adam kernel, which then leaves weights and moments alone.
        """
        scaler = self._scaler
        assert scaler is not None, "the fast path runs with its GradScaler"
        self.optimizer.zero_grad(set_to_none=True)
        buffers, saved = self._mutable_buffers, self._take_snapshot()
        loss = self._loss(x, context, weight)
        scaler.scale(loss).backward()  # times 1: the scaler needs to have seen the loss
        clip = self.settings.grad_clip
        params = [p for p in self.flow.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)
        ok = torch.isfinite(loss) & torch.isfinite(norm)
        first_grad = params[0].grad
        assert first_grad is not None  # params keeps the parameters with a gradient
        first_grad.add_(torch.where(ok, 0.0, math.nan))
        scaler.unscale_(self.optimizer)
        scaler.step(self.optimizer)
        scaler.update(1.0)
        self.scheduler.step()
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(torch.where(ok, buffer, value))
        self._average(ok)  # a skipped step leaves the average alone too
        return loss.detach(), ok

    def _step(
        self, x: torch.Tensor, context: torch.Tensor | None, weight: torch.Tensor | None = None
    ) -> float | None:
        """One Adam step; returns the batch loss, or None if it was skipped as non-finite.

        A skipped step leaves the model exactly as it was: the forward pass has already moved
        the normalisation layers' running statistics and flags (buffers, not parameters), so
        they are put back too; otherwise the batch that overflowed would still reach the model
        used for sampling.
        """
        self.optimizer.zero_grad(set_to_none=True)
        buffers, saved = self._mutable_buffers, self._take_snapshot()
        loss = self._loss(x, context, weight)
        if not torch.isfinite(loss):
            self._put_back(buffers, saved)
            return None
        loss.backward()
        clip = self.settings.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(
            self.flow.parameters(), clip if clip is not None else math.inf
        )
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._put_back(buffers, saved)
            return None
        self.optimizer.step()
        self.scheduler.step()
        self._average()
        return loss.item()

    @torch.no_grad()
    def _take_snapshot(self) -> list[torch.Tensor]:
        """The mutable buffers' values now, in place in :attr:`_snapshot` (one foreach copy)."""
        if self._snapshot:
            torch._foreach_copy_(self._snapshot, self._mutable_buffers)
        return self._snapshot

    @staticmethod
    @torch.no_grad()
    def _put_back(buffers: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)

    def _recover(self, bad_in_row: int) -> None:
        """Restore the last checkpoint with half the learning rate of the failing steps.

        The rate halves relative to the rate in force, not to the checkpoint's: a second
        failure before the next checkpoint must lower it further, or the same steps would
        fail again for ever.  After :data:`MAX_RECOVERIES` restores without an epoch finished
        in between it raises :class:`Diverged`; restores spread over a long run are no reason
        to give up.
        """
        if self.state.recoveries >= MAX_RECOVERIES:
            raise Diverged(
                f"training diverged: {bad_in_row} non-finite steps in a row again after "
                f"{MAX_RECOVERIES} restores of {self.resume_path} within epoch "
                f"{self.state.epoch + 1}, each halving the learning rate (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}); lower training.lr or check the "
                "training data"
            )
        scale = self.state.lr_scale * 0.5
        skipped, recoveries = self.state.skipped_steps, self.state.recoveries + 1
        self._restore(checkpoint.read(self.resume_path))
        factor = scale / self.state.lr_scale  # relative to the restored optimiser's rate
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        self.state.lr_scale, self.state.skipped_steps = scale, skipped
        self.state.recoveries = recoveries
        log.warning(
            "%d non-finite steps in a row: restored the last checkpoint (epoch %d, batch %d) and "
            "halved the learning rate (scale now %g, restore %d of at most %d)",
            bad_in_row,
            self.state.epoch,
            self.state.batch,
            scale,
            recoveries,
            MAX_RECOVERIES,
        )

    def _finish_epoch(self, seconds: float) -> dict:
        state = self.state
        train_nll = state.epoch_loss_sum / max(state.epoch_loss_count, 1)
        val_nll = validation_loss(self.evaluated, self.val_data)
        state.epoch += 1
        row = {
            "epoch": state.epoch,
            "train_nll": train_nll,
            "val_nll": val_nll,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "skipped_steps": state.skipped_steps,
        }
        state.history.append(row)
        if val_nll < state.best_val:
            state.best_val, state.best_epoch = val_nll, state.epoch
            state.best_state = {
                k: v.detach().cpu().clone() for k, v in self.evaluated.state_dict().items()
            }
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        state.batch, state.epoch_loss_sum, state.epoch_loss_count = 0, 0.0, 0
        state.recoveries = 0
        write_log(self.log_path, state.history)
        self.save_checkpoint()
        log.info(
            "epoch %d: train %s %.4f, val %s %.4f, lr %.3g, %.1f s%s",
            state.epoch,
            self.flow.loss_name,
            train_nll,
            self.flow.loss_name,
            val_nll,
            row["lr"],
            seconds,
            f", {state.skipped_steps} steps skipped" if state.skipped_steps else "",
        )
        return row


def write_log(path: str | Path, history: list[dict]) -> None:
    """The per-epoch training log as CSV, rewritten atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in LOG_COLUMNS})
    atomic_write_text(path, buffer.getvalue())
