"""A bad config stops every step at start-up with exit code 2, a message naming the file, the key
and what was expected, and no output; and it stops Snakemake before any job.

The key-by-key checks of ``hepflows.config.validate`` are in tests/test_config.py; here the same
mistakes go through the steps' entry point, written in a YAML file as a user would write them.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_workflow, snakemake_env

from .conftest import assert_names, files_in, run_script, run_step

# (YAML text, words the error must contain besides the file name)
BAD_CONFIGS = {
    "unknown key": ("trainig:\n  epochs: 3\n", ["trainig", "expected one of", "'training'"]),
    "unknown nested key": ("training:\n  epoch: 3\n", ["key training", "'epoch'", "'epochs'"]),
    "wrong type": ("training:\n  epochs: ten\n", ["training.epochs", "'ten'", "integer"]),
    "number read as text": ("training:\n  lr: 1e-3\n", ["training.lr", "number", "1.0e-3"]),
    "negative events": (
        "data:\n  events: {train: -5}\n",
        ["data.events.train", "-5", "minimum of 1"],
    ),
    "negative batch": (
        "training:\n  batch_size: -64\n",
        ["training.batch_size", "-64", "minimum of 2"],
    ),
    "zero chunk": ("sampling:\n  chunk_size: 0\n", ["sampling.chunk_size", "0", "minimum of 1"]),
    "negative sample size": (
        "sampling:\n  events: -1\n",
        ["sampling.events", "-1", "minimum of 1"],
    ),
    "fraction above 1": (
        "data:\n  signal_fraction: 1.5\n",
        ["data.signal_fraction", "1.5", "maximum of 1"],
    ),
    "fraction 0": ("data:\n  signal_fraction: 0\n", ["data.signal_fraction", "minimum of 0"]),
    "split fraction": (
        "data:\n  source: higgs_csv\n  path: h.csv\n  split: {train: 0.8, val: 1.2, test: 0.1}\n",
        ["data.split.val", "1.2", "maximum of 1"],
    ),
    "split sum": (
        "data:\n  source: higgs_csv\n  path: h.csv\n  split: {train: 0.5, val: 0.2, test: 0.2}\n",
        ["data.split", "sum to 1", "0.9"],
    ),
    "zero margin": ("preprocess:\n  margin: 0\n", ["preprocess.margin", "minimum of 0"]),
    "negative sampling fraction": (
        "sampling:\n  signal_fraction: -0.1\n",
        ["sampling.signal_fraction", "-0.1", "minimum of 0"],
    ),
    "unknown feature": (
        "features: [lepton_pt, jet9_pt]\n",
        ["key features", "jet9_pt", "expected names", "m_jj"],
    ),
    "unknown feature set": (
        "features: continous\n",
        ["key features", "'continous'", "'continuous'"],
    ),
    "no features": ("features: []\n", ["key features", "non-empty"]),
    "unknown coupling": ("model:\n  coupling: magic\n", ["model.coupling", "'magic'", "'affine'"]),
    "unknown model key": ("model:\n  blokcs: 3\n", ["model.blokcs", "unknown key", "'blocks'"]),
    "bad hidden sizes": (
        "model:\n  hidden: [0, 16]\n",
        ["model.hidden", "positive integers", "[0, 16]"],
    ),
    "unbuildable model": (
        "features: [met]\nmodel:\n  coupling: affine\n",
        ["model.coupling", "at least 2 features", "['met']"],
    ),
    "not YAML": ("training: [unclosed\n", ["not valid YAML"]),
    "not a mapping": ("- epochs\n- 3\n", ["expected a mapping"]),
}


def _outputs(step: str, folder: Path) -> list[object]:
    """Arguments of ``step`` with inputs that need not exist and outputs inside ``folder``."""
    out = folder / "out"
    return {
        "generate": [
            "--train",
            out / "train.root",
            "--val",
            out / "val.root",
            "--test",
            out / "test.root",
        ],
        "ingest": [
            "--train",
            out / "train.root",
            "--val",
            out / "val.root",
            "--test",
            out / "test.root",
        ],
        "preprocess": ["--train", folder / "train.root", "--out", out / "pre.json"],
        "train": [
            "--train",
            folder / "train.root",
            "--val",
            folder / "val.root",
            "--preprocess",
            folder / "pre.json",
            "--model",
            out / "model.pt",
            "--log",
            out / "log.csv",
        ],
        "sample": [
            "--model",
            folder / "model.pt",
            "--preprocess",
            folder / "pre.json",
            "--out",
            out / "gen.root",
        ],
        "validate": [
            "--reference",
            folder / "test.root",
            "--generated",
            folder / "gen.root",
            "--out-dir",
            out / "validation",
        ],
    }[step]


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_named_and_nothing_written(case, tmp_path, caplog):
    text, words = BAD_CONFIGS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with caplog.at_level(logging.ERROR):
        code = run_step("generate", *_outputs("generate", tmp_path), config=config)
    assert code == 2
    assert_names(caplog.text, [str(config), *words])
    assert files_in(tmp_path / "out") == []


@pytest.mark.parametrize(
    "step", ["generate", "ingest", "preprocess", "train", "sample", "validate"]
)
def test_every_step_checks_the_config_first(step, tmp_path, caplog):
    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  epochs: -1\n")
    with caplog.at_level(logging.ERROR):
        code = run_step(step, *_outputs(step, tmp_path), config=config)
    assert code == 2
    assert_names(caplog.text, [str(config), "training.epochs", "-1", "minimum of 1"])
    assert files_in(tmp_path / "out") == []


def test_missing_config_and_bad_settings_json(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert (
            run_step("generate", *_outputs("generate", tmp_path), config=tmp_path / "missing.yaml")
            == 2
        )
        assert_names(caplog.text, ["missing.yaml", "not found"])
        caplog.clear()
        from hepflows.cli import main

        assert (
            main(["generate", "--settings", "{data: 1", *map(str, _outputs("generate", tmp_path))])
            == 2
        )
        assert_names(caplog.text, ["--settings", "not valid JSON"])
    assert files_in(tmp_path / "out") == []


def test_script_process_exits_2_without_traceback(tmp_path):
    """The real process: exit status 2 and one clear line, not a Python traceback."""
    config = tmp_path / "bad.yaml"
    config.write_text(BAD_CONFIGS["unbuildable model"][0])
    run = run_script("preprocess", "--config", config, *_outputs("preprocess", tmp_path))
    assert run.returncode == 2, run.stderr
    assert_names(run.stderr, ["bad.yaml", "model.coupling", "at least 2 features"])
    assert "Traceback" not in run.stderr
    assert files_in(tmp_path / "out") == []


def test_snakemake_stops_before_any_job(tmp_path):
    """The Snakefile validates with the same code: a model that cannot be built stops a dry run."""
    copy_workflow(
        tmp_path,
        {
            "bad": BAD_CONFIGS["unbuildable model"][0]
            + "data:\n  events: {train: 100, val: 50, test: 50}\n"
        },
    )
    env = snakemake_env()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--configfile",
            "config/bad.yaml",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert_names(output, ["model.coupling", "at least 2 features"])
    assert "Job stats" not in output  # no job was planned, let alone run
    assert not (tmp_path / "results").exists()
