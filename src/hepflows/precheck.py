"""Checks of a run's config before the workflow starts, and the message of a failed step.

The schema and :func:`hepflows.config.validate` check each key on its own, in every step.  What
only the machine that starts the run can check (that the inputs exist) and what would otherwise
fail only inside a job (the selection's syntax) is checked here, before Snakemake builds its
DAG, so the user reads hepflows' message instead of a ``MissingInputException`` or a failed job.
When a job fails anyway, :func:`failed_step_messages` finds the hepflows message in its log,
for the terminal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.settings import Settings

__all__ = ["check_run", "failed_step_messages", "started"]

#: Lines of a failed step's log shown when it has no hepflows ERROR line (a traceback).
TAIL_LINES = 8


def check_run(settings: Settings, *, source: str = "config") -> None:
    """Raise :class:`InputError` naming ``source`` and the key when validated ``settings``
    cannot run here: an input pattern that matches nothing, a selection that does not parse."""
    from hepflows.events.inputs import resolve_inputs
    from hepflows.events.selection import Selection

    data = settings.data
    try:
        if data.source == "root":
            resolve_inputs(data)
        elif data.source != "generator" and data.path:
            if not Path(data.path).is_file():
                raise InputError(f"data.path: {data.path}: no such file")
        if data.selection:
            Selection(data.selection)
    except InputError as err:
        raise InputError(f"{source}: {err}") from None


def failed_step_messages(results: str | Path, since: float) -> list[str]:
    """The hepflows message of each step log under ``results`` written since ``since`` (a
    ``time.time()``) that ends in an error: its ERROR lines, or its last lines (a traceback)."""
    messages = []
    for path in sorted(Path(results).rglob("logs/**/*.log")):
        try:
            if path.stat().st_mtime < since:
                continue
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors = [line for line in lines if " ERROR " in line]
        if not errors and not any(line.startswith("Traceback") for line in lines):
            continue
        shown = errors or lines[-TAIL_LINES:]
        messages.append(f"{path}:\n" + "\n".join(f"    {line}" for line in shown))
    return messages


def started() -> float:
    """Now, for :func:`failed_step_messages`' ``since`` (one second earlier: coarse mtimes)."""
    return time.time() - 1.0
