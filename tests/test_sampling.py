"""Chunked, seeded sampling to ROOT: reproducible, shardable, inside the fitted range."""

import numpy as np
import pytest
import torch

from hepflows import preprocess
from hepflows.events.reader import read_events
from hepflows.flows import build_flow
from hepflows.sampling import chunk_labels, sample_to_root

FEATURES = ("lepton_pt", "m_jj", "lepton_eta")


@pytest.fixture
def model():
    torch.manual_seed(0)
    flow = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8]}, 3, 1)
    for p in flow.parameters():  # a non-trivial transform
        torch.nn.init.normal_(p, std=0.1)
    rng = np.random.default_rng(0)
    x = np.stack(
        [rng.exponential(40, 1000) + 25, rng.normal(80, 10, 1000), rng.uniform(-2.5, 2.5, 1000)], 1
    )
    return flow.eval(), preprocess.fit(x, FEATURES)


def read(path):
    events = read_events(path, FEATURES)
    return np.stack([events[f] for f in FEATURES], 1), events["label"]


def test_same_seed_same_events_any_sharding(tmp_path, model):
    flow, pre = model
    sample_to_root(
        flow,
        pre,
        tmp_path / "a.root",
        1000,
        seed=7,
        chunk_size=250,
        signal_fraction=0.3,
        progress=False,
    )
    sample_to_root(
        flow,
        pre,
        tmp_path / "b.root",
        1000,
        seed=7,
        chunk_size=250,
        signal_fraction=0.3,
        progress=False,
    )
    sample_to_root(
        flow,
        pre,
        tmp_path / "tail.root",
        500,
        seed=7,
        chunk_size=250,
        first_chunk=2,
        signal_fraction=0.3,
        progress=False,
    )
    (xa, la), (xb, lb), (xt, lt) = (
        read(tmp_path / "a.root"),
        read(tmp_path / "b.root"),
        read(tmp_path / "tail.root"),
    )
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(xa[500:], xt)
    np.testing.assert_array_equal(la[500:], lt)
    sample_to_root(
        flow,
        pre,
        tmp_path / "c.root",
        1000,
        seed=8,
        chunk_size=250,
        signal_fraction=0.3,
        progress=False,
    )
    assert not np.array_equal(xa, read(tmp_path / "c.root")[0])


def test_samples_inside_fitted_range_and_label_fraction(tmp_path, model):
    flow, pre = model
    n = sample_to_root(
        flow,
        pre,
        tmp_path / "s.root",
        20000,
        seed=1,
        chunk_size=5000,
        signal_fraction=0.3,
        progress=False,
    )
    x, labels = read(tmp_path / "s.root")
    assert n == len(x) == 20000
    assert np.isfinite(x).all()
    assert ((x >= pre.low.astype(np.float32)) & (x <= pre.high.astype(np.float32))).all()
    assert abs(labels.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_chunk_labels_depend_on_seed_and_chunk_only():
    a = chunk_labels(100, 0.5, 1, 4)
    np.testing.assert_array_equal(a, chunk_labels(100, 0.5, 1, 4))
    assert not np.array_equal(a, chunk_labels(100, 0.5, 1, 5))


def test_broken_model_leaves_no_file(tmp_path, model):
    flow, pre = model
    with torch.no_grad():
        next(flow.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        sample_to_root(
            flow, pre, tmp_path / "bad.root", 100, seed=1, signal_fraction=0.5, progress=False
        )
    assert list(tmp_path.iterdir()) == []
