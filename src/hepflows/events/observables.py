"""The user's observables: feature names, derived expressions, discrete features, axis labels.

The features of a run are ``features`` (for ROOT inputs any branch names; for the embedded
generator and the HIGGS CSV the HIGGS names of :mod:`hepflows.events.schema`) followed by the
names of ``derived`` that are not listed there.  A derived observable is an
:class:`~hepflows.events.selection.Expression` of branches, computed at ingest and stored as a
branch of its own, so every later step sees one float32 branch per feature.  ``labels`` gives a
feature its axis label and unit; a HIGGS name falls back to its label of
:func:`hepflows.events.schema.axis_label`, any other name to itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hepflows.events.schema import HIGGS_FEATURES, LABEL, WEIGHT, resolve_features

if TYPE_CHECKING:
    from hepflows.settings import AxisLabel

__all__ = ["axis_label", "check_observables", "feature_names", "unit"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def feature_names(
    features: str | Sequence[str], derived: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The modelled features: ``features`` (names, or the name of a feature set of
    :func:`~hepflows.events.schema.resolve_features`) then the unlisted ``derived`` names."""
    names = resolve_features(features)
    return names + tuple(d for d in derived or {} if d not in names)


def check_observables(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Check features, derived, discrete and labels against each other and the data source;
    return the feature names.  Raises ``ValueError`` starting with the key at fault."""
    source = config["data"]["source"]
    derived = dict(config.get("derived") or {})
    try:
        names = feature_names(config["features"], derived)
    except ValueError as err:
        raise ValueError(f"features: {err}") from None
    if source != "root":
        unknown = [n for n in names if n not in HIGGS_FEATURES]
        if unknown:
            raise ValueError(
                f"features: unknown feature(s) {unknown} for data.source {source!r}: "
                f"expected names from {list(HIGGS_FEATURES)} (its events' HIGGS features); "
                "your own observables come from ROOT ntuples (data.source: root)"
            )
        if derived:
            raise ValueError(f"derived: for data.source root; {source!r} has fixed features")
    for n in names:
        if not _NAME.match(n):
            hint = ""
            if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$", n):
                hint = (
                    f'; for an element of a jagged branch write derived: {{{m[1]}_{m[2]}: "{n}"}}'
                )
            raise ValueError(
                f"features: {n!r} is not a name (letters, digits, _; not starting with a digit){hint}"
            )
        if n in (LABEL, WEIGHT):
            raise ValueError(f"features: {n!r} is the event files' {n} branch, not a feature")
    for key in ("discrete", "labels"):
        unknown = [n for n in config.get(key) or () if n not in names]
        if unknown:
            raise ValueError(f"{key}: {unknown} are not features; the features are {list(names)}")
    return names


def unit(feature: str, labels: Mapping[str, AxisLabel] | None = None) -> str:
    """The unit of a feature: its ``labels`` entry's, else GeV for HIGGS momenta and masses."""
    from hepflows.events import schema

    entry = (labels or {}).get(feature)
    if entry is not None:
        return entry.unit or ""
    return schema.unit(feature) if feature in HIGGS_FEATURES else ""


def axis_label(
    feature: str, labels: Mapping[str, AxisLabel] | None = None, *, units: str = "GeV"
) -> str:
    """Axis label of a feature: ``labels[feature]`` (label and unit, ``"$p_T^\\ell$ [GeV]"``),
    else the HIGGS label of a HIGGS name, else the name itself; ``units="none"`` drops the
    unit."""
    from hepflows.events import schema

    entry = (labels or {}).get(feature)
    if entry is None and feature in HIGGS_FEATURES:
        return schema.axis_label(feature, units=units)
    text = (entry.label if entry is not None else None) or feature
    u = unit(feature, labels)
    return text + (f" [{u}]" if u and units != "none" else "")
