"""Checks of event arrays shared by the readers and the writer: labels 0/1, finite values.

Each raises :class:`hepflows.errors.InputError` naming the file, the branch and the first
entry at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hepflows.errors import InputError

__all__ = ["check_finite", "check_finite_values", "check_labels", "path_text"]


def path_text(path: str | Path) -> str:
    """A path as it is named in messages."""
    return os.fspath(path)


def check_labels(
    label: np.ndarray,
    where: str,
    first_row: int = 0,
    unit: str = "entry",
    *,
    entries: np.ndarray | None = None,
) -> None:
    """Raise InputError if any label is not 0 or 1; ``first_row`` numbers the first element,
    or ``entries`` (the entry number of each element, after a selection) every one."""
    bad = (label != 0) & (label != 1)
    if bad.any():
        i, at = _first(bad, first_row, entries)
        raise InputError(
            f"{where}: {int(bad.sum())} label(s) other than 0 or 1; the first at {unit} "
            f"{at}, with value {label[i].item()!r}"
        )


def check_finite(
    arrays: Mapping[str, np.ndarray], names: Sequence[str], where: str, first_entry: int = 0
) -> None:
    """Raise InputError if a branch of ``names`` holds NaN or Inf, naming branch and entry.

    A NaN read from a ROOT file would pass unnoticed until it poisons a fit or a histogram far
    from its source; it is stopped where its file and entry are still known.
    """
    for name in names:
        check_finite_values(arrays[name], where, f"branch {name!r}", first_entry)


def check_finite_values(
    a: np.ndarray,
    where: str,
    what: str,
    first_entry: int = 0,
    *,
    entries: np.ndarray | None = None,
) -> None:
    """Raise InputError if ``a`` (what: e.g. "branch 'met'") holds NaN or Inf, naming the first
    one's entry: ``first_entry`` numbers the first element, or ``entries`` every one."""
    bad = ~np.isfinite(a)
    if bad.any():
        i, at = _first(bad, first_entry, entries)
        raise InputError(
            f"{where}: {what}: {int(bad.sum())} NaN or Inf value(s), the first at "
            f"entry {at} ({a[i].item()!r}); expected finite numbers"
        )


def _first(bad: np.ndarray, first: int, entries: np.ndarray | None) -> tuple[int, int]:
    """The index of the first ``bad`` element and its entry (row) number."""
    i = int(np.argmax(bad))
    return i, int(entries[i]) if entries is not None else first + i
