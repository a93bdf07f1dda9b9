"""The ``validate`` step: generated events against held-out MC: metrics (JSON, CSV), the
verdict, the plots, the reweighted sample's verdict (refine) and the physics closure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows import layout
from hepflows.errors import InputError
from hepflows.steps.common import (
    axis_labels,
    discrete_features,
    features,
    has_label,
    has_weight,
)

if TYPE_CHECKING:
    from hepflows.settings import Settings, ValidationSettings

log = logging.getLogger("hepflows")


def run(
    settings: Settings,
    *,
    reference: str,
    generated: str,
    out_dir: str,
    train: str | None = None,
    reweighted: str | None = None,
    refine_report: str | None = None,
) -> None:
    """Compare generated events with held-out MC: metrics (JSON, CSV), verdict and plots.

    Args:
        settings: The validated settings.
        reference: The held-out MC events (ROOT), weighted or not.
        generated: The generated events (ROOT); without a label branch (an unconditional
            flow) all events are compared as one class.
        out_dir: The validation folder to write.
        train: The training events, for the physics closure; None skips it.
        reweighted: Refine's reweighted events, validated into ``<out_dir>/reweighted/``;
            None skips them.
        refine_report: Refine's record (refine.json); needed with ``reweighted``.
    """
    import numpy as np

    from hepflows.events.reader import read_events
    from hepflows.events.schema import LABEL
    from hepflows.report.plots import figure_text
    from hepflows.report.runner import validate_samples
    from hepflows.validation.closure import write_closure

    names = features(settings)
    own = settings.validation
    mc = read_events(
        reference,
        names,
        entry_stop=2 * own.max_events,
        with_weight=has_weight(reference),
    )
    check_validation_weights(reference, mc, own.classifier)
    labelled = has_label(generated)
    made = read_events(generated, names, with_label=labelled, entry_stop=own.max_events)
    if not labelled:
        # An unconditional flow generates signal and background together, without labels:
        # compare everything as one class (only the "all" slice), and skip the closure.
        log.warning(
            "%s has no labels (unconditional model): comparing all events as one class",
            generated,
        )
        mc[LABEL] = np.zeros_like(mc[LABEL])
        made[LABEL] = np.zeros(len(made[names[0]]), np.int8)
    log.info(
        "validating %d generated against %d MC events",
        len(made[names[0]]),
        len(mc[names[0]]),
    )
    plots = settings.plots  # the figures' label, sqrt(s) and luminosity
    with figure_text(label=plots.label, energy=plots.energy, lumi=plots.lumi):
        validate_samples(
            mc,
            made,
            names,
            Path(out_dir),
            discrete=discrete_features(settings, mc, names, reference),
            labels=axis_labels(settings),
            **common_arguments(settings),
        )
        if reweighted:
            validate_reweighted(
                settings, mc, reference, reweighted, refine_report, out_dir, labelled
            )
    if train:
        import time

        log.info("validate: physics closure (classifier AUC, pyhf signal-strength fit)...")
        t0 = time.perf_counter()
        training = read_events(train, names, entry_stop=5 * own.max_events)
        write_closure(
            training,
            mc,
            made,
            names,
            Path(out_dir) / layout.VALIDATION_FILES["closure"],
            seed=settings.seed,
        )
        log.info("validate: physics closure done in %.1f s", time.perf_counter() - t0)


def common_arguments(settings: Settings) -> dict[str, Any]:
    """What :func:`~hepflows.report.runner.validate_samples` takes from the settings for
    the raw and the reweighted sample alike."""
    own: ValidationSettings = settings.validation
    derived = own.judges.derived
    return {
        "n_null": own.n_null,
        "seed": settings.seed,
        "units": settings.data.units,
        "classifier": own.classifier,
        "normalise": settings.data.normalise,
        "judge_families": list(own.judges.families),
        "derived": None if derived is None else dict(derived),
    }


def validate_reweighted(
    settings: Settings,
    mc: dict,
    reference: str,
    reweighted: str,
    refine_report: str | None,
    out_dir: str,
    labelled: bool,
) -> None:
    """The reweighted verdict (refine): the same events with their weights, against the same
    MC, into ``<out-dir>/reweighted/``; then the raw and reweighted verdicts side by side."""
    import numpy as np

    from hepflows.events.reader import read_events
    from hepflows.events.schema import LABEL
    from hepflows.records import read_json
    from hepflows.report.runner import validate_samples
    from hepflows.report.tables import write_refine_comparison

    if not refine_report:
        raise InputError("validate --reweighted: give --refine-report (refine's refine.json)")
    names = features(settings)
    out = Path(out_dir)
    events = read_events(
        reweighted,
        names,
        with_label=labelled,
        with_weight=True,
        entry_stop=settings.validation.max_events,
    )
    if not labelled:
        events[LABEL] = np.zeros(len(events[names[0]]), np.int8)
    log.info("validating the reweighted sample %s", reweighted)
    result = validate_samples(
        mc,
        events,
        names,
        out / layout.VALIDATION_FILES["reweighted"],
        plots=False,
        discrete=discrete_features(settings, mc, names, reference),
        **common_arguments(settings),
    )
    raw = read_json(out / layout.VALIDATION_FILES["metrics"])
    report = read_json(Path(refine_report), missing="not found; run the refine step first")
    path = write_refine_comparison(
        out / layout.VALIDATION_FILES["refine_comparison"], raw, result, report
    )
    log.info("raw and reweighted verdicts: %s -> %s", result["overall_status"], path)


def check_validation_weights(path: str, events: dict, classifier: bool) -> None:
    """Log the Kish effective sample size and negative weights of weighted MC, by file.

    The metrics take negative weights (signed ECDFs and histograms); the classifier test does
    not, which ingest has already refused: this catches event files made elsewhere.
    """
    import numpy as np

    from hepflows.events.schema import WEIGHT
    from hepflows.feasibility import NEGATIVE_WEIGHTS

    w = events.get(WEIGHT)
    if w is None:
        return
    negative = int((w < 0).sum())
    if negative and classifier:
        i = int(np.argmax(w < 0))
        raise InputError(
            f"{path}: branch 'weight': {negative} negative weight(s), the first at entry {i} "
            f"({w[i].item()!r}): {NEGATIVE_WEIGHTS}"
        )
    from hepflows.kish import effective_size

    log.info(
        "%s: weighted MC, %d events (%d negative weights), effective sample size (Kish) %.0f",
        path,
        len(w),
        negative,
        effective_size(w.astype(np.float64), len(w)),
    )
