"""Validation figures: written whole, as PDF and non-empty PNG, with bad logs named."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hepflows.errors import InputError  # noqa: E402
from hepflows.validation import plots  # noqa: E402


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
    plots.plot_feature("lepton_eta", (np.log(x), only_background, None),
                       (np.log(x[::-1]), only_background, None), tmp_path / "eta", units="higgs")
    assert_figure(tmp_path / "eta")


def test_correlation_and_roc_plots(tmp_path):
    rng = np.random.default_rng(4)
    diff = {s: rng.normal(0, 0.05, size=(5, 5)) for s in ("all", "signal")}
    outside = {s: np.abs(d) > 0.08 for s, d in diff.items()}
    plots.plot_correlation_difference(diff, ["lepton_pt", "lepton_eta", "met", "m_jj", "m_bb"],
                                      tmp_path / "corr", outside=outside)
    assert_figure(tmp_path / "corr")
    grid = np.linspace(0, 1, 11).tolist()
    roc = {"fpr": grid, "tpr": np.sqrt(grid).tolist(), "auc": 0.66, "auc_lo": 0.64,
           "auc_hi": 0.68}
    plots.plot_roc(roc, tmp_path / "roc", null_results=[{"fpr": grid, "tpr": grid}])
    assert_figure(tmp_path / "roc")


def test_training_curve_with_and_without_learning_rate(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_nll,val_nll,lr\n" + "".join(
        f"{e},{5 / e + 1},{5 / e + 1.2},{1e-3 * 0.8**e}\n" for e in range(1, 11)))
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
