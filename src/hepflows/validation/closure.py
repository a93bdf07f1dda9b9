"""Physics closure: does an analysis give the same answer on generated events as on MC?

Two checks a physicist would run before using generated events:

* a signal/background classifier trained on MC, evaluated on held-out MC and on generated
  events of the same size and label mix: the ROC AUCs should agree within their errors;
* a binned likelihood fit (pyhf) of a signal strength ``mu`` on pseudo-data made of MC
  background only (signal injected at zero), once with the background template taken from
  independent MC and once from generated events: the fitted ``mu`` is the spurious signal the
  template causes, and the expected 95 % CLs upper limit on ``mu`` shows what the template
  would do to a search.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from hepflows.atomic import atomic_write_text
from hepflows.events.schema import LABEL


def hanley_mcneil_error(auc: float, n_signal: int, n_background: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil 1982, Radiology 143, 29; not on arXiv)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (
        auc * (1 - auc) + (n_signal - 1) * (q1 - auc**2) + (n_background - 1) * (q2 - auc**2)
    ) / (n_signal * n_background)
    return math.sqrt(max(var, 0.0))


def classifier_closure(
    x_train: NDArray,
    y_train: NDArray,
    x_mc: NDArray,
    y_mc: NDArray,
    x_gen: NDArray,
    y_gen: NDArray,
    *,
    seed: int = 0,
) -> dict:
    """Signal/background classifier trained on MC (``x_train`` (n, d), labels ``y_train`` (n,)).

    Returns its AUC on MC test events and on generated events, their difference and the
    error of the difference (the two test samples are independent).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    auc = {}
    err = {}
    # one thread (the same trees): on a machine with other work, OpenMP's threads spin and
    # wait, and this took 10-12 s instead of 1 s on the tiny config's events
    with threadpool_limits(limits=1):
        clf = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
        clf.fit(x_train, y_train)
        for name, x, y in (("mc", x_mc, y_mc), ("generated", x_gen, y_gen)):
            auc[name] = float(roc_auc_score(y, clf.predict_proba(x)[:, 1]))
            err[name] = hanley_mcneil_error(auc[name], int(y.sum()), int(len(y) - y.sum()))
    diff = auc["generated"] - auc["mc"]
    sigma = math.hypot(err["mc"], err["generated"])
    return {
        "auc_mc": auc["mc"],
        "auc_mc_error": err["mc"],
        "auc_generated": auc["generated"],
        "auc_generated_error": err["generated"],
        "difference": diff,
        "difference_error": sigma,
        "pull": diff / sigma if sigma > 0 else 0.0,
    }


def _histogram(x: NDArray, edges: NDArray, total: float) -> tuple[NDArray, NDArray]:
    """Counts scaled to ``total`` events and their statistical errors, overflow in edge bins."""
    counts, _ = np.histogram(np.clip(x, edges[0], edges[-1]), edges)
    scale = total / max(len(x), 1)
    return counts * scale, np.sqrt(counts) * scale


def _fit_mu(data: list, model: Any, bounds: list) -> tuple[float, float]:
    """Maximum-likelihood signal strength and its (HESSE) error; NaNs if the fit fails.

    ``model`` is a ``pyhf.Model`` (pyhf has no type information)."""
    import pyhf

    # MINUIT gives the fitted signal strength an error; scipy's optimiser alone would not.
    pyhf.set_backend("numpy", "minuit")
    try:
        fit = pyhf.infer.mle.fit(data, model, par_bounds=bounds, return_uncertainties=True)
    except pyhf.exceptions.FailedMinimization:
        # Tiny or empty template bins can leave MINUIT without a minimum: report no number
        # rather than a wrong one.
        return math.nan, math.nan
    mu, err = fit[model.config.poi_index]
    return float(mu), float(err)


def template_fit(
    data_background: NDArray,
    signal: NDArray,
    templates: dict[str, NDArray],
    *,
    bins: int = 20,
    signal_fraction: float = 0.05,
) -> dict:
    """Spurious signal and expected upper limit with each background template.

    ``data_background``: the observable (n,) of MC background events used as pseudo-data (no
    signal injected). ``signal``: the observable of MC signal events, normalised so that
    ``mu = 1`` means ``signal_fraction`` times the background yield. ``templates``: name ->
    observable of background events used to build the background template (e.g. independent
    MC, or generated events); each is normalised to the pseudo-data yield and carries its own
    statistical error (Barlow-Beeston-lite, one nuisance per bin).  Bins: quantiles of the
    pseudo-data.  Returns per template the fitted ``mu`` with its error and the expected
    (median, background-only, asymptotic) 95 % CLs upper limit on ``mu``.
    """
    import pyhf

    edges = np.unique(np.quantile(data_background, np.linspace(0, 1, bins + 1)))
    total = float(len(data_background))
    observed, _ = np.histogram(np.clip(data_background, edges[0], edges[-1]), edges)
    sig, _ = _histogram(signal, edges, signal_fraction * total)
    out = {"observable_bins": edges.tolist(), "signal_yield_mu1": float(sig.sum())}
    for name, events in templates.items():
        bkg, bkg_err = _histogram(events, edges, total)
        model = pyhf.simplemodels.uncorrelated_background(
            signal=sig.tolist(),
            bkg=bkg.tolist(),
            bkg_uncertainty=np.maximum(bkg_err, 1e-3).tolist(),
        )
        data = observed.tolist() + model.config.auxdata
        bounds = model.config.suggested_bounds()
        bounds[model.config.poi_index] = (-5.0, 5.0)
        mu_hat, mu_err = _fit_mu(data, model, bounds)
        try:
            asimov = pyhf.infer.calculators.generate_asimov_data(
                0.0,
                data,
                model,
                model.config.suggested_init(),
                bounds,
                model.config.suggested_fixed(),
            )
            _, sigma_asimov = _fit_mu(asimov, model, bounds)
        except pyhf.exceptions.FailedMinimization:
            sigma_asimov = math.nan
        out[name] = {
            "spurious_mu": mu_hat,
            "spurious_mu_error": mu_err,
            "spurious_signal_events": mu_hat * float(sig.sum()),
            # Asymptotic median expected CLs limit (Cowan et al. 2011, arXiv:1007.1727):
            # sigma_A * Phi^-1(0.975),
            # sigma_A the error of mu on background-only Asimov data.  A CLs scan gives the
            # same within a few per cent here and costs a hundred fits.
            "expected_limit_mu": sigma_asimov * float(norm.ppf(0.975)),
            "sigma_mu_asimov": sigma_asimov,
        }
    return out


def _matrix(events: Mapping, features: Sequence[str]) -> NDArray:
    return np.stack([np.asarray(events[f]) for f in features], axis=1)


def write_closure(
    training: Mapping,
    reference: Mapping,
    generated: Mapping,
    features: Sequence[str],
    path: Path,
    *,
    seed: int,
) -> None:
    """Physics closure table (CSV): classifier AUC on MC vs generated, spurious signal, limit."""
    n = min(len(reference[LABEL]), len(generated[LABEL]))
    mc = {k: v[:n] for k, v in reference.items()}
    gen = {k: v[:n] for k, v in generated.items()}
    rows = []
    if len(np.unique(training[LABEL])) == 2 and len(np.unique(gen[LABEL])) == 2:
        auc = classifier_closure(
            _matrix(training, features),
            training[LABEL],
            _matrix(mc, features),
            mc[LABEL],
            _matrix(gen, features),
            gen[LABEL],
            seed=seed,
        )
        rows += [
            ("signal/background classifier AUC on MC", auc["auc_mc"], auc["auc_mc_error"]),
            (
                "signal/background classifier AUC on generated",
                auc["auc_generated"],
                auc["auc_generated_error"],
            ),
            ("AUC generated - MC", auc["difference"], auc["difference_error"]),
        ]
        observable = "m_wwbb" if "m_wwbb" in features else features[-1]
        background = {
            name: s[observable][s[LABEL] == 0] for name, s in (("MC", training), ("generated", gen))
        }
        fit = template_fit(
            mc[observable][mc[LABEL] == 0], mc[observable][mc[LABEL] == 1], background
        )
        for name in background:
            rows += [
                (
                    f"spurious signal strength, {name} background template ({observable})",
                    fit[name]["spurious_mu"],
                    fit[name]["spurious_mu_error"],
                ),
                (
                    f"expected 95% CLs limit on mu, {name} background template ({observable})",
                    fit[name]["expected_limit_mu"],
                    float("nan"),
                ),
            ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("check", "value", "error"))
    writer.writerows((name, f"{value:.5g}", f"{error:.3g}") for name, value, error in rows)
    atomic_write_text(path, buffer.getvalue())
