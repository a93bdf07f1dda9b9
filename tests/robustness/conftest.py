"""Shared pieces of the robustness suite: a tiny config, the step scripts run for real, and one
complete tiny pipeline run (generate, its truth sample -> preprocess -> train -> sample) that the
tests reuse.

Steps are called in-process through ``hepflows.cli.main`` wherever the process boundary does not
matter (it returns the exit code the script would), and as real subprocesses of
``scripts/<step>.py`` where it does: exit codes of the real process, signals, restarts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import step_args

from hepflows import layout

ROOT = Path(__file__).resolve().parents[2]

#: A run that finishes in seconds yet has 64 batches an epoch, so that a signal sent during
#: training lands inside an epoch; dropout makes the resumed run depend on restored RNG state.
TINY: dict = {
    "run": "tiny",
    "seed": 3,
    "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"],
    "data": {"events": {"train": 4096, "val": 512, "test": 1000}},
    "model": {
        "coupling": "affine",
        "blocks": 2,
        "hidden": [32, 32],
        "permutation": "lu",
        "dropout": 0.1,
    },
    "training": {"epochs": 3, "batch_size": 64, "lr": 1.0e-3, "patience": None, "device": "cpu"},
    "sampling": {"events": 20000, "chunk_size": 2000, "device": "cpu"},
    "validation": {
        "max_events": 500,
        "n_null": 20,
        "classifier": False,
        "amplification": {"truth_events": 5000},
    },
}

#: Where each output of a run lives, relative to the run's working directory: hepflows.layout's,
#: the Snakefile's, so that files made by the scripts and by Snakemake carry the same paths.
LAYOUT = {key: str(path) for key, path in layout.paths(layout.run_dir(TINY["run"])).items()}


def script_env(threads: int = 1) -> dict[str, str]:
    """The environment of a step subprocess with ``threads`` BLAS/OpenMP threads.

    The thread count is explicit because float results of torch on the CPU may depend on it
    (a sum split over more threads rounds differently); the identity tests choose it on purpose.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def script_command(step: str, *args: object, settings: dict | None = None) -> list[str]:
    cmd = [sys.executable, str(ROOT / "scripts" / f"{step}.py"), "--quiet"]
    if settings is not None:
        cmd += ["--settings", json.dumps(settings)]
    return [*cmd, *map(str, args)]


def run_script(
    step: str,
    *args: object,
    settings: dict | None = None,
    cwd: Path | None = None,
    threads: int = 1,
) -> subprocess.CompletedProcess:
    """Run ``scripts/<step>.py`` to completion as a real process."""
    return subprocess.run(
        script_command(step, *args, settings=settings),
        cwd=cwd,
        env=script_env(threads),
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_script(
    step: str,
    *args: object,
    settings: dict | None = None,
    cwd: Path | None = None,
    log: Path,
) -> subprocess.Popen:
    """Start ``scripts/<step>.py`` in the background; stdout and stderr go to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            script_command(step, *args, settings=settings),
            cwd=cwd,
            env=script_env(1),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_step(
    step: str, *args: object, settings: dict | None = None, config: Path | None = None
) -> int:
    """Run a step in this process as its script would; returns the script's exit code."""
    from hepflows.cli import main

    argv = [step, "--quiet"]
    if config is not None:
        argv += ["--config", str(config)]
    if settings is not None:
        argv += ["--settings", json.dumps(settings)]
    return main([*argv, *map(str, args)])


def files_in(folder: Path) -> list[str]:
    """Every file below ``folder``, hidden temporary files included, as relative paths."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float = 300.0
) -> None:
    """Poll ``condition`` every 10 ms; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(
                f"the process ended (code {process.returncode}) before the moment to "
                f"interrupt it:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting to interrupt the process:\n{log.read_text()}")
        time.sleep(0.01)


def assert_names(message: str, words: Sequence[str]) -> None:
    """Every word (file, place, what was expected) appears in the error message."""
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in the message:\n{message}"


@dataclass(frozen=True)
class Pipeline:
    """A finished tiny run: its working directory and the steps' captured output."""

    root: Path
    stderr: dict[str, str]

    def path(self, name: str) -> Path:
        return self.root / LAYOUT[name]


def pipeline_steps(settings: dict) -> list[tuple[str, list[str]]]:
    """The data-to-samples steps of a run, with the relative paths of :data:`LAYOUT` (and the
    amplification's truth sample, which the generate script writes with --truth)."""
    return [
        ("generate", step_args("generate", LAYOUT)),
        ("generate", ["--truth", LAYOUT["truth"]]),
        *((step, step_args(step, LAYOUT)) for step in ("preprocess", "train", "sample")),
    ]


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    """The tiny pipeline run once by the real scripts, one thread each, uninterrupted.

    It is the reference the interruption and reproducibility tests compare against, and it
    provides valid files beside which the bad-input tests place bad ones.
    """
    root = tmp_path_factory.mktemp("pipeline")
    stderr = {}
    for step, args in pipeline_steps(TINY):
        run = run_script(step, *args, settings=TINY, cwd=root, threads=1)
        assert run.returncode == 0, f"{step} failed:\n{run.stderr}"
        stderr["generate_truth" if "--truth" in args else step] = run.stderr
    return Pipeline(root, stderr)
