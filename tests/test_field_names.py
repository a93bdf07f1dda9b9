"""A data.branch_map field whose name holds '/' (legal in an RNTuple) is read as that field,
not as a path to a subfield."""

from __future__ import annotations

import json

import numpy as np
import uproot

from hepflows.cli import main


def test_rntuple_field_with_a_slash_in_its_name(tmp_path):
    rng = np.random.default_rng(4)
    n = 1000  # a test split large enough for validation (ingest checks it)
    cols = {
        "lepton_pt": rng.uniform(25.0, 100.0, n),
        "MET/pt": rng.exponential(40.0, n),
        "m_bb": rng.uniform(0.0, 800.0, n),
    }
    src = tmp_path / "in.root"
    with uproot.recreate(src) as f:
        f.mkrntuple("events", cols)
    settings = {
        "seed": 5,
        "features": ["lepton_pt", "met", "m_bb"],
        "data": {
            "source": "root",
            "path": str(src),
            "label_branch": None,
            "branch_map": {"met": "MET/pt"},
        },
    }
    out = tmp_path / "out"
    outputs = [x for k in ("train", "val", "test") for x in (f"--{k}", str(out / f"{k}.root"))]
    assert main(["ingest", "--quiet", "--settings", json.dumps(settings), *outputs]) == 0
    met = np.concatenate(
        [
            uproot.open(out / f"{k}.root")["events"]["met"].array(library="np")
            for k in ("train", "val", "test")
        ]
    )
    assert np.array_equal(np.sort(met), np.sort(cols["MET/pt"].astype(np.float32)))
