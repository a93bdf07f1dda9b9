"""The HIGGS event layout: the features of the embedded generator and of the HIGGS CSV.

The HIGGS dataset (Baldi, Sadowski, Whiteson 2014) stores per event a label and 28 features:
21 low-level kinematic quantities and 7 reconstructed invariant masses.  Event files of this
project are ROOT files with one TTree ``events`` holding one float32 branch per feature (named
as below for those sources, by the user for ROOT ntuples, :mod:`hepflows.events.observables`),
plus an int8 ``label`` branch (1 signal, 0 background).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

TREE_NAME = "events"
LABEL = "label"
WEIGHT = "weight"

JETS = ("jet1", "jet2", "jet3", "jet4")

#: The 28 features in the column order of the HIGGS CSV (after the leading label).
HIGGS_FEATURES: tuple[str, ...] = (
    "lepton_pt",
    "lepton_eta",
    "lepton_phi",
    "met",
    "met_phi",
    *(f"{jet}_{q}" for jet in JETS for q in ("pt", "eta", "phi", "btag")),
    "m_jj",
    "m_jjj",
    "m_lv",
    "m_jlv",
    "m_bb",
    "m_wbb",
    "m_wwbb",
)

AZIMUTHS: tuple[str, ...] = ("lepton_phi", "met_phi", *(f"{jet}_phi" for jet in JETS))
BTAGS: tuple[str, ...] = tuple(f"{jet}_btag" for jet in JETS)
MASSES: tuple[str, ...] = ("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb")

#: The 18 continuous features the seed study modelled: all 28 minus azimuths and b-tags.
CONTINUOUS_FEATURES: tuple[str, ...] = tuple(
    f for f in HIGGS_FEATURES if f not in AZIMUTHS and f not in BTAGS
)

#: Named feature sets a config may use instead of an explicit list.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "continuous": CONTINUOUS_FEATURES,
    "all": HIGGS_FEATURES,
}


def unit(feature: str) -> str:
    """Physical unit of a feature in GeV-valued files: ``"GeV"`` for momenta and masses."""
    if feature.endswith("_pt") or feature == "met" or feature.startswith("m_"):
        return "GeV"
    return ""


_PRETTY = {
    "lepton": r"\ell",
    "met": r"E_{\mathrm{T}}^{\mathrm{miss}}",
    "jet1": r"j_1",
    "jet2": r"j_2",
    "jet3": r"j_3",
    "jet4": r"j_4",
}


def axis_label(feature: str, *, units: str = "GeV") -> str:
    """Matplotlib label of a feature, e.g. ``$p_{T}(j_1)$ [GeV]``; no unit for HIGGS units."""
    if feature == "met":
        text = _PRETTY["met"]
    elif feature == "met_phi":
        text = r"\phi(" + _PRETTY["met"] + ")"
    elif feature.startswith("m_"):
        sub = feature[2:].replace("l", r"\ell").replace("v", r"\nu")
        text = "m_{" + sub + "}"
    else:
        obj, q = feature.split("_", 1)
        sym = {"pt": r"p_{\mathrm{T}}", "eta": r"\eta", "phi": r"\phi", "btag": r"\mathrm{b}"}[q]
        if q == "btag":
            return f"b-tag(${_PRETTY[obj]}$)"
        text = f"{sym}({_PRETTY[obj]})"
    u = unit(feature)
    return f"${text}$" + (f" [{u}]" if u and units == "GeV" else "")


def resolve_features(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Turn a config's feature spec (a set name or a list of names) into feature names.

    Raises ``ValueError`` for an unknown set name or a repeated name; which names a data source
    has is checked by :func:`hepflows.events.observables.check_observables`.
    """
    if isinstance(spec, str):
        if spec not in FEATURE_SETS:
            raise ValueError(
                f"unknown feature set {spec!r}; expected one of {sorted(FEATURE_SETS)} "
                "or a list of feature names"
            )
        return FEATURE_SETS[spec]
    names = tuple(spec)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate feature names in {list(names)}")
    return names


def check_known(names: Iterable[str]) -> None:
    """Raise ``ValueError`` if any name is not one of the 28 HIGGS features."""
    unknown = [n for n in names if n not in HIGGS_FEATURES]
    if unknown:
        raise ValueError(
            f"unknown feature(s) {unknown}; expected names from {list(HIGGS_FEATURES)}"
        )
