"""The workflow on a real SLURM cluster, through workflow/profiles/slurm, not mocked.

Needs a cluster that answers ``sinfo`` (``tests/cluster/slurm.sh up`` makes a one-node one on
loopback), the ``.[cluster]`` extra, and ``HEPFLOWS_SLURM_TEST=1``: the run takes minutes, so it
is never started by a plain ``make test`` on a machine that merely has SLURM.  ``.ci/run`` runs
it as its own step.

A tiny configuration with sharded sampling runs through the profile; every job must have been
a SLURM job that completed, and every output must equal that of a local, unsharded run of the
same configuration (``hepflows run``).  Sharded generation is left to tests/test_shards.py: its
six jobs would add minutes of job start-up here and test nothing SLURM-specific.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import copy_workflow

from hepflows import config
from hepflows.events.reader import read_events

ROOT = Path(__file__).resolve().parents[2]
RUN = "slurm"
TINY = {
    "run": RUN,
    "seed": 5,
    "features": ["lepton_pt", "lepton_eta", "met", "m_bb"],
    "data": {"events": {"train": 1200, "val": 400, "test": 800}},
    "model": {"blocks": 2, "hidden": [8, 8]},
    "training": {"epochs": 1, "batch_size": 256, "device": "cpu"},
    # Two shards of two 100-event chunks; validation takes 200 events of each, i.e. all of
    # them, so its input equals the unsharded sample and its metrics must match too.
    "sampling": {"events": 400, "chunk_size": 100, "shards": 2, "device": "cpu"},
    "validation": {
        "max_events": 400,
        "n_null": 20,
        "classifier": False,
        "amplification": {"truth_events": 5000},
    },
}
#: Seconds the whole SLURM run may take before the test fails (CI wraps it in its own timeout).
RUN_TIMEOUT = 900


def _cluster_problem() -> str | None:
    """Why the live test cannot run here, or None."""
    if os.environ.get("HEPFLOWS_SLURM_TEST") != "1":
        return "set HEPFLOWS_SLURM_TEST=1 to run the live SLURM test (see tests/cluster/slurm.sh)"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM's client commands are not installed"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')"
    probe = subprocess.run(
        ["sinfo", "--noheader", "--format", "%T"], capture_output=True, text=True
    )
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"no SLURM cluster answers sinfo: {probe.stderr.strip()}"
    return None


pytestmark = pytest.mark.skipif(_cluster_problem() is not None, reason=str(_cluster_problem()))


def _env() -> dict[str, str]:
    """The submitting shell's environment: this Python first on PATH, jobs in it, not conda."""
    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        HEPFLOWS_SDM="none",
        OMP_NUM_THREADS="1",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The tiny workflow once on SLURM (sharded) and once locally (unsharded, ``hepflows run``)."""
    # Complete in itself: `hepflows run` reads only this file, Snakemake reads it over the
    # workflow's config/config.yaml, and both must see the same configuration.
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    work = copy_workflow(tmp_path_factory.mktemp("slurm"), {"tiny": config.merge(default, TINY)})
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--configfile",
        "config/tiny.yaml",
        # No accounting database on the test cluster: job states from squeue, checked soon.
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
    ]
    result = subprocess.run(
        cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    (work / "snakemake.out").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()}" for p in (work / "results").rglob("*.log"))
        pytest.fail(f"the SLURM run failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "hepflows.cli",
            "run",
            "--quiet",
            "--config",
            "config/tiny.yaml",
            "--results",
            "local",
        ],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert local.returncode == 0, local.stderr
    return {
        "work": work,
        "slurm": work / "results" / RUN,
        "local": work / "local" / RUN,
        "log": work / "snakemake.out",
    }


def _planned_jobs(work: Path) -> dict[str, int]:
    """Jobs per rule of the tiny configuration, from a dry run (``all`` runs on the submit host)."""
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-F",
            "--configfile",
            "config/tiny.yaml",
            "--workflow-profile",
            "workflow/profiles/slurm",
        ],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr
    table = dry.stdout.split("Job stats:")[-1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    counts.pop("total")
    counts.pop("all")
    return counts


def _submitted(runs: dict[str, Path]) -> list[tuple[str, str, Path]]:
    """(rule, SLURM job id, SLURM log) of every job the run submitted, from snakemake's output."""
    text = runs["log"].read_text()
    found = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.", text)
    return [(re.search(r"/rule_(\w+?)/", log).group(1), job, Path(log)) for job, log in found]


def _slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def test_every_job_was_a_completed_slurm_job(runs):
    planned = _planned_jobs(runs["work"])
    assert planned == {
        "generate": 1,
        "preprocess": 1,
        "train": 1,
        "sample": 2,
        "merge_samples": 1,
        "merge_validation_sample": 1,
        "validate": 1,
        "generate_truth": 1,
        "amplification": 1,
        "toys": 1,
        "summary": 1,
    }
    submitted = _submitted(runs)
    rules = [rule for rule, _, _ in submitted]
    assert {rule: rules.count(rule) for rule in rules} == planned
    ids = [job for _, job, _ in submitted]
    # The cluster itself says so: squeue keeps finished jobs for MinJobAge (an hour).
    states = _slurm(
        "squeue", "--noheader", "--states", "all", "--jobs", ",".join(ids), "--format", "%i %T"
    ).split("\n")
    seen = dict(line.split() for line in states if line.strip())
    assert {job: seen.get(job) for job in ids} == {job: "COMPLETED" for job in ids}
    for _, job, log in submitted:
        # The job step ran the rule inside the allocation and logged its own success there.
        assert "Finished jobid: 0" in log.read_text(), (job, log)


def test_gpu_requests_reached_slurm(runs):
    for rule, job, _ in _submitted(runs):
        record = _slurm("scontrol", "--oneliner", "show", "job", job)
        wants_gpu = "gres/gpu=1" in record or "gpu:1" in record
        assert wants_gpu == (rule in ("train", "sample")), (rule, record)


def _events(path: Path) -> dict[str, np.ndarray]:
    return read_events(path, TINY["features"], with_weight=False)


def _assert_same_events(a: Path, b: Path) -> None:
    ea, eb = _events(a), _events(b)
    assert ea.keys() == eb.keys()
    for name in ea:
        np.testing.assert_array_equal(ea[name], eb[name], err_msg=f"{a} vs {b}: {name}")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_sharded_data_equal_the_local_run(runs, split):
    _assert_same_events(
        runs["slurm"] / "data" / f"{split}.root", runs["local"] / "data" / f"{split}.root"
    )


def test_model_and_sample_equal_the_local_run(runs):
    import torch

    a = torch.load(runs["slurm"] / "model" / "model.pt", weights_only=True)
    b = torch.load(runs["local"] / "model" / "model.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    _assert_same_events(
        runs["slurm"] / "samples" / "generated.root", runs["local"] / "samples" / "generated.root"
    )
    assert (
        len(_events(runs["slurm"] / "samples" / "generated.root")["label"])
        == TINY["sampling"]["events"]
    )


def test_validation_equals_the_local_run(runs):
    def values(path: Path) -> dict:
        metrics = json.loads((path / "validation" / "metrics.json").read_text())
        metrics.pop("runtime_s")  # wall-clock seconds: the only thing allowed to differ
        return metrics

    assert values(runs["slurm"]) == values(runs["local"])
