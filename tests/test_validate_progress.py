"""Validation a user can wait for: a progress line per part with its time, and the
third-party libraries' INFO chatter (pyhf's fits) kept out of the log."""

from __future__ import annotations

import logging
import re

import pytest
from test_validation_runner import FEATURES, events

from hepflows.cli import QUIET_LIBRARIES, main
from hepflows.report.runner import validate_samples


def test_each_part_of_validate_logs_a_progress_line_with_its_time(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    validate_samples(
        events(1200, 1), events(600, 2), FEATURES, tmp_path, n_null=20, plots=False, seed=3
    )
    text = caplog.text
    for part in ("1/4: metrics", "2/4: verdicts", "3/4: classifier test"):
        assert re.search(rf"validate {part}.* done in \d+\.\d s", text), (part, text)
    assert "validate 1/4: metrics of the sample and of 20 MC-vs-MC null pairs" in text


def test_third_party_info_lines_stay_out_of_the_log():
    with pytest.raises(SystemExit):
        main(["--version"])  # main sets up logging before it parses the arguments
    for name in ("pyhf", "iminuit"):
        assert name in QUIET_LIBRARIES
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING
    assert "hepflows" not in QUIET_LIBRARIES  # the steps' own lines stay at INFO
