"""Trained-model files: the flow's weights with everything needed to rebuild and trust it.

A model file records the model block, the feature names and the config hashes it was made
with; loading checks them, so a checkpoint is never silently reused with another config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hepflows import __version__
from hepflows.atomic import atomic_path
from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.flows.base import DensityModel as Flow


def save(path: str | Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload, version=__version__), tmp)


def read(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; an unreadable file is an :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for corrupt files
        raise InputError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None


def load_model(
    path: str | Path,
    *,
    features: Sequence[str] | None = None,
    preprocess_hash: str | None = None,
    config_hash: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Flow, dict[str, Any]]:
    """Rebuild the flow stored at ``path`` in eval mode; returns ``(flow, metadata)``.

    ``features``, ``preprocess_hash`` and ``config_hash``, when given, must equal those the
    model was trained with (the hash of the preprocessing parameters file it was trained on, and
    the hash of the config sections that shape a model, ``config.MODEL_SECTIONS``).
    """
    from hepflows.flows import build_flow

    data = read(path)
    for key in ("state_dict", "model", "features", "context_features"):
        if key not in data:
            raise InputError(f"{path}: not a hepflows model file (no '{key}')")
    if features is not None and tuple(features) != tuple(data["features"]):
        raise InputError(
            f"{path}: trained on features {list(data['features'])}, expected {list(features)}"
        )
    if preprocess_hash is not None and preprocess_hash != data.get("preprocess_hash"):
        raise InputError(
            f"{path}: trained with preprocessing hash {data.get('preprocess_hash')!r}, but the "
            f"preprocessing file has {preprocess_hash!r}: they come from different configurations"
        )
    if config_hash is not None and config_hash != data.get("config_hash"):
        raise InputError(
            f"{path}: trained with config hash {data.get('config_hash')!r}, expected "
            f"{config_hash!r}: the model belongs to another configuration (its seed, features, "
            "data, preprocess, model or training sections differ); rerun the train step"
        )
    flow = build_flow(data["model"], len(data["features"]), data["context_features"])
    try:
        flow.load_state_dict(data["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise InputError(
            f"{path}: its weights do not fit its own model block {data['model']} "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); the file is corrupt"
        ) from None
    flow.to(device).eval()
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return flow, meta
