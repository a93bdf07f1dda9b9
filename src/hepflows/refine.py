"""Classifier reweighting of a generated sample: the ``refine`` step.

Reference: Diefenbacher, Eren, Kasieczka, Korol, Nachman, Shih, "DCTRGAN: improving the
precision of generative models with reweighting", arXiv:2009.03796.

The idea
--------
A classifier ``f(x)`` trained to tell MC events (class 1) from generated events (class 0),
with both classes given the same total weight and a proper scoring rule (the log-loss),
approximates ``f = p_MC / (p_MC + p_gen)``, so that

    w(x) = f(x) / (1 - f(x)) = p_MC(x) / p_gen(x)

reweights the generated density to the MC one.  ``x`` is the event's features plus its process
label (as in the validation's classifier test), so a label-dependent mismodelling is seen.
The weights are normalised to mean 1 per process (label): a flow conditioned on the label
generates each process at the signal fraction asked of it (``sampling.signal_fraction``), and
the weights should correct shapes within a process, not move events between processes; and
at a given label the classifier's odds hold the ratio of the MC's and the draw's fractions of
that process, a constant per process that this normalisation removes.  Weights are
then clipped at ``clip`` (the fraction clipped is reported) and normalised again; a weighted
sample of ``N`` events is worth its Kish effective size ``ESS = (sum w)^2 / sum w^2 <= N``.

Calibration matters, since ``w`` is the odds itself, not a ranking: a part of the events
(``calibration_fraction``) is held out of the fit; one half of it fits Platt scaling of the
classifier's logit, ``logit' = a logit + b`` (a two-parameter logistic regression), the other
half checks it (the expected calibration error before and after, in 10 quantile bins).

Cross-fitting and a committee of families
----------------------------------------
With ``folds`` k > 1 the classifier's events are cut into k stratified folds; member i is fitted
on the other k - 1 and Platt-calibrated on one half of fold i, the other half checking it, so
every event serves the fit and the calibration, and no member's calibration saw its own fit
events.  With several ``families`` (gradient-boosted trees, "gbt", cutting one input at a time;
a neural network, "mlp", smooth in all inputs at once) each family gives its k members.  The
event's log-weight is the mean of the members' calibrated log-odds (a geometric mean of their
odds): members of one family average out the fit's noise, members of two families each
correct what the other's function class cannot see.  The committee's own quality is its
out-of-fold AUC: each event scored by the members that did not fit it.

Which events it sees
--------------------
The classifier must never see an event of any validation: the verdict's reference (the test
split), the amplification's truth, or the generated events validated.

* MC: for generator data ``mc_events`` events of the generator's stream from event
  :data:`REFINE_START` = 2e9 on (``data/refine.root``): the splits are the first events of the
  stream and the truth starts at 1e9, so the ranges are disjoint by construction (checked by
  ``hepflows generate --refine``).  For ingested data the training split: the validation never
  reads it, but the flow was fitted to it, so the classifier corrects towards the training
  events' fluctuations as well as towards MC (the reweighted verdict is then slightly
  optimistic on small samples); say so wherever it is reported (``disjoint`` in the report).
* Generated: a separate draw of the model, ``generated_events`` events from chunk
  :data:`REFINE_FIRST_CHUNK` = 2^31 on (chunk ``c`` is seeded by ``(seed, c)`` alone, and the
  sample uses chunks ``0 .. events / chunk_size``), not the sample that is validated: the
  weights of the validated events then come from a classifier that never saw them, as the
  weights of any future sample would.

Shapes: ``x`` (n, d + 1) float64 (the features, then the label), log-odds and weights (n,).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.schema import LABEL, WEIGHT
from hepflows.feasibility import NEGATIVE_WEIGHTS_REFINE
from hepflows.kish import effective_size

if TYPE_CHECKING:
    from hepflows.settings import RefineSettings

#: First event of the refine classifier's MC in the generator's stream (source generator):
#: beyond the splits (events 0 ..) and the amplification's truth (events 1e9 ..).
REFINE_START = 2 * 10**9
#: First chunk of the model's separate draw for the classifier: beyond every sample's chunks.
REFINE_FIRST_CHUNK = 2**31
#: The reweighters' classifier families, in the terms of
#: :data:`hepflows.validation.classifier.FAMILIES`: gradient-boosted trees and a neural network.
FAMILIES = ("gbt", "mlp")
#: The network reweighter's hidden layers (ReLU), on standardised inputs.
MLP_HIDDEN = (128, 128)
#: Its epochs (Adam; fewer when the training loss stops improving).
MLP_EPOCHS = 30
#: Quantile bins of the calibration check.
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Reweighter:
    """A fitted MC-vs-generated classifier and its Platt scaling: ``log_odds(x)`` (n,)."""

    model: Any  # an sklearn classifier of one of FAMILIES, class 1 = MC
    slope: float
    intercept: float

    def raw_logit(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        p = np.clip(self.model.predict_proba(x)[:, 1], 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)

    def log_odds(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated ``log(p / (1 - p))`` = ``log w`` of events ``x`` (n, d + 1)."""
        return self.slope * self.raw_logit(x) + self.intercept


@dataclass(frozen=True)
class Committee:
    """Several calibrated reweighters (families x folds): ``log_odds(x)`` (n,) is their mean."""

    members: tuple[Reweighter, ...]

    def log_odds(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The members' mean calibrated log-odds of events ``x`` (n, d + 1)."""
        return np.mean([m.log_odds(x) for m in self.members], axis=0)


def design(events: Mapping[str, NDArray], features: Sequence[str]) -> NDArray[np.float64]:
    """The classifier's inputs (n, d + 1): the features, then the label (0 when absent)."""
    n = len(events[features[0]])
    label = np.asarray(events.get(LABEL, np.zeros(n)), dtype=np.float64)
    return np.column_stack([*(np.asarray(events[f], np.float64) for f in features), label])


def balanced_weights(y: NDArray, w: NDArray | None = None) -> NDArray[np.float64]:
    """Event weights ``w`` (n,) (default 1) scaled so both classes of ``y`` (0/1) have the same
    total, mean 1."""
    out = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64).copy()
    for c in (0, 1):
        total = out[y == c].sum()
        if total > 0:
            out[y == c] *= len(y) / (2.0 * total)
    return out


def calibration_error(p: NDArray, y: NDArray, w: NDArray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: the weighted mean over quantile bins of ``p`` of
    ``|mean p - fraction of class 1|``."""
    edges = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])
    idx = np.searchsorted(edges, p)
    total, err = w.sum(), 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            wb = w[m]
            err += (
                wb.sum() / total * abs(np.average(p[m], weights=wb) - np.average(y[m], weights=wb))
            )
    return float(err)


def classifier(family: str, seed: int, **gbt: Any) -> Any:
    """An unfitted probabilistic classifier of ``family`` (one of :data:`FAMILIES`).

    "gbt": sklearn's ``HistGradientBoostingClassifier`` with the ``gbt`` keyword arguments
    (``max_iter``, ``learning_rate``, ``max_leaf_nodes``, ``min_samples_leaf``) and early
    stopping on an internal 10 %, since overfitting would spoil the odds.  "mlp": standardised
    inputs into an ``MLPClassifier`` (:data:`MLP_HIDDEN`, ReLU, Adam, :data:`MLP_EPOCHS`).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if family == "gbt":
        return HistGradientBoostingClassifier(
            **gbt, early_stopping=True, n_iter_no_change=10, random_state=seed
        )
    if family == "mlp":
        network = MLPClassifier(
            hidden_layer_sizes=MLP_HIDDEN,
            batch_size=1024,
            # a fixed number of epochs: sklearn's early stopping scores the accuracy, a poor guide
            # to the odds in the tails (it stopped a toy's weights short of half the correction)
            max_iter=MLP_EPOCHS,
            random_state=seed,
        )
        return make_pipeline(StandardScaler(), network)
    raise InputError(f"refine.families: {family!r} is not one of {', '.join(FAMILIES)}")


def _fit(model: Any, x: NDArray, y: NDArray, w: NDArray) -> Any:
    """``model`` fitted with the class-balanced weights (a pipeline routes them to its last step)."""
    from sklearn.exceptions import ConvergenceWarning

    weights = balanced_weights(y, w)
    if hasattr(model, "steps"):
        with warnings.catch_warnings():  # the network runs its fixed epochs by design
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(x, y, **{f"{model.steps[-1][0]}__sample_weight": weights})
    return model.fit(x, y, sample_weight=weights)


def _iterations(model: Any) -> int:
    return int(getattr(model, "n_iter_", None) or model.steps[-1][1].n_iter_)


def _calibrated_member(
    model: Any, x_cal: NDArray, y_cal: NDArray, w_cal: NDArray
) -> tuple[Reweighter, Reweighter]:
    """The fitted ``model`` uncalibrated and with Platt scaling fitted on ``x_cal`` (a
    two-parameter logistic regression of the class on the logit)."""
    from sklearn.linear_model import LogisticRegression

    uncalibrated = Reweighter(model, 1.0, 0.0)
    platt = LogisticRegression(C=1e6)
    platt.fit(
        uncalibrated.raw_logit(x_cal)[:, None], y_cal, sample_weight=balanced_weights(y_cal, w_cal)
    )
    return uncalibrated, Reweighter(model, float(platt.coef_[0, 0]), float(platt.intercept_[0]))


def _check(
    uncalibrated: Reweighter, calibrated: Reweighter, x: NDArray, y: NDArray, w: NDArray
) -> dict[str, float]:
    """Held-out AUC and the calibration error before and after Platt scaling on ``x``."""
    from sklearn.metrics import roc_auc_score

    w = balanced_weights(y, w)

    def ece(r: Reweighter) -> float:
        return calibration_error(1.0 / (1.0 + np.exp(-r.log_odds(x))), y, w)

    return {
        "auc_check": float(roc_auc_score(y, calibrated.log_odds(x), sample_weight=w)),
        "ece_uncalibrated": ece(uncalibrated),
        "ece_calibrated": ece(calibrated),
    }


def _classes(
    x_mc: NDArray, x_gen: NDArray, w_mc: NDArray | None
) -> tuple[NDArray[np.float64], NDArray[np.int8], NDArray[np.float64]]:
    """Inputs, classes (MC = 1) and event weights of MC and generated events together."""
    x = np.concatenate([x_mc, x_gen])
    y = np.concatenate([np.ones(len(x_mc), np.int8), np.zeros(len(x_gen), np.int8)])
    w = np.ones(len(y))
    if w_mc is not None:
        w[: len(x_mc)] = w_mc
    return x, y, w


def fit_reweighter(
    x_mc: NDArray[np.float64],
    x_gen: NDArray[np.float64],
    *,
    seed: int,
    w_mc: NDArray | None = None,
    calibration_fraction: float = 0.25,
    family: str = "gbt",
    max_iter: int = 200,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    min_samples_leaf: int = 100,
) -> tuple[Reweighter, dict[str, Any]]:
    """Fit one classifier of ``family`` on MC ``x_mc`` (n1, k) (event weights ``w_mc`` (n1,),
    >= 0) vs generated ``x_gen`` (n2, k), then calibrate on a held-out part.

    Returns the :class:`Reweighter` and its record: sizes, iterations, held-out AUC and the
    calibration error before and after Platt scaling (on the check half of the held-out part).
    """
    from sklearn.model_selection import train_test_split

    x, y, w = _classes(x_mc, x_gen, w_mc)
    x_fit, x_hold, y_fit, y_hold, w_fit, w_hold = train_test_split(
        x, y, w, test_size=calibration_fraction, random_state=seed, stratify=y
    )
    x_cal, x_chk, y_cal, y_chk, w_cal, w_chk = train_test_split(
        x_hold, y_hold, w_hold, test_size=0.5, random_state=seed + 1, stratify=y_hold
    )
    gbt = dict(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min_samples_leaf,
    )
    model = _fit(classifier(family, seed, **gbt), x_fit, y_fit, w_fit)
    uncalibrated, reweighter = _calibrated_member(model, x_cal, y_cal, w_cal)
    record = {
        "classifier": f"{family}: {_describe(family)}, classes balanced",
        "family": family,
        "n_mc": int(len(x_mc)),
        "mc_weighted": w_mc is not None,
        "n_generated": int(len(x_gen)),
        "n_fit": int(len(y_fit)),
        "n_calibration": int(len(y_cal)),
        "n_check": int(len(y_chk)),
        "iterations": _iterations(model),
        "platt": {"slope": reweighter.slope, "intercept": reweighter.intercept},
        **_check(uncalibrated, reweighter, x_chk, y_chk, w_chk),
    }
    return reweighter, record


def fit_committee(
    x_mc: NDArray[np.float64],
    x_gen: NDArray[np.float64],
    *,
    seed: int,
    folds: int,
    families: Sequence[str],
    w_mc: NDArray | None = None,
    **gbt: Any,
) -> tuple[Committee, dict[str, Any], NDArray[np.float64]]:
    """Cross-fitted reweighters of each of ``families``, ``folds`` (>= 2) members each.

    Member i of a family is fitted on all folds but i and Platt-calibrated on half of fold i;
    the other half checks it.  Returns the :class:`Committee`, its record (the members'
    records and the committee's out-of-fold AUC and calibration errors on the check halves)
    and the out-of-fold log-odds (n1 + n2,) of the MC, then the generated events: each event's
    mean over the families of the calibrated log-odds of the member that did not fit it.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    x, y, w = _classes(x_mc, x_gen, w_mc)
    members, records = [], []
    oof = np.zeros((len(families), len(y)))  # out-of-fold calibrated log-odds per family
    oof_raw = np.zeros_like(oof)
    checked = np.zeros(len(y), bool)
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    for k, (fit_idx, hold_idx) in enumerate(splits):
        cal_idx, chk_idx = train_test_split(
            hold_idx, test_size=0.5, random_state=seed + k, stratify=y[hold_idx]
        )
        checked[chk_idx] = True
        for f, family in enumerate(families):
            model = classifier(family, seed + k, **gbt)
            model = _fit(model, x[fit_idx], y[fit_idx], w[fit_idx])
            uncalibrated, member = _calibrated_member(model, x[cal_idx], y[cal_idx], w[cal_idx])
            members.append(member)
            oof[f, hold_idx] = member.log_odds(x[hold_idx])
            oof_raw[f, hold_idx] = uncalibrated.log_odds(x[hold_idx])
            records.append(
                {
                    "family": family,
                    "fold": k,
                    "iterations": _iterations(model),
                    "platt": {"slope": member.slope, "intercept": member.intercept},
                    **_check(uncalibrated, member, x[chk_idx], y[chk_idx], w[chk_idx]),
                }
            )
    record = {
        "classifier": "; ".join(f"{f}: {_describe(f)}" for f in families)
        + f"; {folds}-fold cross-fitted, mean calibrated log-odds, classes balanced",
        "family": "+".join(families),
        "families": list(families),
        "folds": folds,
        "n_mc": int(len(x_mc)),
        "mc_weighted": w_mc is not None,
        "n_generated": int(len(x_gen)),
        "members": records,
        **_committee_check(oof.mean(0), oof_raw.mean(0), y, w, checked),
    }
    return Committee(tuple(members)), record, oof.mean(0)


def _committee_check(
    log_odds: NDArray, raw: NDArray, y: NDArray, w: NDArray, checked: NDArray
) -> dict[str, float]:
    """The committee's out-of-fold AUC over all events, its calibration on the check halves."""
    from sklearn.metrics import roc_auc_score

    wb = balanced_weights(y, w)
    m = checked

    def ece(z: NDArray) -> float:
        return calibration_error(1.0 / (1.0 + np.exp(-z[m])), y[m], balanced_weights(y[m], w[m]))

    return {
        "auc_check": float(roc_auc_score(y, log_odds, sample_weight=wb)),
        "ece_uncalibrated": ece(raw),
        "ece_calibrated": ece(log_odds),
    }


def _describe(family: str) -> str:
    if family == "gbt":
        return "sklearn HistGradientBoostingClassifier (log-loss)"
    return f"sklearn MLPClassifier {MLP_HIDDEN} (log-loss) on standardised inputs"


def event_weights(
    log_odds: NDArray[np.float64], label: NDArray | None, clip: float
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Weights (n,) from log-odds (n,): ``exp``, mean 1 per process, clipped, mean 1 again.

    Returns the weights and their record: the fraction clipped, the largest weight before the
    clip, and the Kish effective size over all events and per process.
    """
    label = np.zeros(len(log_odds), np.int8) if label is None else np.asarray(label)
    w = np.exp(np.clip(log_odds, -50.0, 50.0))
    clipped, largest = 0, 0.0
    per_process = {}
    for c in np.unique(label):
        m = label == c
        wc = w[m] / w[m].mean()
        largest = max(largest, float(wc.max()))
        clipped += int((wc > clip).sum())
        wc = np.minimum(wc, clip)
        w[m] = wc / wc.mean()
        per_process[str(int(c))] = {
            "events": int(m.sum()),
            "ess": effective_size(w[m], int(m.sum())),
        }
    record = {
        "clip": clip,
        "fraction_clipped": clipped / max(len(w), 1),
        "max_before_clip": largest,
        "max": float(w.max()) if len(w) else math.nan,
        "events": int(len(w)),
        "ess": effective_size(w, 0) if len(w) else 0.0,
        "per_process": per_process,
    }
    return w, record


def refine(
    mc: Mapping[str, NDArray],
    draw: Mapping[str, NDArray],
    sample: Mapping[str, NDArray],
    features: Sequence[str],
    settings: RefineSettings,
    *,
    seed: int,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Weights (n,) of the ``sample``'s events from a classifier of ``mc`` vs ``draw``.

    ``mc``, ``draw`` and ``sample`` are event dicts (feature -> (n,), optional ``label``; the
    MC's optional ``weight`` enters the fit);
    ``settings`` are the config's ``refine`` settings.  Returns the weights and the step's
    record (the classifier's and the weights').
    """
    features = list(features)
    for name, events in (("refine MC", mc), ("refine draw", draw), ("sample", sample)):
        if len(events[features[0]]) < 100:
            raise InputError(f"refine: {name} has {len(events[features[0]])} events; need >= 100")
    labelled = LABEL in draw
    if labelled != (LABEL in sample):
        raise InputError("refine: the draw and the sample must both have labels or neither")
    mc = dict(mc)
    w_mc = mc.get(WEIGHT)
    if w_mc is not None and (np.any(w_mc < 0) or not np.all(np.isfinite(w_mc))):
        raise InputError(
            f"refine: the MC's 'weight' branch must be finite and >= 0: {NEGATIVE_WEIGHTS_REFINE}"
        )
    if not labelled:  # an unconditional flow: one process, the MC's labels ignored
        mc.pop(LABEL, None)
    reweighter, record = fit(
        design(mc, features), design(draw, features), settings, seed=seed, w_mc=w_mc
    )
    weights, weight_record = event_weights(
        reweighter.log_odds(design(sample, features)), sample.get(LABEL), settings.clip
    )
    # the validation's judges of another family check what these classifiers cannot see
    return weights, {"fit": record, "weights": weight_record}


def fit(
    x_mc: NDArray[np.float64],
    x_gen: NDArray[np.float64],
    settings: RefineSettings,
    *,
    seed: int,
    w_mc: NDArray | None = None,
) -> tuple[Reweighter | Committee, dict[str, Any]]:
    """The reweighter the ``refine`` settings ask for: one calibrated classifier (``folds`` 1
    and one family) or a cross-fitted :class:`Committee`; its record names its families."""
    gbt: dict[str, Any] = {  # the tree classifier's own settings
        "max_iter": settings.max_iter,
        "learning_rate": settings.learning_rate,
        "max_leaf_nodes": settings.max_leaf_nodes,
        "min_samples_leaf": settings.min_samples_leaf,
    }
    families, folds = list(settings.families), settings.folds
    if folds == 1 and len(families) == 1:
        one, record = fit_reweighter(
            x_mc,
            x_gen,
            seed=seed,
            w_mc=w_mc,
            calibration_fraction=settings.calibration_fraction,
            family=families[0],
            **gbt,
        )
        return one, {**record, "families": families, "folds": 1}
    if folds == 1:
        raise InputError(
            f"refine.families {families}: several families need refine.folds >= 2 "
            "(each member is calibrated on the fold it did not fit)"
        )
    committee, record, _ = fit_committee(
        x_mc, x_gen, seed=seed, folds=folds, families=families, w_mc=w_mc, **gbt
    )
    return committee, record


def with_weights(events: Mapping[str, NDArray], weights: NDArray) -> dict[str, NDArray]:
    """The events with ``weights`` (n,) as their ``weight`` branch (float32, as the writer)."""
    out = dict(events)
    out[WEIGHT] = weights.astype(np.float32)
    return out


def disjointness(source: str, n_mc: int) -> str:
    """How the classifier's events are kept out of every validation, in one paragraph."""
    if source == "generator":
        mc = (
            f"its {n_mc} MC events are events {REFINE_START} to {REFINE_START + n_mc - 1} of the "
            "generator's stream (data/refine.root), disjoint from the train, val and test splits "
            "(the stream's first events) and from the amplification's truth (events from 1e9 on)"
        )
    else:
        mc = (
            f"its {n_mc} MC events are from the training split, which no validation reads "
            "(the verdict compares with the test split, the amplification's truth is the test "
            "split); the flow was fitted to the same events, so the weights also pull towards "
            "their statistical fluctuations"
        )
    return (
        f"The refine classifier never sees a validation event: {mc}; its generated events are a "
        f"separate draw of the model (chunks from {REFINE_FIRST_CHUNK} on; the validated sample "
        "uses chunks from 0), so the validated events' weights come from a classifier that "
        "never saw them."
    )
