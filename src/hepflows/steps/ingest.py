"""The ``ingest`` step: a HIGGS CSV or ROOT ntuples (``data.inputs``) into the train, val and
test event files."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError
from hepflows.steps.common import features, metadata

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(settings: Settings, outputs: Mapping[str, str], checked: Settings) -> None:
    """Convert the configured source into one ROOT file per split.

    Args:
        settings: The validated settings.
        outputs: The file to write for each split: ``train``, ``val`` and ``test``.
        checked: The settings the fail-fast checks see (``settings`` with the later steps'
            choices merged over it), for the negative-weight and split-size checks.
    """
    source = settings.data.source
    if source == "higgs_csv":
        counts = _from_csv(settings, dict(outputs))
    elif source == "root":
        counts = _from_root(settings, dict(outputs), checked)
    else:
        raise InputError(f"key data.source: ingest needs higgs_csv or root, got {source!r}")
    log.info("rows per split: %s", counts)


def _from_csv(settings: Settings, outputs: dict[str, str]) -> Any:
    """The HIGGS CSV of ``data.path`` split into ``outputs``; the rows per split."""
    from hepflows import config
    from hepflows.events import convert as io
    from hepflows.events import inputs

    data = settings.data
    if data.inputs:
        raise InputError("key data.inputs: for source root; source higgs_csv reads data.path")
    if not data.path:
        raise InputError("key data.path: source higgs_csv needs the CSV file")
    path = data.path
    record = (
        {"path": path, "size": Path(path).stat().st_size, "sha256": inputs.file_checksum(path)}
        if Path(path).is_file()
        else None
    )
    meta = metadata(
        settings,
        ("seed", *config.FEATURE_SECTIONS, "data"),
        source=path,
        inputs=[record] if record else [],
    )
    return io.convert_higgs_csv(
        path, outputs, split=data.split.to_dict(), limit=data.limit, metadata=meta
    )


def _from_root(settings: Settings, outputs: dict[str, str], checked: Settings) -> Any:
    """The ROOT ntuples of ``data.path`` or ``data.inputs`` into ``outputs``; the rows per
    split."""
    from hepflows import config, feasibility
    from hepflows.events import inputs

    data = settings.data
    files = inputs.resolve_inputs(data)
    meta = metadata(
        settings,
        ("seed", *config.FEATURE_SECTIONS, "data"),
        source=data.path or [e.path for e in data.inputs],
    )
    return inputs.convert_inputs(
        files,
        outputs,
        features=features(settings),
        seed=settings.seed,
        branch_map=dict(data.branch_map),
        weight_branch=data.weight_branch,
        selection=data.selection,
        derived=dict(settings.derived),
        split=data.split.to_dict(),
        limit=data.limit,
        metadata=meta,
        wild_values=data.wild_values,
        on_negative=lambda where, n: feasibility.check_negative_weight(where, n, checked),
        on_splits=lambda tallies, weighted: feasibility.check_splits(tallies, checked, weighted),
    )
