"""The statistics of the validation step: generated events vs held-out MC, judged against MC
vs MC.

:func:`evaluate` computes every metric between the generated sample and MC, the same metric
between pairs of independent MC samples of the same sizes (the null distribution), and from the
two a band, a p-value and a colour per metric, feature and slice, plus a verdict per metric.
:func:`hepflows.report.runner.validate_samples` writes them (``metrics.json``, the verdict
tables, the figures).

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

Every metric is computed by the same function (:func:`judge.pair_metrics`) for the value and for
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hepflows.errors import InputError
from hepflows.parallel import Runner
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` found, and what the figures draw it with.

    ``result`` is the body of metrics.json (numpy scalars and NaN not yet made JSON);
    ``reference`` and ``generated`` are the full samples the figures show (the reference at the
    generated sample's mixture with ``shapes``); ``null_pairs`` the MC-vs-MC pairs, each
    ``sizes[c]`` events of class ``c``; ``rows`` the judged cells; ``started``, ``metrics_done``
    and ``judged`` the ``time.perf_counter()`` at the start, after the metrics and after the
    classifier test.
    """

    result: dict
    reference: Sample
    generated: Sample
    null_pairs: list[tuple[Sample, Sample]]
    sizes: dict[int, int]
    rows: list[dict]
    slices: list[str]
    shapes: bool
    started: float
    metrics_done: float
    judged: float


@dataclass(frozen=True)
class _Inputs:
    """The loaded samples: the raw reference, the reference as compared, the generated one,
    the optional independent null reference and the pool the null pairs are drawn from."""

    raw_ref: Sample
    ref: Sample
    gen: Sample
    extra: Sample | None
    pool: Sample


def evaluate(
    run: Runner,
    reference: Mapping,
    generated: Mapping,
    features: Sequence[str],
    *,
    null_reference: Mapping | None,
    n_null: int,
    seed: int,
    units: str,
    classifier: bool,
    n_null_classifier: int,
    discrete: Sequence[str],
    normalise: str,
    judge_families: Sequence[str],
    derived: Mapping[str, str] | None,
) -> Evaluation:
    """Every metric of generated vs MC and of the MC-vs-MC null pairs, judged, with ``run``
    running the independent tasks; the arguments are those of
    :func:`hepflows.report.runner.validate_samples`."""
    started = time.perf_counter()
    features = tuple(features)
    _check(features, n_null, normalise)
    shapes = normalise == "per_process"
    # parsed first: a bad expression is refused before any work
    observables = derived_expressions(derived, features) if classifier else {}
    inputs = _load(reference, generated, null_reference, features, shapes)
    separate = inputs.extra is not None
    sizes, slices = compared_sizes(inputs.ref, inputs.gen, inputs.pool, separate)

    a, g, null_pairs = _draw_pairs(inputs, sizes, separate, n_null, seed)
    value, nulls = _pair_metrics(run, (a, g), null_pairs, sizes, slices, seed)
    metrics_done = time.perf_counter()
    log.info("validate 1/4: metrics done in %.1f s", metrics_done - started)

    rows, verdict = _judge_metrics(value, nulls, slices, features, discrete)
    analytic = analytic_pvalues(a, g, value, features, slices)
    jetnet = jetnet_distances(a, g, value, slices, seed)
    correlation = correlation_check(value, nulls, slices)
    t_judged = time.perf_counter()
    log.info(
        "validate 2/4: verdicts, p-values and distances done in %.1f s", t_judged - metrics_done
    )
    classifier_result = None
    if classifier:
        n_clf = max(0, min(n_null_classifier, n_null))
        classifier_result, clf_rows, clf_verdict = _classifier_test(
            run, (a, g), null_pairs[:n_clf], seed, judge_families, observables, features
        )
        rows += clf_rows
        verdict.append(clf_verdict)
    judged = time.perf_counter()
    if classifier:
        log.info("validate 3/4: classifier test done in %.1f s", judged - t_judged)

    statuses = [v["status"] for v in verdict]
    result = {
        "schema_version": 1,
        "features": list(features),
        "discrete": [f for f in features if f in discrete],
        "slices": slices,
        "settings": _settings(
            n_null, n_null_classifier if classifier else 0, seed, units, separate, a, slices
        ),
        "sizes": _sizes(inputs, sizes),
        "normalise": normalise,
        "label_fraction": label_fraction(inputs.raw_ref, inputs.gen, chosen=shapes),
        "input_weights": input_weights(inputs.raw_ref),
        "overall_status": nl.worst_status(statuses),
        "n_metrics_green": statuses.count(nl.GREEN),
        "verdict": verdict,
        "rows": rows,
        "analytic_pvalues": analytic,
        "jetnet": jetnet,
        "correlation": correlation,
        "classifier": classifier_result,
    }
    return Evaluation(
        result=result,
        reference=at_mixture(inputs.ref, inputs.gen) if shapes else inputs.ref,
        generated=inputs.gen,
        null_pairs=null_pairs,
        sizes=sizes,
        rows=rows,
        slices=slices,
        shapes=shapes,
        started=started,
        metrics_done=metrics_done,
        judged=judged,
    )


def _check(features: Sequence[str], n_null: int, normalise: str) -> None:
    """Refuse settings that cannot make a verdict, before any work."""
    if not features:
        raise InputError("validate_samples: no features given")
    if n_null < 1:
        raise InputError(f"validate_samples: n_null must be >= 1, got {n_null}")
    if normalise not in ("total", "per_process"):
        raise InputError(f"validate_samples: normalise total or per_process, got {normalise!r}")


def _load(
    reference: Mapping,
    generated: Mapping,
    null_reference: Mapping | None,
    features: Sequence[str],
    shapes: bool,
) -> _Inputs:
    """The samples as compared: each MC process at mean weight 1 with ``shapes``."""
    raw_ref = load_sample(reference, features, "reference")
    ref = per_process(raw_ref) if shapes else raw_ref
    gen = load_sample(generated, features, "generated")
    extra = load_sample(null_reference, features, "null_reference") if null_reference else None
    if extra is not None and shapes:
        extra = per_process(extra)
    pool = concat_samples(ref, extra) if extra is not None else ref
    return _Inputs(raw_ref, ref, gen, extra, pool)


def _draw_pairs(
    inputs: _Inputs, sizes: Mapping[int, int], separate: bool, n_null: int, seed: int
) -> tuple[Sample, Sample, list[tuple[Sample, Sample]]]:
    """The compared MC and generated samples and ``n_null`` MC-vs-MC pairs, drawn from
    ``seed``; a weighted generated sample lends its weights to each pair's second sample."""
    rng = np.random.default_rng(seed)
    a, g = draw_value_pair(inputs.ref, inputs.gen, sizes, separate, rng)
    null_pairs = [draw_null_pair(inputs.pool, sizes, rng) for _ in range(n_null)]
    if g.w is not None:
        weight_rng = np.random.default_rng([seed, 1])  # the draws above stay those of the raw run
        null_pairs = [(p, weighted_like(q, g, weight_rng)) for p, q in null_pairs]
    return a, g, null_pairs


def _classifier_test(
    run: Runner,
    value_pair: tuple[Sample, Sample],
    null_pairs: Sequence[tuple[Sample, Sample]],
    seed: int,
    families: Sequence[str],
    observables: Mapping[str, Any],
    features: Sequence[str],
) -> tuple[dict, list[dict], dict]:
    """The classifier judges' panel (:func:`judge.classifier_block`) on the value pair and
    ``null_pairs``."""
    log.info("validate 3/4: classifier test on the sample and %d null pairs...", len(null_pairs))
    return classifier_block(
        *value_pair,
        null_pairs,
        seed,
        families=families,
        derived=observables,
        features=features,
        run=run,
    )


def _pair_metrics(
    run: Runner,
    value_pair: tuple[Sample, Sample],
    null_pairs: Sequence[tuple[Sample, Sample]],
    sizes: Mapping[int, int],
    slices: Sequence[str],
    seed: int,
) -> tuple[dict, list[dict]]:
    """The metrics of the value pair and of each null pair (seeds ``seed``, ``seed + 1 + k``)."""
    log.info(
        "validate 1/4: metrics of the sample and of %d MC-vs-MC null pairs (%s events each)...",
        len(null_pairs),
        ", ".join(f"{name} {sizes.get(c, 0)}" for name, c in SLICE_CLASS.items() if c in sizes),
    )
    a, g = value_pair
    # The matrices here are small ((n, d) with d ~ 20): a multi-threaded BLAS only spins its
    # threads, and on a busy machine that makes the metrics several times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        value, *nulls = run(
            [(pair_metrics, (a, g, slices, seed), {})]
            + [
                (pair_metrics, (p, q, slices, seed + 1 + k), {})
                for k, (p, q) in enumerate(null_pairs)
            ]
        )
    return value, nulls


def _judge_metrics(
    value: dict,
    nulls: Sequence[dict],
    slices: Sequence[str],
    features: Sequence[str],
    discrete: Sequence[str],
) -> tuple[list[dict], list[dict]]:
    """The judged cells and the verdict of each feature and joint metric; the ``discrete``
    features have no KS cells (a KS test of a staircase says nothing)."""
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
    return rows, verdict


def _sizes(inputs: _Inputs, sizes: Mapping[int, int]) -> dict:
    """The sizes block of metrics.json: the samples' events and the compared ones per class."""
    return {
        "reference": len(inputs.ref),
        "generated": len(inputs.gen),
        "null_reference": len(inputs.extra) if inputs.extra is not None else None,
        "compared_per_sample": {name: sizes.get(c, 0) for name, c in SLICE_CLASS.items()},
    }


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
