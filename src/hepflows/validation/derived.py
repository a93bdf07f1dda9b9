"""Derived observables for the validation's classifier judges.

A gradient-boosted tree cuts one input at a time, so a mismodelled ratio or difference of two
features (the mass hierarchy m_wwbb > m_wbb > m_bb, a pT balance) shows to it only as a
staircase of many cuts, and a generator can be wrong there while the trees see little.  Giving
the judges such combinations as inputs of their own makes those directions one cut away.

Each observable is an arithmetic expression of feature names in the selection language of
:class:`hepflows.events.selection.Expression` (``+ - * / **``, ``abs``, ``sqrt``, ``exp``,
``log``, ``log10``).  :data:`HIGGS_DERIVED` is the default for the embedded generator's
features (GeV): mass ratios and differences, log pT, the leading jets' pT balance and the
scalar sum of the visible pT and MET.  An observable naming a feature that is not among the
validated ones is skipped, so the default is empty for other feature sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.selection import Expression

#: The default derived observables (name: expression) for the HIGGS feature set.
HIGGS_DERIVED: dict[str, str] = {
    "m_jjj/m_jj": "m_jjj / m_jj",
    "m_wbb/m_bb": "m_wbb / m_bb",
    "m_wwbb/m_wbb": "m_wwbb / m_wbb",
    "m_jlv-m_lv": "m_jlv - m_lv",
    "m_wwbb-m_wbb": "m_wwbb - m_wbb",
    "log_lepton_pt": "log(lepton_pt)",
    "log_met": "log(met + 1)",
    "log_jet1_pt": "log(jet1_pt)",
    "jet12_pt_balance": "(jet1_pt - jet2_pt) / (jet1_pt + jet2_pt)",
    "ht": "lepton_pt + met + jet1_pt + jet2_pt + jet3_pt + jet4_pt",
}


def derived_expressions(
    setting: Mapping[str, str] | None, features: Sequence[str]
) -> dict[str, Expression]:
    """The parsed observables of ``setting`` (None: :data:`HIGGS_DERIVED`) that read only
    ``features``; an expression that does not parse is an :class:`InputError` naming it."""
    chosen = HIGGS_DERIVED if setting is None else setting
    parsed = {
        name: Expression(expr, key=f"validation.judges.derived.{name}")
        for name, expr in chosen.items()
    }
    if setting is not None:  # the user's own: every name must be a validated feature
        for name, sel in parsed.items():
            unknown = [n for n in sel.names if n not in features]
            if unknown:
                raise InputError(
                    f"validation.judges.derived.{name} {sel.expression!r}: unknown feature(s) "
                    f"{unknown}; expected names from {list(features)}"
                )
    return {n: s for n, s in parsed.items() if all(f in features for f in s.names)}


def derived_columns(
    x: NDArray[np.float64], features: Sequence[str], observables: Mapping[str, Expression]
) -> NDArray[np.float64]:
    """The observables of events ``x`` (n, d) with columns ``features``: (n, k), one column per
    observable in order; non-finite values (log of 0, 0/0) become 0 so a classifier can take
    them, and are rare enough not to matter to it."""
    arrays = {f: x[:, j] for j, f in enumerate(features)}
    cols = [s.values(arrays, len(x)) for s in observables.values()]
    out = np.column_stack(cols) if cols else np.zeros((len(x), 0))
    return np.where(np.isfinite(out), out, 0.0)
