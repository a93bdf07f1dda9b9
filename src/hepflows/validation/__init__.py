"""Validation of generated events against MC: metrics, their null distributions, plots.

* :mod:`~hepflows.validation.metrics`: two-sample distances (KS, chi2, Wasserstein, separation
  power, FPD, KPD, correlation differences).
* :mod:`~hepflows.validation.null`: band, p-value and colour from MC-vs-MC repeats.
* :mod:`~hepflows.validation.classifier`: the classifier two-sample test.
* :mod:`~hepflows.validation.plots`: ATLAS-style figures (imports matplotlib).
* :mod:`~hepflows.validation.summary`: :func:`validate_samples`, the validation step.
"""

from __future__ import annotations

__all__ = ["validate_samples", "verdict_html", "verdict_rst"]


def __getattr__(name: str):
    # lazy: ``from hepflows.validation.plots import ...`` (the train step) should not pay for
    # importing scikit-learn through the summary module
    if name in __all__:
        from hepflows.validation import summary

        return getattr(summary, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
