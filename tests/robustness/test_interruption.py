"""Killed and restarted steps lose no work and change no result.

Real processes of scripts/train.py and scripts/sample.py (whole, and one shard) are killed while
they work, then run again; the results must be identical (torch.equal, array equality) to the
uninterrupted run of the session's pipeline, and a merge never takes an unfinished shard.
Every process runs with OMP_NUM_THREADS=1, like the pipeline: float results of torch on the CPU
may depend on the thread count (see test_reproducibility.py), and these tests are about
interruption only.

The moment to interrupt is found by polling files, not by sleeping: training is interrupted once
its resumable checkpoint holds a finished epoch (so a later epoch is in progress), sampling once
its temporary output holds a few chunks.  The killed run is a real process; the rerun that
finishes the work runs the same step in this process (``hepflows.cli.main``), which reads only
what the killed process left on disk.
"""

from __future__ import annotations

import csv
import logging
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from hepflows import checkpoint
from hepflows.events.reader import read_events, read_metadata

from .conftest import TINY, Pipeline, files_in, run_step, start_script, wait_until

EPOCHS = TINY["training"]["epochs"]
BATCHES_PER_EPOCH = TINY["data"]["events"]["train"] // TINY["training"]["batch_size"]


def _train_args(p: Pipeline, out: Path) -> list[object]:
    return [
        "--train",
        p.path("train"),
        "--val",
        p.path("val"),
        "--preprocess",
        p.path("preprocess"),
        "--model",
        out / "model.pt",
        "--log",
        out / "log.csv",
    ]


def _position(resume: Path) -> tuple[int, int] | None:
    """(epochs completed, batches into the next) saved in a resume checkpoint, or None."""
    try:
        state = torch.load(resume, map_location="cpu", weights_only=True)["state"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None
    return state["epoch"], state["batch"]


def _epoch_done(resume: Path, log: Path) -> bool:
    """True once the checkpoint holds epoch 1; cheap until the epoch's log line exists."""
    if not log.exists():  # written just before the end-of-epoch checkpoint
        return False
    position = _position(resume)
    return position is not None and position[0] >= 1


def _log_rows(path: Path) -> list[dict]:
    """The training log without its wall-clock column."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _assert_same_model(model: Path, reference: Path) -> None:
    ours, ref = checkpoint.read(model), checkpoint.read(reference)
    assert ours["state_dict"].keys() == ref["state_dict"].keys()
    for name, tensor in ref["state_dict"].items():
        assert torch.equal(ours["state_dict"][name], tensor), name
    assert (ours["epoch"], ours["val_nll"]) == (ref["epoch"], ref["val_nll"])


def _visible(folder: Path) -> list[str]:
    return [name for name in files_in(folder) if not Path(name).name.startswith(".")]


def test_sigkill_mid_epoch_then_rerun_gives_identical_weights(pipeline, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    resume = out / "model.resume.pt"
    process = start_script(
        "train", *_train_args(pipeline, out), settings=TINY, log=tmp_path / "killed.log"
    )
    wait_until(lambda: _epoch_done(resume, out / "log.csv"), process, tmp_path / "killed.log")
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    epoch, _ = _position(resume)
    assert 1 <= epoch < EPOCHS, "the kill must land while training still has epochs to go"
    assert not (out / "model.pt").exists()
    assert len(_log_rows(out / "log.csv")) == epoch

    with caplog.at_level(logging.INFO):
        assert run_step("train", *_train_args(pipeline, out), settings=TINY) == 0
    assert f"resumed from {resume} at epoch {epoch + 1}, batch 0" in caplog.text
    _assert_same_model(out / "model.pt", pipeline.path("model"))
    assert _log_rows(out / "log.csv") == _log_rows(pipeline.path("log"))
    # SIGKILL allows no clean-up: a hidden temporary file of a write in progress may remain.
    assert _visible(out) == ["log.csv", "model.pt"]


def test_sigterm_saves_exits_143_and_resumes_to_identical_weights(pipeline, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    resume = out / "model.resume.pt"
    log = tmp_path / "stopped.log"
    process = start_script("train", *_train_args(pipeline, out), settings=TINY, log=log)
    wait_until(lambda: _epoch_done(resume, out / "log.csv"), process, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143, log.read_text()
    text = log.read_text()
    stopped = re.search(
        r"stopped by signal 15 at epoch (\d+), batch (\d+); checkpoint saved to (\S+)", text
    )
    assert stopped, text
    assert "Traceback" not in text
    epoch, batch = _position(resume)
    assert (int(stopped[1]), int(stopped[2]), stopped[3]) == (epoch + 1, batch, str(resume))
    assert 1 <= epoch < EPOCHS and 0 <= batch < BATCHES_PER_EPOCH
    assert files_in(out) == ["log.csv", "model.resume.pt"]  # a clean exit leaves no temp file

    # The rerun resumes inside the epoch, at the saved batch.
    with caplog.at_level(logging.INFO):
        assert run_step("train", *_train_args(pipeline, out), settings=TINY) == 0
    assert f"resumed from {resume} at epoch {epoch + 1}, batch {batch}" in caplog.text
    _assert_same_model(out / "model.pt", pipeline.path("model"))
    assert _log_rows(out / "log.csv") == _log_rows(pipeline.path("log"))
    assert files_in(out) == ["log.csv", "model.pt"]


# -- sampling --------------------------------------------------------------------------------------
SAMPLE_EVENTS = 400_000  # 200 chunks: long enough to be caught in the middle


def _sample_args(p: Pipeline, out: Path) -> list[object]:
    return [
        "--model",
        p.path("model"),
        "--preprocess",
        p.path("preprocess"),
        "--out",
        out / "gen.root",
        "--events",
        SAMPLE_EVENTS,
    ]


def _partial_output(out: Path) -> bool:
    """A temporary output holding a few chunks (the real file appears only when complete)."""
    return any(p.stat().st_size > 200_000 for p in out.glob(".gen.root.*.tmp"))


@pytest.fixture(scope="module")
def reference_sample(pipeline, tmp_path_factory) -> Path:
    """The uninterrupted sample."""
    out = tmp_path_factory.mktemp("sample_reference")
    assert run_step("sample", *_sample_args(pipeline, out), settings=TINY) == 0
    return out / "gen.root"


def test_killed_sampling_leaves_no_output_and_rerun_is_identical(
    pipeline, reference_sample, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "killed.log"
    process = start_script("sample", *_sample_args(pipeline, out), settings=TINY, log=log)
    wait_until(lambda: _partial_output(out), process, log)
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "gen.root").exists(), "a killed run must not leave a partial output"

    assert run_step("sample", *_sample_args(pipeline, out), settings=TINY) == 0
    ours, reference = read_events(out / "gen.root"), read_events(reference_sample)
    assert ours.keys() == reference.keys()
    for key, values in reference.items():
        assert len(ours[key]) == SAMPLE_EVENTS
        np.testing.assert_array_equal(ours[key], values, err_msg=key)
    assert read_metadata(out / "gen.root") == read_metadata(reference_sample)
    # Chunks are seeded by (seed, chunk): the pipeline's script-made sample is their beginning.
    script_made = read_events(pipeline.path("generated"))
    n = len(script_made["label"])
    for key, values in script_made.items():
        np.testing.assert_array_equal(ours[key][:n], values, err_msg=key)
    # The temporary file of the killed process is all that may remain of it.
    assert _visible(out) == ["gen.root"]
    assert len(files_in(out)) <= 2


def test_sigterm_during_sampling_exits_143_and_cleans_up(pipeline, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "stopped.log"
    process = start_script("sample", *_sample_args(pipeline, out), settings=TINY, log=log)
    wait_until(lambda: _partial_output(out), process, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert files_in(out) == []


# -- shards and their merge --------------------------------------------------------------------------
SHARDED = dict(TINY, sampling=dict(TINY["sampling"], shards=4))  # 4 shards of 100,000 events


def _shard_args(p: Pipeline, out: Path, shard: int) -> list[object]:
    return [
        "--model",
        p.path("model"),
        "--preprocess",
        p.path("preprocess"),
        "--out",
        out / f"shard_{shard}.root",
        "--events",
        SAMPLE_EVENTS,
        "--shard",
        shard,
    ]


def test_killed_shard_rerun_is_identical_and_merge_takes_only_whole_shards(
    pipeline,
    reference_sample,
    tmp_path,
    caplog,
):
    out = tmp_path / "shards"
    out.mkdir()
    log = tmp_path / "killed.log"
    process = start_script("sample", *_shard_args(pipeline, out, 1), settings=SHARDED, log=log)
    wait_until(
        lambda: any(p.stat().st_size > 200_000 for p in out.glob(".shard_1.root.*.tmp")),
        process,
        log,
    )
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "shard_1.root").exists()
    assert run_step("sample", *_shard_args(pipeline, out, 0), settings=SHARDED) == 0

    # A merge of shards must not go ahead while one of them is missing.
    inputs = [out / "shard_0.root", out / "shard_1.root"]
    with caplog.at_level(logging.ERROR):
        assert run_step("merge", "--inputs", *inputs, "--out", out / "merged.root") == 2
    assert str(out / "shard_1.root") in caplog.text
    assert not (out / "merged.root").exists()

    # The rerun shard holds events 100,000..200,000 of the unsharded sample, bit for bit, and
    # the merge of shards 0 and 1 is that sample's first 200,000 events.
    assert run_step("sample", *_shard_args(pipeline, out, 1), settings=SHARDED) == 0
    assert run_step("merge", "--inputs", *inputs, "--out", out / "merged.root") == 0
    reference = read_events(reference_sample)
    shard, merged = read_events(out / "shard_1.root"), read_events(out / "merged.root")
    for key, values in reference.items():
        np.testing.assert_array_equal(shard[key], values[100_000:200_000], err_msg=key)
        np.testing.assert_array_equal(merged[key], values[:200_000], err_msg=key)
