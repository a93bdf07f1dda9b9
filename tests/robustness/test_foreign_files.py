"""Preprocessing, model and resume files of another configuration are refused or ignored, never
silently reused; unreadable ones are named.

tests/test_cli.py already refuses a preprocessing file whose config hash differs (train) and a
model trained on other preprocessing (sample); here: other features, another model/training
config, a stale resume checkpoint, and files that are not what their name says.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from hepflows import checkpoint, config
from hepflows.errors import InputError

from .conftest import TINY, Pipeline, assert_names, files_in, run_step

OTHER_FEATURES = dict(TINY, features=TINY["features"][:-1])
ONE_EPOCH = dict(TINY, training=dict(TINY["training"], epochs=1))


def _train_args(p: Pipeline, pre: Path, out: Path) -> list[object]:
    return [
        "--train",
        p.path("train"),
        "--val",
        p.path("val"),
        "--preprocess",
        pre,
        "--model",
        out / "model.pt",
        "--log",
        out / "log.csv",
    ]


def _sample_args(model: Path, pre: Path, out: Path) -> list[object]:
    return ["--model", model, "--preprocess", pre, "--out", out / "gen.root", "--events", 500]


@pytest.fixture(scope="module")
def foreign(pipeline, tmp_path_factory) -> dict[str, Path]:
    """Files made by the steps under other configs, from the pipeline's data."""
    d = tmp_path_factory.mktemp("foreign")
    assert (
        run_step(
            "preprocess",
            "--train",
            pipeline.path("train"),
            "--out",
            d / "pre5.json",
            settings=OTHER_FEATURES,
        )
        == 0
    )
    five = dict(OTHER_FEATURES, training=ONE_EPOCH["training"])
    assert (
        run_step("train", *_train_args(pipeline, d / "pre5.json", d / "five"), settings=five) == 0
    )
    assert (
        run_step(
            "train",
            *_train_args(pipeline, pipeline.path("preprocess"), d / "short"),
            settings=ONE_EPOCH,
        )
        == 0
    )
    return {
        "pre5": d / "pre5.json",
        "model5": d / "five" / "model.pt",
        "model_1_epoch": d / "short" / "model.pt",
    }


def test_preprocessing_of_other_features_is_refused(pipeline, foreign, tmp_path, caplog):
    out = tmp_path / "out"
    expected = str(TINY["features"])
    with caplog.at_level(logging.ERROR):
        assert run_step("train", *_train_args(pipeline, foreign["pre5"], out), settings=TINY) == 2
        assert_names(caplog.text, [str(foreign["pre5"]), "fitted for features", expected])
        caplog.clear()
        assert (
            run_step(
                "sample", *_sample_args(pipeline.path("model"), foreign["pre5"], out), settings=TINY
            )
            == 2
        )
        assert_names(caplog.text, [str(foreign["pre5"]), "fitted for features", expected])
    assert files_in(out) == []


def test_model_of_other_features_is_refused(pipeline, foreign, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = run_step(
            "sample",
            *_sample_args(foreign["model5"], pipeline.path("preprocess"), out),
            settings=TINY,
        )
    assert code == 2
    assert_names(
        caplog.text,
        [
            str(foreign["model5"]),
            "trained on features",
            str(OTHER_FEATURES["features"]),
            str(TINY["features"]),
        ],
    )
    assert files_in(out) == []


def test_model_checks_the_config_hash_it_was_trained_with(pipeline, foreign):
    """The library refuses a model of another training config when given the expected hash."""
    cfg = config.validate(TINY)
    expected = config.section_hash(cfg, config.MODEL_SECTIONS)
    checkpoint.load_model(pipeline.path("model"), config_hash=expected)  # its own: accepted
    with pytest.raises(InputError) as err:
        checkpoint.load_model(foreign["model_1_epoch"], config_hash=expected)
    assert_names(
        str(err.value),
        [str(foreign["model_1_epoch"]), "config hash", expected, "another configuration"],
    )


def test_sample_refuses_a_model_of_another_training_config(pipeline, foreign, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = run_step(
            "sample",
            *_sample_args(foreign["model_1_epoch"], pipeline.path("preprocess"), out),
            settings=TINY,
        )
    assert code == 2
    assert_names(caplog.text, [str(foreign["model_1_epoch"]), "config hash"])
    assert files_in(out) == []


def test_stale_resume_checkpoint_of_another_config_is_ignored(pipeline, tmp_path, caplog):
    """A resume file left by another config must not leak into this run's weights."""
    from hepflows.flows import build_flow
    from hepflows.training import Dataset, Trainer

    out = tmp_path / "out"
    out.mkdir()
    stale = out / "model.resume.pt"
    data = Dataset(torch.zeros(64, 6), torch.zeros(64, 1))
    other = Trainer(
        build_flow(TINY["model"], 6, 1),
        data,
        data,
        config.validate(ONE_EPOCH)["training"],
        seed=9,
        resume_path=stale,
        log_path=out / "other.csv",
        config_hash="another-config",
        progress=False,
    )
    other.save_checkpoint()
    with caplog.at_level(logging.INFO):
        assert (
            run_step(
                "train", *_train_args(pipeline, pipeline.path("preprocess"), out), settings=TINY
            )
            == 0
        )
    assert_names(caplog.text, [str(stale), "ignoring", "another configuration"])
    assert "resumed" not in caplog.text
    ours = checkpoint.read(out / "model.pt")["state_dict"]
    reference = checkpoint.read(pipeline.path("model"))["state_dict"]
    for name, tensor in reference.items():
        assert torch.equal(ours[name], tensor), name
    assert not stale.exists(), "the resume checkpoint is removed after a finished run"


def test_unreadable_files_are_named(pipeline, tmp_path, caplog):
    out = tmp_path / "out"
    text_model = tmp_path / "text.pt"
    text_model.write_text("not a checkpoint")
    resume_as_model = tmp_path / "resume.pt"
    checkpoint.save(resume_as_model, {"model_state": {}, "epoch": 1})
    cut_pre = tmp_path / "cut.json"
    cut_pre.write_text(pipeline.path("preprocess").read_text()[:200])
    partial_pre = tmp_path / "partial.json"
    partial_pre.write_text(json.dumps({"features": TINY["features"], "margin": 0.05}))
    cases = [
        (
            "sample",
            _sample_args(text_model, pipeline.path("preprocess"), out),
            [str(text_model), "not a readable checkpoint"],
        ),
        (
            "sample",
            _sample_args(resume_as_model, pipeline.path("preprocess"), out),
            [str(resume_as_model), "not a hepflows model file", "'state_dict'"],
        ),
        (
            "sample",
            _sample_args(pipeline.path("model"), cut_pre, out),
            [str(cut_pre), "not valid JSON"],
        ),
        (
            "train",
            _train_args(pipeline, partial_pre, out),
            [str(partial_pre), "malformed preprocessing parameters", "'low'"],
        ),
    ]
    for step, args, words in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert run_step(step, *args, settings=TINY) == 2, words
        assert_names(caplog.text, words)
        assert files_in(out) == []


def test_corrupt_resume_checkpoint_is_named(pipeline, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.resume.pt").write_bytes(b"PK\x03\x04 cut short")
    with caplog.at_level(logging.ERROR):
        assert (
            run_step(
                "train", *_train_args(pipeline, pipeline.path("preprocess"), out), settings=TINY
            )
            == 2
        )
    assert_names(
        caplog.text,
        [
            str(out / "model.resume.pt"),
            "not a readable checkpoint",
            "delete it to start training afresh",
        ],
    )
    assert sorted(files_in(out)) == ["model.resume.pt"]  # left for the user to inspect
    shutil.rmtree(out)
