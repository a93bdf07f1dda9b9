"""Every step's script on its own, on tiny inputs: outputs, exit codes and error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import flat_paths, step_args

from hepflows.events.reader import read_events, read_metadata

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args, settings: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--quiet"]
    if settings is not None:
        cmd += ["--settings", json.dumps(settings)]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """Run generate -> preprocess -> train -> sample once; return the folder and settings."""
    settings = {
        "seed": 3,
        "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"],
        "data": {"events": {"train": 2000, "val": 500, "test": 1000}},
        "model": {"coupling": "rq_spline", "blocks": 2, "hidden": [16, 16], "bins": 4},
        "training": {"epochs": 2, "batch_size": 256, "device": "cpu"},
        "sampling": {"events": 900, "chunk_size": 400},
    }
    d = tmp_path_factory.mktemp("steps")
    p = flat_paths(d)
    plot = {"train": ["--plot", d / "curve"]}
    runs = [
        script(step, *step_args(step, p), *plot.get(step, []), settings=settings)
        for step in ("generate", "preprocess", "train", "sample")
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return d, settings, runs


def test_each_step_writes_its_outputs(steps):
    d, settings, runs = steps
    events = {
        split: read_events(d / f"{split}.root", settings["features"])
        for split in ("train", "val", "test")
    }
    for split, n in settings["data"]["events"].items():
        assert len(events[split]["label"]) == n
    # The splits are disjoint ranges of one stream, not copies.
    assert not np.array_equal(events["train"]["m_jj"][:500], events["val"]["m_jj"])
    pre = json.loads((d / "pre.json").read_text())
    assert pre["features"] == settings["features"] and len(pre["config_hash"]) == 16
    assert len((d / "log.csv").read_text().splitlines()) == 3
    assert (d / "curve.png").exists() and (d / "curve.pdf").exists()
    assert not (d / "model.resume.pt").exists(), "the resume checkpoint is removed after success"
    generated = read_events(d / "gen.root", settings["features"])
    assert len(generated["label"]) == 900
    meta = read_metadata(d / "gen.root")
    assert {"hepflows_version", "git_commit", "config_hash", "seed"} <= set(meta)
    assert "training on cpu" in runs[2].stderr


def test_sample_is_reproducible(steps, tmp_path):
    d, settings, _ = steps
    again = script(
        "sample",
        "--model",
        d / "model.pt",
        "--preprocess",
        d / "pre.json",
        "--out",
        tmp_path / "again.root",
        settings=settings,
    )
    assert again.returncode == 0, again.stderr
    a = read_events(d / "gen.root", settings["features"])
    b = read_events(tmp_path / "again.root", settings["features"])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_sample_precision_auto_is_float32_on_the_cpu_and_bf16_can_be_forced(steps, tmp_path):
    d, settings, _ = steps
    assert read_metadata(d / "gen.root")["precision"] == "float32"  # auto, on the CPU
    forced = script(
        "sample",
        "--model",
        d / "model.pt",
        "--preprocess",
        d / "pre.json",
        "--out",
        tmp_path / "bf16.root",
        "--precision",
        "bf16",
        settings=settings,
    )
    assert forced.returncode == 0, forced.stderr
    assert "in bf16" in forced.stderr
    assert read_metadata(tmp_path / "bf16.root")["precision"] == "bf16"
    a = read_events(d / "gen.root", settings["features"])
    b = read_events(tmp_path / "bf16.root", settings["features"])
    np.testing.assert_array_equal(a["label"], b["label"])  # the same seeds, other rounding
    assert not np.array_equal(a["m_jj"], b["m_jj"])
    assert np.median(np.abs(a["m_jj"] - b["m_jj"]) / np.abs(a["m_jj"])) < 0.05


def test_missing_input_is_named_and_nothing_written(steps, tmp_path):
    _, settings, _ = steps
    run = script(
        "preprocess",
        "--train",
        tmp_path / "nope.root",
        "--out",
        tmp_path / "pre.json",
        settings=settings,
    )
    assert run.returncode == 2
    assert "nope.root" in run.stderr
    assert not (tmp_path / "pre.json").exists()


def test_model_from_another_config_is_refused(steps, tmp_path):
    d, settings, _ = steps
    other = dict(settings, preprocess={"margin": 0.2})
    assert (
        script(
            "preprocess",
            "--train",
            d / "train.root",
            "--out",
            tmp_path / "pre.json",
            settings=other,
        ).returncode
        == 0
    )
    run = script(
        "sample",
        "--model",
        d / "model.pt",
        "--preprocess",
        tmp_path / "pre.json",
        "--out",
        tmp_path / "gen.root",
        settings=other,
    )
    assert run.returncode == 2
    assert "model.pt" in run.stderr and "preprocessing hash" in run.stderr
    assert not (tmp_path / "gen.root").exists()
    run = script(
        "train",
        "--train",
        d / "train.root",
        "--val",
        d / "val.root",
        "--preprocess",
        d / "pre.json",
        "--model",
        tmp_path / "m.pt",
        "--log",
        tmp_path / "l.csv",
        settings=other,
    )
    assert run.returncode == 2
    assert "pre.json" in run.stderr and "config hash" in run.stderr
    assert not (tmp_path / "m.pt").exists()


def test_bad_settings_exit_2_naming_key(tmp_path):
    run = script(
        "generate",
        "--train",
        tmp_path / "a.root",
        "--val",
        tmp_path / "b.root",
        "--test",
        tmp_path / "c.root",
        settings={"data": {"events": {"train": -5}}},
    )
    assert run.returncode == 2
    assert "data.events.train" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_of_every_script():
    for name in ("generate", "ingest", "preprocess", "train", "sample", "validate"):
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0 and "--settings" in run.stdout


def test_unconditional_model_is_validated_as_one_class(steps, tmp_path):
    d, settings, _ = steps
    plain = dict(settings, training=dict(settings["training"], conditional=False))
    for name, *args in (
        (
            "train",
            "--train",
            d / "train.root",
            "--val",
            d / "val.root",
            "--preprocess",
            d / "pre.json",
            "--model",
            tmp_path / "m.pt",
            "--log",
            tmp_path / "log.csv",
        ),
        (
            "sample",
            "--model",
            tmp_path / "m.pt",
            "--preprocess",
            d / "pre.json",
            "--out",
            tmp_path / "gen.root",
        ),
        (
            "validate",
            "--reference",
            d / "test.root",
            "--generated",
            tmp_path / "gen.root",
            "--train",
            d / "train.root",
            "--out-dir",
            tmp_path / "val",
        ),
    ):
        run = script(
            name, *args, settings=dict(plain, validation={"max_events": 400, "classifier": False})
        )
        assert run.returncode == 0, run.stderr
    assert "no labels" in run.stderr
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert "signal" not in metrics["slices"]
    assert (tmp_path / "val" / "closure.csv").read_text() == "check,value,error\n"


def test_validation_events_outside_the_fitted_range_are_left_out(steps, tmp_path, caplog):
    # One validation event far beyond the training range would be clipped to its edge, where
    # the flow's density is an extrapolation; early stopping must not watch it.
    from hepflows import preprocess
    from hepflows.events.writer import write_events
    from hepflows.steps.train import dataset

    d = steps[0]
    pre = preprocess.Preprocessor.load(d / "pre.json")
    events = read_events(d / "val.root", pre.features)
    n = len(events["label"])
    natural = int(
        pre.outside_mask(np.stack([events[f] for f in pre.features], 1)).any(axis=1).sum()
    )
    inside = int(
        np.flatnonzero(
            ~pre.outside_mask(np.stack([events[f] for f in pre.features], 1)).any(axis=1)
        )[0]
    )
    events["m_bb"] = events["m_bb"].copy()
    events["m_bb"][inside] = pre.high[pre.features.index("m_bb")] * 10
    write_events(tmp_path / "val.root", events)
    with caplog.at_level("WARNING"):
        kept = dataset(str(tmp_path / "val.root"), pre, True, "cpu", drop_outside=True)
        clipped = dataset(str(tmp_path / "val.root"), pre, True, "cpu")
    assert len(kept.x) == n - natural - 1 and len(clipped.x) == n
    assert f"{natural + 1} events outside the fitted range left out" in caplog.text


def test_per_process_preprocessing_needs_a_conditional_flow(steps, tmp_path, caplog):
    from hepflows.cli import main

    d, settings, _ = steps
    own = dict(settings, preprocess={"transform": "quantile", "per_process": True})
    plain = dict(own, training=dict(settings["training"], conditional=False))
    pre = tmp_path / "pre.json"

    def step(name: str, config: dict, *args) -> int:
        return main([name, "--quiet", "--settings", json.dumps(config), *map(str, args)])

    with caplog.at_level("ERROR"):
        assert step("preprocess", plain, "--train", d / "train.root", "--out", pre) == 2
        assert "preprocess.per_process" in caplog.text and "training.conditional" in caplog.text
        assert not pre.exists()
        assert step("preprocess", own, "--train", d / "train.root", "--out", pre) == 0
        assert json.loads(pre.read_text())["per_process"] is True
        caplog.clear()
        # a grid model may turn the conditioning off after the shared preprocessing
        args = ("--train", d / "train.root", "--val", d / "val.root", "--preprocess", pre)
        model = tmp_path / "m.pt"
        assert step("train", plain, *args, "--model", model, "--log", tmp_path / "log.csv") == 2
        assert "training.conditional" in caplog.text and not model.exists()


@pytest.mark.slow
def test_hepflows_run_with_quantiles_per_process(tiny_settings, tmp_path):
    import yaml

    from hepflows import checkpoint
    from hepflows.cli import main
    from hepflows.preprocess import Preprocessor

    cfg = dict(tiny_settings, preprocess={"transform": "quantile", "quantiles": 32})
    cfg["preprocess"]["per_process"] = True
    cfg["validation"] = dict(cfg["validation"], amplification={"enabled": False})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(path), "--results", str(tmp_path), "--quiet"]) == 0
    run = tmp_path / "tiny"
    pre = Preprocessor.load(run / "preprocess.json")
    assert pre.per_process and pre.knots.shape == (2, len(pre.features), 32)
    assert checkpoint.read(run / "model" / "model.pt")["context_features"] == 1
    events = read_events(run / "samples" / "generated.root", pre.features)
    x = np.stack([events[f] for f in pre.features], 1)
    assert set(np.unique(events["label"])) == {0, 1} and len(x) == cfg["sampling"]["events"]
    assert np.isfinite(x).all() and ((x >= pre.low) & (x <= pre.high)).all()
    assert (run / "validation" / "metrics.json").exists()
    # judged again without training: the model is reused, the events inside the support
    from hepflows.support import Support

    model = run / "model" / "model.pt"
    stamp = model.stat().st_mtime_ns
    argv = ["run", "--config", str(path), "--results", str(tmp_path), "--quiet"]
    assert main([*argv, "--skip", "generate", "train"]) == 0
    assert model.stat().st_mtime_ns == stamp
    events = read_events(run / "samples" / "generated.root", pre.features)
    x = np.stack([events[f] for f in pre.features], 1)
    assert Support.from_dict(pre.support, pre.features, "run").inside(x).all()


def test_each_step_is_one_function_the_command_calls(steps, tmp_path):
    # The step's home function, called with the settings and paths alone, writes what the
    # script (the command line) wrote: the same preprocessing and the same events.
    from hepflows.settings import Settings
    from hepflows.steps import preprocess, sample

    d, settings, _ = steps
    cfg = Settings.load(None, settings)
    preprocess.run(cfg, train=str(d / "train.root"), out=str(tmp_path / "pre.json"))
    assert json.loads((tmp_path / "pre.json").read_text()) == json.loads(
        (d / "pre.json").read_text()
    )
    sample.run(
        cfg,
        model=str(d / "model.pt"),
        preprocess=str(d / "pre.json"),
        out=str(tmp_path / "gen.root"),
        progress=False,
    )
    mine = read_events(tmp_path / "gen.root", settings["features"])
    theirs = read_events(d / "gen.root", settings["features"])
    for name in settings["features"]:
        np.testing.assert_array_equal(mine[name], theirs[name])


def test_the_layout_names_each_moved_step_by_its_home_function():
    import importlib

    from hepflows import layout

    for name in (
        "generate",
        "ingest",
        "preprocess",
        "train",
        "sample",
        "refine",
        "validate",
        "amplification",
        "compare",
        "summary",
    ):
        module = importlib.import_module(layout.STEPS[name].module)
        assert module.__name__ == f"hepflows.steps.{name}" and callable(module.run), name
