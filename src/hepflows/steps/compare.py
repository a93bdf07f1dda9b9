"""The ``compare`` step: the verdicts of a grid's models side by side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hepflows import layout

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(settings: Settings, *, models: Sequence[str], out_dir: str) -> None:
    """The verdicts of a grid's models side by side: models.csv and models.html.

    Args:
        settings: The validated settings (``models:`` describes the grid).
        models: The models' folders; a folder is named as its model in the grid.
        out_dir: The comparison folder to write.
    """
    from hepflows.report.compare import describe_model, model_summary, write_comparison

    rows = []
    for folder in map(Path, models):
        # a model's folder is named as in the grid; a folder of another run is shown undescribed
        name = folder.name
        description = describe_model(settings.variant(name)) if name in settings.models else ""
        rows.append(model_summary(folder, name, description=description))
    write_comparison(rows, out_dir)
    log.info(
        "compared %d model(s) -> %s",
        len(rows),
        Path(out_dir) / layout.COMPARISON_FILES["comparison_html"],
    )
