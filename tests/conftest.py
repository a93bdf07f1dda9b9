"""Shared fixtures: the repository root, the real-data folder, tiny configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from hepflows import layout

ROOT = Path(__file__).resolve().parents[1]
SHARED_HIGGS = ROOT.parent / "shared" / "data" / "higgs"

#: What a copy of the workflow needs to run in another folder.
WORKFLOW_FILES = ("Snakefile", "workflow", "scripts", "config", "envs")


def copy_workflow(dest: Path, configs: Mapping[str, Any] | None = None) -> Path:
    """Copy the workflow into ``dest`` (what is there already is kept) and write each of
    ``configs`` as ``config/<name>.yaml`` (a mapping as YAML, a string as it is); returns ``dest``."""
    for name in WORKFLOW_FILES:
        src, target = ROOT / name, dest / name
        if not target.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, target)
    for name, cfg in (configs or {}).items():
        text = cfg if isinstance(cfg, str) else yaml.safe_dump(dict(cfg))
        (dest / "config" / f"{name}.yaml").write_text(text)
    return dest


def snakemake_env(**extra: str) -> dict[str, str]:
    """The environment of a Snakemake subprocess: its jobs' `python` is this interpreter."""
    return dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra
    )


def step_args(step: str, path: Mapping[str, str | Path]) -> list[str]:
    """The file arguments of the pipeline step ``step`` (generate, ingest, preprocess, train or
    sample) on the files ``path`` of a run (:func:`hepflows.layout.paths`, or the same keys)."""
    splits = ["--train", path["train"], "--val", path["val"], "--test", path["test"]]
    args = {
        "generate": splits,
        "ingest": splits,
        "preprocess": ["--train", path["train"], "--out", path["preprocess"]],
        "train": [
            *splits[:4],
            *("--preprocess", path["preprocess"], "--model", path["model"], "--log", path["log"]),
        ],
        "sample": [
            *("--model", path["model"], "--preprocess", path["preprocess"]),
            *("--out", path["generated"]),
        ],
    }[step]
    return [str(a) for a in args]


def flat_paths(folder: Path) -> dict[str, Path]:
    """The files of a run side by side in ``folder`` (``train.root``, ``pre.json``,
    ``model.pt``, ``log.csv``, ``gen.root``, ...), under the keys of :func:`step_args`."""
    names = {
        "preprocess": "pre.json",
        "model": "model.pt",
        "log": "log.csv",
        "generated": "gen.root",
    }
    return {
        **{k: folder / f"{k}.root" for k in ("train", "val", "test")},
        **{k: folder / name for k, name in names.items()},
    }


def signal_fails(reason: str) -> list:
    """Both processes as test parameters, the signal a strict expected failure for ``reason``:
    a generator target met by t tbar and not yet by the signal."""
    xfail = pytest.mark.xfail(strict=True, reason=reason)
    return [pytest.param("signal", marks=xfail), "background"]


def train_tiny_run(config: Path, folder: Path) -> Path:
    """``hepflows ingest``, ``preprocess`` and ``train`` with ``config``, into ``folder`` laid out
    as ``results/<run>/`` (:func:`hepflows.layout.paths`); fails the test at the first step that
    fails. Returns ``folder``."""
    from hepflows.cli import main  # torch: only for the tests that train

    for step in ("ingest", "preprocess", "train"):
        argv = [step, "--quiet", "--config", str(config), *step_args(step, layout.paths(folder))]
        assert main(argv) == 0, step
    return folder


# Tests share 2 cores with each other's subprocesses: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_settings() -> dict:
    """Config sections for a run that finishes in seconds."""
    return {
        "run": "tiny",
        "seed": 3,
        "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"],
        "data": {"events": {"train": 2000, "val": 500, "test": 1000}},
        "model": {"coupling": "affine", "blocks": 2, "hidden": [16, 16], "permutation": "lu"},
        "training": {"epochs": 2, "batch_size": 256, "lr": 1e-3, "device": "cpu"},
        "sampling": {"events": 1500, "chunk_size": 400},
        "validation": {
            "max_events": 500,
            "n_null": 20,
            "classifier": False,
            "amplification": {"truth_events": 5000},
        },
    }


@pytest.fixture
def real_higgs() -> Path:
    path = SHARED_HIGGS / "higgs_real_subset.csv.gz"
    if not path.exists():
        pytest.skip(f"real HIGGS subset not present at {path}")
    return path


#: The tiny run of the whole workflow (tests/test_workflow.py, tests/test_report_browser.py).
TINY_WORKFLOW = {
    "run": "tiny",
    "seed": 2,
    "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb", "m_wwbb"],
    "data": {"events": {"train": 3000, "val": 1000, "test": 2000}},
    "model": {"blocks": 2, "hidden": [16, 16]},
    "training": {"epochs": 2, "batch_size": 256, "device": "cpu"},
    "sampling": {"events": 1000, "chunk_size": 300},
    "validation": {
        "max_events": 1000,
        "n_null": 20,
        "classifier": True,
        "amplification": {"truth_events": 20000},
    },
    "toys": {"enabled": True},
}


def run_tiny_snakemake(
    workdir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    """``snakemake --configfile config/tiny.yaml ARGS`` in ``workdir``; fails the test with the
    logs when it fails (unless ``check`` is false)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--configfile", "config/tiny.yaml", *args],
        cwd=workdir,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        logs = "\n".join(p.read_text() for p in (workdir / "results").rglob("*.log"))
        pytest.fail(f"snakemake {args} failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    return result


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Path:
    """A copy of the workflow with the tiny config, run once to completion for the session."""
    work = copy_workflow(tmp_path_factory.mktemp("workflow"), {"tiny": TINY_WORKFLOW})
    run_tiny_snakemake(work, "--cores", "2")
    return work
