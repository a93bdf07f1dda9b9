"""A grid of models (config ``models:``): one train/sample/validate per model, compared side by side.

The grid runs through Snakemake and through ``hepflows run``; both must give each model the same
weights and events, and a model of the grid equal to the top-level block must be exactly the
model a run without a grid trains.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import copy_workflow, snakemake_env

from hepflows import checkpoint, config
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_events

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "run": "grid",
    "seed": 5,
    "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"],
    "data": {"events": {"train": 2000, "val": 500, "test": 1000}},
    "model": {"coupling": "affine", "blocks": 2, "hidden": [16, 16], "permutation": "lu"},
    "training": {"epochs": 2, "batch_size": 256, "lr": 1.0e-3, "device": "cpu"},
    "sampling": {"events": 1200, "chunk_size": 300, "shards": 2},
    "validation": {
        "max_events": 500,
        "n_null": 20,
        "classifier": True,
        "amplification": {"truth_events": 5000},
    },
}
GRID = {
    "base": {},
    "spline": {
        "model": {"coupling": "rq_autoregressive", "blocks": 1, "hidden": [16]},
        "training": {"lr": 3.0e-3},
    },
}
MODEL_FILES = (
    "model/model.pt",
    "model/training_log.csv",
    "model/training_curve.png",
    "samples/generated.root",
    "samples/shards/shard_1.root",
    "validation/metrics.json",
    "validation/verdict.html",
    "validation/closure.csv",
    "validation/amplification.json",
    "validation/amplification.png",
    "logs/train.log",
    "logs/sample/shard_0.log",
    "logs/amplification.log",
)


def test_grid_entries_merge_over_the_top_level_blocks():
    cfg = config.load(None, dict(BASE, models=GRID))
    assert config.model_names(cfg) == ["base", "spline"]
    base, spline = (config.model_variant(cfg, name) for name in ("base", "spline"))
    assert base["model"] == cfg["model"] and base["training"] == cfg["training"]
    assert spline["model"]["coupling"] == "rq_autoregressive" and spline["model"]["blocks"] == 1
    assert spline["training"]["lr"] == 3.0e-3 and spline["training"]["epochs"] == 2
    # the variants' model hashes differ, the data and preprocessing are shared
    assert config.section_hash(base, config.MODEL_SECTIONS) != config.section_hash(
        spline, config.MODEL_SECTIONS
    )
    assert config.section_hash(base, config.PREPROCESS_SECTIONS) == config.section_hash(
        spline, config.PREPROCESS_SECTIONS
    )
    assert config.model_names(config.load(None, BASE)) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": {"blocks": 0}}, "models.bad: key model.blocks"),
        ({"modle": {}}, "key models.bad: unknown key(s) ['modle']"),
        ({"training": {"epochs": "x"}}, "models.bad: key training.epochs"),
        ({"model": {"coupling": "glow"}}, "models.bad: key model.coupling"),
    ],
)
def test_a_bad_grid_entry_is_named(entry, message):
    with pytest.raises(InputError) as err:
        config.load(None, dict(BASE, models={"good": {}, "bad": entry}))
    assert message in str(err.value)


def test_a_bad_model_name_is_refused():
    with pytest.raises(InputError, match="models"):
        config.load(None, dict(BASE, models={"a/b": {}}))


def _as_snakemake_reads(cfg: dict) -> dict:
    """``cfg`` as Snakemake reads ``--configfile``: alone, as ``hepflows run --config`` does."""
    return dict(cfg)


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--configfile", "config/grid.yaml", *args],
        cwd=work,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        logs = "\n".join(p.read_text() for p in (work / "results").rglob("*.log"))
        pytest.fail(f"snakemake {args} failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    return result


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> Path:
    """The grid run by Snakemake with two cores: results/grid/."""
    work = tmp_path_factory.mktemp("grid")
    copy_workflow(work, {"grid": dict(BASE, models=GRID)})
    _snakemake(work, "--cores", "2")
    return work


def test_every_model_has_its_own_outputs_and_a_row_in_the_comparison(grid_run):
    run = grid_run / "results" / "grid"
    for name in GRID:
        for rel in MODEL_FILES:
            assert (run / "models" / name / rel).stat().st_size > 0, (name, rel)
    assert not (run / "model").exists()  # no stray single-model outputs
    with (run / "comparison" / "models.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list(GRID)
    assert rows[0]["description"].startswith("affine, 2 blocks, 16x16")
    assert rows[1]["description"].startswith("rq_autoregressive, 1 blocks, 16")
    assert "lr 0.003" in rows[1]["description"]
    for r in rows:
        assert int(r["epochs"]) == BASE["training"]["epochs"]
        assert re.fullmatch(r"\d+/18", r["KS outside"]), r["KS outside"]  # 6 features x 3 slices
        assert 0.0 < float(r["classifier AUC"]) < 1.0
        assert r["status"] in ("green", "amber", "red")
        # the amplification columns, from each model's amplification.json
        for column in ("n_equiv features", "n_equiv joint", "G"):
            assert re.fullmatch(r"≥?\d[\d.e+-]*", r[column]), (column, r[column])
        assert float(r["n_equiv features"].lstrip("≥")) > 0
    assert "n<sub>equiv</sub>, joint" in (run / "comparison" / "models.html").read_text()
    # and the same side by side as a figure, in both formats
    for ext in ("png", "pdf"):
        assert (run / "comparison" / f"models.{ext}").stat().st_size > 1000, ext
    html = (run / "comparison" / "models.html").read_text()
    assert "<table" in html and all(f">{name}<" in html for name in GRID)
    # each model was trained with its own settings: the spline's rate is 3x the base's all along
    lr = {
        name: [
            float(r["lr"])
            for r in csv.DictReader((run / "models" / name / "model" / "training_log.csv").open())
        ]
        for name in GRID
    }
    assert lr["spline"][0] == pytest.approx(3 * lr["base"][0]) and lr["base"][0] > 0


def test_the_grid_model_equal_to_the_top_level_block_is_the_single_model(grid_run, tmp_path):
    """Without ``models:`` the same config trains exactly the grid's ``base`` model."""
    cfg_path = tmp_path / "single.yaml"
    cfg_path.write_text(yaml.safe_dump(_as_snakemake_reads(BASE)))
    assert main(["run", "--config", str(cfg_path), "--results", str(tmp_path), "--quiet"]) == 0
    single = checkpoint.read(tmp_path / "grid" / "model" / "model.pt")
    grid = checkpoint.read(grid_run / "results" / "grid" / "models" / "base" / "model" / "model.pt")
    assert grid["config_hash"] == single["config_hash"]
    for key, tensor in single["state_dict"].items():
        assert torch.equal(grid["state_dict"][key], tensor), key
    spline = checkpoint.read(
        grid_run / "results" / "grid" / "models" / "spline" / "model" / "model.pt"
    )
    assert spline["model"]["coupling"] == "rq_autoregressive"


def test_hepflows_run_gives_the_grid_the_same_models_and_events(grid_run, tmp_path):
    cfg_path = tmp_path / "grid.yaml"
    cfg = dict(BASE, models=GRID, sampling=dict(BASE["sampling"], shards=1))
    cfg_path.write_text(yaml.safe_dump(_as_snakemake_reads(cfg)))
    assert main(["run", "--config", str(cfg_path), "--results", str(tmp_path), "--quiet"]) == 0
    for name in GRID:
        ours = tmp_path / "grid" / "models" / name
        theirs = grid_run / "results" / "grid" / "models" / name
        a, b = (
            checkpoint.read(ours / "model" / "model.pt"),
            checkpoint.read(theirs / "model" / "model.pt"),
        )
        for key, tensor in b["state_dict"].items():
            assert torch.equal(a["state_dict"][key], tensor), (name, key)
        # one job of 1200 events is the two shards merged (chunk c is seeded by (seed, c)),
        # though Snakemake's jobs had 2 threads and this process 1
        ev_a = read_events(ours / "samples" / "generated.root")
        ev_b = read_events(theirs / "samples" / "generated.root")
        for key in ev_b:
            np.testing.assert_array_equal(ev_a[key], ev_b[key], err_msg=f"{name}: {key}")
        # the same events, the same truth: the same amplification table
        amp = "validation/amplification.csv"
        assert (ours / amp).read_text() == (theirs / amp).read_text(), name
    assert (tmp_path / "grid" / "data" / "truth.root").exists()
    assert (tmp_path / "grid" / "comparison" / "models.html").exists()


def test_changing_one_model_reruns_only_that_model(grid_run):
    cfg = dict(BASE, models={**GRID, "spline": {**GRID["spline"], "training": {"lr": 2.0e-3}}})
    (grid_run / "config" / "grid.yaml").write_text(yaml.safe_dump(cfg))
    try:
        dry = _snakemake(grid_run, "-n", "--cores", "1")
    finally:
        (grid_run / "config" / "grid.yaml").write_text(yaml.safe_dump(dict(BASE, models=GRID)))
    planned = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    output: (.*)$", dry.stdout, re.M)
    outputs = " ".join(out for _, out in planned)
    assert {rule for rule, _ in planned} >= {"train", "sample", "validate", "compare"}
    assert "models/spline/" in outputs and "models/base/" not in outputs
    assert "data/train.root" not in outputs and "preprocess.json" not in outputs
    assert "Nothing to be done" in _snakemake(grid_run, "-n", "--cores", "1").stdout


def test_report_groups_each_model(grid_run):
    report = grid_run / "report.html"
    _snakemake(grid_run, "--cores", "1", "--report", str(report))
    text = report.read_text(errors="replace")
    assert "models.html" in text
    for name in GRID:
        assert name in text


def test_compare_of_a_missing_model_exits_2_naming_the_file(tmp_path, caplog):
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(yaml.safe_dump(dict(BASE, models=GRID)))
    code = main(
        [
            "compare",
            "--config",
            str(cfg_path),
            "--models",
            str(tmp_path / "base"),
            "--out-dir",
            str(tmp_path / "cmp"),
        ]
    )
    assert code == 2
    assert str(tmp_path / "base" / "validation" / "metrics.json") in caplog.text
    assert not (tmp_path / "cmp").exists()


def test_compare_names_a_broken_metrics_file_or_a_missing_training_log(tmp_path):
    from hepflows.report.compare import model_summary

    (tmp_path / "m" / "validation").mkdir(parents=True)
    (tmp_path / "m" / "validation" / "metrics.json").write_text("{not json")
    with pytest.raises(InputError, match=r"metrics\.json: not valid JSON"):
        model_summary(tmp_path / "m", "m")
    (tmp_path / "m" / "validation" / "metrics.json").write_text("{}")
    with pytest.raises(InputError, match=r"training_log\.csv: not found; run the model's train"):
        model_summary(tmp_path / "m", "m")


def test_an_unknown_model_of_the_grid_is_named():
    cfg = config.load(None, dict(BASE, models=GRID))
    with pytest.raises(
        InputError, match=r"key models: no model 'wide'; the grid has \['base', 'spline'\]"
    ):
        config.model_variant(cfg, "wide")


def test_a_grid_model_is_described_by_its_merged_settings():
    from hepflows.report.compare import describe_model
    from hepflows.settings import Settings

    grid = {
        "spline": {"model": {"coupling": "rq_spline", "bins": 6}},
        "slow": {"training": {"lr": 3e-4, "batch_size": 256}},
        "mog": {"model": {"family": "made_mog", "components": 8, "hidden": [32, 32]}},
    }
    s = Settings.from_config(
        config.validate({"model": {"blocks": 4, "hidden": [64, 64]}, "models": grid})
    )
    described = {name: describe_model(s.variant(name)) for name in grid}
    assert described == {
        "spline": "rq_spline, 4 blocks, 64x64, 6 bins; lr 0.001, batch 512",
        "slow": "affine, 4 blocks, 64x64; lr 0.0003, batch 256",
        "mog": "made_mog, 8 components, 4 blocks, 32x32; lr 0.001, batch 512",
    }
