"""The validation step: generated events vs held-out MC, judged against MC vs MC.

:func:`validate_samples` is the one entry point.  It computes every metric between the
generated sample and MC, the same metric between pairs of independent MC samples of the same
sizes (the null distribution), and from the two a band, a p-value and a colour per metric,
feature and slice, plus a verdict per metric.  It writes ``metrics.json``, ``metrics.csv``,
``verdict.csv``, ``verdict.html`` and the figures.

How the null is built
---------------------
Per label class ``c`` the compared samples hold ``n_c`` events each, with

* ``n_c = min(#generated_c, #reference_c // 2)`` without ``null_reference``: the reference MC
  is split; the generated events are compared with one random half of it, ``A`` (``n_c``
  events), and each null pair is a fresh random *disjoint* split of the whole reference MC into
  two sets of ``n_c`` events.
* ``n_c = min(#generated_c, #reference_c, #pool_c // 2)`` with ``null_reference``: the
  generated events are compared with ``n_c`` reference events, and the null pairs are random
  disjoint splits of the pool reference + null_reference.

Why: if the MC events are i.i.d., any two disjoint random subsets are two independent MC
samples, so every null pair has exactly the distribution that generated-vs-``A`` has when the
flow is perfect, at exactly the same sizes per class and overall.  The pairs overlap with one
another, which adds Monte-Carlo noise to the band but no bias.  Bootstrap resampling was not
used: it duplicates events, which changes the KS and chi2 distributions (ties, correlated
bins).  The generated sample is subsampled to ``n_c`` events per class, so all slices
("all", "signal", "background") have the same sizes in the value and in the null; whether the
generator's signal fraction matches the MC's is tested separately (``label_fraction``).

Every metric is computed by the same function (:func:`_pair_metrics`) for the value and for
every null pair, with the same binning rule and settings.  The band edge and chance rate are
described in :mod:`hepflows.validation.null`.

The classifier test is costlier, so its null has fewer empirical pairs
(``n_null_classifier``, default 5) and its band comes from the exact Mann-Whitney distribution
of a held-out AUC under the null (mean 0.5, one-sided edge at 0.5 + z sigma); the empirical
MC-vs-MC AUCs are reported beside it as a check.  It is a panel of judges: each classifier
family of ``judge_families`` on the features, and again with the ``derived`` observables
(:mod:`hepflows.validation.derived`) added; the most sensitive judge gives the verdict, at a
Bonferroni-corrected edge (:func:`judge.classifier_block`).  The judges are trained on half
of the compared events (the held-out MC and the generated sample) and scored on the other
half: no event of the refine step's classifier (:mod:`hepflows.refine`) is among them.

A weighted generated sample (the refine step's) is noisier than its event count says: its
metrics fluctuate as for its Kish effective size.  So that its null describes that, the second
sample of each null pair carries the compared generated events' own weights, randomly permuted
within each class (:func:`weighted_like`): weights independent of the events leave the MC's
distribution as it is and give the pair the same effective size as the value pair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from hepflows import layout
from hepflows.errors import InputError
from hepflows.parallel import Runner, Task, default_workers, run_here, task_pool
from hepflows.validation import null as nl
from hepflows.validation.derived import derived_expressions
from hepflows.validation.judge import (
    FEATURE_METRICS,
    JOINT_METRICS,
    KPD_BATCH_SIZE,
    KPD_NUM_BATCHES,
    analytic_pvalues,
    bins_for,
    cells,
    classifier_block,
    correlation_check,
    input_weights,
    jetnet_distances,
    judge_metric,
    label_fraction,
    pair_metrics,
)
from hepflows.validation.samples import (
    SLICE_CLASS,
    Sample,
    at_mixture,
    compared_sizes,
    concat_samples,
    draw_null_pair,
    draw_value_pair,
    load_sample,
    per_process,
)
from hepflows.validation.tables import (
    jsonable,
    write_tables,
)

if TYPE_CHECKING:
    from hepflows.validation.plots import FigureText

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
    labels: Mapping[str, Mapping] | None = None,
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
    null_reference: Mapping | None,
    n_null: int,
    seed: int,
    units: str,
    classifier: bool,
    plots: bool,
    training_log: Path | None,
    n_null_classifier: int,
    model: str | None,
    discrete: Sequence[str],
    labels: Mapping[str, Mapping] | None,
    normalise: str,
    judge_families: Sequence[str],
    derived: Mapping[str, str] | None,
) -> dict:
    """:func:`validate_samples` with ``run`` running its independent tasks."""
    t_start = time.perf_counter()
    features = tuple(features)
    if not features:
        raise InputError("validate_samples: no features given")
    if n_null < 1:
        raise InputError(f"validate_samples: n_null must be >= 1, got {n_null}")
    if normalise not in ("total", "per_process"):
        raise InputError(f"validate_samples: normalise total or per_process, got {normalise!r}")
    shapes = normalise == "per_process"
    # parsed first: a bad expression is refused before any work
    observables = derived_expressions(derived, features) if classifier else {}
    raw_ref = load_sample(reference, features, "reference")
    ref = per_process(raw_ref) if shapes else raw_ref
    gen = load_sample(generated, features, "generated")
    extra = load_sample(null_reference, features, "null_reference") if null_reference else None
    if extra is not None and shapes:
        extra = per_process(extra)
    separate = extra is not None
    pool = concat_samples(ref, extra) if extra is not None else ref

    sizes, slices = compared_sizes(ref, gen, pool, separate)

    rng = np.random.default_rng(seed)
    a, g = draw_value_pair(ref, gen, sizes, separate, rng)
    null_pairs = [draw_null_pair(pool, sizes, rng) for _ in range(n_null)]
    if g.w is not None:
        weight_rng = np.random.default_rng([seed, 1])  # the draws above stay those of the raw run
        null_pairs = [(p, weighted_like(q, g, weight_rng)) for p, q in null_pairs]
    # The matrices here are small ((n, d) with d ~ 20): a multi-threaded BLAS only spins its
    # threads, and on a busy machine that makes the metrics several times slower.
    log.info(
        "validate 1/4: metrics of the sample and of %d MC-vs-MC null pairs (%s events each)...",
        n_null,
        ", ".join(f"{name} {sizes.get(c, 0)}" for name, c in SLICE_CLASS.items() if c in sizes),
    )
    with threadpool_limits(limits=1, user_api="blas"):
        value, *nulls = run(
            [(pair_metrics, (a, g, slices, seed), {})]
            + [
                (pair_metrics, (p, q, slices, seed + 1 + k), {})
                for k, (p, q) in enumerate(null_pairs)
            ]
        )
    t_metrics = time.perf_counter()
    log.info("validate 1/4: metrics done in %.1f s", t_metrics - t_start)

    rows: list[dict] = []
    verdict: list[dict] = []
    for metric in (*FEATURE_METRICS, *JOINT_METRICS):
        keys, val = cells(metric, value, slices, features)
        null = np.stack([cells(metric, res, slices, features)[1] for res in nulls])
        if metric == "ks" and discrete:
            keep = [i for i, (f, _) in enumerate(keys) if f not in discrete]
            keys, val, null = [keys[i] for i in keep], val[keep], null[:, keep]
            if not keys:
                continue
        metric_rows, metric_verdict = judge_metric(metric, keys, val, null)
        rows += metric_rows
        verdict.append(metric_verdict)

    analytic = analytic_pvalues(a, g, value, features, slices)
    jetnet = jetnet_distances(a, g, value, slices, seed)
    correlation = correlation_check(value, nulls, slices)
    classifier_result = None
    t_judged = time.perf_counter()
    log.info("validate 2/4: verdicts, p-values and distances done in %.1f s", t_judged - t_metrics)
    if classifier:
        log.info(
            "validate 3/4: classifier test on the sample and %d null pairs...",
            max(0, min(n_null_classifier, n_null)),
        )
        classifier_result, clf_rows, clf_verdict = classifier_block(
            a,
            g,
            null_pairs[: max(0, min(n_null_classifier, n_null))],
            seed,
            families=judge_families,
            derived=observables,
            features=features,
            run=run,
        )
        rows += clf_rows
        verdict.append(clf_verdict)
    t_classifier = time.perf_counter()
    if classifier:
        log.info("validate 3/4: classifier test done in %.1f s", t_classifier - t_judged)

    statuses = [v["status"] for v in verdict]
    result = {
        "schema_version": 1,
        "features": list(features),
        "discrete": [f for f in features if f in discrete],
        "slices": slices,
        "settings": _settings(
            n_null, n_null_classifier if classifier else 0, seed, units, separate, a, slices
        ),
        "sizes": {
            "reference": len(ref),
            "generated": len(gen),
            "null_reference": len(extra) if extra is not None else None,
            "compared_per_sample": {name: sizes.get(c, 0) for name, c in SLICE_CLASS.items()},
        },
        "normalise": normalise,
        "label_fraction": label_fraction(raw_ref, gen, chosen=shapes),
        "input_weights": input_weights(raw_ref),
        "overall_status": nl.worst_status(statuses),
        "n_metrics_green": statuses.count(nl.GREEN),
        "verdict": verdict,
        "rows": rows,
        "analytic_pvalues": analytic,
        "jetnet": jetnet,
        "correlation": correlation,
        "classifier": classifier_result,
    }

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        log.info("validate 4/4: figures...")
        _write_plots(
            out_dir / layout.VALIDATION_FILES["plots"],
            at_mixture(ref, gen) if shapes else ref,
            gen,
            features,
            units,
            correlation,
            classifier_result,
            training_log,
            null_pairs=null_pairs,
            sizes=sizes,
            rows=rows,
            slices=slices,
            model=model,
            labels=labels,
            shapes=shapes,
            run=run,
        )
    t_end = time.perf_counter()
    if plots:
        log.info("validate 4/4: figures done in %.1f s", t_end - t_classifier)
    result["runtime_s"] = {
        "metrics": t_metrics - t_start,
        "classifier": t_classifier - t_metrics,
        "plots": t_end - t_classifier,
        "total": t_end - t_start,
    }
    result = jsonable(result)
    write_tables(out_dir, result, rows, verdict)
    return result


def weighted_like(q: Sample, g: Sample, rng: np.random.Generator) -> Sample:
    """``q`` with the weights of ``g`` (same events per class), permuted within each class."""
    assert g.w is not None
    w = np.ones(len(q)) if q.w is None else q.w.copy()
    for c in np.unique(g.label):
        mine, theirs = q.label == c, g.label == c
        w[mine] *= rng.permutation(g.w[theirs])
    return Sample(q.x, q.label, w)


def _settings(
    n_null: int,
    n_null_classifier: int,
    seed: int,
    units: str,
    separate: bool,
    a: Sample,
    slices: Sequence[str],
) -> dict:
    """The settings block of metrics.json: how the value and its null were computed."""
    return {
        "n_null": n_null,
        "n_null_classifier": min(n_null_classifier, n_null),
        "seed": seed,
        "units": units,
        "null_method": (
            "random disjoint splits of the reference + null_reference pool"
            if separate
            else "random disjoint splits of the reference MC; generated vs a random half"
        ),
        "band": {
            "quantile": nl.BAND_QUANTILE,
            "rank": nl.band_rank(n_null),
            "n_null": n_null,
            "chance_rate": nl.chance_rate(n_null),
            "amber_factor": nl.AMBER_FACTOR,
        },
        "chi2_bins": {s: bins_for(len(a.slice(s))) for s in slices},
        "kpd": {
            "degree": 4,
            "num_batches": KPD_NUM_BATCHES,
            "batch_size": min(KPD_BATCH_SIZE, len(a)),
        },
        "fpd": "Frechet distance of features divided by max |MC|, at the compared sizes",
    }


def _write_plots(
    plot_dir: Path,
    ref: Sample,
    gen: Sample,
    features: Sequence[str],
    units: str,
    correlation: Mapping,
    classifier_result: Mapping | None,
    training_log: Path | None,
    *,
    null_pairs: Sequence[tuple[Sample, Sample]] = (),
    sizes: Mapping[int, int] | None = None,
    rows: Sequence[Mapping] = (),
    slices: Sequence[str] = (),
    model: str | None = None,
    labels: Mapping[str, Mapping] | None = None,
    shapes: bool = False,
    run: Runner | None = None,
) -> None:
    """All figures, drawn by ``run`` (in this process when None); the feature plots show the full samples, not the compared subsamples
    (each process normalised to its own area with ``shapes``).

    The ratio panels' MC-vs-MC band comes from the verdict's own null pairs, scaled per class
    by the ratio of the plotted samples' statistical error to a null pair's,
    sqrt((1/N_MC + 1/N_gen) / (2/n_c)), since the figure shows the full samples.
    """
    from hepflows.validation import (
        plots,  # matplotlib is slow to import: only when plotting
    )

    plot_dir.mkdir(parents=True, exist_ok=True)
    text = plots.current_figure_text()
    tasks: list[Task] = []

    def draw(fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        tasks.append((_draw, (text, fn, args, kwargs), {}))

    scale = {}
    for c, n_c in (sizes or {}).items():
        n_r, n_g = np.count_nonzero(ref.label == c), np.count_nonzero(gen.label == c)
        if n_c > 0 and n_r > 0 and n_g > 0:
            scale[c] = float(np.sqrt((1 / n_r + 1 / n_g) / (2 / n_c)))
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
    for j, f in enumerate(features):
        pairs = [((p.x[:, j], p.label, p.w), (q.x[:, j], q.label, q.w)) for p, q in null_pairs]
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
            shapes=shapes,
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


def _draw(
    text: FigureText, fn: Callable[..., object], args: tuple, kwargs: Mapping[str, object]
) -> object:
    """``fn(*args, **kwargs)`` under the figure text ``text`` (a worker has none of its own)."""
    from hepflows.validation.plots import figure_text

    with figure_text(label=text.label, energy=text.energy, lumi=text.lumi):
        return fn(*args, **kwargs)
