"""Kish's effective sample size: one formula, the same number wherever the weights enter."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hepflows.kish import effective_size, kish_size

SRC = Path(__file__).resolve().parents[1] / "src" / "hepflows"


def test_known_values():
    assert effective_size(np.array([1.0, 1.0, 2.0]), 3) == pytest.approx(16 / 6)
    assert effective_size(None, 7) == 7.0
    assert effective_size(np.full(5, 0.3), 5) == pytest.approx(5.0)
    assert kish_size(0.0, 0.0) == 0.0  # no events


def test_streamed_sums_give_the_array_value():
    w = np.random.default_rng(1).exponential(size=1000)
    chunks = np.array_split(w, 7)
    streamed = kish_size(
        sum(float(c.sum()) for c in chunks), sum(float((c**2).sum()) for c in chunks)
    )
    assert streamed == pytest.approx(effective_size(w, len(w)), rel=1e-12)


def test_the_formula_is_written_once():
    # (sum w)^2 / sum w^2, as `w.sum() ** 2 / np.square(w).sum()` or from two sums
    formula = re.compile(r"\.sum\(\)\s*\*\*\s*2\s*/\s*np\.square\(|\w\*\*2\s*/\s*\w*squared")
    places = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "kish.py" and formula.search(p.read_text(encoding="utf-8"))
    ]
    assert places == [], places
