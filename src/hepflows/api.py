"""The Python interface to a trained model, for notebooks and analysis code.

    import hepflows

    model = hepflows.load("results/my-analysis")  # a run's folder, or its model file
    events = model.sample(10_000, seed=1)           # {feature: float32 (n,), "label": int8 (n,)}
    density = model.log_prob(events)                # log p(x | label) per event (n,)
    model.to_root("more.root", 1_000_000, seed=2)   # streamed to ROOT, as ``hepflows sample``

A model is its weights and its preprocessing: nothing of the run's config is needed to draw
from it.  Chunk ``k`` of a sample with seed ``s`` is drawn from ``(s, k)`` alone
(:mod:`hepflows.sampling`), so a seed other than the run's gives an independent sample and the
run's seed (with the run's chunk size) gives the run's own sample again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepflows import layout
from hepflows.errors import InputError

if TYPE_CHECKING:
    import torch

    from hepflows.flows.model import DensityModel
    from hepflows.preprocess import Preprocessor

__all__ = ["Model", "load", "locate", "DEFAULT_CHUNK_SIZE"]

#: Events drawn at a time; the pipeline's default ``sampling.chunk_size``.
DEFAULT_CHUNK_SIZE = 100_000


def locate(path: str | Path, preprocess: str | Path | None = None) -> tuple[Path, Path]:
    """The model file and the preprocessing file of ``path``: a run's folder (one model), a
    grid model's folder, or a model file (its run's ``preprocess.json`` found above it, unless
    ``preprocess`` names it)."""
    path = Path(path)
    if path.is_dir():
        model = path / layout.MODEL_FILES["model"]
        if not model.is_file():
            grid = sorted(p.name for p in (path / layout.MODELS).glob("*") if p.is_dir())
            hint = (
                f"; this run has a grid of models: give one of {[f'{path}/models/{g}' for g in grid]}"
                if grid
                else "; expected a run's folder (results/<run>) or a model file"
            )
            raise InputError(f"{path}: no {layout.MODEL_FILES['model']}{hint}")
    elif path.is_file():
        model = path
    else:
        raise InputError(f"{path}: no such run folder or model file")
    if preprocess is not None:
        return model, Path(preprocess)
    # the run's folder is the model's folder, or two levels above it in a grid
    for folder in model.resolve().parents[:4]:
        preprocess = folder / layout.RUN_FILES["preprocess"]
        if preprocess.is_file():
            return model, preprocess
    raise InputError(
        f"{model}: no {layout.RUN_FILES['preprocess']} in the folders above it; give its "
        "preprocessing file (preprocess=... or --preprocess)"
    )


def load(
    path: str | Path | Sequence[str | Path],
    *,
    preprocess: str | Path | None = None,
    device: str = "cpu",
) -> Model:
    """The trained model of a run (see :func:`locate`), ready to sample and evaluate.

    ``preprocess`` overrides the preprocessing file found beside the model; it must be the one
    the model was trained on (its hash is checked).  ``device``: ``cpu``, ``cuda``, ``auto``.
    A list of paths is an ensemble (:mod:`hepflows.ensemble`): models of the same events,
    features, preprocessing and labels (else an error), chunk ``c`` of a sample drawn by
    member ``c mod k``, the density the members' average; the preprocessing is the first's.
    """
    from hepflows import training
    from hepflows.ensemble import load_members
    from hepflows.preprocess import Preprocessor

    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths:
        raise InputError("hepflows.load: no model given")
    model_path, found = locate(paths[0], preprocess)
    model_paths = [model_path] + [locate(p, found)[0] for p in paths[1:]]
    pre = Preprocessor.load(found)
    dev = training.select_device(device)
    flows, infos = load_members(model_paths, pre, device=dev)
    return Model(
        flow=flows[0],
        preprocessor=pre,
        info=infos[0],
        path=model_path,
        device=dev,
        members=flows,
        member_paths=model_paths,
        member_infos=infos,
    )


@dataclass
class Model:
    """A trained density model with its preprocessing: events in physical units in and out."""

    flow: DensityModel
    preprocessor: Preprocessor
    info: dict[str, Any] = field(repr=False)
    path: Path
    device: torch.device
    #: An ensemble's models, its files and their metadata (the first is ``flow``); one
    #: model: empty, or itself alone.
    members: list[DensityModel] = field(default_factory=list, repr=False)
    member_paths: list[Path] = field(default_factory=list)
    member_infos: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def flows(self) -> list[DensityModel]:
        """The models that draw the chunks: an ensemble's members, or ``[flow]``."""
        return self.members or [self.flow]

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names, in the order of the model's columns."""
        return self.preprocessor.features

    @property
    def conditional(self) -> bool:
        """Whether the model is conditioned on the process label (1 signal, 0 background)."""
        return bool(self.info["context_features"])

    @property
    def training_signal_fraction(self) -> float | None:
        """The (weighted) signal fraction of the training events; None if unconditional."""
        value = self.info.get("signal_fraction")
        return None if value is None else float(value)

    @property
    def normalisation(self) -> dict[str, Any] | None:
        """sigma x L of the inputs (:mod:`hepflows.normalisation`), None without weights."""
        return self.info.get("normalisation")

    def signal_fraction(self, value: float | None = None) -> float | None:
        """The fraction to draw: ``value``, or the training events' one; None if unconditional."""
        if not self.conditional:
            if value is not None:
                raise InputError(
                    f"{self.path}: signal_fraction {value}: the model is not conditioned on "
                    "the process, it draws the training mixture"
                )
            return None
        if value is None:
            value = self.training_signal_fraction
            if value is None:
                raise InputError(f"{self.path}: records no training signal fraction; give one")
        elif not 0.0 <= value <= 1.0:
            raise InputError(f"signal_fraction: expected a number in [0, 1], got {value!r}")
        from hepflows.sampling import check_trained_labels

        check_trained_labels(value, self.info, where=str(self.path))
        return float(value)

    def sample(
        self,
        n: int,
        *,
        seed: int,
        signal_fraction: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        precision: str = "float32",
    ) -> dict[str, np.ndarray]:
        """``n`` events as {feature: float32 (n,), "label": int8 (n,) if conditional}.

        The events are those ``to_root`` and ``hepflows sample`` write for the same seed and
        chunk size.  ``signal_fraction``: of the drawn events (default: the training events').
        """
        from hepflows.sampling import iter_chunks, sample_chunk

        if n < 0:
            raise InputError(f"n: expected a number of events >= 0, got {n}")
        fraction = self.signal_fraction(signal_fraction)
        chunks = [
            sample_chunk(
                self.flows,
                self.preprocessor,
                size,
                seed=seed,
                chunk=chunk,
                signal_fraction=fraction,
                device=self.device,
                precision=precision,
            )
            for chunk, size in iter_chunks(n, chunk_size)
        ]
        if not chunks:
            return self._empty(fraction is not None)
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    def _empty(self, labelled: bool) -> dict[str, np.ndarray]:
        from hepflows.events.schema import LABEL

        out = {name: np.empty(0, np.float32) for name in self.features}
        if labelled:
            out[LABEL] = np.empty(0, np.int8)
        return out

    def log_prob(self, events: Mapping[str, Any], *, batch_size: int = 65_536) -> np.ndarray:
        """log p(x) per event (n,) float64 in the features' physical units; for a conditional
        model log p(x | label), the events' ``label`` (1 signal, 0 background) required.

        The model's density of the preprocessed values plus log|det dy/dx| of the
        preprocessing (:meth:`hepflows.preprocess.Preprocessor.log_abs_det`).
        """
        import torch

        from hepflows.events.schema import LABEL

        missing = [name for name in self.features if name not in events]
        if missing:
            raise InputError(
                f"events: no column(s) {missing}; the model's features are {list(self.features)}"
            )
        x = np.column_stack([np.asarray(events[name], np.float64) for name in self.features])
        labels = None
        if self.conditional:
            if LABEL not in events:
                raise InputError(
                    f"events: no '{LABEL}' column; the model is conditioned on the process "
                    "(1 signal, 0 background)"
                )
            labels = np.asarray(events[LABEL]).astype(np.int8)
        y = self.preprocessor.forward(x, labels)
        out = np.empty(len(x))
        flows = self.flows
        with torch.no_grad():
            for lo in range(0, len(x), batch_size):
                hi = min(lo + batch_size, len(x))
                yt = torch.as_tensor(y[lo:hi], dtype=torch.float32, device=self.device)
                context = None
                if labels is not None:
                    context = torch.as_tensor(
                        labels[lo:hi, None], dtype=torch.float32, device=self.device
                    )
                # an ensemble's density is its members' average: log (1/k) sum_j p_j
                each = torch.stack([f.log_prob(yt, context).double() for f in flows])
                mixed = torch.logsumexp(each, 0) - np.log(len(flows))
                out[lo:hi] = mixed.cpu().numpy()
        return out + self.preprocessor.log_abs_det(x, labels)

    def to_root(
        self,
        path: str | Path,
        n: int,
        *,
        seed: int,
        signal_fraction: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compression: str | None = "lz4",
        precision: str = "float32",
        progress: bool = False,
    ) -> int:
        """Stream ``n`` events to the ROOT file ``path`` (TTree ``events``); returns the count.

        The file's metadata records the model, the seed, the process fractions and the
        normalisation (:func:`sample_metadata`); it appears only when complete.
        """
        from hepflows.sampling import sample_to_root

        fraction = self.signal_fraction(signal_fraction)
        metadata = self.sample_metadata(n, seed=seed, signal_fraction=fraction)
        if "ensemble" in metadata:
            metadata["ensemble"]["chunk_size"] = chunk_size
        return sample_to_root(
            self.flows,
            self.preprocessor,
            path,
            n,
            seed=seed,
            chunk_size=chunk_size,
            signal_fraction=fraction,
            compression=compression,
            device=self.device,
            metadata=metadata,
            progress=progress,
            precision=precision,
        )

    def sample_metadata(
        self, n: int, *, seed: int, signal_fraction: float | None
    ) -> dict[str, Any]:
        """What a sample of ``n`` events records of itself: model, seed, fractions, sigma x L."""
        from hepflows import __version__
        from hepflows.normalisation import sample_normalisation

        fractions = (
            None
            if signal_fraction is None
            else {"signal": signal_fraction, "background": 1.0 - signal_fraction}
        )
        record: dict[str, Any] = {
            "hepflows_version": __version__,
            "model": str(self.path)
            if len(self.flows) == 1
            else [str(p) for p in self.member_paths],
            "model_config_hash": self.info.get("config_hash"),
            "seed": seed,
            "n_events": n,
            "process_fractions": fractions,
            "normalisation": sample_normalisation(
                self.normalisation, n, signal_fraction, self.training_signal_fraction
            ),
        }
        if len(self.flows) > 1:
            from hepflows.ensemble import members_record

            record["ensemble"] = {
                "members": members_record(self.member_paths, self.member_infos),
                "rule": "chunk c drawn by member c mod k",
            }
        return record
