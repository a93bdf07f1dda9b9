"""The validation step: :func:`validate_samples` judges generated events against held-out MC
(the statistics of :mod:`hepflows.validation.evaluation`, where the null and the verdict are
explained) and writes metrics.json, metrics.csv, verdict.csv, verdict.html and the figures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepflows import layout
from hepflows.parallel import Runner, Task, default_workers, run_here, task_pool
from hepflows.records import jsonable
from hepflows.report.tables import write_tables
from hepflows.settings import AxisLabel
from hepflows.validation import null as nl
from hepflows.validation.evaluation import Evaluation, evaluate
from hepflows.validation.judge import FEATURE_METRICS

if TYPE_CHECKING:
    from hepflows.report.plots import FigureText

log = logging.getLogger(__name__)

#: Generated events from which ``validate_samples`` shares its work by default.
POOL_MIN_EVENTS = 5000


def validate_samples(
    reference: Mapping,
    generated: Mapping,
    features: Sequence[str],
    out_dir: Path,
    *,
    null_reference: Mapping | None = None,
    n_null: int = 20,
    seed: int = 0,
    units: str = "GeV",
    classifier: bool = True,
    plots: bool = True,
    training_log: Path | None = None,
    n_null_classifier: int = 5,
    model: str | None = None,
    discrete: Sequence[str] = (),
    labels: Mapping[str, AxisLabel] | None = None,
    normalise: str = "total",
    judge_families: Sequence[str] = ("gbt", "mlp"),
    derived: Mapping[str, str] | None = None,
    workers: int | None = None,
) -> dict:
    """Compare generated events with held-out MC; write metrics, verdict and figures.

    ``reference`` (held-out MC) and ``generated`` are event dicts ``{feature: (n,) array,
    "label": (n,) int8, optionally "weight": (n,)}``; ``null_reference`` an optional
    independent MC sample of the same layout.  The null distribution is built as described in
    the module docstring, from ``n_null`` MC-vs-MC pairs (``n_null_classifier`` for the
    classifier test).  Writes into ``out_dir``: metrics.json, metrics.csv, verdict.csv,
    verdict.html and, when ``plots``, plots/<feature>.{pdf,png}, correlation_difference,
    classifier_roc (when ``classifier``) and training_curve (when ``training_log``), the
    overview of every feature and slice and the 2-D comparisons of :data:`plots.PAIRS_2D`;
    ``model`` names the generator in the figures' legends; ``labels`` gives features their
    axis labels and units (:func:`hepflows.events.observables.axis_label`).  The ``discrete``
    features are judged by the chi2 of their values (the quantile bins of a feature with few
    values are its values), not by a KS test of a staircase: they have no KS cells.
    ``normalise`` ``"per_process"`` (``data.normalise``) scales each MC process's weights to
    mean 1 before anything is compared (:func:`samples.per_process`): every slice then compares shapes, the "all"
    slice at the same mixture as the generated sample's; the signal fraction is reported,
    not tested, and the plots draw each process normalised to its own area.
    ``judge_families`` and ``derived`` (name: expression; None: the defaults of
    :mod:`hepflows.validation.derived`, {}: none) make the classifier panel.
    ``workers`` processes share the null pairs' metrics, the judges' fits and the figures;
    every number and figure is the same for any count.  None: :func:`parallel.default_workers`
    from :data:`POOL_MIN_EVENTS` generated events on, one process below (starting the pool
    costs a few seconds, more than it saves on a small sample).
    Returns the dict written to metrics.json.
    """
    if workers is None:
        n_generated = max((len(v) for v in generated.values()), default=0)
        workers = default_workers() if n_generated >= POOL_MIN_EVENTS else 1
    with task_pool(workers) as run:
        return _validate_samples(
            run,
            reference,
            generated,
            features,
            out_dir,
            null_reference=null_reference,
            n_null=n_null,
            seed=seed,
            units=units,
            classifier=classifier,
            plots=plots,
            training_log=training_log,
            n_null_classifier=n_null_classifier,
            model=model,
            discrete=discrete,
            labels=labels,
            normalise=normalise,
            judge_families=judge_families,
            derived=derived,
        )


def _validate_samples(
    run: Runner,
    reference: Mapping,
    generated: Mapping,
    features: Sequence[str],
    out_dir: Path,
    *,
    units: str,
    plots: bool,
    training_log: Path | None,
    model: str | None,
    labels: Mapping[str, AxisLabel] | None,
    **settings: Any,
) -> dict:
    """:func:`validate_samples` with ``run`` running its independent tasks; ``units`` and
    ``settings`` are :func:`hepflows.validation.evaluation.evaluate`'s."""
    features = tuple(features)
    found = evaluate(run, reference, generated, features, units=units, **settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        log.info("validate 4/4: figures...")
        _write_plots(
            out_dir / layout.VALIDATION_FILES["plots"],
            found,
            features,
            units,
            training_log,
            model=model,
            labels=labels,
            run=run,
        )
    end = time.perf_counter()
    if plots:
        log.info("validate 4/4: figures done in %.1f s", end - found.judged)
    result = dict(found.result)
    result["runtime_s"] = {
        "metrics": found.metrics_done - found.started,
        "classifier": found.judged - found.metrics_done,
        "plots": end - found.judged,
        "total": end - found.started,
    }
    result = jsonable(result)
    write_tables(out_dir, result, found.result["rows"], found.result["verdict"])
    return result


def _write_plots(
    plot_dir: Path,
    found: Evaluation,
    features: Sequence[str],
    units: str,
    training_log: Path | None,
    *,
    model: str | None = None,
    labels: Mapping[str, AxisLabel] | None = None,
    run: Runner | None = None,
) -> None:
    """All figures, drawn by ``run`` (in this process when None); the feature plots show the
    full samples, not the compared subsamples (each process normalised to its own area with
    ``found.shapes``).

    The ratio panels' MC-vs-MC band comes from the verdict's own null pairs, scaled per class
    by the ratio of the plotted samples' statistical error to a null pair's,
    sqrt((1/N_MC + 1/N_gen) / (2/n_c)), since the figure shows the full samples.
    """
    from hepflows.report import plots  # matplotlib is slow to import: only when plotting

    ref, gen, slices = found.reference, found.generated, found.slices
    correlation, classifier_result = found.result["correlation"], found.result["classifier"]

    plot_dir.mkdir(parents=True, exist_ok=True)
    text = plots.current_figure_text()
    tasks: list[Task] = []

    def draw(fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        tasks.append((_draw, (text, fn, args, kwargs), {}))

    scale = _null_scale(found)
    stats, worst = _panel_stats(found.rows)
    for j, f in enumerate(features):
        pairs = [
            ((p.x[:, j], p.label, p.w), (q.x[:, j], q.label, q.w)) for p, q in found.null_pairs
        ]
        draw(
            plots.plot_feature,
            f,
            (ref.x[:, j], ref.label, ref.w),
            (gen.x[:, j], gen.label, gen.w),
            plot_dir / f,
            units=units,
            null_pairs=pairs,
            null_scale=scale,
            stats=stats.get(f),
            model=model,
            labels=labels,
            shapes=found.shapes,
        )
    draw(
        plots.plot_overview,
        features,
        (ref.x, ref.label, ref.w),
        (gen.x, gen.label, gen.w),
        plot_dir / "overview",
        model=model,
        slices=slices or ("all",),
        statuses={k: nl.worst_status(v) for k, v in worst.items()},
        labels=labels,
    )
    for fx, fy in plots.PAIRS_2D:
        if fx in features and fy in features:
            cols = [features.index(fx), features.index(fy)]
            draw(
                plots.plot_2d_comparison,
                (fx, fy),
                (ref.x[:, cols], ref.label, ref.w),
                (gen.x[:, cols], gen.label, gen.w),
                plot_dir / f"2d_{fx}_vs_{fy}",
                units=units,
                model=model,
            )
    draw(
        plots.plot_correlation_difference,
        {s: c["difference"] for s, c in correlation.items()},
        features,
        plot_dir / "correlation_difference",
        outside={s: c["outside"] for s, c in correlation.items()},
        labels=labels,
    )
    if classifier_result is not None:
        draw(
            plots.plot_roc,
            classifier_result,
            plot_dir / "classifier_roc",
            null_results=classifier_result["null"]["roc"],
        )
    if training_log is not None:
        draw(plots.plot_training_curve, Path(training_log), plot_dir / "training_curve")
    # the costliest first, so that no worker is left with a long one at the end
    tasks.reverse()
    (run or run_here)(tasks)


def _null_scale(found: Evaluation) -> dict[int, float]:
    """Per class, a null pair's ratio band scaled to the plotted full samples' error."""
    ref, gen = found.reference, found.generated
    scale = {}
    for c, n_c in found.sizes.items():
        n_r, n_g = np.count_nonzero(ref.label == c), np.count_nonzero(gen.label == c)
        if n_c > 0 and n_r > 0 and n_g > 0:
            scale[c] = float(np.sqrt((1 / n_r + 1 / n_g) / (2 / n_c)))
    return scale


def _panel_stats(
    rows: Sequence[Mapping],
) -> tuple[dict[str, dict[str, dict]], dict[tuple[str, str], list[str]]]:
    """The KS and chi2/ndf (value, status) of each feature and slice, for the feature plots'
    text, and the statuses of each (feature, slice), for the overview's colours."""
    stats: dict[str, dict[str, dict]] = {}
    worst: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["metric"] in FEATURE_METRICS:
            worst.setdefault((row["feature"], row["slice"]), []).append(row["status"])
            if row["metric"] in ("ks", "chi2_ndf"):
                stats.setdefault(row["feature"], {}).setdefault(row["slice"], {})[row["metric"]] = (
                    float(row["value"]),
                    row["status"],
                )
    return stats, worst


def _draw(
    text: FigureText, fn: Callable[..., object], args: tuple, kwargs: Mapping[str, object]
) -> object:
    """``fn(*args, **kwargs)`` under the figure text ``text`` (a worker has none of its own)."""
    from hepflows.report.plots import figure_text

    with figure_text(label=text.label, energy=text.energy, lumi=text.lumi):
        return fn(*args, **kwargs)
