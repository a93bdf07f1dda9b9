"""The preprocessing file's integrity: its parameters are checked against their hash, values
no fit produces (zero std, swapped range) are refused, a model is never used with parameters
other than those it was trained on, and a validation split left with no events names its file."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from hepflows import preprocess
from hepflows.errors import InputError

from .conftest import TINY, Pipeline, assert_names, files_in, run_step


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(1)
    pre = preprocess.fit(rng.exponential(40.0, (500, 2)), ["met", "m_bb"], spike_fraction=None)
    path = tmp_path / "pre.json"
    pre.save(path)
    return path


def _edit(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_saved_file_loads_and_its_metadata_may_change(saved):
    pre = preprocess.Preprocessor.load(saved)
    assert json.loads(saved.read_text())["parameters_hash"] == pre.parameters_hash
    _edit(saved, metadata={"note": "provenance is not a parameter"})
    assert preprocess.Preprocessor.load(saved).parameters_hash == pre.parameters_hash


def test_an_edited_parameter_breaks_the_hash(saved):
    data = json.loads(saved.read_text())
    _edit(saved, mean=[m + 0.5 for m in data["mean"]])
    with pytest.raises(InputError) as err:
        preprocess.Preprocessor.load(saved)
    assert_names(str(err.value), [str(saved), "do not match their hash", "edited or damaged"])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: {"std": [0.0, d["std"][1]]}, ["['met']", "'std' <= 0"]),
        (lambda d: {"low": d["high"], "high": d["low"]}, ["['met', 'm_bb']", "'low' not below"]),
        (lambda d: {"mean": [float("nan"), 0.0]}, ["'mean'", "non-finite"]),
    ],
)
def test_parameters_no_fit_produces_are_refused(saved, change, words):
    data = json.loads(saved.read_text())
    data.pop("parameters_hash")  # as an older file, or one rewritten without it
    data.update(change(data))
    saved.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        preprocess.Preprocessor.load(saved)
    assert_names(str(err.value), [str(saved), *words])


def test_sample_refuses_refitted_preprocessing(pipeline: Pipeline, tmp_path, caplog):
    """Same config (same config hash), other parameters: the model was not trained on them."""
    refit = tmp_path / "refit.json"
    assert (
        run_step("preprocess", "--train", pipeline.path("val"), "--out", refit, settings=TINY) == 0
    )
    out = tmp_path / "out"
    args = ["--model", pipeline.path("model"), "--preprocess", refit, "--out", out / "g.root"]
    with caplog.at_level(logging.ERROR):
        assert run_step("sample", *args, "--events", 500, settings=TINY) == 2
    assert_names(caplog.text, [str(pipeline.path("model")), "preprocessing parameters of hash"])
    assert files_in(out) == []


def test_python_api_refuses_refitted_preprocessing(pipeline: Pipeline, tmp_path):
    """``hepflows.load`` makes the check ``hepflows sample`` makes."""
    import hepflows

    refit = tmp_path / "refit.json"
    assert (
        run_step("preprocess", "--train", pipeline.path("val"), "--out", refit, settings=TINY) == 0
    )
    with pytest.raises(InputError) as err:
        hepflows.load(pipeline.path("model"), preprocess=refit)
    assert_names(str(err.value), [str(pipeline.path("model")), "preprocessing parameters of hash"])


def test_validation_left_empty_names_its_file(pipeline: Pipeline, tmp_path, caplog):
    """Every validation event outside the fitted range: the message names the file."""
    data = json.loads(pipeline.path("preprocess").read_text())
    data.pop("parameters_hash")
    data["high"] = [low + 1e-6 for low in data["low"]]  # a sliver no event falls in
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps(data))
    out = tmp_path / "out"
    args = [
        *("--train", pipeline.path("train"), "--val", pipeline.path("val")),
        *("--preprocess", narrow, "--model", out / "model.pt", "--log", out / "log.csv"),
    ]
    with caplog.at_level(logging.ERROR):
        assert run_step("train", *args, settings=TINY) == 2
    assert_names(caplog.text, [str(pipeline.path("val")), "no validation events are left"])
    assert files_in(out) == []


@pytest.mark.parametrize("slot", ["--truth", "--generated"])
def test_empty_amplification_sample_names_its_file(pipeline: Pipeline, tmp_path, caplog, slot):
    from .test_bad_root import _bad_root

    empty, _ = _bad_root("empty tree", tmp_path)
    files = {"--truth": pipeline.path("truth"), "--generated": pipeline.path("generated")}
    files[slot] = empty
    out = tmp_path / "out"
    args = [*(x for kv in files.items() for x in kv), "--out-dir", out]
    with caplog.at_level(logging.ERROR):
        assert run_step("amplification", *args, settings=TINY) == 2
    assert_names(caplog.text, [str(empty), "0 ", "expected at least one"])
    assert files_in(out) == []
