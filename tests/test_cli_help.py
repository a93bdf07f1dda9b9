"""``hepflows --version``, and a help text for every option of every step."""

from __future__ import annotations

import argparse

import pytest

from hepflows import __version__
from hepflows.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"hepflows {__version__}"


def test_every_option_of_every_step_has_a_help_text():
    parser = build_parser()
    steps = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"generate", "ingest", "train", "sample", "validate", "run"} <= set(steps.choices)
    missing = [
        f"{name} {action.option_strings[-1]}"
        for name, sub in steps.choices.items()
        for action in sub._actions
        if action.option_strings and not (action.help and action.help != argparse.SUPPRESS)
    ]
    assert not missing, f"options without --help text: {missing}"
    # and the text is what --help prints
    assert "the training split's ROOT file" in steps.choices["ingest"].format_help()
