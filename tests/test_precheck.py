"""Errors where the user looks: the config checked before Snakemake builds its DAG, with
hepflows' messages; a failed step's message on the terminal; the selection's syntax hints;
``toys`` only when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot
from conftest import copy_workflow, snakemake_env

from hepflows import config as hepflows_config
from hepflows.errors import InputError
from hepflows.events.selection import Selection
from hepflows.precheck import check_run
from hepflows.settings import Settings


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=work,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ntuple(path: Path) -> Path:
    rng = np.random.default_rng(0)
    cols = {
        name: rng.uniform(1.0, 100.0, 400).astype(np.float32)
        for name in ("lepton_pt", "met", "mbb")
    }
    with uproot.recreate(path) as f:
        f["Nominal"] = cols
    return path


def _ntuple_config(path: str, **data) -> dict:
    return {
        "run": "mine",
        "features": ["lepton_pt", "met", "m_bb"],
        "data": {
            "source": "root",
            "inputs": [{"path": path, "label": 0, "tree": "Nominal"}],
            "branch_map": {"m_bb": "mbb"},
            **data,
        },
        "model": {"blocks": 2, "hidden": [8, 8]},
        "training": {"epochs": 1, "device": "cpu"},
    }


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("lepton_pt > 27 && m_bb < 400", "write & (or and) for &&"),
        ("lepton_pt > 27 || m_bb < 400", "write | (or or) for ||"),
        ("lepton_pt > 27 & m_bb < 400", "& binds tighter than a comparison"),
        ("lepton_pt > 27 | m_bb < 400", "| binds tighter than a comparison"),
    ],
)
def test_selection_syntax_hints(expr, hint):
    with pytest.raises(InputError, match="data.selection") as err:
        Selection(expr)
    assert hint in str(err.value)
    assert "(lepton_pt > 25)" in str(err.value)  # the spelling that works


def test_parenthesised_and_integer_bit_operations_still_parse():
    assert Selection("(lepton_pt > 27) & (m_bb < 400)").names == ("lepton_pt", "m_bb")
    arrays = {"n": np.array([1, 2, 3])}
    assert Selection("(n & 1) == 1").mask(arrays, 3).tolist() == [True, False, True]


def test_check_run_names_the_source_and_the_input_that_matches_nothing(tmp_path):
    cfg = hepflows_config.validate(_ntuple_config(str(tmp_path / "none_*.root")))
    with pytest.raises(InputError, match=r"ana.yaml: data.inputs\[0\]: .*no file matches"):
        check_run(Settings.from_config(cfg), source="ana.yaml")
    _ntuple(tmp_path / "a.root")
    bad_cut = _ntuple_config(str(tmp_path / "a.root"), selection="lepton_pt > 1 && met < 5")
    with pytest.raises(InputError, match="write &"):
        check_run(Settings.from_config(hepflows_config.validate(bad_cut)), source="ana.yaml")


def test_check_run_reads_the_label_branch_the_config_gives(tmp_path):
    # one input labelled, one reading data.label_branch: null, i.e. no label at all
    a, b = _ntuple(tmp_path / "a.root"), _ntuple(tmp_path / "b.root")
    cfg = _ntuple_config(str(a), label_branch=None)
    cfg["data"]["inputs"].append({"path": str(b), "tree": "Nominal"})
    settings = Settings.from_config(hepflows_config.validate(cfg))
    with pytest.raises(InputError, match="ana.yaml: data.inputs: some inputs have a label"):
        check_run(settings, source="ana.yaml")
    # the same inputs with the default label branch pass
    del cfg["data"]["label_branch"]
    check_run(Settings.from_config(hepflows_config.validate(cfg)), source="ana.yaml")


def test_snakemake_reports_config_errors_with_hepflows_messages(tmp_path):
    import yaml

    configs = {
        "nothing": _ntuple_config(str(tmp_path / "none_*.root")),
        "schema": {"run": "x", "training": {"epochs": -1}},
    }
    work = copy_workflow(tmp_path, configs)
    missing = _snakemake(work, "-n", "--configfile", "config/nothing.yaml")
    text = missing.stdout + missing.stderr
    assert missing.returncode == 2, text
    assert "config/nothing.yaml: data.inputs[0]" in text and "no file matches" in text
    assert "MissingInputException" not in text
    schema = _snakemake(work, "-n", "--configfile", "config/schema.yaml")
    text = schema.stdout + schema.stderr
    assert schema.returncode == 2, text
    assert "config/schema.yaml: key training.epochs" in text
    assert 'Snakefile", line' not in text  # hepflows' message, not a traceback into the file
    assert yaml.safe_load((work / "config" / "schema.yaml").read_text())["run"] == "x"


def test_toys_run_only_when_asked(tmp_path):
    own = {"run": "own", "training": {"epochs": 1}}
    work = copy_workflow(tmp_path, {"own": own, "toys": {**own, "toys": {"enabled": True}}})
    assert "rule toys:" not in _snakemake(work, "-n", "--configfile", "config/own.yaml").stdout
    assert "rule toys:" in _snakemake(work, "-n", "--configfile", "config/toys.yaml").stdout
    # the embedded default run asks for them
    assert "rule toys:" in _snakemake(work, "-n").stdout


def test_a_failed_steps_message_is_on_the_terminal(tmp_path):
    path = str(_ntuple(tmp_path / "ana.root"))
    cfg = _ntuple_config(path, branch_map={"m_bb": "mbbb"})  # a typo of the branch
    work = copy_workflow(tmp_path, {"ana": cfg})
    result = _snakemake(work, "--cores", "1", "--configfile", "config/ana.yaml")
    assert result.returncode != 0
    # ingest's own message, from its log, in what the terminal shows
    shown = result.stderr.split("Exiting because a job execution failed")[-1]
    assert "hepflows: a step failed; its log results/mine/logs/ingest.log" in shown, shown
    assert "ERROR hepflows:" in shown and "lacks" in shown and "['mbbb']" in shown, shown
