"""Trained-model files: the flow's weights with everything needed to rebuild and trust it.

A model file records the model block, the feature names and the config hashes it was made
with; loading checks them, so a checkpoint is never silently reused with another config.

Model and resume files are data, never code: they hold only tensors and plain values (dicts,
lists, tuples, strings, numbers, ``None``), and they are read with
``torch.load(weights_only=True)``, whose unpickler rebuilds nothing beyond torch's own
allow-list of tensor types, so a file that asks for any other Python object (a pickle whose
``__reduce__`` calls ``os.system``) is refused before anything in it runs.  Every file carries
``format: FORMAT``; a file without it was written by an older hepflows and is refused with the
way to convert it.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hepflows import __version__
from hepflows.atomic import atomic_path
from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.flows.model import DensityModel


#: The layout of the files :func:`save` writes (plain data read with ``weights_only=True``).
FORMAT = "hepflows-checkpoint/2"

#: What to do with a file of the old (arbitrary pickle) format.
CONVERT_HINT = (
    "hepflows reads only model files of plain data (format {format!r}), which cannot run code. "
    "Retrain it with this version (`hepflows train`), or, only if you trust whoever made the "
    "file, convert it once with `hepflows convert-checkpoint --trust {path} NEW_PATH`"
)


def save(path: str | Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves a half-written file.

    ``payload`` must hold only tensors and plain values: :func:`read` refuses anything else.
    """
    # serialised in memory, then written by Python: a full disk is then an OSError that names
    # its cause, where torch's own writer reports a short write as "unexpected pos 768 vs 662"
    buffer = io.BytesIO()
    torch.save(dict(payload, version=__version__, format=FORMAT), buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(buffer.getbuffer())


def save_with_weights(
    source: str | Path, out: str | Path, flow: torch.nn.Module, **record: Any
) -> None:
    """The model file ``source`` written to ``out`` with ``flow``'s weights and ``record``'s
    entries added: its hashes and metadata kept, so it samples and validates as the model it
    came from (a fine-tuned or re-selected copy)."""
    data = read(source)
    for key in ("version", "format"):  # save writes this version's
        data.pop(key, None)
    data["state_dict"] = {k: v.detach().cpu() for k, v in flow.state_dict().items()}
    save(out, {**data, **record})


def read(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU without running code; a bad file is an :class:`InputError`.

    Refused: an unreadable file, a file that needs any Python object beyond tensors and plain
    data (an old-format or a malicious pickle), and a file without this version's ``format``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    hint = CONVERT_HINT.format(format=FORMAT, path=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        lines = str(err).splitlines()
        refused = next((line.strip() for line in lines if "GLOBAL" in line), None)
        if isinstance(err, pickle.UnpicklingError) and refused:
            # torch's restricted unpickler met a global outside its allow-list: nothing was built
            raise InputError(
                f"{path}: holds Python objects beyond tensors and plain data, so it is not "
                f"opened (it could run code: {refused}). {hint}"
            ) from None
        first = lines[0] if lines else repr(err)
        reason = next((line.strip() for line in lines if "Unsupported" in line), first)
        raise InputError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {reason})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: a checkpoint of an older hepflows format. {hint}")
    return data


def convert_trusted(src: str | Path, dst: str | Path) -> None:
    """Rewrite an old-format checkpoint as plain data; UNPICKLES ``src``: trusted files only.

    The one place that reads a file with ``weights_only=False``, reached only by
    ``hepflows convert-checkpoint --trust``.  Values that are not plain data (numpy scalars and
    arrays) become Python numbers and tensors; the result is checked by reading it back.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: checkpoint not found")
    try:
        data = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as err:
        raise InputError(
            f"{src}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{src}: not a hepflows checkpoint (holds a {type(data).__name__})")
    save(dst, {k: _plain(v) for k, v in data.items() if k not in ("version", "format")})
    read(dst)


def _plain(value: Any) -> Any:
    """``value`` with numpy values turned into tensors and Python numbers."""
    import numpy as np

    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_model(
    path: str | Path,
    *,
    features: Sequence[str] | None = None,
    preprocess_hash: str | None = None,
    preprocess_parameters_hash: str | None = None,
    config_hash: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[DensityModel, dict[str, Any]]:
    """Rebuild the flow stored at ``path`` in eval mode; returns ``(flow, metadata)``.

    ``features``, ``preprocess_hash`` and ``config_hash``, when given, must equal those the
    model was trained with (the config hash of the preprocessing file it was trained on, and
    the hash of the config sections that shape a model, ``config.MODEL_SECTIONS``);
    ``preprocess_parameters_hash`` that of the preprocessing parameters themselves
    (:attr:`hepflows.preprocess.Preprocessor.parameters_hash`).
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
    trained_on = data.get("preprocess_parameters_hash")  # absent from older model files
    if preprocess_parameters_hash is not None and trained_on not in (
        None,
        preprocess_parameters_hash,
    ):
        raise InputError(
            f"{path}: trained on preprocessing parameters of hash {trained_on!r}, but the "
            f"preprocessing file's are {preprocess_parameters_hash!r}: it was refitted or "
            "changed since; rerun the train step (or use the file it was trained with)"
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
