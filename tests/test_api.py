"""A trained model serves samples: ``hepflows sample --seed`` from a model of any run, and the
Python interface ``hepflows.load`` (docs/api.md) on the same tiny weighted run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from conftest import train_tiny_run

import hepflows
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_events, read_metadata

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["lepton_pt", "met", "m_bb"]
XSEC = {"bkg": 0.02, "sig": 0.005}  # weight per event: sigma x L / generated events


def _ntuple(path: Path, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    cols = {
        "lepton_pt": rng.uniform(20.0, 200.0, n).astype(np.float32),
        "met": rng.exponential(60.0, n).astype(np.float32),
        "m_bb": rng.uniform(20.0, 500.0, n).astype(np.float32),
    }
    with uproot.recreate(path) as f:
        f["events"] = cols


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """A run folder as the pipeline lays it out: ingest -> preprocess -> train -> sample."""
    d = tmp_path_factory.mktemp("api")
    _ntuple(d / "bkg.root", 1, 1200)
    _ntuple(d / "sig.root", 2, 800)
    cfg = {
        "run": "mine",
        "seed": 4,
        "features": FEATURES,
        "data": {
            "source": "root",
            "inputs": [
                {"path": str(d / "bkg.root"), "label": 0, "weight": XSEC["bkg"]},
                {"path": str(d / "sig.root"), "label": 1, "weight": XSEC["sig"]},
            ],
        },
        "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
        "training": {"epochs": 1, "batch_size": 256, "device": "cpu"},
        "sampling": {"events": 500, "chunk_size": 200},
    }
    config = d / "mine.yaml"
    config.write_text(yaml.safe_dump(cfg))
    r = train_tiny_run(config, d / "results" / "mine")
    model, pre = str(r / "model" / "model.pt"), str(r / "preprocess.json")
    gen = str(r / "samples" / "generated.root")
    c = ["--quiet", "--config", str(config)]
    assert main(["sample", *c, "--model", model, "--preprocess", pre, "--out", gen]) == 0
    return r, cfg


def _matrix(path: Path) -> np.ndarray:
    events = read_events(path, FEATURES)
    return np.column_stack([events[f] for f in FEATURES])


def test_sample_seed_draws_an_independent_sample_of_the_runs_model(run, tmp_path):
    r, cfg = run
    config = str(r.parents[1] / "mine.yaml")
    out = tmp_path / "seed7.root"
    # with the run's config: its hash is still the model's (the seed is not a setting)
    argv = ["sample", "--quiet", "--config", config, "--model", str(r / "model/model.pt")]
    assert main([*argv, "--seed", "7", "--events", "700", "--out", str(out)]) == 0
    own = _matrix(r / "samples" / "generated.root")
    new = _matrix(out)
    assert len(new) == 700
    assert not np.any(np.all(np.isin(new[:500], own), axis=1)), "events of the run's sample"
    meta = read_metadata(out)
    assert meta["seed"] == 7
    assert (
        meta["model_config_hash"]
        == read_metadata(r / "samples" / "generated.root")["model_config_hash"]
    )
    # with no config at all: a run's folder is enough, and the same seed gives the same events
    again = tmp_path / "again.root"
    bare = ["sample", "--quiet", "--model", str(r), "--seed", "7", "--events", "700"]
    assert main([*bare, "--out", str(again)]) == 0
    # the same seed and chunking give the same events again
    assert main([*bare, "--out", str(tmp_path / "b.root")]) == 0
    np.testing.assert_array_equal(_matrix(again), _matrix(tmp_path / "b.root"))


def test_sample_records_seed_process_fractions_and_normalisation(run, tmp_path):
    r, _ = run
    out = tmp_path / "s.root"
    argv = ["sample", "--quiet", "--model", str(r), "--seed", "3", "--events", "400"]
    assert main([*argv, "--out", str(out)]) == 0
    meta = read_metadata(out)
    sigma_l = 1200 * XSEC["bkg"] + 800 * XSEC["sig"]  # every event passes: no selection
    norm = meta["normalisation"]
    assert norm["sigma_x_lumi"] == pytest.approx(sigma_l, rel=1e-6)
    f = meta["process_fractions"]["signal"]
    assert meta["process_fractions"]["background"] == pytest.approx(1 - f)
    # the training split's weighted signal fraction, close to that of the inputs
    assert f == pytest.approx(800 * XSEC["sig"] / sigma_l, abs=0.05)
    labels = read_events(out, FEATURES)["label"]
    w = np.where(
        labels == 1,
        norm["weight_per_event"]["signal"],
        norm["weight_per_event"]["background"],
    )
    # the events' weights add up to sigma x L (up to the binomial fluctuation of the labels)
    assert w.sum() == pytest.approx(sigma_l, rel=0.15)


def test_load_sample_log_prob_to_root(run, tmp_path):
    r, _ = run
    model = hepflows.load(r)
    assert model.features == tuple(FEATURES)
    events = model.sample(600, seed=5, signal_fraction=0.25)
    assert set(events) == {*FEATURES, "label"}
    assert all(len(v) == 600 for v in events.values())
    assert 0.15 < events["label"].mean() < 0.35
    again = hepflows.load(r / "model" / "model.pt").sample(600, seed=5, signal_fraction=0.25)
    for key in events:
        np.testing.assert_array_equal(events[key], again[key])
    lp = model.log_prob(events)
    assert lp.shape == (600,) and np.isfinite(lp).all()
    # a density in physical units: events far outside the training range are less likely
    far = {**events, "met": events["met"] + 5000.0}
    assert np.median(model.log_prob(far)) < np.median(lp)
    # the run's own sample comes back from its seed and chunk size
    run_sample = read_events(r / "samples" / "generated.root", FEATURES)
    same = model.sample(500, seed=4, chunk_size=200)
    np.testing.assert_array_equal(same["m_bb"], run_sample["m_bb"])
    out = tmp_path / "api.root"
    assert model.to_root(out, 300, seed=9) == 300
    meta = read_metadata(out)
    assert meta["seed"] == 9 and meta["n_events"] == 300
    assert meta["normalisation"]["sigma_x_lumi"] > 0


def test_load_errors_name_what_is_missing(run, tmp_path):
    r, _ = run
    with pytest.raises(InputError, match="no such run folder"):
        hepflows.load(tmp_path / "nothing")
    with pytest.raises(InputError, match="model/model.pt"):
        hepflows.load(tmp_path)
    with pytest.raises(InputError, match="label"):
        hepflows.load(r).log_prob({f: np.ones(3) for f in FEATURES})


def test_docs_api_example_runs(run, monkeypatch):
    # the example of docs/api.md, as written there, on this run's folder
    r, _ = run
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/api.md has no python example"
    monkeypatch.chdir(r.parents[1])
    namespace: dict = {}
    exec(blocks[0].replace("results/my-analysis", str(r)), namespace)
    assert json.dumps(sorted(namespace["events"])) == json.dumps(sorted([*FEATURES, "label"]))
