"""The grid comparison figure: one row a model, from the rows of the comparison table."""

from __future__ import annotations

import math

import pytest

from hepflows.report.compare_plot import _count, _equiv, plot_comparison


def _row(name: str, auc: float, ks: str, equiv: str) -> dict:
    return {
        "model": name,
        "classifier AUC": auc,
        "AUC interval": f"[{auc - 0.01:.3f}, {auc + 0.01:.3f}]",
        "MC-vs-MC AUC": 0.5,
        "KS outside": ks,
        "KS outside expected": 2.6,
        "chi2/ndf outside": ks,
        "chi2/ndf outside expected": 2.6,
        "n_equiv features": equiv,
        "n_equiv joint": "≥2e+04",
    }


def test_parses_the_table_cells():
    assert _count("19/54") == 19 and math.isnan(_count(""))
    assert _equiv("≥1.2e+04") == (12000.0, True) and _equiv("3100") == (3100.0, False)
    assert math.isnan(_equiv("")[0])


def test_draws_every_model_in_both_formats(tmp_path):
    rows = [_row("affine", 0.79, "54/54", "65"), _row("spline", 0.565, "39/54", "4.2e+03")]
    png, pdf = plot_comparison(rows, tmp_path / "models")
    assert png.stat().st_size > 5000 and pdf.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.pdf", "models.png"]
    # without amplification columns the third panel says so instead of failing
    bare = [{k: v for k, v in r.items() if not k.startswith("n_equiv")} for r in rows]
    plot_comparison(bare, tmp_path / "bare")
    with pytest.raises(ValueError, match="no models"):
        plot_comparison([], tmp_path / "none")
