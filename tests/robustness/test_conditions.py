"""A conditional flow generates only the processes (labels) it saw in training: a sampling
fraction that asks for another is refused, naming it."""

from __future__ import annotations

import logging

import pytest

from hepflows import checkpoint
from hepflows.errors import InputError
from hepflows.sampling import check_trained_labels

from .conftest import TINY, Pipeline, assert_names, files_in, run_step


def test_training_records_the_labels_it_saw(pipeline: Pipeline):
    assert checkpoint.read(pipeline.path("model"))["labels"] == [0, 1]


@pytest.mark.parametrize(
    ("fraction", "meta", "unseen"),
    [
        (0.0, {"labels": [1], "signal_fraction": 1.0}, "background (label 0)"),
        (0.3, {"labels": [1], "signal_fraction": 1.0}, "background (label 0)"),
        (1.0, {"labels": [0], "signal_fraction": 0.0}, "signal (label 1)"),
        (0.5, {"signal_fraction": 0.0}, "signal (label 1)"),  # a file without labels
    ],
)
def test_a_label_never_trained_on_is_refused(fraction, meta, unseen):
    with pytest.raises(InputError) as err:
        check_trained_labels(fraction, meta, where="m.pt")
    assert_names(str(err.value), ["m.pt", unseen, "never saw", f"{fraction:g}"])


@pytest.mark.parametrize(
    ("fraction", "meta"),
    [
        (1.0, {"labels": [1], "signal_fraction": 1.0}),
        (0.0, {"labels": [0, 1], "signal_fraction": 0.4}),
        (0.2, {"signal_fraction": 0.4}),
    ],
)
def test_labels_trained_on_are_sampled(fraction, meta):
    check_trained_labels(fraction, meta, where="m.pt")


def test_sample_refuses_background_from_an_all_signal_model(pipeline: Pipeline, tmp_path, caplog):
    """As a model trained on signal events only (its file says so) would be."""
    data = checkpoint.read(pipeline.path("model"))
    signal_only = tmp_path / "signal.pt"
    payload = dict(data, labels=[1], signal_fraction=1.0)
    checkpoint.save(
        signal_only, {k: v for k, v in payload.items() if k not in ("format", "version")}
    )
    out = tmp_path / "out"
    args = ["--model", signal_only, "--preprocess", pipeline.path("preprocess"), "--events", 500]
    settings = dict(TINY, sampling=dict(TINY["sampling"], signal_fraction=0))
    with caplog.at_level(logging.ERROR):
        assert run_step("sample", *args, "--out", out / "g.root", settings=settings) == 2
    assert_names(caplog.text, [str(signal_only), "background (label 0)", "never saw"])
    assert files_in(out) == []
    settings = dict(TINY, sampling=dict(TINY["sampling"], signal_fraction=1))
    assert run_step("sample", *args, "--out", out / "g.root", settings=settings) == 0


def test_python_api_refuses_background_from_an_all_signal_model(pipeline: Pipeline, tmp_path):
    """``hepflows.load(...).sample`` makes the check ``hepflows sample`` makes."""
    import hepflows

    data = checkpoint.read(pipeline.path("model"))
    signal_only = tmp_path / "signal.pt"
    payload = dict(data, labels=[1], signal_fraction=1.0)
    checkpoint.save(
        signal_only, {k: v for k, v in payload.items() if k not in ("format", "version")}
    )
    model = hepflows.load(signal_only, preprocess=pipeline.path("preprocess"))
    with pytest.raises(InputError) as err:
        model.sample(100, seed=1, signal_fraction=0.5)
    assert_names(str(err.value), [str(signal_only), "background (label 0)", "never saw"])
    assert set(model.sample(100, seed=1)["label"].tolist()) == {1}
