"""The ``refine`` step: weight each generated event by a classifier of MC against a separate
draw of the model (:mod:`hepflows.refine`)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from hepflows.steps.common import features, has_label, has_weight, metadata

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(
    settings: Settings, *, mc_path: str, draw_path: str, generated: str, out: str, report: str
) -> None:
    """Weight each generated event by a classifier of MC vs a separate draw of the model:
    the events plus a ``weight`` branch and the record of the classifier and the weights.

    Args:
        settings: The validated settings.
        mc_path: The classifier's MC events (ROOT), disjoint from every validation.
        draw_path: The classifier's own draw of the model (ROOT).
        generated: The generated events to weight (ROOT).
        out: The weighted events to write (ROOT).
        report: The record to write (JSON).
    """
    from hepflows import config
    from hepflows.atomic import atomic_write_text
    from hepflows.events.reader import read_events
    from hepflows.events.writer import write_events
    from hepflows.refine import disjointness, refine, with_weights

    names = list(features(settings))
    own = settings.refine
    labelled = has_label(draw_path)
    mc = read_events(mc_path, names, entry_stop=own.mc_events, with_weight=has_weight(mc_path))
    draw = read_events(draw_path, names, with_label=labelled)
    sample = read_events(generated, names, with_label=labelled)
    log.info(
        "refine: classifier of %d MC (%s) vs %d generated (%s) events; weighting %d events of %s",
        len(mc[names[0]]),
        mc_path,
        len(draw[names[0]]),
        draw_path,
        len(sample[names[0]]),
        generated,
    )
    weights, record = refine(mc, draw, sample, names, own, seed=settings.seed)
    record.update(
        disjoint=disjointness(settings.data.source, len(mc[names[0]])),
        mc=str(mc_path),
        draw=str(draw_path),
        generated=str(generated),
        settings=own.to_dict(),  # the record is JSON
    )
    compression = settings.sampling.compression
    meta = metadata(
        settings, (*config.MODEL_SECTIONS, "sampling", "refine"), refined=str(generated)
    )
    write_events(
        out,
        with_weights(sample, weights),
        compression=None if compression == "none" else compression,
        metadata=meta,
    )
    atomic_write_text(report, json.dumps(record, indent=2, sort_keys=True) + "\n")
    fit, w = record["fit"], record["weights"]
    log.info(
        "refine: held-out AUC %.4f, calibration error %.4f -> %.4f; ESS %.0f of %d events, "
        "%.3f%% clipped at %g -> %s",
        fit["auc_check"],
        fit["ece_uncalibrated"],
        fit["ece_calibrated"],
        w["ess"],
        w["events"],
        100 * w["fraction_clipped"],
        w["clip"],
        out,
    )
