"""hepflows: normalizing flows that learn collider events and generate more of them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepflows.api import Model

__version__ = "0.1.0"


def load(path: str | Path, **kwargs: Any) -> Model:
    """The trained model of a run, for notebooks: see :func:`hepflows.api.load`.

    Imported on call, so that ``import hepflows`` stays light (no torch) for the config tools.
    """
    from hepflows.api import load as load_model

    return load_model(path, **kwargs)
