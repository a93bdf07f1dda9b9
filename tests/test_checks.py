"""The checks of event arrays name the entry at fault: the first entry's number plus the index,
or, after a selection, the entry numbers of the kept events."""

from __future__ import annotations

import numpy as np
import pytest

from hepflows.errors import InputError
from hepflows.events.checks import check_finite, check_finite_values, check_labels


def test_finite_values_name_the_selected_entry():
    a = np.array([1.0, 2.0, np.nan, np.inf], np.float32)
    kept = np.array([4, 9, 17, 30], np.uint64)
    with pytest.raises(
        InputError,
        match=r"^f.root: branch 'x': 2 NaN or Inf value\(s\), the first at entry 17 \(nan\)",
    ):
        check_finite_values(a, "f.root", "branch 'x'", entries=kept)
    with pytest.raises(InputError, match=r"the first at entry 102 \(nan\)"):
        check_finite({"x": a}, ["x"], "f.root", first_entry=100)
    check_finite_values(a[:2], "f.root", "branch 'x'", entries=kept[:2])


def test_labels_name_the_selected_entry():
    label = np.array([0, 1, 2, 1], np.int8)
    with pytest.raises(
        InputError,
        match=r"^f.root: 1 label\(s\) other than 0 or 1; the first at entry 9, with value 2",
    ):
        check_labels(label, "f.root", entries=np.array([1, 5, 9, 12]))
    with pytest.raises(InputError, match="the first at row 12, with value 2"):
        check_labels(label, "f.root", 10, unit="row")
