"""Modules that were split or renamed keep their public import paths."""

from __future__ import annotations

import importlib

import pytest

MOVED = {
    "hepflows.events.io": {
        "EventWriter": "hepflows.events.writer",
        "write_events": "hepflows.events.writer",
        "COMPRESSIONS": "hepflows.events.writer",
        "METADATA_KEY": "hepflows.events.writer",
        "read_events": "hepflows.events.reader",
        "iterate_events": "hepflows.events.reader",
        "count_events": "hepflows.events.reader",
        "branch_names": "hepflows.events.reader",
        "read_metadata": "hepflows.events.reader",
        "iter_higgs_csv": "hepflows.events.higgs_csv",
        "convert_higgs_csv": "hepflows.events.convert",
        "convert_root": "hepflows.events.convert",
    },
    "hepflows.merge": {
        "merge_event_files": "hepflows.shards",
        "shard_range": "hepflows.shards",
        "shard_ranges": "hepflows.shards",
        "file_branches": "hepflows.shards",
    },
    "hepflows.validation.summary": {
        "validate_samples": "hepflows.validation.runner",
        "verdict_html": "hepflows.validation.tables",
        "verdict_rst": "hepflows.validation.tables",
        "FEATURE_METRICS": "hepflows.validation.judge",
        "JOINT_METRICS": "hepflows.validation.judge",
    },
    "hepflows.validation": {"validate_samples": "hepflows.validation.runner"},
    "hepflows.flows": {
        "check_model_config": "hepflows.model_config",
        "MODEL_DEFAULTS": "hepflows.model_config",
    },
    "hepflows.training": {"Interrupted": "hepflows.errors"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_give_the_new_objects(old):
    module = importlib.import_module(old)
    for name, new in MOVED[old].items():
        assert getattr(module, name) is getattr(importlib.import_module(new), name), f"{old}.{name}"


def test_io_exports_everything_it_did():
    from hepflows.events import io

    assert set(io.__all__) >= {
        "COMPRESSIONS",
        "METADATA_KEY",
        "EventWriter",
        "convert_higgs_csv",
        "convert_root",
        "count_events",
        "iter_higgs_csv",
        "iterate_events",
        "read_events",
        "read_metadata",
        "write_events",
    }
