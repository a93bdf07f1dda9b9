"""The JSON files that the pipeline's steps write (preprocess.json, metrics.json,
amplification.json, refine.json): their plain JSON form, and reading them back with an error
that names the file and what to do."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepflows.errors import InputError

__all__ = ["jsonable", "read_json"]


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


def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj
