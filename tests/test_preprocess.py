"""The feature transforms (min-max -> logit or quantile -> standardise): exact inverse, bounded
samples, checks."""

from dataclasses import replace

import numpy as np
import pytest

from hepflows import preprocess
from hepflows.errors import InputError

FEATURES = ("a", "b", "c")
TRANSFORMS = pytest.mark.parametrize("transform", ["logit", "quantile"])


@pytest.fixture
def events():
    rng = np.random.default_rng(0)
    return np.stack(
        [rng.exponential(50, 5000) + 20, rng.normal(0, 1.2, 5000), rng.uniform(-2.5, 2.5, 5000)],
        axis=1,
    )


@TRANSFORMS
def test_inverse_is_exact_and_output_standardised(events, transform):
    pre = preprocess.fit(events, FEATURES, margin=0.05, transform=transform)
    y = pre.forward(events)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-10)
    np.testing.assert_allclose(pre.inverse(y), events, rtol=1e-9, atol=1e-9)


def test_margin_widens_the_range(events):
    pre = preprocess.fit(events, FEATURES, margin=0.1)
    width = events.max(axis=0) - events.min(axis=0)
    np.testing.assert_allclose(pre.low, events.min(axis=0) - 0.1 * width)
    np.testing.assert_allclose(pre.high, events.max(axis=0) + 0.1 * width)
    assert pre.outside(events).sum() == 0


@TRANSFORMS
def test_any_latent_maps_inside_the_range(events, transform):
    pre = preprocess.fit(events, FEATURES, transform=transform)
    y = np.random.default_rng(1).normal(0, 30, size=(10000, 3))  # far into the tails
    x = pre.inverse(y)
    assert np.isfinite(x).all()
    assert ((x >= pre.low) & (x <= pre.high)).all()


@TRANSFORMS
def test_log_abs_det_matches_numerical_jacobian(events, transform):
    pre = preprocess.fit(events, FEATURES, transform=transform)
    x = events[:5] + 1e-3  # off the quantile knots, where the CDF's slope jumps
    eps = 1e-6
    numeric = np.log((pre.forward(x + eps) - pre.forward(x - eps)) / (2 * eps)).sum(axis=1)
    np.testing.assert_allclose(pre.log_abs_det(x), numeric, rtol=1e-6)


@TRANSFORMS
def test_save_load_round_trip_and_mismatch(tmp_path, events, transform):
    pre = preprocess.fit(events, FEATURES, config_hash="abc", transform=transform)
    path = tmp_path / "pre.json"
    pre.save(path)
    back = preprocess.Preprocessor.load(path, features=FEATURES, config_hash="abc")
    np.testing.assert_array_equal(back.forward(events), pre.forward(events))
    with pytest.raises(InputError, match=r"pre\.json.*features"):
        preprocess.Preprocessor.load(path, features=("a", "b", "d"))
    with pytest.raises(InputError, match=r"pre\.json.*config hash 'abc'.*'xyz'"):
        preprocess.Preprocessor.load(path, config_hash="xyz")


def test_fit_rejects_bad_training_data(events):
    bad = events.copy()
    bad[7, 1] = np.nan
    with pytest.raises(InputError, match=r"\['b'\]"):
        preprocess.fit(bad, FEATURES)
    const = events.copy()
    const[:, 2] = 1.0
    with pytest.raises(InputError, match="constant"):
        preprocess.fit(const, FEATURES)


def test_point_mass_is_dequantized_and_snapped_back():
    rng = np.random.default_rng(3)
    continuous = rng.exponential(30, 4000) + 81.0
    # a point mass computed in float32 lands on a few neighbouring floats
    point = np.float32(80.4) + np.float32(80.4) * np.finfo(np.float32).eps * rng.integers(
        -1, 2, 4000
    )
    x = np.stack([np.where(rng.random(4000) < 0.7, point, continuous), rng.normal(0, 1, 4000)], 1)
    pre = preprocess.fit(x, ("m_lv", "lepton_eta"))
    assert set(pre.spikes) == {"m_lv"}
    spike = pre.spikes["m_lv"]
    assert spike["centre"] == pytest.approx(80.4, rel=1e-6) and 0 < spike["width"] < 0.6
    assert len(spike["values"]) == 3 and sum(spike["weights"]) == pytest.approx(1)
    y = pre.forward(x)
    assert len(np.unique(y[:, 0])) > 0.99 * len(y)  # the point mass is spread out
    back = pre.inverse(y).astype(np.float32)
    on_point = np.isin(x[:, 0].astype(np.float32), np.float32(spike["values"]))
    np.testing.assert_array_equal(np.isin(back[:, 0], np.float32(spike["values"])), on_point)
    np.testing.assert_allclose(back, x.astype(np.float32), rtol=1e-5)
    for value, weight in zip(spike["values"], spike["weights"]):  # the neighbours' frequencies
        assert abs((back[:, 0] == np.float32(value)).sum() / on_point.sum() - weight) < 0.05
    loaded = preprocess.Preprocessor.from_dict(pre.to_dict())
    assert loaded.spikes == pre.spikes


def test_narrow_continuous_line_is_not_a_point_mass():
    # 70 % of the events in a line far narrower than the spike box, but every value distinct:
    # a density can model it, so it must not be snapped onto a few values.
    rng = np.random.default_rng(4)
    line = 80.4 * (1 + 0.004 * rng.standard_normal(20_000))
    col = np.where(rng.random(20_000) < 0.7, line, 81.0 + rng.exponential(30, 20_000))
    x = np.stack([col, rng.normal(0, 1, 20_000)], 1)
    assert preprocess.find_spikes(x, ("m_lv", "lepton_eta"), 0.01) == {}
    assert preprocess.fit(x, ("m_lv", "lepton_eta"), spike_fraction=None).spikes == {}


def test_quantile_transform_makes_every_marginal_standard_normal(events):
    from scipy import stats

    pre = preprocess.fit(events, FEATURES, transform="quantile", quantiles=64)
    y = pre.forward(events)
    for j in range(len(FEATURES)):
        assert stats.kstest(y[:, j], "norm").statistic < 0.02, FEATURES[j]
    # a narrow peak: 10 % of the range holding 80 % of the events gets 80 % of the latent mass
    rng = np.random.default_rng(2)
    peaked = np.where(
        rng.random(20000) < 0.8, rng.normal(125, 2, 20000), rng.uniform(0, 400, 20000)
    )
    x = np.stack([peaked, rng.normal(size=20000)], 1)
    z = preprocess.fit(x, ("m_bb", "b"), transform="quantile").forward(x)[:, 0]
    inside = np.abs(x[:, 0] - 125) < 5
    assert np.ptp(z[inside]) > 2.5  # the logit would squeeze the peak into a sliver
    logit = preprocess.fit(x, ("m_bb", "b")).forward(x)[:, 0]
    assert np.ptp(logit[inside]) < 0.5


def test_quantile_knots_of_rounded_data_stay_increasing():
    rng = np.random.default_rng(4)
    x = np.stack([np.round(rng.exponential(2.0, 5000)), rng.normal(size=5000)], 1)  # many ties
    pre = preprocess.fit(x, ("n", "b"), transform="quantile")
    assert (np.diff(pre.knots, axis=1) > 0).all()
    assert np.isfinite(pre.forward(x)).all()
    np.testing.assert_allclose(pre.inverse(pre.forward(x)), x, atol=1e-6)


def test_quantile_point_mass_is_spread_and_snapped_back():
    rng = np.random.default_rng(5)
    x = np.stack(
        [
            np.where(rng.random(6000) < 0.7, 80.4, rng.exponential(30, 6000) + 81.0),
            rng.normal(0, 1, 6000),
        ],
        1,
    )
    pre = preprocess.fit(x, ("m_lv", "b"), transform="quantile")
    y = pre.forward(x)
    assert np.ptp(y[x[:, 0] == 80.4, 0]) > 2.0  # 70 % of the events, 70 % of the latent line
    np.testing.assert_allclose(pre.inverse(y), x, rtol=1e-6)


def test_malformed_quantile_parameters_are_named(events):
    data = preprocess.fit(events, FEATURES, transform="quantile").to_dict()
    data["knots"] = data["knots"][:2]
    with pytest.raises(InputError, match="knots"):
        preprocess.Preprocessor.from_dict(data, source="pre.json")
    with pytest.raises(InputError, match="transform"):
        preprocess.Preprocessor.from_dict(dict(data, transform="box-cox"), source="pre.json")


# -- quantile tables fitted per process (preprocess.per_process) ----------------------------------
@pytest.fixture
def processes():
    """Events (n, 3) and labels (n,): the signal's m_bb a narrow peak on a broad background."""
    rng = np.random.default_rng(6)
    n = 6000
    labels = (rng.random(n) < 0.4).astype(np.int8)
    peak = np.where(rng.random(n) < 0.8, rng.normal(125, 3, n), rng.uniform(20, 400, n))
    m_bb = np.where(labels == 1, peak, rng.exponential(60, n) + 20)
    shifted = rng.normal(0, 1, n) + 1.5 * labels
    return np.stack([m_bb, shifted, rng.uniform(-2.5, 2.5, n)], 1), labels


def test_per_process_round_trip_is_exact(processes):
    x, labels = processes
    pre = preprocess.fit(x, FEATURES, transform="quantile", labels=labels, per_process=True)
    assert pre.per_process and pre.knots.shape == (2, 3, 128)
    y = pre.forward(x, labels)
    np.testing.assert_allclose(pre.inverse(y, labels), x, rtol=1e-6, atol=1e-6)
    far = np.random.default_rng(1).normal(0, 30, size=x.shape)  # any latent lands in range
    back = pre.inverse(far, labels)
    assert ((back >= pre.low) & (back <= pre.high)).all()


def test_per_process_marginals_are_standard_normal_for_each_process(processes):
    from scipy import stats

    x, labels = processes
    kwargs = {"transform": "quantile", "quantiles": 64, "labels": labels}
    own = preprocess.fit(x, FEATURES, per_process=True, **kwargs)
    y = own.forward(x, labels)
    for p in (0, 1):
        for j in range(len(FEATURES)):
            assert stats.kstest(y[labels == p, j], "norm").statistic < 0.03, (p, FEATURES[j])
    # the mixture's CDF spreads the signal's m_bb peak over a part of the latent line only
    mixture = preprocess.fit(x, FEATURES, **kwargs).forward(x)
    assert stats.kstest(mixture[labels == 1, 0], "norm").statistic > 0.2
    inside = (labels == 1) & (np.abs(x[:, 0] - 125) < 6)
    assert np.ptp(y[inside, 0]) > 1.5 * np.ptp(mixture[inside, 0])


def test_each_event_goes_through_its_own_label_table(processes):
    x, labels = processes
    pre = preprocess.fit(x, FEATURES, transform="quantile", labels=labels, per_process=True)
    y = pre.forward(x, labels)
    signal = labels == 1
    for p, rows in ((1, signal), (0, ~signal)):
        alone = replace(pre, knots=pre.knots[p])  # that table as the only one
        np.testing.assert_array_equal(y[rows], alone.forward(x[rows]))
        np.testing.assert_array_equal(pre.inverse(y, labels)[rows], alone.inverse(y[rows]))
    swapped = pre.forward(x, 1 - labels)
    assert np.abs(swapped - y)[:, :2].min(axis=1).mean() > 0.1  # the label changes the output
    with pytest.raises(ValueError, match="labels"):
        pre.forward(x)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        pre.inverse(y, np.full(len(y), 2))


def test_without_per_process_every_output_is_unchanged_by_labels(processes):
    x, labels = processes
    y = np.random.default_rng(2).normal(size=x.shape)
    for transform in ("logit", "quantile"):
        plain = preprocess.fit(x, FEATURES, transform=transform)
        given = preprocess.fit(x, FEATURES, transform=transform, labels=labels)
        assert given.to_dict() == plain.to_dict() and "per_process" not in plain.to_dict()
        assert not given.per_process
        for method, arg in (("forward", x), ("inverse", y), ("log_abs_det", x)):
            want = getattr(plain, method)(arg).tobytes()
            assert getattr(given, method)(arg, labels).tobytes() == want, (transform, method)
            assert getattr(given, method)(arg, 1 - labels).tobytes() == want, (transform, method)


def test_per_process_log_abs_det_matches_numerical_jacobian(processes):
    x, labels = processes
    pre = preprocess.fit(x, FEATURES, transform="quantile", labels=labels, per_process=True)
    rows = np.r_[np.flatnonzero(labels == 0)[:4], np.flatnonzero(labels == 1)[:4]]
    x, labels = x[rows] + 1e-3, labels[rows]  # off the knots, where the slope jumps
    eps = 1e-6
    forward = pre.forward(x + eps, labels) - pre.forward(x - eps, labels)
    numeric = np.log(forward / (2 * eps)).sum(axis=1)
    np.testing.assert_allclose(pre.log_abs_det(x, labels), numeric, rtol=1e-6)
    assert not np.allclose(pre.log_abs_det(x, 1 - labels), numeric, rtol=1e-3)


def test_per_process_save_load_and_old_files(tmp_path, processes):
    x, labels = processes
    pre = preprocess.fit(x, FEATURES, transform="quantile", labels=labels, per_process=True)
    pre.save(tmp_path / "pre.json")
    back = preprocess.Preprocessor.load(tmp_path / "pre.json", features=FEATURES)
    assert back.per_process and back.to_dict()["per_process"] is True
    np.testing.assert_array_equal(back.forward(x, labels), pre.forward(x, labels))
    # a file written before per_process existed: one (d, K) table and no such key
    old = preprocess.fit(x, FEATURES, transform="quantile").to_dict()
    old.pop("per_process", None)
    loaded = preprocess.Preprocessor.from_dict(old)
    assert not loaded.per_process and loaded.knots.shape == (3, 128)
    with pytest.raises(InputError, match=r"pre\.json.*'knots' must be \(2, 3, K\)"):
        preprocess.Preprocessor.from_dict(dict(old, per_process=True), source="pre.json")
    with pytest.raises(InputError, match=r"pre\.json.*'per_process'.*'logit'"):
        logit = preprocess.fit(x, FEATURES).to_dict()
        preprocess.Preprocessor.from_dict(dict(logit, per_process=True), source="pre.json")


def test_per_process_errors_are_named(processes):
    x, labels = processes
    with pytest.raises(InputError, match=r"preprocess\.per_process.*transform quantile"):
        preprocess.fit(x, FEATURES, labels=labels, per_process=True)
    few = labels.copy()
    few[np.flatnonzero(labels == 1)[50:]] = 0  # 50 signal events for 64 knots
    with pytest.raises(InputError, match=r"train\.root: 50 signal event.*at least.*= 64"):
        preprocess.fit(
            x,
            FEATURES,
            transform="quantile",
            quantiles=64,
            labels=few,
            per_process=True,
            source="train.root",
        )
    with pytest.raises(InputError, match=r"labels \[3\]"):
        preprocess.fit(
            x, FEATURES, transform="quantile", labels=np.full(len(x), 3), per_process=True
        )
