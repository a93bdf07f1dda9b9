"""A copy of a run folder to judge a changed model in, without touching the run."""

from __future__ import annotations

import shutil
from pathlib import Path

#: What the copy keeps of the run: the rest (samples, validation) is made again.
KEPT = ("data", "preprocess.json", "model/model.pt", "model/training_log.csv")


def copy_run(run: Path, out: Path) -> Path:
    """``run``'s inputs and model under ``out/<run's name>`` (data files hard-linked)."""
    dest = out / run.name
    for name in KEPT:
        src, dst = run / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=_link, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dst)
    return dest


def _link(src: str, dst: str) -> None:
    Path(dst).unlink(missing_ok=True)
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
