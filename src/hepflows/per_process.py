"""One model per process, used as one conditional model: ``p(x | label) = p_label(x)``.

A conditional flow learns every process with one set of weights, so its processes can blur
into each other (its signal/background closure).  The other way is one model per process,
each trained on its own process's events alone (with the process's label as a constant
context, ``training.conditional: true``), put together here: the events of label ``l`` are
drawn from and evaluated by the model of ``l``.  So the sampler, the support's redraws and
the seeding of :mod:`hepflows.sampling` apply unchanged: chunk ``c`` draws its labels from
``(seed, c)`` at the given signal fraction, then the background rows from the background
model and the signal rows from the signal model, one after the other from the chunk's
generator.

Both models must share one preprocessing (the inverse is applied per label where it is
fitted per process), their features and their model file's preprocessing hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from hepflows.errors import InputError
from hepflows.flows.model import DensityModel

__all__ = ["ByProcess", "load_by_process"]

#: The labels of the processes: 0 background, 1 signal.
PROCESS_LABELS = {"background": 0, "signal": 1}


class ByProcess(DensityModel):
    """A conditional density from one model per process label: ``models[l]`` for label ``l``.

    Context: (n, 1) holding the label (0 or 1) of each row; shapes as :class:`DensityModel`.
    """

    context_features = 1

    def __init__(self, models: Mapping[int, DensityModel]) -> None:
        super().__init__()
        if not models:
            raise InputError("one model per process: no model given")
        dims = {m.features for m in models.values()}
        if len(dims) != 1:
            raise InputError(f"one model per process: the models have {sorted(dims)} features")
        self.features = dims.pop()
        self.labels = sorted(int(k) for k in models)
        self.models = nn.ModuleList([models[k] for k in self.labels])

    def _rows(self, context: Tensor | None, n: int) -> list[tuple[DensityModel, Tensor]]:
        if context is None:
            raise ValueError("one model per process needs the label as context (n, 1)")
        self._check(None, context, n)
        label = context[:, 0].round().long()
        unknown = set(label.unique().tolist()) - set(self.labels)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} have no model; models for {self.labels}")
        return [
            (cast(DensityModel, model), (label == lab).nonzero()[:, 0])
            for lab, model in zip(self.labels, self.models, strict=True)
        ]

    @staticmethod
    def _own_context(model: DensityModel, context: Tensor, rows: Tensor) -> Tensor | None:
        return context[rows] if model.context_features else None

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        for model, rows in self._rows(context, x.shape[0]):
            if len(rows):
                assert context is not None
                out[rows] = model.log_prob(x[rows], self._own_context(model, context, rows)).to(
                    x.dtype
                )
        return out

    def sample(
        self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        parts = self._rows(context, n)
        assert context is not None
        out = torch.empty(n, self.features, device=context.device)
        for model, rows in parts:
            if len(rows):
                own = self._own_context(model, context, rows)
                out[rows] = model.sample(len(rows), own, generator=generator).to(out.dtype)
        return out


def load_by_process(
    models: Mapping[str, str | Path],
    *,
    features: Any,
    preprocess_hash: str,
    preprocess_parameters_hash: str,
    device: torch.device | str = "cpu",
) -> tuple[ByProcess, dict[str, dict[str, Any]]]:
    """The :class:`ByProcess` of ``models`` ({"signal": file, "background": file}); each
    file is checked against the preprocessing and must hold a model trained on its own
    process alone (its ``labels``).  Returns (model, each file's metadata by process)."""
    from hepflows import checkpoint

    flows: dict[int, DensityModel] = {}
    metas: dict[str, dict[str, Any]] = {}
    for process, path in models.items():
        if process not in PROCESS_LABELS:
            raise InputError(f"{path}: process {process!r}, expected one of {list(PROCESS_LABELS)}")
        flow, meta = checkpoint.load_model(
            path,
            features=features,
            preprocess_hash=preprocess_hash,
            preprocess_parameters_hash=preprocess_parameters_hash,
            device=device,
        )
        label = PROCESS_LABELS[process]
        trained = meta.get("labels")
        if meta.get("context_features") and sorted(int(v) for v in trained or ()) != [label]:
            raise InputError(
                f"{path}: trained on labels {trained}, expected the {process} events alone "
                f"(label {label})"
            )
        flows[label] = flow
        metas[process] = meta
    return ByProcess(flows).eval(), metas
