#!/usr/bin/env python
"""Throughput of hepflows against zuko and nflows at the same architectures, on a CPU or a GPU.

For each architecture (the seed study's affine model and an RQ-spline model) the three libraries
build the same flow: blocks of (batch-norm, reverse permutation, coupling with a half mask), the
same conditioner widths and the same masks, trained with the same optimiser (Adam, fused where
torch has it). The third architecture is the best-fidelity model's (``config/best.yaml``, without
its context column): blocks of (reverse permutation, masked autoregressive RQ spline), no
normalisation; zuko builds it as its NSF (a MAF of RQ splines, whose order reverses from block to
block), nflows as reversals and ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` with a
plain (non-residual) MADE. All three MADEs have the same hidden widths and cycle the hidden
degrees through 1..d-1; the peers' inverses run the whole network once per feature, hepflows'
computes each hidden unit once (``MADESweep``). Every rate is the median over rounds in which the libraries take turns (the order
reversed every other round), after warm-up, so that a load that drifts during the run reaches
them alike; the dense float32 matrix product that bounds them (batch x width x width, the
conditioners' main product) is timed in the same rounds.

Printed:

- one table: training events/s (log-prob, backward, Adam step), sampling events/s in memory and
  written to ROOT (LZ4, through the same EventWriter), peak working memory, parameters, the
  fraction of the matmul ceiling each rate achieves, and hepflows' ratio to each peer;
- the model's matmul FLOPs per event (2 * in * out per linear layer, x3 for a training step);
- the test NLL of the fast path next to float32 (and to bfloat16 autocast, the GPU fast path);
- the cost per event of ``sample_to_root`` from 1e5 events up, with its peak resident memory;
- events/s of the models users run: ``config/seed-paper.yaml`` and the best-fidelity
  ``config/best.yaml`` (when present).

    OMP_NUM_THREADS=2 python benchmarks/throughput.py            # CPU, 2 threads
    python benchmarks/throughput.py --device cuda                 # GPU
    python benchmarks/throughput.py --quick                       # tiny sizes: a smoke run

The peers come with the ``bench`` extra (``pip install -e .[bench]``); a peer that is not
installed, or does not import, is reported and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

# OpenMP's wait policy is left to the environment, as the hepflows command leaves it: unset,
# libgomp's threads spin a while between parallel regions before they sleep, which is what users
# get. On a machine shared with other work, OMP_WAIT_POLICY=PASSIVE keeps spinning threads from
# losing whole time slices, but every parallel region then wakes its threads anew (tens of
# microseconds): it costs most to a library that runs many small operations, hepflows' tiled
# gradient-free passes among them (README, Performance). The machine line prints the policy.
import numpy as np
import torch
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hepflows import heap, preprocess  # noqa: E402
from hepflows.events.schema import CONTINUOUS_FEATURES  # noqa: E402
from hepflows.flows import Flow, build_flow  # noqa: E402
from hepflows.flows.coupling import Coupling  # noqa: E402
from hepflows.flows.nets import MLP  # noqa: E402
from hepflows.sampling import iter_chunks, precision_context, resolve_precision, sample_to_root  # noqa: E402
from hepflows.training import CompiledLoss  # noqa: E402

LIBRARIES = ("hepflows", "zuko", "nflows")
# nflows warns about its spline initialisation on every call; it does not affect timing
warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
GEMM = "matmul"  # the name of the ceiling's task in the rounds
SECTIONS = ("table", "nll", "configs", "curve")


# ----------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Arch:
    """One benchmarked architecture: blocks of ([norm,] reverse permutation, coupling or
    autoregressive layer)."""

    key: str
    title: str
    coupling: str  # "affine", "rq_spline" or "rq_autoregressive"
    blocks: int
    hidden: tuple[int, ...]
    bins: int = 8
    tail_bound: float = 5.0
    features: int = 18
    batch: int = 1024
    norm: str = "batchnorm"  # or "none"

    @property
    def autoregressive(self) -> bool:
        return self.coupling == "rq_autoregressive"

    def model_block(self) -> dict:
        """The hepflows ``model:`` block of this architecture."""
        return {
            "coupling": self.coupling,
            "blocks": self.blocks,
            "hidden": list(self.hidden),
            "mask": "half",
            "permutation": "reverse",
            "norm": self.norm,
            "scale_bound": None,
            "bins": self.bins,
            "tail_bound": self.tail_bound,
        }


ARCHS = ("seed", "spline", "autoregressive")


def architectures(quick: bool) -> list[Arch]:
    """The seed study's affine model, the RQ-spline model and the best-fidelity autoregressive
    model (tiny versions with ``quick``)."""
    if quick:
        return [
            Arch("seed", "affine 2x(32,32) [quick]", "affine", 2, (32, 32), batch=256),
            Arch("spline", "RQ spline 2x(16,16) [quick]", "rq_spline", 2, (16, 16), batch=256),
            Arch(
                "autoregressive",
                "RQ autoregressive 2x(16,16) [quick]",
                "rq_autoregressive",
                2,
                (16, 16),
                bins=4,
                batch=256,
                norm="none",
            ),
        ]
    return [
        Arch("seed", "seed: affine, 20 blocks, 2x512", "affine", 20, (512, 512)),
        Arch("spline", "RQ spline, 8 bins, 10 blocks, 2x256", "rq_spline", 10, (256, 256)),
        Arch(
            "autoregressive",
            "RQ autoregr., 16 bins, 5 blocks, 2x256",
            "rq_autoregressive",
            5,
            (256, 256),
            bins=16,
            norm="none",
        ),
    ]


def matmul_flops(flow: nn.Module) -> int:
    """Forward matmul FLOPs per event: 2 * in * out for every linear layer (and LU mixing)."""
    total = 0
    for m in flow.modules():
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif hasattr(m, "weight_inverse"):  # LULinear: a d x d product
            total += 2 * m.features * m.features
    return total


# ----------------------------------------------------------------------------- the libraries
@dataclass
class Subject:
    """One library's model of an architecture, behind a common interface."""

    library: str
    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]  # under no_grad, in eval mode
    #: the training loss of a batch where it is not the NLL (a flow-matching model's)
    loss: Callable[[Tensor], Tensor] | None = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def build_hepflows(
    arch: Arch, device: torch.device, precision: str = "float32", compile_training: bool = False
) -> Subject:
    """hepflows' flow; with ``compile_training`` its training loss is the trainer's
    ``training.compile: true`` (:class:`hepflows.training.CompiledLoss`: inductor, fixed shapes;
    compiled in the warm-up steps)."""
    flow = build_flow(arch.model_block(), arch.features).to(device)

    def sample(n: int) -> Tensor:
        with precision_context(precision, device):
            return flow.sample(n)

    subject = Subject("hepflows", flow, flow.log_prob, sample)
    if compile_training:
        compiled = CompiledLoss(flow)
        subject.loss = lambda x: compiled(x, None, None)
    return subject


def coupling_masks(arch: Arch) -> list[Tensor]:
    """The kept-part masks of hepflows' couplings, so that every library splits alike."""
    flow = build_flow(arch.model_block(), arch.features)
    return [m.mask.clone() for m in flow.modules() if isinstance(m, Coupling)]


def build_zuko(arch: Arch, device: torch.device) -> Subject:
    import zuko
    from torch.distributions import Transform, constraints
    from zuko.flows.coupling import GeneralCouplingTransform
    from zuko.lazy import LazyTransform, UnconditionalDistribution, UnconditionalTransform
    from zuko.transforms import (
        MonotonicAffineTransform,
        MonotonicRQSTransform,
        PermutationTransform,
    )

    class BatchNormTransform(Transform):
        """The batch-norm flow layer written as a zuko transformation (zuko has none)."""

        domain = constraints.real_vector
        codomain = constraints.real_vector
        bijective = True

        def __init__(self, layer: ZukoBatchNorm) -> None:
            super().__init__()
            self.layer = layer

        def _log_scale(self, var: Tensor) -> Tensor:
            return self.layer.log_alpha - 0.5 * torch.log(var + self.layer.eps)

        def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
            m = self.layer
            if m.training:
                mean, var = x.mean(0), x.var(0, unbiased=False)
                with torch.no_grad():
                    m.running_mean.mul_(m.momentum).add_((1 - m.momentum) * mean)
                    m.running_var.mul_(m.momentum).add_((1 - m.momentum) * var)
            else:
                mean, var = m.running_mean, m.running_var
            log_scale = self._log_scale(var)
            return (x - mean) * log_scale.exp() + m.beta, log_scale.sum().expand(x.shape[:-1])

        def _call(self, x: Tensor) -> Tensor:
            return self.call_and_ladj(x)[0]

        def _inverse(self, y: Tensor) -> Tensor:
            m = self.layer
            return (y - m.beta) * (-self._log_scale(m.running_var)).exp() + m.running_mean

        def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
            return self._log_scale(self.layer.running_var).sum().expand(x.shape[:-1])

    class ZukoBatchNorm(LazyTransform):
        def __init__(self, features: int, momentum: float = 0.9, eps: float = 1e-5) -> None:
            super().__init__()
            self.momentum, self.eps = momentum, eps
            self.log_alpha = nn.Parameter(torch.zeros(features))
            self.beta = nn.Parameter(torch.zeros(features))
            self.register_buffer("running_mean", torch.zeros(features))
            self.register_buffer("running_var", torch.ones(features))

        def forward(self, c: Tensor | None = None) -> Transform:
            return BatchNormTransform(self)

    d = arch.features
    if arch.autoregressive:
        # zuko's NSF: a MAF of RQ splines on [-B, B], the order reversed from block to block
        nsf = zuko.flows.MAF(
            d,
            0,
            transforms=arch.blocks,
            univariate=partial(MonotonicRQSTransform, bound=arch.tail_bound),
            shapes=[(arch.bins,), (arch.bins,), (arch.bins - 1,)],
            hidden_features=arch.hidden,
            activation=nn.ReLU,
        ).to(device)
        return Subject("zuko", nsf, lambda x: nsf().log_prob(x), lambda n: nsf().sample((n,)))
    if arch.coupling == "affine":
        univariate, shapes = MonotonicAffineTransform, ((), ())
    else:
        univariate = partial(MonotonicRQSTransform, bound=arch.tail_bound)
        shapes = ((arch.bins,), (arch.bins,), (arch.bins - 1,))
    transforms: list[nn.Module] = []
    for mask in coupling_masks(arch):
        transforms += [
            ZukoBatchNorm(d),
            UnconditionalTransform(PermutationTransform, torch.arange(d - 1, -1, -1), buffer=True),
            GeneralCouplingTransform(
                d,
                0,
                mask,
                univariate=univariate,
                shapes=shapes,
                hidden_features=arch.hidden,
                activation=nn.ReLU,
            ),
        ]
    base = UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(d), torch.ones(d), buffer=True
    )
    flow = zuko.lazy.Flow(transforms, base).to(device)
    return Subject("zuko", flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def build_nflows(arch: Arch, device: torch.device) -> Subject:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow as NFlow
    from nflows.transforms import (
        AffineCouplingTransform,
        BatchNorm,
        CompositeTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
        PiecewiseRationalQuadraticCouplingTransform,
        ReversePermutation,
    )

    class Conditioner(nn.Module):
        """A plain ReLU MLP with nflows' conditioner signature ``(inputs, context)``."""

        def __init__(self, in_features: int, out_features: int) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = in_features
            for h in arch.hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, out_features))
            self.net = nn.Sequential(*layers)

        def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
            return self.net(inputs)

    d = arch.features
    blocks: list[nn.Module] = []
    if arch.autoregressive:
        if len(set(arch.hidden)) != 1:
            raise ValueError(f"nflows' MADE has one hidden width, got {arch.hidden}")
        for _ in range(arch.blocks):
            # a plain MADE: the input layer and len(hidden) - 1 feed-forward blocks, ReLU
            blocks += [
                ReversePermutation(d),
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    d,
                    arch.hidden[0],
                    num_bins=arch.bins,
                    tails="linear",
                    tail_bound=arch.tail_bound,
                    num_blocks=len(arch.hidden) - 1,
                    use_residual_blocks=False,
                ),
            ]
        flow = NFlow(CompositeTransform(blocks), StandardNormal([d])).to(device)
        return Subject("nflows", flow, flow.log_prob, flow.sample)
    for mask in coupling_masks(arch):
        transformed = (~mask).int()  # nflows: > 0 marks the transformed features
        if arch.coupling == "affine":
            coupling = AffineCouplingTransform(transformed, Conditioner)
        else:
            coupling = PiecewiseRationalQuadraticCouplingTransform(
                transformed,
                Conditioner,
                num_bins=arch.bins,
                tails="linear",
                tail_bound=arch.tail_bound,
            )
        # nflows' momentum weights the new batch value: 0.1 is our rho = 0.9
        blocks += [BatchNorm(d, momentum=0.1), ReversePermutation(d), coupling]
    flow = NFlow(CompositeTransform(blocks), StandardNormal([d])).to(device)
    return Subject("nflows", flow, flow.log_prob, flow.sample)


BUILDERS: dict[str, Callable[[Arch, torch.device], Subject]] = {
    "hepflows": build_hepflows,
    "zuko": build_zuko,
    "nflows": build_nflows,
}


def available_peers(requested: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The requested libraries that import, and why the others were skipped."""
    ok, skipped = [], {}
    for lib in requested:
        if lib == "hepflows":
            ok.append(lib)
            continue
        try:
            __import__(lib)
            ok.append(lib)
        except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
            skipped[lib] = f"{type(exc).__name__}: {exc}"
    return ok, skipped


# ----------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The clock of every timing: wall time, or the process's CPU time (``--clock cpu``), which a
#: shared machine's load barely moves (with one thread it is the time the work itself took).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def interleaved(
    tasks: dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each task, the tasks taking turns (order reversed every other round)."""
    for _ in range(warmup):
        for task in tasks.values():
            task()
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in tasks}
    names = list(tasks)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = clock()
            tasks[name]()
            synchronize(device)
            seconds[name].append(clock() - start)
    return seconds


def rate(events: int, seconds: list[float]) -> float:
    """Events per second of the median call."""
    return events / statistics.median(seconds) if seconds else math.nan


def train_step(subject: Subject, x: Tensor) -> Callable[[], None]:
    """One training step (log-prob, backward, Adam) of ``subject`` on the batch ``x``."""
    subject.module.train()
    params = list(subject.module.parameters())
    fused = x.device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-6, fused=fused)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = -subject.log_prob(x).mean() if subject.loss is None else subject.loss(x)
        loss.backward()
        optimizer.step()

    return step


def sample_task(subject: Subject, n: int) -> Callable[[], None]:
    subject.module.eval()

    def run() -> None:
        with torch.no_grad():
            subject.sample(n)

    return run


def gemm_task(arch: Arch, device: torch.device) -> Callable[[], None]:
    """The ceiling: a dense float32 (batch x width) @ (width x width) product."""
    width = max(arch.hidden)
    a = torch.randn(arch.batch, width, device=device)
    b = torch.randn(width, width, device=device)
    return lambda: torch.mm(a, b)


def gemm_flops(arch: Arch) -> int:
    width = max(arch.hidden)
    return 2 * arch.batch * width * width


# ----------------------------------------------------------------------------- memory
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def _release_heap() -> None:
    """Give freed heap memory back to the system, so that the next phase starts from its own RSS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Peak working memory (MB) of the block: GPU memory allocated, or resident memory above
    the resident memory at its start (the high-water mark is reset through /proc, Linux only)."""
    out = {"mb": math.nan}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    try:
        _release_heap()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = _rss_mb()
    except OSError:
        yield out
        return
    yield out
    out["mb"] = _hwm_mb() - base


# ----------------------------------------------------------------------------- preprocessing
def toy_preprocessor(features: int) -> preprocess.Preprocessor:
    """A preprocessing fitted on positive, skewed toy values (only its inverse is timed)."""
    names = CONTINUOUS_FEATURES[:features]
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 30.0, size=(20_000, len(names))) + 1.0
    return preprocess.fit(x, names)


def write_peer_root(
    subject: Subject, pre: preprocess.Preprocessor, path: Path, n: int, chunk: int
) -> None:
    """What a user of a peer library writes: sample a chunk, map it back, write it, repeat."""
    from hepflows.events.writer import EventWriter

    with EventWriter(path, compression="lz4") as writer:
        for index, size in iter_chunks(n, chunk):
            torch.manual_seed(index)
            with torch.no_grad():
                y = subject.sample(size).cpu().numpy()
            x = pre.inverse(y).astype(np.float32)
            writer.write({name: x[:, i] for i, name in enumerate(pre.features)})


# ----------------------------------------------------------------------------- one architecture
@dataclass
class Row:
    """One (architecture, library) line of the table."""

    arch: str
    library: str
    params: int
    train: float
    sample: float
    root: float
    peak_train_mb: float
    peak_sample_mb: float
    train_fraction: float = math.nan
    sample_fraction: float = math.nan


@dataclass
class ArchResult:
    arch: Arch
    flops: int
    gemm_gflops: float
    rows: list[Row] = field(default_factory=list)


def measure_arch(
    arch: Arch, libs: Sequence[str], args: argparse.Namespace, device: torch.device
) -> ArchResult:
    torch.manual_seed(0)
    subjects = {
        lib: (
            build_hepflows(arch, device, args.precision, args.compile_training)
            if lib == "hepflows"
            else BUILDERS[lib](arch, device)
        )
        for lib in libs
    }
    flops = matmul_flops(subjects["hepflows"].module)
    x = torch.randn(arch.batch, arch.features, device=device)
    print(f"  {arch.title}: training ...", file=sys.stderr, flush=True)
    tasks = {lib: train_step(s, x) for lib, s in subjects.items()}
    tasks[GEMM] = gemm_task(arch, device)
    train_s = interleaved(tasks, args.rounds, args.warmup, device)
    gemm_rate = gemm_flops(arch) / statistics.median(train_s[GEMM])

    print(f"  {arch.title}: sampling ...", file=sys.stderr, flush=True)
    tasks = {lib: sample_task(s, args.sample_events) for lib, s in subjects.items()}
    sample_s = interleaved(tasks, args.sample_rounds, 1, device)

    print(f"  {arch.title}: sampling to ROOT ...", file=sys.stderr, flush=True)
    pre = toy_preprocessor(arch.features)
    with tempfile.TemporaryDirectory(prefix="hepflows-bench-") as tmp:
        out = Path(tmp)
        tasks = {}
        for lib, s in subjects.items():
            path = out / f"{lib}.root"
            if lib == "hepflows":
                tasks[lib] = partial(
                    sample_to_root,
                    s.module,
                    pre,
                    path,
                    args.root_events,
                    seed=1,
                    chunk_size=args.root_chunk,
                    device=device,
                    progress=False,
                    precision=args.precision,
                )
            else:
                tasks[lib] = partial(
                    write_peer_root, s, pre, path, args.root_events, args.root_chunk
                )
        for lib, s in subjects.items():  # warm-up: first writes import and set up uproot
            (
                sample_to_root(s.module, pre, out / "warm.root", 256, seed=1, progress=False)
                if lib == "hepflows"
                else write_peer_root(s, pre, out / "warm.root", 256, 256)
            )
        root_s = interleaved(tasks, args.root_rounds, 0, device)

    print(f"  {arch.title}: peak memory ...", file=sys.stderr, flush=True)
    result = ArchResult(arch, flops, gemm_rate / 1e9)
    for lib, s in subjects.items():
        step = train_step(s, x)
        with peak_memory(device) as train_mem:
            step()
            step()
        run = sample_task(s, args.sample_events)
        with peak_memory(device) as sample_mem:
            run()
        row = Row(
            arch.key,
            lib,
            s.parameters,
            rate(arch.batch, train_s[lib]),
            rate(args.sample_events, sample_s[lib]),
            rate(args.root_events, root_s[lib]),
            train_mem["mb"],
            sample_mem["mb"],
        )
        row.train_fraction = 3 * flops * row.train / gemm_rate
        row.sample_fraction = flops * row.sample / gemm_rate
        result.rows.append(row)
    return result


# ----------------------------------------------------------------------------- fidelity of the fast path
def generator_events(n: int, seed: int) -> np.ndarray:
    from hepflows.events.generator import generate

    events = generate(n, seed=seed)
    return np.stack([events[f] for f in CONTINUOUS_FEATURES], axis=1).astype(np.float64)


@torch.no_grad()
def test_log_probs(flow: Flow, x: Tensor, fused: bool = True) -> Tensor:
    """Per-event test log-densities (nats, preprocessed space) in eval mode, in float64."""
    flow.eval()
    mlps = [m for m in flow.modules() if isinstance(m, MLP)]
    saved = [m._fusable for m in mlps]
    for m in mlps:
        m._fusable = m._fusable and fused
    try:
        return torch.cat([flow.log_prob(x[i : i + 8192]) for i in range(0, len(x), 8192)]).double()
    finally:
        for m, s in zip(mlps, saved):
            m._fusable = s


def bf16_context(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def nll_check(arch: Arch, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Train the architecture briefly on generator events; its test NLL along each path.

    The preprocessing range is taken over all events (as a property of the features), so that no
    test event falls outside it onto the logit's clipped edge, where one event can weigh more
    than all the others together.
    """
    x_all = generator_events(args.nll_train + args.nll_test, seed=11)
    names = CONTINUOUS_FEATURES[: arch.features]
    fitted = preprocess.fit(x_all, names)
    y = torch.as_tensor(fitted.forward(x_all), dtype=torch.float32, device=device)
    train, test = y[: args.nll_train], y[args.nll_train :]
    torch.manual_seed(0)
    # the pipeline's bounded log-scale: unbounded scales (the seed's) diverge within a few
    # hundred steps on the generator's tails, whatever the path
    flow = build_flow(dict(arch.model_block(), scale_bound=3.0), arch.features).to(device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))
    g = torch.Generator(device="cpu").manual_seed(0)
    flow.train()
    for _ in range(args.nll_steps):
        idx = torch.randint(0, len(train), (arch.batch,), generator=g).to(device)
        optimizer.zero_grad(set_to_none=True)
        (-flow.log_prob(train[idx]).mean()).backward()
        optimizer.step()
    reference = test_log_probs(flow, test, fused=False)
    fast_precision = resolve_precision(args.precision, device)
    with precision_context(fast_precision, device):
        fast = test_log_probs(flow, test)
    with bf16_context(device):
        bf16 = test_log_probs(flow, test, fused=False)
    out: dict = {"fast_precision": fast_precision}
    for name, lp in (("float32", reference), ("fast", fast), ("bf16", bf16)):
        out[name] = -lp.mean().item()
        out[f"{name}_median"] = -lp.median().item()
        out[f"{name}_abs_diff"] = (lp - reference).abs().mean().item()
    return out


# ----------------------------------------------------------------------------- models users run
def config_model(path: Path) -> tuple[dict, int, int] | None:
    """(model block, context columns, batch size) of a config file, or None if it is missing."""
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text()) or {}
    training = cfg.get("training", {}) or {}
    context = 1 if training.get("conditional", True) else 0
    return cfg.get("model", {}) or {}, context, int(training.get("batch_size", 1024))


def measure_config(path: Path, args: argparse.Namespace, device: torch.device) -> dict | None:
    """hepflows' training and sampling events/s for the model of a config file."""
    found = config_model(path)
    if found is None:
        return None
    model, context, batch = found
    features = len(CONTINUOUS_FEATURES)
    torch.manual_seed(0)
    flow = build_flow(model, features, context).to(device)
    x = torch.randn(batch, features, device=device)
    c = torch.randint(0, 2, (batch, context), device=device).float() if context else None
    n = args.sample_events
    cs = torch.randint(0, 2, (n, context), device=device).float() if context else None
    subject = Subject("hepflows", flow, lambda v: flow.log_prob(v, c), lambda m: flow.sample(m, cs))
    training_loss = getattr(flow, "training_loss", None)
    if training_loss is not None:  # flow matching: trained on its CFM loss, not the NLL
        subject.loss = lambda v: training_loss(v, c)
    tasks = {"train": train_step(subject, x), "sample": sample_task(subject, n)}
    seconds = interleaved(tasks, max(3, args.rounds // 2), 1, device)
    return {
        "config": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "model": model,
        "params": subject.parameters,
        "flops": matmul_flops(flow),
        "train": rate(batch, seconds["train"]),
        "sample": rate(n, seconds["sample"]),
    }


# ----------------------------------------------------------------------------- the memory curve
def curve_point(
    model: str, n: int, chunk: int, device: str, threads: int, retain: bool = True
) -> dict:
    """Run ``sample_to_root`` of ``n`` events in a fresh process; its time and peak resident
    memory (with ``retain``, freed memory kept in the heap as the ``hepflows`` command does)."""
    code = f"""
import json, resource, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, {str(ROOT / "benchmarks")!r}); sys.path.insert(0, {str(ROOT / "src")!r})
torch.set_num_threads({threads})
from throughput import curve_model, toy_preprocessor
from hepflows.sampling import sample_to_root
if {retain!r}:
    from hepflows.heap import retain_freed_memory
    retain_freed_memory()
flow = curve_model({model!r}).to({device!r})
pre = toy_preprocessor(flow.features)
with tempfile.TemporaryDirectory(prefix="hepflows-curve-") as tmp:
    start = time.perf_counter()
    sample_to_root(flow, pre, Path(tmp) / "s.root", {n}, seed=1, chunk_size={chunk},
                   device={device!r}, progress=False, precision="auto")
    seconds = time.perf_counter() - start
# VmHWM, the peak of this process image: getrusage's ru_maxrss would also count the parent's
# resident memory at the fork that started this process
peak = next((int(line.split()[1]) / 1024 for line in open("/proc/self/status")
             if line.startswith("VmHWM:")), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({{"seconds": seconds, "peak_mb": peak}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curve point {model} n={n} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def curve_model(name: str) -> Flow:
    """``seed``: the seed architecture; ``tiny``: a 2-block, 16-unit flow (writer-bound)."""
    torch.manual_seed(0)
    if name == "seed":
        return build_flow(Arch("seed", "", "affine", 20, (512, 512)).model_block(), 18).eval()
    return build_flow({"blocks": 2, "hidden": [16], "permutation": "reverse"}, 18).eval()


# ----------------------------------------------------------------------------- printing
def _si(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _num(v: float, fmt: str = ",.0f") -> str:
    return format(v, fmt) if math.isfinite(v) else "n/a"


def print_table(results: list[ArchResult]) -> None:
    head = (
        f"{'model':<38} {'library':<16} {'params':>7} {'train ev/s':>11} {'sample ev/s':>12} "
        f"{'ROOT ev/s':>10} {'peak MB train/sample':>21} {'of matmul train/sample':>23}"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        rows = {r.library: r for r in res.rows}
        for r in res.rows:
            print(
                f"{res.arch.title:<38} {r.library:<16} {_si(r.params):>7} {_num(r.train):>11} "
                f"{_num(r.sample):>12} {_num(r.root):>10} "
                f"{_num(r.peak_train_mb):>10} / {_num(r.peak_sample_mb):<8} "
                f"{_num(100 * r.train_fraction, '.0f'):>9}% / {_num(100 * r.sample_fraction, '.0f')}%"
            )
        ours = rows["hepflows"]
        for lib, peer in rows.items():
            if lib == "hepflows":
                continue
            print(
                f"{res.arch.title:<38} {'hepflows/' + lib:<16} {'':>7} {ours.train / peer.train:>11.2f} "
                f"{ours.sample / peer.sample:>12.2f} {ours.root / peer.root:>10.2f} "
                f"{ours.peak_train_mb / peer.peak_train_mb:>10.2f} / "
                f"{ours.peak_sample_mb / peer.peak_sample_mb:<8.2f}"
            )
        print(
            f"{'':<38} FLOPs/event: {_si(res.flops)} forward, {_si(3 * res.flops)} training; "
            f"matmul ceiling ({res.arch.batch}x{max(res.arch.hidden)}x{max(res.arch.hidden)} float32): "
            f"{_si(res.gemm_gflops * 1e9)}FLOP/s"
        )
    print()


def machine_line(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    env = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
    )
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"device: {device.type} ({name}), {threads} thread(s), {os.cpu_count()} core(s); torch "
        f"{torch.__version__}; load average {load}{'; ' + env if env else ''}"
    )


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny models and sizes: a smoke run")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:k]")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for every library (default: OMP_NUM_THREADS, else 2)",
    )
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "bf16"],
        help="hepflows' sampling precision (auto: bf16 on a capable GPU)",
    )
    p.add_argument("--rounds", type=int, default=None, help="timed training rounds (default 12)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per library (default 3)")
    p.add_argument(
        "--sample-events",
        type=int,
        default=None,
        help="events per in-memory sampling call (default 16384 CPU, 2**20 GPU)",
    )
    p.add_argument(
        "--sample-rounds", type=int, default=None, help="timed sampling rounds (default 5)"
    )
    p.add_argument(
        "--root-events",
        type=int,
        default=None,
        help="events per ROOT file (default 32768 CPU, 4e6 GPU)",
    )
    p.add_argument(
        "--root-chunk",
        type=int,
        default=None,
        help="chunk size for ROOT (default 16384 CPU, 1e6 GPU)",
    )
    p.add_argument("--root-rounds", type=int, default=None, help="timed ROOT rounds (default 5)")
    p.add_argument(
        "--nll-steps", type=int, default=None, help="training steps of the NLL check (default 300)"
    )
    p.add_argument(
        "--nll-train", type=int, default=None, help="generator events to train on (default 100000)"
    )
    p.add_argument(
        "--nll-test", type=int, default=None, help="generator test events (default 20000)"
    )
    p.add_argument(
        "--curve-seed",
        type=float,
        nargs="*",
        default=None,
        help="event counts of the memory curve with the seed model (default 1e5 3e5 1e6)",
    )
    p.add_argument(
        "--curve-tiny",
        type=float,
        nargs="*",
        default=None,
        help="event counts of the memory curve with a tiny flow (default 1e5 1e6 1e7)",
    )
    p.add_argument(
        "--curve-chunk", type=int, default=100_000, help="chunk size of the memory curve"
    )
    p.add_argument(
        "--configs",
        type=Path,
        nargs="*",
        default=None,
        help="configs whose model's cost is printed (default config/seed-paper.yaml "
        "and config/best.yaml; none with --quick)",
    )
    p.add_argument(
        "--clock",
        default="wall",
        choices=list(CLOCKS),
        help="wall time, or process CPU time (robust to other processes' load)",
    )
    p.add_argument(
        "--heap",
        default="retain",
        choices=["retain", "default"],
        help="retain: keep freed memory in the heap for reuse, as the hepflows command does "
        "(hepflows.heap); default: glibc's own settings, for every library alike",
    )
    p.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=SECTIONS,
        help="what to measure and print",
    )
    p.add_argument(
        "--compile-training",
        action="store_true",
        help="the table's hepflows training loss as training.compile: true does (inductor); peers eager",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = p.parse_args(argv)

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    q = args.quick
    defaults = {
        "rounds": 3 if q else 12,
        "warmup": 1 if q else 3,
        "sample_rounds": 2 if q else 5,
        "sample_events": 2048 if q else (1 << 20 if cuda else 16384),
        "root_events": 4096 if q else (4_000_000 if cuda else 32768),
        "root_chunk": 2048 if q else (1_000_000 if cuda else 16384),
        "root_rounds": 1 if q else 5,
        "nll_steps": 5 if q else 300,
        "nll_train": 2000 if q else 100_000,
        "nll_test": 1000 if q else 20_000,
        "curve_seed": [] if q else [1e5, 3e5, 1e6],
        "curve_tiny": [1e4] if q else [1e5, 1e6, 1e7],
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads is None:
        args.threads = int(os.environ.get("OMP_NUM_THREADS", 2))
    if args.configs is None:
        args.configs = (
            [] if q else [ROOT / "config" / "seed-paper.yaml", ROOT / "config" / "best.yaml"]
        )
    return args


def main(argv: list[str] | None = None) -> dict:
    global clock
    args = parse_args(argv)
    clock = CLOCKS[args.clock]
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.set_num_threads(args.threads)
    retained = args.heap == "retain" and heap.retain_freed_memory()
    libs, skipped = available_peers(args.libraries)
    if "hepflows" not in libs:
        libs.insert(0, "hepflows")
    print(
        f"hepflows throughput: {machine_line(device, args.threads)}; {args.clock} clock; "
        f"heap: {'freed memory retained' if retained else 'glibc defaults'}"
        + ("; hepflows training compiled" if args.compile_training else "")
    )
    for lib, why in skipped.items():
        print(f"skipped {lib}: {why}")
    started = time.perf_counter()

    results = []
    if "table" in args.sections:
        results = [
            measure_arch(a, libs, args, device)
            for a in architectures(args.quick)
            if a.key in args.archs
        ]
        print_table(results)

    nll: dict = {}
    if "nll" in args.sections:
        nll = nll_section(args, device)
    configs = configs_section(args, device) if "configs" in args.sections else []
    curve = curve_section(args, device) if "curve" in args.sections else []

    print(
        f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; "
        f"load average at the end {' / '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    report = {
        "machine": machine_line(device, args.threads),
        "skipped": skipped,
        "archs": [
            {
                "arch": r.arch.__dict__,
                "flops": r.flops,
                "gemm_gflops": r.gemm_gflops,
                "rows": [row.__dict__ for row in r.rows],
            }
            for r in results
        ],
        "nll": nll,
        "configs": configs,
        "curve": curve,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


def nll_section(args: argparse.Namespace, device: torch.device) -> dict:
    seed_arch = next(a for a in architectures(args.quick) if a.key == "seed")
    print(
        "fidelity of the fast path (seed architecture with log-scale bound 3, "
        f"{args.nll_steps} Adam steps on {args.nll_train} generator events, "
        f"test NLL on {args.nll_test}; nats/event, preprocessed space):",
        file=sys.stdout,
    )
    nll = nll_check(seed_arch, args, device)
    print(f"  {'path':<40} {'mean NLL':>10} {'median NLL':>11} {'mean |dlogp| vs float32':>24}")
    for key, label in (
        ("float32", "float32 reference (unfused layers)"),
        ("fast", f"fast path ({nll['fast_precision']}, fused)"),
        ("bf16", "bfloat16 autocast (the GPU fast path)"),
    ):
        print(
            f"  {label:<40} {nll[key]:>10.4f} {nll[key + '_median']:>11.4f} "
            f"{nll[key + '_abs_diff']:>24.2e}"
        )
    print()
    return nll


def configs_section(args: argparse.Namespace, device: torch.device) -> list[dict]:
    configs = []
    if args.configs:
        print(
            "models users run (hepflows, config batch size; sampling "
            f"{args.sample_events} events a call):"
        )
    for path in args.configs:
        found = measure_config(path, args, device)
        if found is None:
            print(f"  {path.name}: not present, not measured")
            continue
        configs.append(found)
        m = found["model"]
        if m.get("family") == "flow_matching":  # FLOPs of one of the solver's evaluations
            shape = f"flow_matching, {m.get('ode_solver', 'midpoint')} x {m.get('ode_steps', 32)}"
        else:
            shape = f"{m.get('coupling', 'affine')}, {m.get('blocks', 20)} blocks"
        print(
            f"  {found['config']} ({shape}, "
            f"hidden {m.get('hidden', [512, 512])}, {_si(found['params'])} params, "
            f"{_si(found['flops'])} FLOPs/event): train {_num(found['train'])} ev/s, "
            f"sample {_num(found['sample'])} ev/s"
        )
    if args.configs:
        print()
    return configs


def curve_section(args: argparse.Namespace, device: torch.device) -> list[dict]:
    curve = []
    points = [("seed", int(n)) for n in args.curve_seed] + [
        ("tiny", int(n)) for n in args.curve_tiny
    ]
    if points:
        print(
            f"sample_to_root cost per event and peak RSS (fresh process each, chunks of "
            f"{args.curve_chunk}, LZ4):"
        )
        print(f"  {'model':<6} {'events':>12} {'seconds':>9} {'us/event':>9} {'peak RSS MB':>12}")
    for model, n in points:
        point = curve_point(
            model, n, min(args.curve_chunk, n), str(device), args.threads, args.heap == "retain"
        )
        point.update(model=model, events=n)
        curve.append(point)
        print(
            f"  {model:<6} {n:>12,} {point['seconds']:>9.1f} {1e6 * point['seconds'] / n:>9.2f} "
            f"{point['peak_mb']:>12.0f}",
            flush=True,
        )
    return curve


if __name__ == "__main__":
    main()
