"""One model per process used as one conditional model (hepflows.per_process.ByProcess)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepflows import preprocess
from hepflows.events.reader import read_events
from hepflows.flows import build_flow
from hepflows.per_process import ByProcess
from hepflows.sampling import sample_to_root

FEATURES = ("lepton_pt", "m_jj", "lepton_eta")


def _flow(seed: int, context: int = 1):
    torch.manual_seed(seed)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8]}, 3, context)
    for p in flow.parameters():  # a non-trivial transform
        torch.nn.init.normal_(p, std=0.1)
    return flow.eval()


def test_each_label_is_drawn_and_evaluated_by_its_own_model():
    bkg, sig = _flow(1), _flow(2, context=0)  # a model per process, with or without context
    both = ByProcess({0: bkg, 1: sig}).eval()
    ones = torch.ones(50, 1)
    with torch.no_grad():
        # all rows signal: the signal model's own draw from the same generator state
        got = both.sample(50, ones, generator=torch.Generator().manual_seed(7))
        want = sig.sample(50, None, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(got, want)
        label = torch.tensor([0.0, 1.0] * 25).unsqueeze(1)
        x = both.sample(50, label, generator=torch.Generator().manual_seed(8))
        lp = both.log_prob(x, label)
        rows0, rows1 = label[:, 0] == 0, label[:, 0] == 1
        torch.testing.assert_close(lp[rows0], bkg.log_prob(x[rows0], label[rows0]))
        torch.testing.assert_close(lp[rows1], sig.log_prob(x[rows1]))
    with pytest.raises(ValueError, match="no model"):
        ByProcess({1: sig}).sample(2, torch.zeros(2, 1))


def test_the_sampler_writes_a_mixture_of_the_processes(tmp_path):
    rng = np.random.default_rng(0)
    x = np.stack(
        [rng.exponential(40, 1000) + 25, rng.normal(80, 10, 1000), rng.uniform(-2.5, 2.5, 1000)], 1
    )
    pre = preprocess.fit(x, FEATURES)
    both = ByProcess({0: _flow(1), 1: _flow(2)})
    n = sample_to_root(
        both, pre, tmp_path / "mix.root", 2000, seed=3, signal_fraction=0.3, progress=False
    )
    events = read_events(tmp_path / "mix.root", FEATURES)
    assert n == 2000 and abs(events["label"].mean() - 0.3) < 0.05
    again = sample_to_root(
        both, pre, tmp_path / "again.root", 2000, seed=3, signal_fraction=0.3, progress=False
    )
    assert again == 2000
    np.testing.assert_array_equal(
        read_events(tmp_path / "again.root", FEATURES)["m_jj"], events["m_jj"]
    )


def test_the_per_process_benchmark_trains_each_process_and_samples_the_mixture(tmp_path):
    # benchmarks/per_process.py drives the steps' own functions: run it end to end on a tiny
    # conditional run so that a change of their arguments cannot break it unnoticed
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from conftest import step_args

    from hepflows import layout
    from hepflows.cli import main

    results = tmp_path / "results"
    results.mkdir()
    cfg = {
        "run": "toy",
        "seed": 3,
        "features": ["lepton_pt", "met", "m_bb"],
        "data": {"events": {"train": 1500, "val": 400, "test": 400}},
        "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
        "training": {"epochs": 1, "batch_size": 256, "device": "cpu", "conditional": True},
        "sampling": {"events": 600, "chunk_size": 300},
    }
    config = results / "toy.yaml"
    config.write_text(yaml.safe_dump(cfg))
    for step in ("generate", "preprocess", "train"):
        args = step_args(step, layout.paths(results / "toy"))
        assert main([step, "--quiet", "--config", str(config), *args]) == 0, step
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "per_process.py"
    out = tmp_path / "per-process"
    done = subprocess.run(
        [sys.executable, str(script), str(results / "toy"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for process in ("background", "signal"):
        assert (out / "toy" / "per_process" / process / "model.pt").exists()
    events = read_events(out / "toy" / "samples" / "generated.root", ["met"])
    assert len(events["met"]) == 600
    assert set(np.unique(events["label"])) == {0, 1}
