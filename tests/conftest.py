"""Shared fixtures: the repository root, the real-data folder, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_HIGGS = ROOT.parent / "shared" / "data" / "higgs"

# Tests share 2 cores with each other's subprocesses: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_settings() -> dict:
    """Config sections for a run that finishes in seconds."""
    return {
        "run": "tiny",
        "seed": 3,
        "features": ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"],
        "data": {"events": {"train": 2000, "val": 500, "test": 1000}},
        "model": {"coupling": "affine", "blocks": 2, "hidden": [16, 16], "permutation": "lu"},
        "training": {"epochs": 2, "batch_size": 256, "lr": 1e-3, "device": "cpu"},
        "sampling": {"events": 1500, "chunk_size": 400},
        "validation": {"max_events": 500, "n_null": 20, "classifier": False},
    }


@pytest.fixture
def real_higgs() -> Path:
    path = SHARED_HIGGS / "higgs_real_subset.csv.gz"
    if not path.exists():
        pytest.skip(f"real HIGGS subset not present at {path}")
    return path
