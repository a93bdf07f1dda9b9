"""One config file, one meaning: ``snakemake --configfile X`` and ``hepflows run --config X``
build the same config hash, the same splits and, on the CPU, the same weights bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import uproot
import yaml
from conftest import copy_workflow, snakemake_env

from hepflows.events.reader import read_events, read_metadata

FEATURES = ["lepton_pt", "met", "m_bb"]


def _ntuple(path: Path, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    cols = {
        "lepton_pt": rng.uniform(20.0, 200.0, n).astype(np.float32),
        "met": rng.exponential(60.0, n).astype(np.float32),
        "m_bb": rng.uniform(20.0, 500.0, n).astype(np.float32),
    }
    with uproot.recreate(path) as f:
        f["events"] = cols


def _config(ntuples: Path) -> dict:
    # No model.permutation and no training.patience: the default config file sets other values
    # than the schema, so a run that merged it under the user's file would differ.  The split
    # is in the file's order, not sorted.
    return {
        "run": "mine",
        "seed": 11,
        "features": FEATURES,
        "data": {
            "source": "root",
            "inputs": [
                {"path": str(ntuples / "bkg.root"), "label": 0},
                {"path": str(ntuples / "sig.root"), "label": 1},
            ],
            "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        },
        "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
        "training": {"epochs": 2, "batch_size": 128, "device": "cpu"},
        "sampling": {"events": 300, "chunk_size": 300},
        "validation": {
            "max_events": 300,
            "n_null": 20,
            "classifier": False,
            "amplification": {"enabled": False},
        },
    }


@pytest.mark.slow
def test_snakemake_and_hepflows_run_agree_on_one_config_file(tmp_path):
    ntuples = tmp_path / "ntuples"
    ntuples.mkdir()
    _ntuple(ntuples / "bkg.root", 1, 900)
    _ntuple(ntuples / "sig.root", 2, 600)
    work = copy_workflow(tmp_path, {"mine": _config(ntuples)})
    env = snakemake_env()
    run = work / "results" / "mine"
    targets = [str(run / "model" / "model.pt"), str(run / "data" / "test.root")]
    smk = subprocess.run(
        [sys.executable, "-m", "snakemake", "--configfile", "config/mine.yaml", "--cores", "1"]
        + [str(Path(t).relative_to(work)) for t in targets],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert smk.returncode == 0, smk.stdout + smk.stderr
    assert "is extended by" not in smk.stdout + smk.stderr  # config/config.yaml stays out
    cli = subprocess.run(
        [sys.executable, "-m", "hepflows.cli", "run", "--quiet"]
        + ["--config", "config/mine.yaml", "--results", "own"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    own = work / "own" / "mine"
    for split in ("train", "val", "test"):
        a = read_events(run / "data" / f"{split}.root", FEATURES)
        b = read_events(own / "data" / f"{split}.root", FEATURES)
        for name in FEATURES:
            np.testing.assert_array_equal(a[name], b[name])
    assert (
        read_metadata(run / "data" / "test.root")["config_hash"]
        == (read_metadata(own / "data" / "test.root")["config_hash"])
    )
    ma = torch.load(run / "model" / "model.pt", weights_only=False)
    mb = torch.load(own / "model" / "model.pt", weights_only=False)
    assert ma["config_hash"] == mb["config_hash"]
    assert ma["model"] == mb["model"]
    assert ma["state_dict"].keys() == mb["state_dict"].keys()
    for key, value in ma["state_dict"].items():
        assert torch.equal(value, mb["state_dict"][key]), key


def test_snakefile_takes_the_users_config_file_alone(tmp_path):
    # a dry run is enough to see which file the workflow reads
    work = copy_workflow(tmp_path, {"mine": {"run": "mine", "training": {"epochs": 1}}})
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/mine.yaml"],
        cwd=work,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "config/config.yaml is extended" not in out.stdout + out.stderr
    # without --configfile the embedded default config is the run
    default = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n"],
        cwd=work,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert default.returncode == 0, default.stdout + default.stderr
    run = yaml.safe_load((work / "config" / "config.yaml").read_text())["run"]
    assert f"results/{run}/" in default.stdout
