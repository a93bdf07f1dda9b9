"""An analysis-like ntuple set, built with uproot, for tests of the user's own observables.

Four processes (three backgrounds and a signal), several files each, TTree ``Nominal`` (one
process written as an RNTuple), the analysis' own branch names: ``lep_pt``, ``lep_eta``,
``met_met``, a jagged jet collection ``jet_pt`` (2 to 6 jets, ordered), an integer multiplicity
``n_bjets`` (int32, 0/1/2), ``mbb`` and a generator weight ``weight_mc``.  Options: the share of
negative NLO weights (``negative_fraction``, e.g. 0.05) and a cross-section factor per file
(``xsec``), returned in each input entry's ``weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

TREE = "Nominal"

#: process -> (label, files, events per file, scale of the kinematics)
PROCESSES: dict[str, tuple[int, int, int, float]] = {
    "ttbar": (0, 2, 400, 1.0),
    "wjets": (0, 1, 500, 0.8),
    "singletop": (0, 1, 300, 0.9),
    "signal": (1, 2, 450, 1.3),
}


def _events(rng: np.random.Generator, n: int, scale: float, negative_fraction: float) -> dict:
    n_jets = rng.integers(2, 7, n)
    pts = rng.exponential(40.0 * scale, n_jets.sum()) + 20.0
    jets = ak.unflatten(pts.astype(np.float32), n_jets)
    jets = ak.sort(jets, axis=1, ascending=False)  # leading jet first
    weight = rng.normal(1.0, 0.1, n)
    flip = rng.random(n) < negative_fraction
    weight[flip] *= -1.0
    return {
        "lep_pt": (rng.exponential(30.0 * scale, n) + 20.0).astype(np.float32),
        "lep_eta": rng.uniform(-2.5, 2.5, n).astype(np.float32),
        "met_met": rng.gamma(2.0, 25.0 * scale, n).astype(np.float32),
        "jet_pt": jets,
        "n_bjets": np.minimum(rng.poisson(0.6 * scale, n), 2).astype(np.int32),
        "mbb": (rng.normal(120.0 if scale > 1.2 else 90.0, 25.0, n)).clip(10.0).astype(np.float32),
        "weight_mc": weight.astype(np.float32),
    }


def build(
    directory: Path,
    *,
    seed: int = 5,
    negative_fraction: float = 0.0,
    xsec: Mapping[str, float] | None = None,
    rntuple: str = "singletop",
    scale_events: float = 1.0,
) -> list[dict[str, Any]]:
    """Write the ntuples under ``directory``; return the config's ``data.inputs`` entries.

    ``xsec``: process -> weight factor of each of its files (default 1); ``rntuple``: the
    process written as RNTuple instead of TTree; ``scale_events`` multiplies the file sizes.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    inputs: list[dict[str, Any]] = []
    for process, (label, files, n, scale) in PROCESSES.items():
        for i in range(files):
            cols = _events(rng, max(int(n * scale_events), 10), scale, negative_fraction)
            path = directory / f"{process}_{i}.root"
            with uproot.recreate(path) as f:
                if process == rntuple:
                    f.mkrntuple(TREE, cols)
                else:
                    types = {
                        k: v.type.content if isinstance(v, ak.Array) else v.dtype
                        for k, v in cols.items()
                    }
                    f.mktree(TREE, types).extend(cols)
            entry: dict[str, Any] = {"path": str(path), "label": label, "tree": TREE}
            if xsec and process in xsec:
                entry["weight"] = float(xsec[process])
            inputs.append(entry)
    return inputs
