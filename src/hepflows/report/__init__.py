"""The validation report: its pages, tables and figures, drawn from :mod:`hepflows.validation`.

* :mod:`~hepflows.report.runner`: :func:`validate_samples`, the validation step (the
  statistics, then the tables and figures).
* :mod:`~hepflows.report.tables`: metrics.json, metrics.csv, the verdict table (CSV, HTML).
* :mod:`~hepflows.report.plots`: ATLAS-style figures (imports matplotlib).
* :mod:`~hepflows.report.amplification_plot`, :mod:`~hepflows.report.amplification_page`: the
  amplification's figure and page.
* :mod:`~hepflows.report.compare`, :mod:`~hepflows.report.compare_plot`: a grid's models side by
  side.
* :mod:`~hepflows.report.run_summary`: the report's first page, ``summary.html``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["validate_samples", "verdict_html", "verdict_rst"]


def __getattr__(name: str) -> Any:
    # lazy: ``from hepflows.report.plots import ...`` (the train step) should not pay for
    # importing scikit-learn through the runner
    if name == "validate_samples":
        from hepflows.report import runner

        return runner.validate_samples
    if name in __all__:
        from hepflows.report import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
