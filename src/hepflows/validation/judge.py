"""Metrics of one pair of samples, and their judgement against the MC-vs-MC null.

:func:`pair_metrics` computes every metric the same way for the value pair and for each null
pair; :func:`judge_metric` turns a value and its null into rows (band, p-value, colour per
feature and slice) and a verdict per metric; :func:`classifier_block` does the same for the
classifier two-sample test.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from threadpoolctl import threadpool_limits

from hepflows.events.selection import Expression
from hepflows.kish import effective_size
from hepflows.parallel import Runner, Task, run_here
from hepflows.validation import metrics as m
from hepflows.validation import null as nl
from hepflows.validation.classifier import auc_null_pvalue, classifier_two_sample
from hepflows.validation.derived import derived_columns
from hepflows.validation.samples import Sample

FEATURE_METRICS: tuple[str, ...] = ("ks", "chi2_ndf", "wasserstein", "separation_power")
JOINT_METRICS: tuple[str, ...] = ("fpd", "kpd", "corr_frobenius")
CLASSIFIER_METRIC = "classifier_auc"
#: ``feature`` column of the rows of joint (all-feature) metrics.
JOINT = "joint"
METRIC_TITLES: dict[str, str] = {
    "ks": "Kolmogorov-Smirnov statistic",
    "chi2_ndf": "chi2/ndf (MC-quantile bins)",
    "wasserstein": "Wasserstein distance W1",
    "separation_power": "Separation power",
    "fpd": "Frechet physics distance (FPD)",
    "kpd": "Kernel physics distance (KPD)",
    "corr_frobenius": "Correlation-matrix difference |dC|",
    CLASSIFIER_METRIC: "Classifier ROC AUC",
}

#: KPD settings (same for the value and the null): batches of at most this many events.
KPD_BATCH_SIZE = 1000
KPD_NUM_BATCHES = 5
#: The chi2 and separation-power histograms get about this many MC events per bin, or more.
MIN_EVENTS_PER_BIN = 20
MAX_BINS = m.DEFAULT_BINS
MIN_BINS = 5
#: One-sided 95 % quantile of the standard normal: the classifier band edge in sigmas.
Z95 = float(stats.norm.ppf(0.95))


# ----------------------------------------------------------------------------------------------


def bins_for(n_events: int) -> int:
    """Histogram bins for a slice of ``n_events``: about 20 MC events a bin, 5 to 40 bins."""
    return int(np.clip(n_events // MIN_EVENTS_PER_BIN, MIN_BINS, MAX_BINS))


def pair_metrics(a: Sample, b: Sample, slices: Sequence[str], seed: int) -> dict:
    """Every metric between reference ``a`` and test ``b`` for each slice.

    Returns ``{metric: {slice: value}}`` with arrays (d,) for the feature metrics, floats for
    the joint ones, plus ``"chi2"``/``"ndf"`` (d,) and ``"corr"`` (d, d) per slice.
    """
    out: dict[str, dict] = {
        k: {} for k in (*FEATURE_METRICS, *JOINT_METRICS, "chi2", "ndf", "corr", "kpd_error")
    }
    for s in slices:
        sa, sb = a.slice(s), b.slice(s)
        bins = bins_for(len(sa))
        out["ks"][s], out["wasserstein"][s] = m.ks_wasserstein_columns(sa.x, sb.x, wa=sa.w, wb=sb.w)
        chi2, ndf = m.chi2_columns(sa.x, sb.x, bins=bins, wa=sa.w, wb=sb.w)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["chi2_ndf"][s] = np.where(ndf >= 1, chi2 / ndf, np.nan)
        out["chi2"][s], out["ndf"][s] = chi2, ndf
        # equal-width bins: on the chi2's quantile bins it would be chi2 / 2N, a duplicate
        out["separation_power"][s] = m.separation_power_columns(
            sa.x, sb.x, bins=m.uniform_edges(sa.x, bins), wa=sa.w, wb=sb.w
        )
        out["fpd"][s] = m.frechet_distance(sa.x, sb.x, wx=sa.w, wy=sb.w, normalise=True)
        out["kpd"][s], out["kpd_error"][s] = m.kernel_distance(
            sa.x,
            sb.x,
            wx=sa.w,
            wy=sb.w,
            num_batches=KPD_NUM_BATCHES,
            batch_size=min(KPD_BATCH_SIZE, len(sa), len(sb)),
            seed=seed,
        )
        diff = m.correlation_difference(sa.x, sb.x, wx=sa.w, wy=sb.w)
        out["corr"][s] = diff
        out["corr_frobenius"][s] = m.correlation_norm(diff)
    return out


# ----------------------------------------------------------------------------------------------
# value vs null -> rows and verdict
# ----------------------------------------------------------------------------------------------


def cells(
    metric: str, result: dict, slices: Sequence[str], features: Sequence[str]
) -> tuple[list[tuple[str, str]], NDArray[np.float64]]:
    """Flatten one metric of a pair result into (feature, slice) cells and their values."""
    if metric in FEATURE_METRICS:
        keys = [(f, s) for s in slices for f in features]
        vals = np.concatenate([np.asarray(result[metric][s], dtype=np.float64) for s in slices])
    else:
        keys = [(JOINT, s) for s in slices]
        vals = np.asarray([result[metric][s] for s in slices], dtype=np.float64)
    return keys, vals


def count_status(n_outside: int, edge: float) -> str:
    """Colour of a count of cells outside the band against the null edge of that count."""
    if not np.isfinite(edge):
        return nl.UNKNOWN
    if n_outside <= edge:
        return nl.GREEN
    if n_outside <= max(nl.AMBER_FACTOR * edge, edge + 1):
        return nl.AMBER
    return nl.RED


def judge_metric(
    metric: str, keys: list[tuple[str, str]], value: NDArray, null: NDArray
) -> tuple[list[dict], dict]:
    """Rows (one per cell) and the verdict row of one metric from its value and null (k, cells).

    The verdict colour is the worse of two checks against the null, both built by judging
    each null pair against the band of the others (:func:`null.leave_one_out`): the number of
    cells outside the band, and the largest ratio to the band edge.  The first catches many
    features slightly off, the second one feature badly off.
    """
    n_null = null.shape[0]
    with warnings.catch_warnings():  # all-NaN cells (constant features) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        null_mean = np.nanmean(null, axis=0)
    edge = nl.band_edge(null)
    ratios = nl.ratio(value, edge)
    pvals = nl.empirical_pvalue(value, null)
    rows = []
    for i, (feature, slc) in enumerate(keys):
        ok = np.isfinite(value[i]) and np.isfinite(edge[i])
        rows.append(
            {
                "feature": feature,
                "slice": slc,
                "metric": metric,
                "value": value[i],
                "null_mean": null_mean[i],
                "null_p95": edge[i],
                "ratio": ratios[i] if ok else np.nan,
                "pvalue": pvals[i] if ok else np.nan,
                "status": nl.status(ratios[i]) if ok else nl.UNKNOWN,
            }
        )
    tested = np.array([r["status"] != nl.UNKNOWN for r in rows])
    outside = tested & (value > edge)
    count_null, max_null = nl.leave_one_out(null[:, tested])
    count_edge = float(nl.band_edge(count_null)) if tested.any() else np.nan
    max_edge = float(nl.band_edge(max_null)) if tested.any() else np.nan
    worst = int(np.nanargmax(np.where(tested, ratios, np.nan))) if tested.any() else None
    worst_ratio = float(ratios[worst]) if worst is not None else np.nan
    status = nl.worst_status(
        [
            count_status(int(outside.sum()), count_edge),
            nl.status(float(nl.ratio(worst_ratio, max_edge))) if worst is not None else nl.UNKNOWN,
        ]
    )
    verdict = {
        "metric": metric,
        "n_tested": int(tested.sum()),
        "n_outside": int(outside.sum()),
        "n_expected": nl.chance_rate(n_null) * int(tested.sum()),
        "n_outside_null_p95": count_edge,
        "worst_feature": keys[worst][0] if worst is not None else "",
        "worst_slice": keys[worst][1] if worst is not None else "",
        "worst_ratio": worst_ratio,
        "worst_ratio_null_p95": max_edge,
        "status": status,
    }
    return rows, verdict


def classifier_block(
    a: Sample,
    g: Sample,
    null_pairs: Sequence[tuple[Sample, Sample]],
    seed: int,
    *,
    families: Sequence[str] = ("gbt",),
    derived: Mapping[str, Expression] | None = None,
    features: Sequence[str] = (),
    run: Runner = run_here,
) -> tuple[dict, list[dict], dict]:
    """Classifier tests by a panel of judges: the most sensitive one's result, a row per judge
    and the verdict row.

    Each judge is a classifier family (:data:`classifier.FAMILIES`) on one set of inputs: the
    features plus the label, and, when ``derived`` observables are given
    (:mod:`hepflows.validation.derived`, computed from ``features``), those added.  Every judge
    has its own MC-vs-MC AUCs on ``null_pairs``.  Taking the largest of k AUCs would raise the
    false-alarm rate k-fold, so each judge's band edge is the one-sided 1 - 0.05/k Mann-Whitney
    quantile (Bonferroni; the judges are correlated, so this is conservative); the verdict is
    the judge with the largest ratio to its edge, and names it (``worst_feature``).  ``run``
    runs the judges' fits (:mod:`hepflows.parallel`); each fit has its own seed.
    """
    extra = dict(derived or {})

    def design(s: Sample, with_derived: bool) -> NDArray:
        # the label is part of the event: a class-dependent mismodelling is visible to the judge
        cols = [s.x, s.label[:, None].astype(np.float64)]
        if with_derived:
            cols.append(derived_columns(s.x, features, extra))
        return np.concatenate(cols, axis=1)

    panel = [(f, False) for f in families] + ([(f, True) for f in families] if extra else [])
    tasks: list[Task] = []
    for family, with_derived in panel:
        pairs = [(a, g), *null_pairs]
        tasks += [
            (
                classifier_two_sample,
                (design(p, with_derived), design(q, with_derived)),
                {"seed": seed, "w_ref": p.w, "w_test": q.w, "family": family}
                if k == 0
                else {
                    "seed": seed + k,
                    "n_bootstrap": 0,
                    "w_ref": p.w,
                    "w_test": q.w,
                    "family": family,
                },
            )
            for k, (p, q) in enumerate(pairs)
        ]
    fits = run(tasks)
    n = 1 + len(null_pairs)
    judged = [
        _judged(fits[j * n : (j + 1) * n], family, list(extra) if with_derived else [], len(panel))
        for j, (family, with_derived) in enumerate(panel)
    ]
    return _panel_verdict([res for res, _ in judged], [row for _, row in judged])


def _judged(
    fits: Sequence[dict], family: str, derived: Sequence[str], n_judges: int
) -> tuple[dict, dict]:
    """One judge's result (its fit on the value pair, ``fits[0]``, with its MC-vs-MC AUCs of
    ``fits[1:]`` and its Bonferroni edge among ``n_judges``) and its row."""
    z_edge = float(stats.norm.ppf(1.0 - 0.05 / n_judges))
    name = family + (" + derived" if derived else "")
    res, *null_res = fits
    null_aucs = np.array([q["auc"] for q in null_res])
    edge = 0.5 + z_edge * res["sigma_null"]
    r = float(nl.ratio(res["auc"], edge, baseline=0.5))
    res["judge"] = {"name": name, "family": family, "inputs": ["features", "label", *derived]}
    res["null"] = {
        "band": (
            f"Mann-Whitney: mean 0.5, edge 0.5 + {z_edge:.3f} sigma_null (one-sided "
            f"{1 - 0.05 / n_judges:.4f}: 95 % over {n_judges} judges, Bonferroni)"
        ),
        "edge": edge,
        "empirical_auc": null_aucs.tolist(),
        "empirical_mean": float(null_aucs.mean()) if len(null_aucs) else None,
        # a large |z| would mean the analytic band does not describe MC vs MC here
        "empirical_mean_z": (
            float((null_aucs.mean() - 0.5) / (res["sigma_null"] / math.sqrt(len(null_aucs))))
            if len(null_aucs)
            else None
        ),
        "ratio": r,
        "roc": [{"fpr": q["fpr"], "tpr": q["tpr"]} for q in null_res],
    }
    row = {
        "feature": name,
        "slice": "all",
        "metric": CLASSIFIER_METRIC,
        "value": res["auc"],
        "null_mean": float(null_aucs.mean()) if len(null_aucs) else 0.5,
        "null_p95": edge,
        "ratio": r,
        "pvalue": auc_null_pvalue(res["auc"], res["sigma_null"]),
        "status": nl.status(r),
    }
    return res, row


def _panel_verdict(results: Sequence[dict], rows: Sequence[dict]) -> tuple[dict, list[dict], dict]:
    """The most sensitive judge's result with the panel's summary, the rows, the verdict row."""
    best = int(np.argmax([row["ratio"] for row in rows]))
    verdict = {
        "metric": CLASSIFIER_METRIC,
        "n_tested": len(rows),
        "n_outside": sum(int(row["ratio"] > 1.0) for row in rows),
        "n_expected": 0.05,
        "n_outside_null_p95": 0.0,
        "worst_feature": rows[best]["feature"],
        "worst_slice": "all",
        "worst_ratio": rows[best]["ratio"],
        "worst_ratio_null_p95": 1.0,
        "status": nl.status(rows[best]["ratio"]),
    }
    result = dict(results[best])
    result["judges"] = [
        {
            **res["judge"],
            "auc": res["auc"],
            "auc_lo": res["auc_lo"],
            "auc_hi": res["auc_hi"],
            "edge": res["null"]["edge"],
            "ratio": res["null"]["ratio"],
            "null_mean": res["null"]["empirical_mean"],
            "verdict": i == best,
        }
        for i, res in enumerate(results)
    ]
    return result, list(rows), verdict


def label_fraction(ref: Sample, gen: Sample, *, chosen: bool = False) -> dict:
    """Signal fraction of MC and generated events and a two-proportion test of their equality.

    Uses Kish effective sizes when weighted.  The metrics themselves compare equal class sizes,
    so this is where a wrong signal fraction shows.  With ``chosen`` (``data.normalise:
    per_process``) the generated mixture is the user's choice, not a prediction: both
    fractions are reported, untested (``pvalue`` None, ``chosen`` True).
    """

    def frac(s: Sample) -> tuple[float, float]:
        w = np.ones(len(s)) if s.w is None else s.w
        return float(w[s.label == 1].sum() / w.sum()), effective_size(s.w, len(s))

    fr, nr = frac(ref)
    fg, ng = frac(gen)
    if chosen:
        return {"reference": fr, "generated": fg, "pvalue": None, "chosen": True}
    pooled = (fr * nr + fg * ng) / (nr + ng)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-300) * (1 / nr + 1 / ng))
    p = float(2 * stats.norm.sf(abs(fg - fr) / se)) if se > 0 else 1.0
    return {"reference": fr, "generated": fg, "pvalue": p}


def input_weights(ref: Sample) -> dict:
    """The weights of the input events (the held-out MC, ``reference``): their count, sum and
    Kish effective sample size, overall and per class; ``weighted`` False when they carry no
    weights or equal ones (the effective size is then the count)."""

    def summary(s: Sample) -> dict:
        if len(s) == 0:
            return {"events": 0, "sum_weights": 0.0, "kish_effective_size": 0.0}
        total = float(len(s)) if s.w is None else float(s.w.sum())
        return {
            "events": len(s),
            "sum_weights": total,
            "kish_effective_size": effective_size(s.w, len(s)),
        }

    per_slice = {name: summary(ref.slice(name)) for name in ("all", "signal", "background")}
    return {"sample": "reference", "weighted": ref.w is not None, **per_slice}


def analytic_pvalues(
    a: Sample, g: Sample, value: Mapping, features: Sequence[str], slices: Sequence[str]
) -> dict[str, dict]:
    """Analytic p-values of the value pair (scipy's KS and chi2), beside the empirical ones."""
    analytic: dict[str, dict] = {"ks_pvalue": {}, "chi2": {}}
    for j, f in enumerate(features):
        analytic["ks_pvalue"][f], analytic["chi2"][f] = {}, {}
        for s in slices:
            sa, sg = a.slice(s), g.slice(s)
            analytic["ks_pvalue"][f][s] = m.ks_test(sa.x[:, j], sg.x[:, j], wa=sa.w, wb=sg.w)[1]
            c2, ndf = float(value["chi2"][s][j]), float(value["ndf"][s][j])
            analytic["chi2"][f][s] = {
                "chi2": c2,
                "ndf": ndf,
                "pvalue": float(stats.chi2.sf(c2, ndf)) if ndf >= 1 else None,
            }
    return analytic


def jetnet_distances(
    a: Sample, g: Sample, value: Mapping, slices: Sequence[str], seed: int
) -> dict[str, dict]:
    """JetNet's own FPD (extrapolated to infinite size) and the KPD error, per slice.

    For comparison with numbers quoted elsewhere; the verdict uses the same-size values.
    """
    jetnet = {}
    for s in slices:
        sa, sg = a.slice(s), g.slice(s)
        size = min(len(sa), len(sg))
        with threadpool_limits(limits=1, user_api="blas"):
            fpd_value, fpd_error = m.fpd(
                sa.x,
                sg.x,
                wx=sa.w,
                wy=sg.w,
                min_samples=size // 2,
                max_samples=size,
                num_batches=10,
                num_points=5,
                seed=seed,
            )
        jetnet[s] = {
            "fpd": fpd_value,
            "fpd_error": fpd_error,
            "kpd": value["kpd"][s],
            "kpd_error": value["kpd_error"][s],
        }
    return jetnet


def correlation_check(
    value: Mapping, nulls: Sequence[Mapping], slices: Sequence[str]
) -> dict[str, dict]:
    """Per slice: the correlation-matrix difference, its null band and the cells outside it."""
    correlation = {}
    for s in slices:
        null_abs = np.abs(np.stack([res["corr"][s] for res in nulls]))
        edge = nl.band_edge(null_abs)
        diff = value["corr"][s]
        correlation[s] = {"difference": diff, "null_p95_abs": edge, "outside": np.abs(diff) > edge}
    return correlation
