"""Validation figures: written whole, as PDF and non-empty PNG, with bad logs named."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hepflows.errors import InputError  # noqa: E402
from hepflows.report import plots  # noqa: E402


def assert_figure(base: Path) -> None:
    """Both files exist; the PNG is a real image with content, the PDF a PDF."""
    png, pdf = base.with_name(base.name + ".png"), base.with_name(base.name + ".pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"
    image = mpimg.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert not list(base.parent.glob("*.tmp"))


def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, None]:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(np.int8)
    return np.exp(rng.normal(4.0 + 0.3 * label, 0.4)).astype(np.float32), label, None


def test_feature_plot_with_tail_and_weights(tmp_path):
    ref, gen = sample(3000, 0), sample(2000, 1)
    weights = np.random.default_rng(2).uniform(0.5, 1.5, size=3000)
    paths = plots.plot_feature("m_bb", (ref[0], ref[1], weights), gen, tmp_path / "m_bb")
    assert [p.name for p in paths] == ["m_bb.pdf", "m_bb.png"]
    assert_figure(tmp_path / "m_bb")


def test_feature_plot_of_one_class_only(tmp_path):
    x, _, _ = sample(1000, 3)
    only_background = np.zeros(1000, dtype=np.int8)
    plots.plot_feature(
        "lepton_eta",
        (np.log(x), only_background, None),
        (np.log(x[::-1]), only_background, None),
        tmp_path / "eta",
        units="higgs",
    )
    assert_figure(tmp_path / "eta")


def test_correlation_and_roc_plots(tmp_path):
    rng = np.random.default_rng(4)
    diff = {s: rng.normal(0, 0.05, size=(5, 5)) for s in ("all", "signal")}
    outside = {s: np.abs(d) > 0.08 for s, d in diff.items()}
    plots.plot_correlation_difference(
        diff, ["lepton_pt", "lepton_eta", "met", "m_jj", "m_bb"], tmp_path / "corr", outside=outside
    )
    assert_figure(tmp_path / "corr")
    grid = np.linspace(0, 1, 11).tolist()
    roc = {"fpr": grid, "tpr": np.sqrt(grid).tolist(), "auc": 0.66, "auc_lo": 0.64, "auc_hi": 0.68}
    plots.plot_roc(roc, tmp_path / "roc", null_results=[{"fpr": grid, "tpr": grid}])
    assert_figure(tmp_path / "roc")


def test_training_curve_with_and_without_learning_rate(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "epoch,train_nll,val_nll,lr\n"
        + "".join(f"{e},{5 / e + 1},{5 / e + 1.2},{1e-3 * 0.8**e}\n" for e in range(1, 11))
    )
    plots.plot_training_curve(log, tmp_path / "curve")
    assert_figure(tmp_path / "curve")
    read = plots.read_training_log(log)
    assert read["epoch"].tolist() == list(range(1, 11)) and "lr" in read

    log.write_text("epoch,train_nll,val_nll\n1,2.0,2.1\n2,1.5,1.7\n")
    assert "lr" not in plots.read_training_log(log)


def test_training_log_errors_name_file_and_place(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(InputError, match=r"log\.csv.*val_nll"):
        plots.plot_training_curve(log, tmp_path / "curve")
    log.write_text("epoch,train_nll,val_nll\n1,2.0,abc\n")
    with pytest.raises(InputError, match=r"line 2.*val_nll"):
        plots.read_training_log(log)
    assert not (tmp_path / "curve.png").exists()


def peaked_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """m_bb-like: a Gaussian signal (125, 15) over a falling background."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.5).astype(np.int8)
    x = np.where(label == 1, rng.normal(125, 15, n), 20 + rng.exponential(80, n))
    return x, label


def test_binning_resolves_the_narrowest_peak_and_covers_the_central_mc():
    x, label = peaked_sample(20000, 0)
    axis = plots.feature_binning(x, label)
    width = axis.edges[1] - axis.edges[0]
    assert width <= 15 / 2  # at most half the signal's resolution
    assert width in (5.0, 2.5, 2.0)  # a round number
    lo, hi = np.quantile(x, plots.RANGE_QUANTILES)
    assert axis.edges[0] <= lo and axis.edges[-1] >= hi
    assert axis.edges[-1] < np.max(x)  # the far tail is folded, not plotted
    assert plots.MIN_BINS <= axis.size <= plots.MAX_BINS
    # a handful of events gets fewer, wider bins
    few = plots.feature_binning(x[:400], label[:400])
    assert few.edges[1] - few.edges[0] > width and few.size < axis.size


def test_flow_bins_are_folded_into_the_edge_bins():
    x, _ = peaked_sample(5000, 1)
    axis = plots.feature_binning(x)
    contents, _ = plots._normalised_hist(x, None, axis, float(len(x)))
    assert np.isclose(contents.sum(), 1.0)
    inside_last = np.mean((x >= axis.edges[-2]) & (x < axis.edges[-1]))
    assert contents[-1] > inside_last  # the overflow is in the last bin


def test_null_band_is_the_verdicts_order_statistic():
    from hepflows.validation import null as nl

    axis = plots.feature_binning(*peaked_sample(20000, 2))
    pairs = []
    for k in range(19):
        (a, la), (b, lb) = peaked_sample(4000, 10 + 2 * k), peaked_sample(4000, 11 + 2 * k)
        pairs.append(((a, la, None), (b, lb, None)))
    band = plots.null_ratio_band(pairs, axis, cls=1)
    devs = []
    for (a, la, _), (b, lb, _) in pairs:
        ha, _ = np.histogram(np.clip(a[la == 1], axis.edges[0], axis.edges[-1] - 1e-9), axis.edges)
        hb, _ = np.histogram(np.clip(b[lb == 1], axis.edges[0], axis.edges[-1] - 1e-9), axis.edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            devs.append(np.where(ha > 0, np.abs(hb * ha.sum() / (ha * hb.sum()) - 1), np.inf))
    expected = nl.band_edge(np.stack(devs))
    peak = np.argmin(np.abs(0.5 * (axis.edges[1:] + axis.edges[:-1]) - 125))
    assert np.isclose(band[peak], expected[peak])
    assert 0.02 < band[peak] < 0.5  # a few hundred events a bin at the peak
    assert np.isclose(plots.null_ratio_band(pairs, axis, cls=1, scale=0.5)[peak], 0.5 * band[peak])
    assert plots.null_ratio_band(pairs, axis, cls=7) is None


def test_feature_plot_with_null_band_and_stats(tmp_path):
    (x, label), (gx, gl) = peaked_sample(6000, 3), peaked_sample(6000, 4)
    pairs = [((x[:3000], label[:3000], None), (x[3000:], label[3000:], None))] * 3
    stats = {"signal": {"ks": (0.01, "green"), "chi2_ndf": (2.0, "red")}}
    plots.plot_feature(
        "m_bb",
        (x, label, None),
        (gx, gl, None),
        tmp_path / "m_bb",
        null_pairs=pairs,
        stats=stats,
        model="RQ-NSF",
    )
    assert_figure(tmp_path / "m_bb")
    assert plots._stat_text(stats, "signal")[1] == "#f4a3a3"  # the worse status: red
    assert plots._stat_text(stats, "background") is None


def test_overview_and_2d_comparison(tmp_path):
    (x, label), (gx, gl) = peaked_sample(4000, 5), peaked_sample(4000, 6)
    feats = ["m_bb", "lepton_pt", "lepton_eta"]
    ref = (np.column_stack([x, x / 3, np.log(x)]), label, None)
    gen = (np.column_stack([gx, gx / 3, np.log(gx)]), gl, None)
    plots.plot_overview(
        feats, ref, gen, tmp_path / "overview", statuses={("m_bb", "signal"): "red"}
    )
    assert_figure(tmp_path / "overview")
    image = mpimg.imread(tmp_path / "overview.png")[..., :3]
    red = np.array([0xF4, 0xA3, 0xA3]) / 255
    assert np.any(np.all(np.abs(image - red) < 0.02, axis=-1))  # the red corner is drawn
    plots.plot_2d_comparison(
        ("m_bb", "lepton_pt"),
        (ref[0][:, :2], label, None),
        (gen[0][:, :2], gl, None),
        tmp_path / "2d",
    )
    assert_figure(tmp_path / "2d")
