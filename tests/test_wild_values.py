"""Wild values (finite, absurd for their feature: a met of 1e38) are refused by ingest, naming
file, branch and entry, or dropped and counted with data.wild_values: drop; the preprocessing's
range ignores them, so one event cannot stretch it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import uproot

from hepflows import preprocess
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_metadata
from hepflows.events.wild import WildValueGuard, robust_scale, wild_mask

FEATURES = ["lepton_pt", "met", "m_bb"]
SPLITS = ("train", "val", "test")


def _ntuple(path: Path, n: int, wild: dict[int, float], seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    met = rng.exponential(40.0, n).astype(np.float32)
    for entry, value in wild.items():
        met[entry] = value
    cols = {
        "lepton_pt": rng.uniform(25.0, 100.0, n).astype(np.float32),
        "met": met,
        "m_bb": rng.uniform(0.0, 800.0, n).astype(np.float32),
    }
    with uproot.recreate(path) as f:
        f.mktree("events", {k: v.dtype for k, v in cols.items()}).extend(cols)
    return path


def _ingest(src: Path, out: Path, **data) -> int:
    settings = {
        "seed": 5,
        "features": FEATURES,
        "data": {"source": "root", "path": str(src), "label_branch": None, **data},
    }
    outputs = [x for k in ("train", "val", "test") for x in (f"--{k}", str(out / f"{k}.root"))]
    return main(["ingest", "--quiet", "--settings", json.dumps(settings), *outputs])


@pytest.mark.parametrize("entry", [0, 2500])
def test_ingest_refuses_a_wild_value_naming_file_branch_and_entry(tmp_path, caplog, entry):
    src = _ntuple(tmp_path / "in.root", 3000, {entry: 1e38})
    with caplog.at_level(logging.ERROR):
        assert _ingest(src, tmp_path / "out") == 2
    for word in (str(src), "branch 'met'", f"entry {entry}", "1e+38", "wild_values: drop"):
        assert word in caplog.text, (word, caplog.text)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ingest_drops_and_counts_wild_values_when_asked(tmp_path):
    src = _ntuple(tmp_path / "in.root", 3000, {3: 1e38, 1700: -3e30})
    out = tmp_path / "out"
    assert _ingest(src, out, wild_values="drop") == 0
    met = np.concatenate(
        [uproot.open(out / f"{k}.root")["events"]["met"].array(library="np") for k in SPLITS]
    )
    assert len(met) == 2998 and np.abs(met).max() < 1e4
    assert read_metadata(out / "train.root")["wild_values_dropped"] == 2


def test_heavy_tails_are_not_wild():
    """A physical tail (log-normal, Landau-like) is far inside 1e6 robust scales."""
    rng = np.random.default_rng(0)
    for values in (rng.lognormal(3.0, 1.5, 10**6), rng.standard_cauchy(10**5) + 50):
        assert not wild_mask(values, *robust_scale(values)).any()
    # mostly zeros (a jet that is often absent): its 99.9 % quantile sets the scale
    mostly_zero = np.where(rng.uniform(size=10**4) < 0.9, 0.0, rng.exponential(30.0, 10**4))
    assert robust_scale(mostly_zero)[1] > 0
    assert not wild_mask(mostly_zero, *robust_scale(mostly_zero)).any()


def test_guard_refuses_or_drops():
    entries = np.arange(100, 110, dtype=np.uint64)
    raw = {"met": np.array([10.0, 20, 30, 1e20, 15, 25, 35, 12, 22, 32])}
    with pytest.raises(InputError, match="entry 103"):
        WildValueGuard({"met": "feature 'met'"}).keep(raw, entries, "f.root", "branch")
    guard = WildValueGuard({"met": "feature 'met'"}, "drop")
    assert guard.keep(raw, entries, "f.root", "branch").tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert guard.dropped == 1
    with pytest.raises(InputError, match="data.wild_values"):
        WildValueGuard({}, "ignore")


def test_guard_streams_its_statistics_over_chunks():
    """A chunk of one event (all the statistics of a chunk alone would be the wild value)
    is judged by the values seen before it."""
    rng = np.random.default_rng(3)
    guard = WildValueGuard({"met": "feature 'met'"})
    first = np.arange(1000, dtype=np.uint64)
    assert guard.keep({"met": rng.exponential(40.0, 1000)}, first, "f.root", "branch") is None
    with pytest.raises(InputError, match="entry 1000"):
        guard.keep({"met": np.array([1e38])}, np.array([1000], np.uint64), "f.root", "branch")


def test_preprocessing_range_is_not_moved_by_one_event():
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.exponential(40.0, 5000), rng.uniform(0, 1, 5000)])
    clean = preprocess.fit(x, ["met", "lepton_eta"], spike_fraction=None)
    x[17, 0] = 1e38
    pre = preprocess.fit(x, ["met", "lepton_eta"], spike_fraction=None)
    assert pre.high[0] == pytest.approx(clean.high[0], rel=1e-3) and pre.high[0] < 1e4
    # the bulk keeps its resolution: generated values map back inside the physical range
    back = pre.inverse(rng.normal(size=(1000, 2)))
    assert np.all(back[:, 0] < 1e4) and np.all(back[:, 0] > -1e3)
