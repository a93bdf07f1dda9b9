"""Model and resume files are data, never code: a pickle built to run a command when it is
opened is refused before anything in it runs, whether it comes as the model to sample from, as a
resume file beside a model being trained, or as a raw pickle with a ``.pt`` name.  An old-format
file is refused with the way to convert it, and the conversion (for trusted files) works.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import torch

from hepflows import checkpoint
from hepflows.errors import InputError

from .conftest import TINY, Pipeline, assert_names, files_in, run_step


class RunsCode:
    """Unpickling this calls ``os.system`` (which creates the marker file): what an attacker
    would put in a shared model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class ExecsCode:
    """The same through ``builtins.exec``: a Python statement that writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _malicious(kind: str, path: Path, marker: Path) -> Path:
    payload = {"state_dict": RunsCode(marker), "config_hash": ExecsCode(marker), "epoch": 1}
    if kind == "torch":
        torch.save(payload, path)
    else:  # a bare pickle: protocol 2 as torch's legacy format, or a newer one
        path.write_bytes(pickle.dumps(payload, protocol=int(kind.removeprefix("pickle"))))
    return path


@pytest.mark.parametrize("kind", ["torch", "pickle2", "pickle4"])
def test_reading_a_malicious_checkpoint_runs_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    path = _malicious(kind, tmp_path / "model.pt", marker)
    with pytest.raises(InputError) as err:
        checkpoint.read(path)
    assert not marker.exists(), "unpickling ran the file's code"
    if kind == "pickle4":  # its framing is refused before any global is looked up
        assert_names(str(err.value), [str(path), "not a readable checkpoint"])
    else:
        assert_names(str(err.value), [str(path), "could run code", "convert-checkpoint --trust"])


def test_sample_refuses_a_malicious_model(pipeline: Pipeline, tmp_path, caplog):
    marker, out = tmp_path / "ran", tmp_path / "out"
    model = _malicious("torch", tmp_path / "model.pt", marker)
    args = ["--model", model, "--preprocess", pipeline.path("preprocess")]
    with caplog.at_level(logging.ERROR):
        assert run_step("sample", *args, "--out", out / "gen.root", settings=TINY) == 2
    assert not marker.exists(), "sampling ran the model file's code"
    assert_names(caplog.text, [str(model), "could run code"])
    assert files_in(out) == []


def test_train_refuses_a_malicious_resume_file_beside_the_model(
    pipeline: Pipeline, tmp_path, caplog
):
    marker, out = tmp_path / "ran", tmp_path / "out"
    out.mkdir()
    resume = _malicious("torch", out / "model.resume.pt", marker)
    args = [
        *("--train", pipeline.path("train"), "--val", pipeline.path("val")),
        *("--preprocess", pipeline.path("preprocess")),
        *("--model", out / "model.pt", "--log", out / "log.csv"),
    ]
    with caplog.at_level(logging.ERROR):
        assert run_step("train", *args, settings=TINY) == 2
    assert not marker.exists(), "training ran the resume file's code"
    assert_names(caplog.text, [str(resume), "could run code", "delete it"])
    assert files_in(out) == ["model.resume.pt"]  # left for the user to inspect


def test_old_format_model_is_refused_and_converts_when_trusted(
    pipeline: Pipeline, tmp_path, caplog
):
    """A model written by an older hepflows (no format mark) names the conversion; the
    conversion needs --trust and gives a file that samples like the original."""
    data = checkpoint.read(pipeline.path("model"))
    old = tmp_path / "old.pt"
    torch.save({k: v for k, v in data.items() if k != "format"}, old)
    new, out = tmp_path / "new.pt", tmp_path / "out"
    pre = pipeline.path("preprocess")
    with caplog.at_level(logging.ERROR):
        assert (
            run_step(
                "sample",
                "--model",
                old,
                "--preprocess",
                pre,
                "--out",
                out / "g.root",
                settings=TINY,
            )
            == 2
        )
    assert_names(caplog.text, [str(old), "older hepflows format", "convert-checkpoint --trust"])
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert run_step("convert-checkpoint", old, new) == 2
    assert_names(caplog.text, [str(old), "--trust"])
    assert not new.exists()
    assert run_step("convert-checkpoint", "--trust", old, new) == 0
    converted = checkpoint.read(new)
    for key, tensor in data["state_dict"].items():
        assert torch.equal(converted["state_dict"][key], tensor), key
    args = ["--model", new, "--preprocess", pre, "--out", out / "g.root", "--events", 500]
    assert run_step("sample", *args, settings=TINY) == 0


def test_convert_turns_numpy_values_into_plain_data(tmp_path):
    import numpy as np

    old = tmp_path / "old.pt"
    torch.save({"rng": np.arange(3), "best": np.float64(1.5), "x": (np.int64(2), [1])}, old)
    checkpoint.convert_trusted(old, tmp_path / "new.pt")
    data = checkpoint.read(tmp_path / "new.pt")
    assert torch.equal(data["rng"], torch.arange(3))
    assert data["best"] == 1.5 and type(data["best"]) is float
    assert data["x"] == (2, [1]) and type(data["x"][0]) is int
