"""Every kind of bad ROOT file in every place a step reads one: exit code 2, a message naming the
file, the place (tree, branch, entry) and what was expected, and no output.

The places: the ntuple given to ``ingest``, the training file of ``preprocess``, the training and
validation files of ``train``, the reference and generated files of ``validate``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepflows.events.writer import write_events

from .conftest import TINY, Pipeline, assert_names, files_in, run_step

FEATURES = TINY["features"]
N = 300


def _good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {f: rng.uniform(1.0, 5.0, N).astype(np.float32) for f in FEATURES}
    arrays["label"] = rng.integers(0, 2, N).astype(np.int8)
    return arrays


def _raw(path: Path, branches: dict, data: dict, tree: str = "events") -> Path:
    """A ROOT file written with uproot directly, to hold what the project's writer refuses."""
    with uproot.recreate(path) as f:
        f.mktree(tree, branches).extend(data)
    return path


def _bad_root(case: str, folder: Path) -> tuple[Path, list[str]]:
    """The bad file of ``case`` and the words (besides its name) its error must contain."""
    good = _good_arrays()
    types = {k: v.dtype for k, v in good.items()}
    path = folder / f"{case.replace(' ', '_')}.root"
    if case == "not ROOT":
        path.write_text("label,met\n1,2.5\n")
        return path, ["not a ROOT file"]
    if case in ("truncated", "truncated header"):
        whole = folder / "whole.root"
        write_events(whole, good)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2] if case == "truncated" else data[:60])
        whole.unlink()
        return path, ["truncated"]
    if case == "missing tree":
        return _raw(path, types, good, tree="ntuple"), ["no tree 'events'", "'ntuple'"]
    if case == "not a tree":
        with uproot.recreate(path) as f:
            f["events"] = "a string, not a tree"
        return path, ["'events' is a TObjString", "expected a TTree"]
    if case == "missing branch":
        del good["m_bb"], types["m_bb"]
        return _raw(path, types, good), ["lacks branch(es) ['m_bb']"]
    if case == "jagged branch":
        types["met"] = "var * float32"
        good["met"] = ak.Array([[1.0, 2.0]] * N)
        return _raw(path, types, good), [
            "['met']",
            "several values per event",
            "expected one number",
        ]
    if case == "array branch":
        types["met"] = np.dtype((np.float32, (3,)))
        good["met"] = np.ones((N, 3), np.float32)
        return _raw(path, types, good), ["met (fixed-size array (3,))", "expected one number"]
    if case == "wrong dtype":
        types["met"] = "string"
        good["met"] = ak.Array(["1.5"] * N)
        return _raw(path, types, good), ["met", "not numeric", "expected integer or floating-point"]
    if case == "bad labels":
        good["label"][2] = 3
        return _raw(path, types, good), ["'label'", "entry 2", "value 3", "other than 0 or 1"]
    if case == "NaN":
        good["met"][5] = np.nan
        return _raw(path, types, good), ["'met'", "entry 5", "NaN or Inf", "expected finite"]
    if case == "empty tree":
        return _raw(path, types, {k: v[:0] for k, v in good.items()}), ["0 event"]
    raise AssertionError(case)


CASES = [
    "not ROOT",
    "truncated",
    "truncated header",
    "missing tree",
    "not a tree",
    "missing branch",
    "jagged branch",
    "array branch",
    "wrong dtype",
    "bad labels",
    "NaN",
    "empty tree",
]
SLOTS = [
    "ingest",
    "preprocess",
    "train --train",
    "train --val",
    "validate --reference",
    "validate --generated",
]


def _step_args(slot: str, bad: Path, good: Pipeline, out: Path) -> tuple[str, list[object], dict]:
    """Step, arguments and settings that put ``bad`` in ``slot`` and valid files elsewhere."""
    if slot == "ingest":
        settings = dict(TINY, data={"source": "root", "path": str(bad)})
        return (
            "ingest",
            ["--train", out / "train.root", "--val", out / "val.root", "--test", out / "test.root"],
            settings,
        )
    if slot == "preprocess":
        return "preprocess", ["--train", bad, "--out", out / "pre.json"], TINY
    if slot.startswith("train"):
        files = {"--train": good.path("train"), "--val": good.path("val")}
        files[slot.split()[1]] = bad
        return (
            "train",
            [
                "--train",
                files["--train"],
                "--val",
                files["--val"],
                "--preprocess",
                good.path("preprocess"),
                "--model",
                out / "model.pt",
                "--log",
                out / "log.csv",
            ],
            TINY,
        )
    files = {"--reference": good.path("test"), "--generated": good.path("generated")}
    files[slot.split()[1]] = bad
    return (
        "validate",
        [
            "--reference",
            files["--reference"],
            "--generated",
            files["--generated"],
            "--out-dir",
            out / "validation",
        ],
        TINY,
    )


PAIRS = [(c, s) for c in CASES for s in SLOTS]


@pytest.mark.parametrize(("case", "slot"), PAIRS)
def test_bad_root_is_named_and_nothing_written(case, slot, pipeline, tmp_path, caplog):
    bad, words = _bad_root(case, tmp_path)
    if case == "empty tree":
        # ingest names the file; elsewhere see test_empty_input_names_the_file
        words = [str(bad), "tree 'events' has no entries"] if slot == "ingest" else words
    else:
        words = [str(bad), *words]
    out = tmp_path / "out"
    step, args, settings = _step_args(slot, bad, pipeline, out)
    with caplog.at_level(logging.ERROR):
        code = run_step(step, *args, settings=settings)
    assert code == 2
    assert_names(caplog.text, words)
    assert files_in(out) == []


@pytest.mark.parametrize("slot", ["preprocess", "train --train", "train --val"])
def test_empty_input_names_the_file(slot, pipeline, tmp_path, caplog):
    bad, _ = _bad_root("empty tree", tmp_path)
    out = tmp_path / "out"
    step, args, settings = _step_args(slot, bad, pipeline, out)
    with caplog.at_level(logging.ERROR):
        assert run_step(step, *args, settings=settings) == 2
    assert_names(caplog.text, [str(bad), "0 event"])


def test_ntuple_without_a_feature_is_caught_at_ingest(tmp_path, caplog):
    """With an empty data.branch_map every configured feature is looked for under its own name:
    the missing one stops ingest, naming the feature, the branch and the file; nothing written."""
    bad, _ = _bad_root("missing branch", tmp_path)
    out = tmp_path / "out"
    step, args, settings = _step_args("ingest", bad, None, out)
    with caplog.at_level(logging.ERROR):
        assert run_step(step, *args, settings=settings) == 2
    assert_names(caplog.text, [str(bad), "lacks branch(es) ['m_bb']", "feature 'm_bb'"])
    assert files_in(out) == []


def test_explicit_branch_map_names_the_missing_branch(tmp_path, caplog):
    bad, _ = _bad_root("missing branch", tmp_path)
    out = tmp_path / "out"
    branch_map = {f: f for f in FEATURES}
    settings = dict(TINY, data={"source": "root", "path": str(bad), "branch_map": branch_map})
    with caplog.at_level(logging.ERROR):
        code = run_step(
            "ingest",
            "--train",
            out / "train.root",
            "--val",
            out / "val.root",
            "--test",
            out / "test.root",
            settings=settings,
        )
    assert code == 2
    assert_names(caplog.text, [str(bad), "lacks branch(es) ['m_bb']"])
    assert files_in(out) == []
