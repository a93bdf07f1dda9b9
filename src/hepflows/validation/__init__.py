"""Validation of generated events against MC: metrics, their null distributions, plots.

* :mod:`~hepflows.validation.metrics`: two-sample distances (KS, chi2, Wasserstein, separation
  power, FPD, KPD, correlation differences).
* :mod:`~hepflows.validation.null`: band, p-value and colour from MC-vs-MC repeats.
* :mod:`~hepflows.validation.classifier`: the classifier two-sample test.
* :mod:`~hepflows.validation.plots`: ATLAS-style figures (imports matplotlib).
* :mod:`~hepflows.validation.samples`: the compared samples and the draws of the null pairs.
* :mod:`~hepflows.validation.judge`: the metrics of one pair, judged against the null.
* :mod:`~hepflows.validation.tables`: metrics.json, metrics.csv, the verdict table (CSV, HTML).
* :mod:`~hepflows.validation.runner`: :func:`validate_samples`, the validation step.
* :mod:`~hepflows.validation.closure`: the physics closure (classifier AUC, template fit).
"""

from __future__ import annotations

from typing import Any

__all__ = ["validate_samples", "verdict_html", "verdict_rst"]


def __getattr__(name: str) -> Any:
    # lazy: ``from hepflows.validation.plots import ...`` (the train step) should not pay for
    # importing scikit-learn through the runner
    if name == "validate_samples":
        from hepflows.validation import runner

        return runner.validate_samples
    if name in __all__:
        from hepflows.validation import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
