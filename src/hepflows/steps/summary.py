"""The ``summary`` step: the report's first page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(settings: Settings, *, run_dir: str, models: Sequence[str] | None, out: str) -> None:
    """The report's first page: what ran (config, model, epochs, device, wall time per step,
    commit) and the verdict in one sentence with its coloured table.

    Args:
        settings: The validated settings.
        run_dir: The run's folder.
        models: The models' folders (a grid's); None or empty for the run's own folder.
        out: The page to write (HTML).
    """
    from hepflows.report.run_summary import write_summary

    folders = [Path(m) for m in models] if models else [Path(run_dir)]
    pairs = [(folder, folder.name if settings.models else None) for folder in folders]
    page = write_summary(settings, run_dir, pairs, out)
    log.info("summary of %d model(s) -> %s", len(pairs), page)
