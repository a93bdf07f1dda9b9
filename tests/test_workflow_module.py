"""The workflow runs as a Snakemake `module` of another workflow: scripts are found beside the
rules, not beside the outer Snakefile, and outputs land in the outer working directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import copy_workflow, snakemake_env

from hepflows import layout

ROOT = Path(__file__).resolve().parents[1]

OUTER = """configfile: "tiny.yaml"


module hepflows:
    snakefile:
        "../hepflows/Snakefile"
    config:
        config


use rule * from hepflows as hepflows_*
"""


def test_workflow_runs_as_a_module(tmp_path):
    (tmp_path / "hepflows").mkdir()
    copy_workflow(tmp_path / "hepflows")
    outer = tmp_path / "analysis"
    outer.mkdir()
    (outer / "Snakefile").write_text(OUTER)
    (outer / "tiny.yaml").write_text((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    target = layout.run_dir("tiny") / layout.RUN_FILES["preprocess"]
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", str(target)],
        cwd=outer,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (outer / target).stat().st_size > 0
    for split in ("train", "val", "test"):
        assert (outer / layout.run_dir("tiny") / layout.RUN_FILES[split]).is_file()
    assert not (tmp_path / "hepflows" / "results").exists()
