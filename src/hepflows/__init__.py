"""hepflows: normalizing flows that learn collider events and generate more of them.

*The seed study*, named throughout the code, is the 2022 Ljubljana seminar study on normalizing
flows for the simulation of high-energy-physics events: RealNVP and Glow flows on the 18
continuous features of the HIGGS dataset; ``config/seed-paper.yaml`` is its exact setup, and
the documentation's "Getting started" page describes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepflows.api import Model

__version__ = "0.3.0"


def load(path: str | Path, **kwargs: Any) -> Model:
    """The trained model of a run, for notebooks: see :func:`hepflows.api.load`.

    Imported on call, so that ``import hepflows`` stays light (no torch) for the config tools.
    """
    from hepflows.api import load as load_model

    return load_model(path, **kwargs)
