"""The workflow profiles (workflow/profiles/{default,slurm,htcondor}) as Snakemake reads them.

Parsed with Snakemake's own profile reader, then used for dry runs of a sharded configuration:
every job gets the threads and resources the profile names (GPUs for train and sample).  The
cluster profiles need their executor plugins (``pip install -e '.[cluster]'``) and are skipped
without them; HTCondor has no test pool, so its dry run is its test.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_workflow, snakemake_env

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "workflow" / "profiles"
CONFIG = {
    "run": "profile",
    "features": ["lepton_pt", "met"],
    "data": {"events": {"train": 1000, "val": 300, "test": 300}, "shards": 2},
    "sampling": {"events": 1000, "chunk_size": 250, "shards": 4},
}
#: Rule -> resource that asks for one GPU, per profile.
GPU_KEY = {"default": "gpu", "slurm": "gpu", "htcondor": "request_gpus"}
PLUGIN = {
    "slurm": "snakemake_executor_plugin_slurm",
    "htcondor": "snakemake_executor_plugin_htcondor",
}


def read_profile(name: str, env: dict[str, str] | None = None) -> dict:
    """The profile's settings as Snakemake parses them (yte templating included)."""
    from snakemake.profiles import ProfileConfigFileParser

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with (PROFILES / name / "config.yaml").open() as stream:
            return dict(ProfileConfigFileParser().parse(stream))
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("name", ["default", "slurm", "htcondor"])
def test_profile_deploys_conda_envs_unless_told_not_to(name):
    assert read_profile(name)["software-deployment-method"] == "conda"
    assert "software-deployment-method" not in read_profile(name, {"HEPFLOWS_SDM": "none"})


@pytest.mark.parametrize("name", ["default", "slurm", "htcondor"])
def test_profile_sizes_the_gpu_steps(name):
    profile = read_profile(name)
    assert int(profile["retries"]) >= 1 and int(profile["latency-wait"]) >= 5
    resources = profile["set-resources"]
    for rule in ("train", "sample"):
        assert f"{rule}:{GPU_KEY[name]}=1" in resources
    if name != "default":
        assert profile["executor"] == name
        threads = dict(t.split("=") for t in profile["set-threads"])
        # Every rule whose local threads are "all cores" gets a fixed count on a cluster.
        for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
            for rule in re.findall(
                r"rule (\w+):\n(?:(?!\n\s*rule ).)*?threads: workflow\.cores", smk.read_text(), re.S
            ):
                assert rule in threads, (name, rule)


def _dry_run(tmp_path: Path, profile: str) -> str:
    copy_workflow(tmp_path, {"profile": CONFIG})
    env = snakemake_env(HEPFLOWS_SDM="none")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            "config/profile.yaml",
            "--workflow-profile",
            f"workflow/profiles/{profile}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _jobs(out: str) -> list[tuple[str, str]]:
    """(rule, resources line) of every job in a dry run's output."""
    return re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.M)


@pytest.mark.parametrize("name", ["default", "slurm", "htcondor"])
def test_dry_run_through_the_profile(tmp_path, name):
    if name in PLUGIN and importlib.util.find_spec(PLUGIN[name]) is None:
        pytest.skip(f"{PLUGIN[name]} is not installed (pip install -e '.[cluster]')")
    out = _dry_run(tmp_path, name)
    jobs = _jobs(out)
    rules = [rule for rule, _ in jobs]
    assert rules.count("sample") == 4 and rules.count("generate") == 6 and "merge_samples" in rules
    for rule, resources in jobs:
        asks_gpu = f"{GPU_KEY[name]}=1" in resources.split(", ")
        assert asks_gpu == (rule in ("train", "sample")), (rule, resources)
    if name == "slurm":
        train = next(res for rule, res in jobs if rule == "train")
        assert "mem_mb=16000" in train and "runtime=720" in train
