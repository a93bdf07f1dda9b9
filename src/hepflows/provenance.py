"""Where an output came from: the git commit of the checkout that holds this package."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["SHORT_COMMIT", "git_commit"]

#: Characters of the commit shown to people (the summary page); files record it whole.
SHORT_COMMIT = 12


def git_commit(short: bool = False) -> str:
    """The commit (40 hex digits, or its first :data:`SHORT_COMMIT` with ``short``) of the git
    checkout holding this package; "unknown" outside one (an installed wheel) or without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else ""
    if not commit:
        return "unknown"
    return commit[:SHORT_COMMIT] if short else commit
