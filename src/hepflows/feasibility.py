"""Fail fast: what validation needs of the weights and the processes, checked before training.

The rule: no step may fail for a reason an earlier step could have seen.  Validation stops when
a compared slice has fewer than :data:`MIN_EVENTS` events per sample, when a process's weights
do not sum to a positive total, and when the classifier test meets a negative weight; a
conditional flow cannot generate a process it never saw.  So:

* :func:`check_config` looks at the config alone, when it is checked and before any event is
  read (every step's config check runs it);
* :func:`check_splits` looks at ingest's tallies of the selected events per split and process
  (:class:`Tally`), before the event files appear: a failure leaves no file behind.

Only the standard library is imported: the config check runs in every step's environment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.settings import Settings

#: Fewest events per compared sample and slice (the validation's own threshold).
MIN_EVENTS = 20
#: Process names by label.
PROCESS = {1: "signal", 0: "background"}
#: Why the classifier test refuses negative weights and what to do instead.
NEGATIVE_WEIGHTS = (
    "the classifier test (validation.classifier) needs weights >= 0: its boosted trees' fit, "
    "its ROC AUC and its Mann-Whitney band are defined for a positive measure only. Set "
    "validation.classifier: false (the KS, chi2, W1, separation, FPD, KPD and correlation "
    "checks take negative weights), or give inputs whose weights are >= 0"
)
#: The same for the refine step, whose classifier learns from the MC's weights.
NEGATIVE_WEIGHTS_REFINE = (
    "the refine step (refine.enabled) fits its classifier with the MC's weights and needs "
    "them >= 0; set refine.enabled: false, or give inputs whose weights are >= 0"
)


#: The settings of later steps that ingest's checks read (:func:`check_negative_weight`,
#: :func:`check_splits`), section -> keys.
INGEST_READS: dict[str, tuple[str, ...]] = {
    "training": ("conditional",),
    "sampling": ("events", "signal_fraction"),
    "validation": ("classifier", "max_events"),
    "refine": ("enabled",),
}


def ingest_reads(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of ``cfg`` (a validated config) that ingest's checks read, :data:`INGEST_READS`:
    passed to ingest beside its own sections, since its outputs do not depend on it."""
    return {
        section: {k: cfg[section][k] for k in keys if k in cfg.get(section, {})}
        for section, keys in INGEST_READS.items()
        if section in cfg
    }


def _refusals(settings: Settings) -> list[str]:
    """Why the config's later steps cannot take negative weights (empty when they can)."""
    why = []
    if settings.validation.classifier:
        why.append(NEGATIVE_WEIGHTS)
    if settings.refine.enabled:
        why.append(NEGATIVE_WEIGHTS_REFINE)
    return why


@dataclass
class Tally:
    """Count, sum of weights, sum of squared weights and negative weights of some events."""

    events: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    negative: int = 0

    @property
    def effective_size(self) -> float:
        """Kish ``(sum w)^2 / sum w^2``; the count when unweighted (sum_w2 0)."""
        if self.sum_w2 <= 0:
            return float(self.events)
        from hepflows.kish import kish_size

        return kish_size(self.sum_w, self.sum_w2)


def generated_for_validation(settings: Settings) -> int:
    """How many generated events validation reads: the sample, capped at max_events."""
    return min(settings.sampling.events, settings.validation.max_events)


def _fewest_drawn(n: int, fraction: float) -> float:
    """A low count of a process drawn with probability ``fraction`` in ``n`` events: the
    binomial mean less three standard deviations (labels are drawn at random per event)."""
    return n * fraction - 3.0 * math.sqrt(n * fraction * (1.0 - fraction))


def _check_generated(settings: Settings, fraction: float, source: str, why: str) -> None:
    """Each process generated at ``fraction`` (signal) must give validation enough events."""
    n = generated_for_validation(settings)
    for label, f in ((1, fraction), (0, 1.0 - fraction)):
        if 0.0 < f and _fewest_drawn(n, f) < MIN_EVENTS:
            raise InputError(
                f"{source}: {why} generates the {PROCESS[label]} at a fraction {f:.4g}: about "
                f"{n * f:.0f} of the {n} generated events validation reads "
                "(min(sampling.events, validation.max_events)), and validation needs at least "
                f"{MIN_EVENTS} of each process. Raise sampling.events, or set "
                "sampling.signal_fraction (with data.normalise: per_process each process is "
                "then compared as a shape, whatever its cross-section)"
            )


def check_config(settings: Settings, source: str = "config") -> None:
    """What the config alone says validation cannot do; an InputError naming the key."""
    data = settings.data
    conditional = settings.training.conditional
    if data.normalise == "per_process" and not conditional:
        raise InputError(
            f"{source}: key data.normalise: per_process compares each process's shape and "
            "generates the processes at a chosen mixture, which needs a flow conditioned on "
            "the process label; set training.conditional: true"
        )
    refusals = _refusals(settings)
    for i, entry in enumerate(data.inputs):
        factor = entry.weight
        if refusals and factor is not None and factor < 0:
            raise InputError(
                f"{source}: key data.inputs[{i}].weight is {factor:g}, every event of "
                f"{entry.path} gets a negative weight: {'; and '.join(refusals)}"
            )
    fraction = settings.sampling.signal_fraction
    if conditional and fraction is not None:
        _check_generated(settings, float(fraction), source, "sampling.signal_fraction")


def check_negative_weight(where: str, count: int, settings: Settings) -> None:
    """Ingest met ``count`` negative weights in ``where``: refused when the classifier test or
    the refine step is on."""
    refusals = _refusals(settings)
    if count and refusals:
        raise InputError(
            f"{where}: {count} negative weight(s) (NLO events?): {'; and '.join(refusals)}"
        )


def check_splits(
    tallies: Mapping[str, Mapping[int, Tally]], settings: Settings, weighted: bool
) -> None:
    """What the selected events per split (train, val, test) and process say validation and
    training could not do; an InputError that names the split, the process and what to do."""
    conditional = settings.training.conditional
    train, val, test = (tallies.get(s, {}) for s in ("train", "val", "test"))

    def present(split: Mapping[int, Tally]) -> list[int]:
        return [c for c in (1, 0) if c in split and split[c].events > 0]

    if conditional:
        for c in present(test):
            if c not in present(train):
                raise InputError(
                    f"the training split holds no {PROCESS[c]} event but the test split holds "
                    f"{test[c].events}: a flow conditioned on the process label cannot learn a "
                    f"process it never sees; give {PROCESS[c]} inputs enough events (or check "
                    "data.selection and the labels)"
                )
    if weighted:
        for name, split in (("train", train), ("val", val), ("test", test)):
            groups = [(PROCESS[c], split[c]) for c in present(split)] if conditional else []
            if not conditional:
                total = Tally(sum_w=sum(t.sum_w for t in split.values()))
                groups = [("selected", total)] if split else []
            for process, t in groups:
                if not t.sum_w > 0:
                    raise InputError(
                        f"the weights of the {process} events of the {name} split sum to "
                        f"{t.sum_w:g}; the weighted likelihood, the signal fraction and the "
                        "weighted histograms need a positive sum per process (too many "
                        "negative weights? add events of that process)"
                    )
    _check_reference(test, settings, conditional)
    if conditional and len(present(train)) == 2:
        fraction = settings.sampling.signal_fraction
        if fraction is None:
            sums = {c: (train[c].sum_w if weighted else train[c].events) for c in (1, 0)}
            why = (
                "the weighted signal fraction of the training split (sampling.signal_fraction: "
                "null)"
                if weighted
                else "the signal fraction of the training split (sampling.signal_fraction: null)"
            )
            _check_generated(settings, sums[1] / (sums[1] + sums[0]), "data", why)


def _check_reference(test: Mapping[int, Tally], settings: Settings, conditional: bool) -> None:
    """The held-out MC validation reads (the test split, up to 2 max_events) is halved by the
    null; each slice must keep :data:`MIN_EVENTS`."""
    total = sum(t.events for t in test.values())
    read = min(total, 2 * settings.validation.max_events)
    slices = {"all": read}
    if conditional and total:
        slices.update(
            {PROCESS[c]: read * t.events // total for c, t in test.items() if t.events > 0}
        )
    for name, n in slices.items():
        if n // 2 < MIN_EVENTS:
            raise InputError(
                f"the test split holds {n} {'' if name == 'all' else name + ' '}events for "
                f"validation, which compares half of them ({n // 2}) with the generated events "
                f"and needs at least {MIN_EVENTS}; give more events of that process, or a "
                "larger data.split test fraction"
            )
