"""The ``train`` step: load the training and validation events, fit the flow, save the model.

The data policy of training lives here: events outside the preprocessing's fitted range are
clipped (training) or left out (validation), event weights are scaled to mean 1 for the
weighted NLL, ``data.normalise: per_process`` gives each process mean weight 1, and a
conditional flow records the process labels and the signal fraction it saw.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError
from hepflows.model_config import model_kind
from hepflows.steps.common import check_per_process_is_conditional, features, matrix, metadata

if TYPE_CHECKING:
    from hepflows.settings import Settings, TrainingSettings

log = logging.getLogger("hepflows")


@dataclass(frozen=True)
class Events:
    """The training and validation events on the training device (:class:`Dataset`), and
    the training data's signal fraction (None for an unconditional flow)."""

    train: Any
    val: Any
    signal_fraction: float | None


def run(
    settings: Settings,
    *,
    train: str,
    val: str,
    preprocess: str,
    model: str,
    log_path: str,
    plot: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> None:
    """Train the flow; writes the best model, the per-epoch log (CSV) and its plot.

    Args:
        settings: The validated settings.
        train: The training events (ROOT).
        val: The validation events (ROOT), for early stopping.
        preprocess: The preprocessing fitted by the ``preprocess`` step (JSON).
        model: The model file to write; its resumable checkpoint sits beside it.
        log_path: The per-epoch log to write (CSV).
        plot: The training curve to draw (.png; a .pdf beside it), or None for none.
        device: A device overriding ``training.device``, or None.
        progress: Whether to show a progress bar.
    """
    training = settings.training
    if device:
        training = dataclasses.replace(training, device=device)
    pre = load_preprocessing(settings, preprocess)
    if pre.per_process:
        check_per_process_is_conditional(training.conditional)
    on = training_device(training)
    events = load_events(settings, pre, train, val, on)
    flow = build(settings, len(pre.features), on)
    out = Path(model)
    trainer = make_trainer(settings, training, flow, events, out, log_path, progress)
    trainer.try_resume()
    state = trainer.fit()
    write_model(settings, out, state, pre, events, train)
    report(flow.loss_name, state, out, log_path, plot)
    trainer.resume_path.unlink(missing_ok=True)


def load_preprocessing(settings: Settings, path: str) -> Any:
    """The fitted preprocessing, checked against the settings' features and hash."""
    from hepflows import config
    from hepflows.preprocess import Preprocessor

    return Preprocessor.load(
        path,
        features=features(settings),
        config_hash=settings.section_hash(config.PREPROCESS_SECTIONS),
    )


def training_device(training: TrainingSettings) -> Any:
    """The torch device of ``training.device``, logged with the GPU's name."""
    import torch

    from hepflows.training import select_device

    on = select_device(training.device)
    log.info(
        "training on %s%s",
        on,
        f" ({torch.cuda.get_device_name(on)})" if on.type == "cuda" else "",
    )
    return on


def load_events(settings: Settings, pre: Any, train: str, val: str, device: Any) -> Events:
    """The preprocessed training and validation events on ``device``, weighted as
    ``data.normalise`` says, with the training data's signal fraction."""
    conditional = settings.training.conditional
    train_data = dataset(train, pre, conditional, device)
    val_data = dataset(val, pre, conditional, device, drop_outside=True)
    fraction = signal_fraction(train, train_data) if conditional else None
    if settings.data.normalise == "per_process":
        # after the weighted fraction is taken: it is the default mixture to generate
        train_data, val_data = per_process(train_data), per_process(val_data)
    return Events(train_data, val_data, fraction)


def build(settings: Settings, n_features: int, device: Any) -> Any:
    """The untrained model of ``model:`` on ``device``, its initial weights seeded by
    ``training.seed`` (or the run's ``seed``)."""
    import torch

    from hepflows.flows import build_flow

    torch.manual_seed(settings.training_seed)
    context = 1 if settings.training.conditional else 0
    flow = build_flow(settings.model, n_features, context).to(device)
    log.info(
        "model: %s, %d parameters",
        model_kind(settings.model),
        sum(p.numel() for p in flow.parameters()),
    )
    return flow


def make_trainer(
    settings: Settings,
    training: TrainingSettings,
    flow: Any,
    events: Events,
    out: Path,
    log_path: str,
    progress: bool,
) -> Any:
    """The training loop of ``flow`` on ``events``, resumable from beside ``out``."""
    from hepflows import config
    from hepflows.training import Trainer

    return Trainer(
        flow,
        events.train,
        events.val,
        training,
        seed=settings.training_seed,
        resume_path=out.with_name(out.stem + ".resume.pt"),
        log_path=log_path,
        config_hash=settings.section_hash(config.MODEL_SECTIONS),
        progress=progress,
    )


def write_model(
    settings: Settings, out: Path, state: Any, pre: Any, events: Events, train: str
) -> None:
    """The model file: the best weights with what loading and sampling check them against."""
    from hepflows import checkpoint, config
    from hepflows.events.reader import read_metadata
    from hepflows.normalisation import input_normalisation

    conditional = settings.training.conditional
    model_hash = settings.section_hash(config.MODEL_SECTIONS)
    checkpoint.save(
        out,
        {
            "state_dict": state.best_state,
            "model": settings.model.to_dict(),
            "features": list(features(settings)),
            "context_features": 1 if conditional else 0,
            "config_hash": model_hash,
            "preprocess_hash": pre.config_hash,
            "preprocess_parameters_hash": pre.parameters_hash,
            "epoch": state.best_epoch,
            "val_nll": state.best_val,
            "signal_fraction": events.signal_fraction,
            # the conditions it saw: sampling refuses the others
            "labels": labels(events.train) if conditional else None,
            "normalisation": input_normalisation(read_metadata(train)),
            "metadata": metadata(settings, config.MODEL_SECTIONS),
        },
    )


def report(loss: str, state: Any, out: Path, log_path: str, plot: str | None) -> None:
    """Log the best epoch and draw the training curve (``plot``, when given)."""
    from hepflows.report.plots import plot_training_curve

    log.info("best epoch %d, validation %s %.4f -> %s", state.best_epoch, loss, state.best_val, out)
    if plot:
        label = "Negative log-likelihood per event" if loss == "NLL" else f"{loss} per event"
        plot_training_curve(Path(log_path), Path(plot), label)


def labels(train: Any) -> list[int]:
    """The process labels present in the training events (their context)."""
    import torch

    return [int(v) for v in torch.unique(train.context[:, 0]).tolist()]


def signal_fraction(path: str, train: Any) -> float:
    """The training data's (weighted) signal fraction, checked before training starts."""
    from hepflows.sampling import training_signal_fraction

    weight = None if train.weight is None else train.weight.cpu().numpy()
    return training_signal_fraction(train.context[:, 0].cpu().numpy(), weight, path)


def dataset(
    path: str, pre: Any, conditional: bool, device: Any, *, drop_outside: bool = False
) -> Any:
    """The events of ``path`` preprocessed for training, on ``device``.

    With ``drop_outside`` (the validation split) events with a value outside the fitted range
    are left out: their values would be clipped to the range's edge, where the flow's density
    is an extrapolation, and one such event can dominate the mean NLL that early stopping
    watches (seen: 1 event in 10k moving it from 16 to 1e8 nats).
    """
    import numpy as np
    import torch

    from hepflows.events.reader import branch_names, read_events
    from hepflows.events.schema import LABEL, WEIGHT
    from hepflows.training import Dataset

    weighted = WEIGHT in branch_names(path)
    events = read_events(path, pre.features, with_weight=weighted)
    if len(events[LABEL]) == 0:
        raise InputError(f"{path}: 0 events, expected at least one")
    values = matrix(events, pre.features)
    mask = pre.outside_mask(values)
    if mask.any():
        named = {f: int(c) for f, c in zip(pre.features, mask.sum(axis=0)) if c}
        if drop_outside:
            keep = ~mask.any(axis=1)
            log.warning(
                "%s: %d events outside the fitted range left out of the validation NLL: %s",
                path,
                int((~keep).sum()),
                named,
            )
            events = {k: v[keep] for k, v in events.items()}
            values = values[keep]
            if not keep.any():
                raise InputError(
                    f"{path}: all {len(keep)} events lie outside the preprocessing's fitted "
                    f"range ({named}); no validation events are left, expected at least one"
                )
        else:
            log.warning("%s: values outside the fitted range were clipped: %s", path, named)
    weight = training_weights(path, events.get(WEIGHT))
    x = pre.forward(values, events[LABEL]).astype(np.float32)
    context = None
    if conditional:
        context = torch.from_numpy(events[LABEL].astype(np.float32)).unsqueeze(1).to(device)
    return Dataset(
        torch.from_numpy(x).to(device),
        context,
        None if weight is None else torch.from_numpy(weight).to(device),
    )


def per_process(data: Any) -> Any:
    """``data`` with each process's weights scaled to mean 1 (``data.normalise: per_process``).

    The conditional NLL then learns each process's shape with its own weights, whatever its
    cross-section; the weights' sums per process are positive (checked at ingest and by the
    signal fraction).
    """
    import dataclasses

    if data.weight is None or data.context is None:
        return data
    w = data.weight.clone()
    label = data.context[:, 0]
    for c in (0.0, 1.0):
        mine = label == c
        if bool(mine.any()):
            w[mine] = w[mine] / w[mine].mean()
    return dataclasses.replace(data, weight=w)


def training_weights(path: str, w: Any) -> Any:
    """Event weights scaled to mean 1 for the weighted NLL, or None when absent or all equal.

    Negative weights (NLO generators) are kept: the weighted NLL stays an unbiased estimate of
    the expected NLL under the signed measure.  The total must be positive.
    """
    import numpy as np

    if w is None or len(w) == 0 or np.all(w == w[0]):
        return None
    w = w.astype(np.float64)
    total = w.sum()
    if not total > 0:
        raise InputError(
            f"{path}: branch 'weight': the weights sum to {total:g}; the weighted "
            "likelihood needs a positive total"
        )
    from hepflows.kish import effective_size

    ess = effective_size(w, len(w))
    log.info(
        "%s: weighted events: %d, effective sample size (Kish) %.0f, %d negative weight(s) "
        "(%.2f%%)",
        path,
        len(w),
        ess,
        int((w < 0).sum()),
        100.0 * float((w < 0).mean()),
    )
    return (w / w.mean()).astype(np.float32)
