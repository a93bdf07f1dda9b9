"""The 2-D toys, their training loop and their figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepflows.flows import build_flow
from hepflows.toys import (
    TOYS,
    checkerboard,
    eight_gaussians,
    evaluate_toy,
    plot_toy_comparison,
    swiss_roll,
    train_toy,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toys_shape_range_and_reproducibility(name: str) -> None:
    a = TOYS[name](5000, seed=1)
    assert a.shape == (5000, 2) and a.dtype == np.float32
    assert np.abs(a).max() < 4.5 and np.quantile(np.abs(a), 0.99) < 4.0
    assert a.std(0).min() > 0.5  # spread over the window, not a dot
    assert np.array_equal(a, TOYS[name](5000, seed=1))
    assert not np.array_equal(a, TOYS[name](5000, seed=2))


def test_toy_shapes_are_right() -> None:
    cb = checkerboard(20000, seed=0)
    cell = (np.floor(cb[:, 0] / 2) + np.floor(cb[:, 1] / 2)) % 2
    assert np.all(cell == cell[0])  # one colour of the board only
    assert np.all(np.abs(cb) <= 4)

    eg = eight_gaussians(8000, seed=0)
    angle = np.round(np.arctan2(eg[:, 1], eg[:, 0]) / (np.pi / 4)) % 8
    counts = np.bincount(angle.astype(int), minlength=8)
    assert counts.min() > 800
    radius = np.hypot(*eg.T)
    assert abs(np.median(radius) - 4 / np.sqrt(2)) < 0.1

    sr = swiss_roll(8000, seed=0)
    assert np.hypot(*sr.T).max() > 2.5 and np.median(np.hypot(*sr.T)) > 1.0


def test_train_toy_reduces_loss_and_is_reproducible() -> None:
    data = eight_gaussians(2000, seed=0)

    def run() -> tuple[list[float], torch.nn.Module]:
        torch.manual_seed(0)
        flow = build_flow(
            {"coupling": "rq_spline", "blocks": 2, "hidden": [16, 16], "norm": "none"}, 2
        )
        return train_toy(flow, data, steps=40, batch_size=128, lr=1e-2, seed=3), flow

    losses, flow = run()
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < losses[0] - 0.2
    assert not flow.training
    again, _ = run()
    assert again == losses


def test_plot_toy_comparison_writes_figure(tmp_path) -> None:
    torch.manual_seed(0)
    affine = build_flow({"coupling": "affine", "blocks": 2, "hidden": [8]}, 2).eval()
    spline = build_flow({"coupling": "rq_spline", "blocks": 2, "hidden": [8]}, 2).eval()
    results = {}
    for name, toy in TOYS.items():
        results[name] = {
            "data": toy(1000, seed=0),
            "RealNVP": affine,  # evaluated inside the plot
            "RQ-NSF": evaluate_toy(spline, grid=40, samples=500),
        }
    ev = results["checkerboard"]["RQ-NSF"]
    assert ev["density"].shape == (40, 40) and ev["samples"].shape == (500, 2)
    # an untrained flow is the standard normal: its grid density peaks at the centre
    assert np.unravel_index(ev["density"].argmax(), ev["density"].shape) in {
        (19, 19),
        (19, 20),
        (20, 19),
        (20, 20),
    }
    out = plot_toy_comparison(results, tmp_path / "fig" / "toys.png")
    assert out.exists() and out.stat().st_size > 10_000
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_toy_comparison({}, tmp_path / "empty.png")


def test_make_toy_figure_writes_png_and_pdf_atomically(tmp_path) -> None:
    from hepflows.toys import make_toy_figure

    png, pdf = make_toy_figure(
        tmp_path / "toys" / "figure7", events=300, steps=3, grid=16, samples=200
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in png.parent.iterdir()) == ["figure7.pdf", "figure7.png"]
