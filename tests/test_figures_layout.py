"""Figures for a talk: every figure type rendered, no two text boxes overlapping and none cut
off at the figure's edge (matplotlib's ``get_window_extent``); the label, sqrt(s) and
luminosity of config ``plots``; effective sizes where events are weighted; whole epochs."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text
from test_validation_runner import FEATURES, events

from hepflows.report import plots
from hepflows.report.runner import validate_samples


def _texts(fig: plt.Figure) -> list[tuple[Text, object]]:
    """The drawn, non-empty text artists of a drawn figure, with their boxes (pixels).

    Tick labels count only for the ticks inside the view (an axis keeps label objects for
    ticks outside it, which are not drawn); an axes switched off draws no ticks at all.
    """
    renderer = fig.canvas.get_renderer()
    tick_labels, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update((id(tick.label1), id(tick.label2)))
            if not (ax.axison and axis.get_visible()):
                continue
            for tick in axis._update_ticks():
                drawn += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    others = [t for t in fig.findobj(Text) if id(t) not in tick_labels and t.get_visible()]
    return [
        (text, text.get_window_extent(renderer))
        for text in [*drawn, *others]
        if text.get_text().strip()
    ]


def _defects(fig: plt.Figure) -> list[str]:
    fig.canvas.draw()
    boxes = _texts(fig)
    width, height = fig.canvas.get_width_height()
    found = []
    for text, box in boxes:
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            found.append(f"cut off at the edge: {text.get_text()!r}")
    for (ta, a), (tb, b) in combinations(boxes, 2):
        # a shared point or line is no overlap; 1 pixel of slack for rounding
        if a.x0 + 1 < b.x1 and b.x0 + 1 < a.x1 and a.y0 + 1 < b.y1 and b.y0 + 1 < a.y1:
            found.append(f"overlap: {ta.get_text()!r} and {tb.get_text()!r}")
    return found


@pytest.fixture()
def figures(monkeypatch):
    """Every figure the validation saves, drawn and checked before it is written."""
    seen: dict[str, list[str]] = {}
    texts: dict[str, list[str]] = {}
    save = plots.save_figure

    def check(fig: plt.Figure, out_base: Path):
        seen[Path(out_base).name] = _defects(fig)
        texts[Path(out_base).name] = [t.get_text() for t, _ in _texts(fig)]
        return save(fig, out_base)

    monkeypatch.setattr(plots, "save_figure", check)
    return seen, texts


def _training_log(path: Path, epochs: int = 5) -> Path:
    rows = ["epoch,train_nll,val_nll,lr"]
    rows += [f"{e},{3.0 - 0.1 * e},{3.1 - 0.08 * e},{1e-3 * 0.9**e}" for e in range(1, epochs + 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_every_figure_type_has_no_overlapping_or_clipped_text(figures, tmp_path):
    seen, texts = figures
    features = (*FEATURES, "m_wwbb")

    def with_mwwbb(ev: dict, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        return {**ev, "m_wwbb": (ev["m_bb"] * rng.uniform(1.5, 3, len(ev["m_bb"]))).astype("f4")}

    ref = with_mwwbb(events(3000, 1, weights=True), 1)
    gen = with_mwwbb(events(1500, 2), 2)
    with plots.figure_text(label="ATLAS", energy="13 TeV", lumi="140 fb$^{-1}$"):
        validate_samples(
            ref,
            gen,
            features,
            tmp_path,
            n_null=20,
            seed=3,
            training_log=_training_log(tmp_path / "log.csv"),
            workers=1,  # the figures drawn here, where the fixture sees them
        )
    expected = {"lepton_pt", "m_bb", "overview", "correlation_difference", "classifier_roc"}
    assert expected | {"training_curve", "2d_m_bb_vs_m_wwbb"} <= set(seen), sorted(seen)
    bad = {name: found for name, found in seen.items() if found}
    assert not bad, "\n".join(f"{k}: {v}" for k, v in bad.items())
    # config plots: the label, sqrt(s) and luminosity as given
    assert "ATLAS" in texts["lepton_pt"] and "hepflows" not in texts["lepton_pt"]
    assert any("13 TeV" in t and "140 fb" in t for t in texts["lepton_pt"])
    assert any("13 TeV" in t for t in texts["overview"])
    # the weighted MC's effective size next to its number of events
    for name in ("lepton_pt", "overview", "2d_m_bb_vs_m_wwbb"):
        assert any("events (effective" in t for t in texts[name]), name


def test_training_curve_has_whole_epochs_and_default_text(tmp_path, monkeypatch):
    fig_holder = {}
    save = plots.save_figure

    def keep(fig, out_base):
        fig_holder["defects"] = _defects(fig)  # draws the figure
        fig_holder["texts"] = [t.get_text() for t, _ in _texts(fig)]
        fig_holder["xticks"] = list(fig.axes[1].get_xticks())
        fig_holder["xlim"] = fig.axes[1].get_xlim()
        return save(fig, out_base)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_training_curve(_training_log(tmp_path / "log.csv", 3), tmp_path / "curve")
    lo, hi = fig_holder["xlim"]
    shown = [t for t in fig_holder["xticks"] if lo <= t <= hi]
    assert shown and all(float(t).is_integer() for t in shown), shown  # no epoch 1.25
    assert "hepflows" in fig_holder["texts"]  # the default label of the embedded run
    assert not fig_holder["defects"], fig_holder["defects"]
