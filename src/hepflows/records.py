"""Reading back the JSON files that the pipeline's steps write (preprocess.json, metrics.json,
amplification.json, refine.json), with an error that names the file and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hepflows.errors import InputError

__all__ = ["read_json"]


def read_json(
    path: str | Path, missing: str = "not found; run the model's validate step first"
) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`~hepflows.errors.InputError` naming the file when it
    is not valid JSON, or with ``missing`` (what to do) when it does not exist."""
    path = Path(path)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    return data
