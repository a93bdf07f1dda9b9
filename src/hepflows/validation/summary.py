"""Former home of the validation runner, kept so that existing imports keep working.

The runner is :mod:`hepflows.validation.runner`; the compared samples are in
:mod:`~hepflows.validation.samples`, the metrics and their judgement in
:mod:`~hepflows.validation.judge`, the tables in :mod:`~hepflows.validation.tables`.
"""

from hepflows.validation.judge import (  # noqa: F401
    CLASSIFIER_METRIC,
    FEATURE_METRICS,
    JOINT,
    JOINT_METRICS,
    METRIC_TITLES,
)
from hepflows.validation.runner import validate_samples  # noqa: F401
from hepflows.validation.samples import SLICE_CLASS, SLICES  # noqa: F401
from hepflows.validation.tables import (  # noqa: F401
    CSV_COLUMNS,
    VERDICT_COLUMNS,
    verdict_html,
    verdict_rst,
)
