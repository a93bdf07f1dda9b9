#!/usr/bin/env python
"""The prepared GPU check: every part under its own time limit, ``gpu.json`` rewritten after each.

Run through ``benchmarks/gpu/check.sh`` (which installs the carried wheels first); the parts:

1. ``tests``: ``tests/test_flows_device.py`` on the device (every layer exact in float64, a
   training step, resume with the device's random states, sampling reproducible for a seed);
2. ``training_step``: the seed study's architecture and training settings through the
   ``Trainer``, eager and with ``training.compile`` (``true`` and, on CUDA, ``reduce-overhead``:
   CUDA graphs): two epochs of a fixed number of batches, the first compiling, the second timed,
   and the seed study's training time projected from it;
3. ``seed_training``: ``config/seed-paper.yaml`` through the steps' CLIs (generate, preprocess,
   train on the device, sample, validate), timed per step and per epoch, with the verdict; with
   the ``training.compile`` setting that part 2 found fastest, where it was at least
   :data:`COMPILE_PAYS` times as fast as eager steps;
4. ``sampling``: in-memory sampling rates of the seed and best architectures in float32 and
   bf16 at growing batch sizes, then ``--root-events`` (1e8) to ROOT in shards written by
   parallel processes, with the peak resident memory of all of them together;
5. ``throughput``: ``benchmarks/throughput.py --device D`` against zuko and nflows;
6. ``compiled``: the seed and best models sampled through ``hepflows.flows.CompiledSampler``
   (``torch.compile``, CUDA graphs on CUDA) against the eager path at 2^20 events: compile
   time, both rates, the largest difference of their events;
7. ``best_training``: ``config/best.yaml`` on several million events, as far as the time left
   allows (per-epoch times).

A part that fails or runs out of time is recorded as such (with what it had measured) and the
next one starts; ``--tiny`` shrinks every size so that the whole check runs on an idle CPU in
about a minute (``tests/test_gpu_check.py``).  Every part's limit is its work times the
machine's slowness (the wall over the CPU time of a process start measured before the parts: a
loaded CPU gives each process part of a core) plus the start-up of the processes it runs, and
with ``--tiny`` the budget grows to what that needs: a loaded machine runs the check slower,
never cut.

    python benchmarks/gpu/check.py --device cuda --out $OUT
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

#: (part, seconds of work in a full run, with --tiny, Python processes it starts, itself
#: included); parts start while the budget lasts.  Each process is given STARTUP_MARGIN times
#: the start-up measured on the machine (``startup_seconds``) on top of the work: on a loaded
#: 2-core CPU importing torch and matplotlib alone takes tens of seconds.
PARTS = (
    ("tests", 50, 15, 1),
    ("training_step", 90, 10, 1),
    ("seed_training", 200, 30, 6),  # itself, generate, preprocess, train, sample, validate
    ("sampling", 80, 10, 3),  # itself and the two --tiny writer processes
    ("throughput", 90, 15, 2),
    ("compiled", 60, 10, 1),
    ("best_training", 120, 15, 4),  # itself, generate, preprocess, train
)
#: A process's start-up is given this many times the one measured before the parts.
STARTUP_MARGIN = 1.5


#: How many times as fast as eager steps a ``training.compile`` setting must be for
#: ``seed_training`` to use it.
COMPILE_PAYS = 1.1

#: The ``training.compile`` settings of part 2, by name.
COMPILE_SETTINGS = {"false": False, "true": True, "reduce-overhead": "reduce-overhead"}


# ----------------------------------------------------------------------------- helpers
def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


class Part:
    """A part's result, written to its file after every measurement (a cut run keeps them)."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def __setitem__(self, key: str, value) -> None:
        self.data[key] = value
        write_json(self.path, self.data)

    def __getitem__(self, key: str):
        return self.data[key]


def env_for(args: argparse.Namespace) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    # the training fast path is on by default on CUDA only: force it, so the CPU check covers it
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", HEPFLOWS_FAST_PATH="1")


def measure_startup(args: argparse.Namespace) -> tuple[float, float]:
    """``(wall, slowness)`` of starting one step's process on this machine now: Python importing
    torch, the steps' CLI and the plotting (validate's), measured once before the parts.

    ``slowness`` is its wall time over its CPU time (at least 1): on a CPU shared with other
    work a process gets only part of a core, and every part's work slows by the same factor.
    """
    before = os.times()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import torch, hepflows.cli, matplotlib.pyplot"],
        cwd=ROOT,
        env=env_for(args),
        check=True,
    )
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, max(1.0, wall / max(cpu, 1e-3))


def part_limits(
    parts: list, tiny: bool, budget: float | None, startup: float, slowness: float = 1.0
) -> tuple[float, dict[str, float]]:
    """The budget and each part's seconds: its work times the machine's ``slowness`` (widened
    alike when the budget allows) plus STARTUP_MARGIN start-ups per process.  With --tiny the
    budget grows to what every part needs on this machine, so that a slow or loaded CPU runs
    every part instead of cutting it."""
    work = {name: (tiny_s if tiny else full) * slowness for name, full, tiny_s, _ in parts}
    starts = {name: n * STARTUP_MARGIN * startup for name, _, _, n in parts}
    needed = sum(work.values()) + sum(starts.values())
    default = 55 if tiny else 480
    budget = budget or default
    if tiny:
        budget = max(budget, needed)
    stretch = max(1.0, (budget - sum(starts.values())) / max(sum(work.values()), 1.0))
    return budget, {name: work[name] * stretch + starts[name] for name in work}


def device_line(device: str) -> dict:
    import torch

    out = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "device": device,
        "cpu_count": os.cpu_count(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            bf16=torch.cuda.is_bf16_supported(),
        )
    return out


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(call, device, calls: int) -> list[float]:
    """Seconds of each of ``calls`` calls of ``call()``, the device synchronised around each."""
    times = []
    for _ in range(calls):
        sync(device)
        t0 = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes ``pids`` together (MB), from /proc."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cudagraph_skips() -> int:
    """Graphs inductor has run without CUDA graphs in this process (``reduce-overhead`` falls
    back to plain kernels, with a warning in the log, where it cannot capture one)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def run_step(name: str, cmd: list, args, part: Part, log, deadline: float, on_poll=None) -> dict:
    """Run one CLI step with a deadline (then SIGTERM, as a batch system would); time it."""
    started = time.perf_counter()
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    proc = subprocess.Popen(
        list(map(str, cmd)), cwd=ROOT, env=env_for(args), stdout=log, stderr=subprocess.STDOUT
    )
    peak, timed_out = 0.0, False
    while proc.poll() is None:
        peak = max(peak, rss_mb([proc.pid]))
        if on_poll is not None:
            on_poll(time.perf_counter() - started)
        if time.monotonic() > deadline and not timed_out:
            proc.send_signal(signal.SIGTERM)  # training saves its checkpoint and exits 143
            timed_out = True
        time.sleep(0.5)
    step = {
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(peak),
        "cut_at_deadline": timed_out,
    }
    if on_poll is not None:
        on_poll(step["seconds"])
    steps = part.data.get("steps", {})
    steps[name] = step
    part["steps"] = steps
    return step


# ----------------------------------------------------------------------------- 1. the tests
def part_tests(args, part: Part, log, deadline: float) -> None:
    junit = Path(args.work) / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_flows_device.py",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "addopts=",
    ]
    env = dict(env_for(args), HEPFLOWS_TEST_DEVICE=args.device, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    env.pop("HEPFLOWS_FAST_PATH")  # the tests choose the path themselves (default: the device's)
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        timeout=max(deadline - time.monotonic(), 1),
    )
    part["rc"] = proc.returncode
    part["seconds"] = round(time.perf_counter() - started, 2)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    part["counts"] = counts
    failed = {}
    for case in suite.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                failed[case.get("name")] = (node.get("message") or "")[:300]
    part["failed"] = failed
    if proc.returncode != 0:
        raise RuntimeError(f"{counts['failures'] + counts['errors']} device test(s) failed")


# ----------------------------------------------------------------------------- 2. training steps
def training_step_row(setting, model, context, settings, batches, args) -> dict:
    """Two epochs of ``batches`` batches with ``training.compile: setting``; the second timed."""
    import torch

    from hepflows.training import Dataset, Trainer

    device = torch.device(args.device)
    batch = settings["batch_size"]
    flow = make_flow(model, context, device, args.tiny)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batches * batch, flow.features, generator=g).to(device)
    ctx = (torch.rand(len(x), 1, generator=g) < 0.5).float().to(device) if context else None
    train = Dataset(x, ctx)
    val = Dataset(x[:batch], None if ctx is None else ctx[:batch])
    name = f"compile-{setting}"
    work = Path(args.work)
    trainer = Trainer(
        flow,
        train,
        val,
        dict(settings, epochs=2, patience=None, compile=COMPILE_SETTINGS[setting]),
        seed=0,
        resume_path=work / f"{name}.resume.pt",
        log_path=work / f"{name}.csv",
        progress=False,
    )
    skips = cudagraph_skips()
    trainer.fit()
    first, second = training_log(work / f"{name}.csv")
    return {
        "cudagraph_skips": cudagraph_skips() - skips,
        "compile": setting,
        "first_epoch_s": round(first["seconds"], 3),
        "epoch_s": round(second["seconds"], 4),
        "steps_per_second": round(batches / second["seconds"], 2),
        "events_per_second": round(batches * batch / second["seconds"]),
        "val_nll": second["val_nll"],
    }


def part_training_step(args, part: Part, log, deadline: float) -> None:
    """The seed study's training step, eager and compiled (see the module docstring)."""
    import torch
    import yaml

    from hepflows import config, training

    device = torch.device(args.device)
    seed = yaml.safe_load((ROOT / "config" / "seed-paper.yaml").read_text())
    settings = config.validate({"training": seed["training"]})["training"]
    events = seed["data"]["events"]["train"]
    if args.tiny:  # trace only: no code generated, no C++ compiler needed, seconds
        training.COMPILE_BACKEND = "aot_eager"
        settings["batch_size"] = 256
    steps_per_epoch = events // settings["batch_size"]
    # an epoch of a few seconds at most; on a CPU the seed's step takes a large part of one
    batches = 4 if args.tiny else (100 if device.type == "cuda" else 10)
    model, context = arch_models()["seed-paper"]
    # CUDA graphs first on CUDA: the likeliest to pay, measured before the limit can cut in
    names = ["false"] + (["reduce-overhead"] if device.type == "cuda" else []) + ["true"]
    part["settings"] = {"batch": settings["batch_size"], "batches": batches, "model": "seed-paper"}
    rows = []
    for setting in names:
        if time.monotonic() > deadline:
            break
        try:
            row = training_step_row(setting, model, context, settings, batches, args)
            row["projected_seed_study_s"] = round(
                settings["epochs"] * steps_per_epoch / row["steps_per_second"], 1
            )
        except Exception as exc:  # one setting that does not compile must not hide the others
            row = {"compile": setting, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            log.write(f"training_step {setting}: {row['error']}\n")
        rows.append(row)
        part["rows"] = rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rates = {r["compile"]: 1 / r["epoch_s"] for r in rows if "epoch_s" in r}
    if "false" in rates:
        fastest = max(rates, key=rates.__getitem__)
        pays = rates[fastest] >= COMPILE_PAYS * rates["false"]
        part["fastest"] = fastest if pays else "false"
        part["speedup"] = round(rates[fastest] / rates["false"], 3)


def compile_setting_for_training(report: dict) -> str:
    """The ``training.compile`` setting that ``seed_training`` runs with: the fastest of
    ``training_step`` (with ``--tiny`` always eager: there part 2 only traces, and a compiled
    seed training would need a C++ compiler)."""
    if report["tiny"]:
        return "false"
    return report["parts"].get("training_step", {}).get("fastest", "false")


# ----------------------------------------------------------------------------- 3. training
def derived_config(name: str, args, overrides: dict) -> Path:
    """``config/<name>.yaml`` with ``overrides`` merged in, written to the work folder."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    path = Path(args.work) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def training_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train_pipeline(
    name: str, args, part: Part, log, deadline: float, overrides: dict, validate: bool
) -> None:
    """generate -> preprocess -> train (cut at the deadline) -> sample -> validate."""
    cfg = derived_config(name, args, overrides)
    out = Path(args.work) / name
    files = {k: out / f"{k}.root" for k in ("train", "val", "test")}
    py = sys.executable
    common = ["--config", cfg, "--quiet"]
    # seconds of the part kept, after training, for sample + validate (and the model's writing):
    # their work and the start-up of their two processes on this machine
    starts = (2 if validate else 0) * STARTUP_MARGIN * args.startup
    work = ((20 if args.tiny else 60) if validate else 5) * args.slowness
    reserve = min(work + starts, 0.5 * (deadline - time.monotonic()))
    events = overrides["data"]["events"]
    part["config"] = {"name": name, "events": events, **overrides.get("training", {})}
    step = run_step(
        "generate",
        [
            py,
            "scripts/generate.py",
            *common,
            "--train",
            files["train"],
            "--val",
            files["val"],
            "--test",
            files["test"],
        ],
        args,
        part,
        log,
        deadline,
    )
    if step["rc"]:
        raise RuntimeError("generate failed")
    pre = out / "preprocess.json"
    if run_step(
        "preprocess",
        [py, "scripts/preprocess.py", *common, "--train", files["train"], "--out", pre],
        args,
        part,
        log,
        deadline,
    )["rc"]:
        raise RuntimeError("preprocess failed")
    model, csv_log = out / "model.pt", out / "training_log.csv"

    def progress(seconds: float) -> None:
        rows = training_log(csv_log)
        if len(rows) != len(part.data.get("epochs", [])):
            part["epochs"] = [
                {k: r[k] for k in ("epoch", "train_nll", "val_nll", "seconds")} for r in rows
            ]

    step = run_step(
        "train",
        [
            py,
            "scripts/train.py",
            *common,
            "--device",
            args.device,
            "--train",
            files["train"],
            "--val",
            files["val"],
            "--preprocess",
            pre,
            "--model",
            model,
            "--log",
            csv_log,
        ],
        args,
        part,
        log,
        deadline - reserve,
        on_poll=progress,
    )
    rows = training_log(csv_log)
    epochs = int(overrides["training"]["epochs"])
    if rows:
        per_epoch = statistics.median(r["seconds"] for r in rows)
        part["training"] = {
            "epochs_done": len(rows),
            "epochs": epochs,
            "seconds": step["seconds"],
            "median_epoch_seconds": round(per_epoch, 3),
            "events_per_second": round(
                events["train"]
                // overrides["training"]["batch_size"]
                * overrides["training"]["batch_size"]
                / per_epoch
            ),
            "projected_seconds_all_epochs": round(per_epoch * epochs, 1),
            "best_val_nll": min(r["val_nll"] for r in rows),
            "last_val_nll": rows[-1]["val_nll"],
            "finished": step["rc"] == 0,
        }
    if step["rc"] != 0:
        raise RuntimeError(
            f"training stopped (rc {step['rc']}) after {len(rows)} of {epochs} epochs"
        )
    if not validate:
        return
    generated = out / "generated.root"
    n_val = int(overrides["validation"]["max_events"])
    step = run_step(
        "sample",
        [
            py,
            "scripts/sample.py",
            *common,
            "--model",
            model,
            "--preprocess",
            pre,
            "--out",
            generated,
            "--events",
            n_val,
            "--device",
            args.device,
        ],
        args,
        part,
        log,
        deadline,
    )
    if step["rc"]:
        raise RuntimeError(f"sampling failed (rc {step['rc']}): see gpu.log")
    vdir = out / "validation"
    step = run_step(
        "validate",
        [
            py,
            "scripts/validate.py",
            *common,
            "--reference",
            files["test"],
            "--generated",
            generated,
            "--out-dir",
            vdir,
        ],
        args,
        part,
        log,
        deadline,
    )
    if step["rc"]:
        raise RuntimeError(f"validate failed (rc {step['rc']})")
    verdict = vdir / "verdict.csv"
    if verdict.exists():
        with verdict.open() as f:
            part["verdict"] = list(csv.DictReader(f))


def part_seed_training(args, part: Part, log, deadline: float) -> None:
    if args.tiny:
        overrides = {
            "data": {"events": {"train": 3000, "val": 500, "test": 1000}},
            "model": {"blocks": 2, "hidden": [32, 32]},
            "training": {"epochs": 2, "batch_size": 256},
            "validation": {"max_events": 300, "n_null": 20, "classifier": False},
        }
    else:
        import yaml

        seed = yaml.safe_load((ROOT / "config" / "seed-paper.yaml").read_text())
        overrides = {k: seed[k] for k in ("data", "training", "validation")}
    setting = COMPILE_SETTINGS[args.train_compile or "false"]
    overrides["training"] = dict(overrides["training"], compile=setting)
    train_pipeline("seed-paper", args, part, log, deadline, overrides, validate=True)


def part_best_training(args, part: Part, log, deadline: float) -> None:
    if args.tiny:
        overrides = {
            "data": {"events": {"train": 3000, "val": 500, "test": 500}},
            "model": {"blocks": 2, "hidden": [16, 16], "bins": 4},
            "training": {"epochs": 2, "batch_size": 256, "patience": None},
        }
    else:
        import yaml

        best = yaml.safe_load((ROOT / "config" / "best.yaml").read_text())
        overrides = {
            "data": {"events": {"train": args.best_events, "val": 100_000, "test": 1000}},
            "training": dict(best["training"], patience=None),
        }
    train_pipeline("best", args, part, log, deadline, overrides, validate=False)


# ----------------------------------------------------------------------------- 4. sampling
def arch_models() -> dict[str, tuple[dict, int]]:
    """(model block, context features) of the seed study and of the best model."""
    import yaml

    out = {}
    for name in ("seed-paper", "best"):
        cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
        out[name] = (cfg["model"], 1 if cfg["training"].get("conditional", True) else 0)
    return out


def tiny_model(model: dict) -> dict:
    """The architecture shrunk for --tiny."""
    return dict(model, blocks=2, hidden=[16, 16])


def make_flow(model: dict, context: int, device, tiny: bool):
    """A flow of the architecture with every weight slightly off its (identity) start."""
    import torch

    from hepflows.events.schema import CONTINUOUS_FEATURES
    from hepflows.flows import build_flow

    if tiny:
        model = tiny_model(model)
    torch.manual_seed(0)
    flow = build_flow(model, len(CONTINUOUS_FEATURES), context)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return flow.to(device).eval()


def toy_preprocessor():
    import numpy as np

    from hepflows import preprocess
    from hepflows.events.schema import CONTINUOUS_FEATURES

    x = np.random.default_rng(0).gamma(2.0, 30.0, size=(20_000, len(CONTINUOUS_FEATURES))) + 1.0
    return preprocess.fit(x, CONTINUOUS_FEATURES)


def in_memory_rates(args, part: Part, deadline: float) -> None:
    import torch

    from hepflows.sampling import precision_context, resolve_precision

    device = torch.device(args.device)
    sizes = [1024, 4096] if args.tiny else [1 << 16, 1 << 18, 1 << 20, 1 << 21, 1 << 22]
    precisions = ["float32"] + (["bf16"] if resolve_precision("auto", device) == "bf16" else [])
    rates = []
    for name, (model, context) in arch_models().items():
        flow = make_flow(model, context, device, args.tiny)
        for precision in precisions:
            best = 0.0
            for n in sizes:
                if time.monotonic() > deadline:
                    return
                ctx = torch.ones(n, context, device=device) if context else None
                gen = torch.Generator(device=device).manual_seed(0)
                try:
                    with torch.no_grad(), precision_context(precision, device):
                        times = timed_calls(partial(flow.sample, n, ctx, generator=gen), device, 3)
                except torch.OutOfMemoryError:
                    rates.append({"model": name, "precision": precision, "batch": n, "oom": True})
                    part["in_memory"] = rates
                    torch.cuda.empty_cache()
                    break
                rate = n / min(times[1:])
                rates.append(
                    {
                        "model": name,
                        "precision": precision,
                        "batch": n,
                        "events_per_second": round(rate),
                        "first_call_s": round(times[0], 3),
                    }
                )
                part["in_memory"] = rates
                if rate < 0.8 * best:  # past the device's best batch
                    break
                best = max(best, rate)
        del flow
        if device.type == "cuda":
            torch.cuda.empty_cache()


def shard_worker(
    rank: int,
    model_path: str,
    pre_path: str,
    out_dir: str,
    ranges: list,
    device: str,
    chunk: int,
    progress_path: str,
) -> None:
    """One writer process: its files (each a range of whole chunks) streamed to ROOT in turn."""
    from hepflows.checkpoint import load_model
    from hepflows.preprocess import Preprocessor
    from hepflows.sampling import sample_to_root

    flow, _ = load_model(model_path, device=device)
    pre = Preprocessor.load(pre_path)
    done = 0
    for index, (start, n) in enumerate(ranges):
        sample_to_root(
            flow,
            pre,
            Path(out_dir) / f"shard{rank:02d}-{index:03d}.root",
            n,
            seed=1,
            chunk_size=chunk,
            first_chunk=start // chunk,
            signal_fraction=None,
            device=device,
            progress=False,
            precision="auto",
        )
        done += n
        Path(progress_path).write_text(str(done))


def to_root(args, part: Part, deadline: float) -> None:
    """``--root-events`` of the seed architecture to ROOT: shards written by parallel processes."""
    import multiprocessing as mp

    from hepflows import checkpoint
    from hepflows.events.schema import CONTINUOUS_FEATURES

    model, context = arch_models()["seed-paper"]
    flow = make_flow(model, context, "cpu", args.tiny)
    work = Path(args.work) / "to_root"
    work.mkdir(exist_ok=True)
    # a model file (plain data), rebuilt by each worker: no pickled objects cross processes
    checkpoint.save(
        work / "flow.pt",
        {
            "state_dict": flow.state_dict(),
            "model": tiny_model(model) if args.tiny else model,
            "features": list(CONTINUOUS_FEATURES),
            "context_features": context,
        },
    )
    toy_preprocessor().save(work / "preprocess.json")
    total, chunk, workers = args.root_events, args.root_chunk, args.root_workers
    files_per_worker = max(1, math.ceil(total / chunk / workers / 4))  # a few files each
    chunks = math.ceil(total / chunk)
    ranges: list[list] = [[] for _ in range(workers)]
    per_file = max(1, math.ceil(chunks / (workers * files_per_worker)))
    for index, first in enumerate(range(0, chunks, per_file)):
        start = first * chunk
        ranges[index % workers].append((start, min(per_file * chunk, total - start)))
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    procs = []
    for rank in range(workers):
        p = ctx.Process(
            target=shard_worker,
            args=(
                rank,
                str(work / "flow.pt"),
                str(work / "preprocess.json"),
                str(work),
                ranges[rank],
                args.device,
                chunk,
                str(work / f"progress{rank}"),
            ),
        )
        p.start()
        procs.append(p)
    peak = 0.0
    result = {"events": total, "chunk": chunk, "workers": workers, "model": "seed-paper"}
    while any(p.is_alive() for p in procs):
        peak = max(peak, rss_mb([os.getpid()] + [p.pid for p in procs]))
        done = sum(int(f.read_text() or 0) for f in work.glob("progress*"))
        seconds = time.perf_counter() - started
        result.update(
            events_written=done,
            seconds=round(seconds, 2),
            peak_rss_mb_all=round(peak),
            events_per_second=round(done / seconds),
        )
        part["to_root"] = result
        if time.monotonic() > deadline:
            for p in procs:
                p.terminate()
            result["cut_at_deadline"] = True
            break
        time.sleep(0.25)
    for p in procs:
        p.join()
    done = sum(int(f.read_text() or 0) for f in work.glob("progress*"))
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in work.glob("shard*.root"))
    result.update(
        events_written=done,
        seconds=round(seconds, 2),
        peak_rss_mb_all=round(peak),
        events_per_second=round(done / seconds),
        bytes_written=size,
        exit_codes=[p.exitcode for p in procs],
    )
    part["to_root"] = result
    for f in work.glob("shard*.root"):
        f.unlink()  # up to several GB: the disk is the device's, the files are not needed
    if done != total and not result.get("cut_at_deadline"):
        raise RuntimeError(f"{done} of {total} events written; exit codes {result['exit_codes']}")


def part_sampling(args, part: Part, log, deadline: float) -> None:
    # in memory first, with 45 % of the part's time; the rest for the ROOT files
    in_memory_rates(args, part, time.monotonic() + 0.45 * (deadline - time.monotonic()))
    to_root(args, part, deadline)


def compiled_row(flow, n: int, ctx, precision: str, backend: str, mode: str | None) -> dict:
    """One flow sampled eagerly and through a :class:`~hepflows.flows.CompiledSampler`."""
    import torch

    from hepflows.flows import CompiledSampler
    from hepflows.sampling import precision_context

    device = next(flow.parameters()).device
    compiled = CompiledSampler(flow, mode=mode, backend=backend)
    skips = cudagraph_skips()
    drawn = []
    with torch.no_grad(), precision_context(precision, device):
        seeded = torch.Generator(device=device)
        first = timed_calls(  # compiles
            lambda: drawn.append(compiled.sample(n, ctx, generator=seeded.manual_seed(0))),
            device,
            1,
        )[0]
        expected = flow.sample(n, ctx, generator=seeded.manual_seed(0))
        eager = timed_calls(partial(flow.sample, n, ctx), device, 3)
        fast = timed_calls(partial(compiled.sample, n, ctx), device, 3)
    return {
        "compile_and_first_call_s": round(first, 3),
        "eager_events_per_second": round(n / min(eager)),
        "compiled_events_per_second": round(n / min(fast)),
        "speedup": round(min(eager) / min(fast), 3),
        "max_abs_diff": float((expected.float() - drawn[0].float()).abs().max()),
        "cudagraph_skips": cudagraph_skips() - skips,
    }


def part_compiled(args, part: Part, log, deadline: float) -> None:
    """:class:`~hepflows.flows.CompiledSampler` against eager sampling of the same flow: the
    compile time, both rates at one large batch, and the largest difference of their events."""
    import torch

    from hepflows.sampling import resolve_precision

    device = torch.device(args.device)
    # inductor, with CUDA graphs on CUDA; --tiny only traces (no compiler needed, seconds)
    backend = "eager" if args.tiny else "inductor"
    mode = "reduce-overhead" if device.type == "cuda" and not args.tiny else None
    # a batch that fills the GPU; on a CPU (sampled in tiles of 2048) a few tiles
    n = 4096 if args.tiny else (1 << 20 if device.type == "cuda" else 8192)
    precisions = ["float32"] + (["bf16"] if resolve_precision("auto", device) == "bf16" else [])
    part["settings"] = {"backend": backend, "mode": mode, "batch": n}
    rows = []
    for name, (model, context) in arch_models().items():
        flow = make_flow(model, context, device, args.tiny)
        ctx = torch.ones(n, context, device=device) if context else None
        for precision in precisions:
            if time.monotonic() > deadline:
                return
            row = {"model": name, "precision": precision, "batch": n}
            try:
                row.update(compiled_row(flow, n, ctx, precision, backend, mode))
            except Exception as exc:  # one model that does not compile must not hide the others
                row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
                log.write(f"compiled {name} {precision}: {row['error']}\n")
            rows.append(row)
            part["compiled"] = rows
        del flow
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- 5. throughput
def part_throughput(args, part: Part, log, deadline: float) -> None:
    out = Path(args.work) / "throughput.json"
    cmd = [
        sys.executable,
        "benchmarks/throughput.py",
        "--device",
        args.device,
        "--json",
        out,
        "--sections",
        "table",
        "configs",
    ]
    if args.tiny:
        cmd += ["--quick", "--sections", "table"]
    else:
        cmd += [
            "--rounds",
            "6",
            "--sample-rounds",
            "3",
            "--root-rounds",
            "2",
            "--root-events",
            "1000000",
        ]
    started = time.perf_counter()
    proc = subprocess.run(
        list(map(str, cmd)),
        cwd=ROOT,
        env=env_for(args),
        stdout=log,
        stderr=subprocess.STDOUT,
        timeout=max(deadline - time.monotonic(), 1),
    )
    part["rc"] = proc.returncode
    part["seconds"] = round(time.perf_counter() - started, 2)
    if out.exists():
        part["result"] = json.loads(out.read_text())
    if proc.returncode:
        raise RuntimeError(f"throughput.py exited {proc.returncode}")


FUNCTIONS = {
    "tests": part_tests,
    "training_step": part_training_step,
    "seed_training": part_seed_training,
    "sampling": part_sampling,
    "throughput": part_throughput,
    "compiled": part_compiled,
    "best_training": part_best_training,
}


# ----------------------------------------------------------------------------- the driver
def run_part(args) -> int:
    """``--part NAME``: one part in this process, its result in ``--result``."""
    part = Part(Path(args.result))
    deadline = time.monotonic() + args.seconds
    with open(Path(args.out) / "gpu.log", "a") as log:
        try:
            FUNCTIONS[args.part](args, part, log, deadline)
        except Exception as exc:  # recorded; the driver moves on to the next part
            part["error"] = f"{type(exc).__name__}: {exc}"
            import traceback

            log.write(traceback.format_exc())
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument(
        "--tiny", action="store_true", help="tiny sizes: the whole check on a CPU in < 1 min"
    )
    p.add_argument(
        "--out",
        default=os.environ.get("OUT", "results/gpu-check"),
        help="gpu.json and gpu.log go here",
    )
    p.add_argument("--parts", nargs="+", default=[p[0] for p in PARTS], choices=list(FUNCTIONS))
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all parts (default 480, tiny 55, grown to what the machine needs); "
        "more widens each part's limit alike",
    )
    p.add_argument("--root-events", type=int, default=None, help="events to ROOT (default 1e8)")
    p.add_argument("--root-chunk", type=int, default=None, help="chunk size to ROOT (default 1e6)")
    p.add_argument(
        "--root-workers", type=int, default=None, help="writer processes (default min(8, cores))"
    )
    p.add_argument(
        "--best-events", type=int, default=3_000_000, help="training events of best_training"
    )
    p.add_argument(
        "--train-compile",
        choices=list(COMPILE_SETTINGS),
        default=None,
        help="training.compile of seed_training (default: what training_step found fastest)",
    )
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--startup", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--slowness", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.root_events is None:
        args.root_events = 200_000 if args.tiny else 100_000_000
    if args.root_chunk is None:
        args.root_chunk = 20_000 if args.tiny else 1_000_000
    if args.root_workers is None:
        args.root_workers = 2 if args.tiny else min(8, os.cpu_count() or 1)
    if args.part:
        return run_part(args)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    args.startup, slowness = measure_startup(args)
    selected = [p for p in PARTS if p[0] in args.parts]
    budget, limits = part_limits(selected, args.tiny, args.budget, args.startup, slowness)
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "tiny": args.tiny,
        "budget_s": round(budget, 1),
        "startup_s": round(args.startup, 2),
        "slowness": round(slowness, 2),
        "machine": device_line(args.device),
        "parts": {},
    }
    write_json(out / "gpu.json", report)
    with tempfile.TemporaryDirectory(prefix="hepflows-gpu-") as work:
        for name, *_ in selected:
            left = budget - (time.monotonic() - started)
            seconds = min(limits[name], left)
            if seconds < (5 if args.tiny else 20):
                report["parts"][name] = {
                    "status": "skipped",
                    "why": f"{left:.0f} s of the budget left",
                }
                write_json(out / "gpu.json", report)
                continue
            result = Path(work) / f"{name}.json"
            folder = Path(work) / name
            folder.mkdir()
            cmd = [
                sys.executable,
                __file__,
                "--part",
                name,
                "--result",
                result,
                "--work",
                folder,
                "--seconds",
                seconds,
                "--device",
                args.device,
                "--out",
                out,
                "--root-events",
                args.root_events,
                "--root-chunk",
                args.root_chunk,
                "--root-workers",
                args.root_workers,
                "--best-events",
                args.best_events,
                "--startup",
                args.startup,
                "--slowness",
                slowness,
            ]
            cmd += ["--tiny"] if args.tiny else []
            if name == "seed_training":
                cmd += [
                    "--train-compile",
                    args.train_compile or compile_setting_for_training(report),
                ]
            with open(out / "gpu.log", "a") as log:
                log.write(f"\n===== {name} (at most {seconds:.0f} s)\n")
            t0 = time.perf_counter()
            # the part keeps its own deadline; `timeout` is the backstop that never lets it hang
            rc = subprocess.run(
                ["timeout", "--kill-after=10", str(int(seconds) + 15), *map(str, cmd)],
                cwd=ROOT,
                env=env_for(args),
            ).returncode
            entry = json.loads(result.read_text()) if result.exists() else {}
            status = "ok" if rc == 0 else ("timeout" if rc in (124, 137) else "failed")
            report["parts"][name] = {
                "status": status,
                "rc": rc,
                "wall_s": round(time.perf_counter() - t0, 2),
                **entry,
            }
            report["elapsed_s"] = round(time.monotonic() - started, 1)
            write_json(out / "gpu.json", report)
            print(f"{name}: {status} in {report['parts'][name]['wall_s']} s", flush=True)
    return 0 if all(v["status"] in ("ok", "skipped") for v in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
