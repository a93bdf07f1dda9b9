"""The ``amplification`` step: how many MC events the generated sample is worth (n_equiv, G),
its table, the d(n) figure and its verdict line (:mod:`hepflows.validation.amplification`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hepflows import layout
from hepflows.errors import InputError
from hepflows.steps.common import axis_labels, features, has_label, has_weight

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(
    settings: Settings,
    *,
    truth_path: str,
    generated: Sequence[str],
    out_dir: str,
    train: str | None = None,
) -> None:
    """How many MC events the generated sample is worth: amplification.{csv,json}, the d(n)
    figure and the verdict line amplification_summary.html.

    Args:
        settings: The validated settings.
        truth_path: The truth events (ROOT), never seen in training.
        generated: The generated events, one or more files read as one sample.
        out_dir: The validation folder to write into.
        train: The training events, whose count the gain G is relative to; None for none.
    """
    import numpy as np

    from hepflows.events.reader import count_events, read_events
    from hepflows.report.amplification_page import write_summary_html
    from hepflows.report.amplification_plot import plot_amplification
    from hepflows.validation import amplification as amp

    names = list(features(settings))
    own = settings.validation.amplification

    def events(path: str) -> dict:
        return read_events(path, names, with_label=has_label(path), with_weight=has_weight(path))

    parts = [events(p) for p in generated]
    keys = set.intersection(*(set(p) for p in parts))
    made = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    if len(made[names[0]]) == 0:
        raise InputError(f"{', '.join(generated)}: 0 generated events, expected at least one")
    truth = events(truth_path)
    if len(truth[names[0]]) == 0:
        raise InputError(f"{truth_path}: 0 truth events, expected at least one")
    n_train = count_events(train) if train else None
    log.info(
        "amplification: %d generated events against %d truth events (%s)",
        len(made[names[0]]),
        len(truth[names[0]]),
        truth_path,
    )
    rows = amp.amplification(
        truth,
        made,
        names,
        n_train=n_train,
        bins=own.bins,
        cells=own.cells or None,
        alpha=own.alpha,
        # per_process: the generated mixture is the user's choice, so only shapes compare
        slices=("signal", "background") if settings.data.normalise == "per_process" else amp.SLICES,
        seed=settings.seed,
    )
    out = Path(out_dir)
    files = layout.VALIDATION_FILES
    paths = list(amp.write_amplification(rows, out, own.alpha))
    # the MC curve of the figure: subsamples of the truth itself, up to half of it
    n_max = max(len(truth[names[0]]) // 2, 1)
    sizes = np.unique(np.geomspace(min(1000, n_max), n_max, 8).astype(int))
    curve = amp.mc_divergence_curve(truth, names, sizes, bins=own.bins, seed=settings.seed)
    paths += plot_amplification(
        rows, curve, out / files["amplification_plot"], labels=axis_labels(settings)
    )
    paths.append(write_summary_html(rows, out / files["amplification_summary"], own.alpha))
    log.info("amplification: %s", amp.headline(amp.summarize(rows, own.alpha)))
    log.info("wrote %s", ", ".join(map(str, paths)))
