"""Discriminator-weighted fine-tuning of a trained flow (DiscFlow).

Reference: Butter, Heimel, Hummerich, Krebs, Plehn, Rousselot, Vent, "Generative Networks for
Precision Enthusiasts", arXiv:2110.13632 (the "DiscFlow" coupling of a flow and a classifier).

The refine step (:mod:`hepflows.refine`) corrects a generated sample with weights that every
user must then carry.  This puts the classifier's knowledge back into the flow, so the
*unweighted* events improve.  Each round ``r``:

1. draw ``draw_events`` events of the flow (a seed of their own, never the validated sample's);
2. cross-fit classifiers of the training events (class 1) against that draw
   (:func:`hepflows.refine.fit_committee`, ``folds`` folds, ``families``): for training event
   ``x_i`` the members that did not fit it give ``log w_i = log D / (1 - D) ~ log p_MC(x_i) /
   p_flow(x_i)``;
3. continue training the flow on the weighted NLL

       L(theta) = - sum_i w_i^alpha log p_theta(x_i) / sum_i w_i^alpha,

   the weights normalised to mean 1 per process and clipped at ``clip``; the validation
   events are weighted by the committee (which never saw them) and pick the best epoch.

Events where the flow puts too little density (``w > 1``) pull harder, those where it puts
too much pull less.  At the fixed point ``p_flow = p_MC`` the odds are 1 and ``L`` is the
NLL again: a flow that is right is not moved.  ``alpha`` < 1 damps the step, since the
maximum-likelihood fit then overshoots less.

Shapes: events are dicts of (n,) arrays in physical units (features, ``label``); the flow
works on the preprocessed (n, d) values.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hepflows.errors import InputError
from hepflows.events.schema import LABEL

log = logging.getLogger("hepflows")

#: Chunk seed of round r's draw: far from any sample's seed, so the validated events (the
#: run's seed) are never the classifier's.
DRAW_SEED = 2**40


@dataclass(frozen=True, slots=True)
class DiscFlowSettings:
    """How to fine-tune; see the module docstring."""

    rounds: int = 2
    epochs: int = 2
    draw_events: int = 200_000
    alpha: float = 1.0
    clip: float = 10.0
    lr: float = 1.0e-4
    folds: int = 3
    families: tuple[str, ...] = ("gbt",)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs < 1 or self.draw_events < 200:
            raise InputError(
                f"discflow: rounds and epochs >= 1 and draw_events >= 200 expected, got {self}"
            )
        if not 0 < self.alpha <= 1 or self.clip <= 1 or self.folds < 2:
            raise InputError(
                f"discflow: 0 < alpha <= 1, clip > 1 and folds >= 2 expected, got {self}"
            )


def odds_weights(
    log_odds: NDArray[np.float64], label: NDArray | None, alpha: float, clip: float
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """``w^alpha`` (n,) from log-odds (n,), mean 1 per process and clipped (as refine's)."""
    from hepflows.refine import event_weights

    return event_weights(alpha * log_odds, label, clip)


def finetune(
    model: Any,
    train: Mapping[str, NDArray],
    val: Mapping[str, NDArray],
    training: Mapping[str, Any],
    settings: DiscFlowSettings,
    *,
    seed: int,
) -> list[dict[str, Any]]:
    """Fine-tune ``model`` (:class:`hepflows.api.Model`) in place; returns one record per round.

    ``train`` and ``val`` are the run's training and validation events (physical units, with
    ``label`` when the model is conditional); ``training`` is the run's ``training`` block
    (batch size, weight decay, threads), the learning rate and epochs taken from ``settings``.
    """
    from hepflows.refine import design, fit_committee

    features = list(model.features)
    x_train, x_val = design(train, features), design(val, features)
    records = []
    for r in range(settings.rounds):
        draw = model.sample(
            settings.draw_events,
            seed=DRAW_SEED + 1000 * seed + r,
            signal_fraction=model.training_signal_fraction,
        )
        committee, fit_record, oof = fit_committee(
            x_train,
            design(draw, features),
            seed=seed + r,
            folds=settings.folds,
            families=settings.families,
        )
        w_train, w_record = odds_weights(
            oof[: len(x_train)], train.get(LABEL), settings.alpha, settings.clip
        )
        w_val, _ = odds_weights(
            committee.log_odds(x_val), val.get(LABEL), settings.alpha, settings.clip
        )
        state = weighted_fit(model, train, val, w_train, w_val, training, settings, seed=seed + r)
        log.info(
            "discflow round %d: classifier AUC %.4f (out of fold), weights ESS %.0f of %d; "
            "best epoch %d, weighted validation NLL %.4f",
            r + 1,
            fit_record["auc_check"],
            w_record["ess"],
            w_record["events"],
            state.best_epoch,
            state.best_val,
        )
        records.append(
            {
                "round": r + 1,
                "auc_out_of_fold": fit_record["auc_check"],
                "ece_calibrated": fit_record["ece_calibrated"],
                "ess": w_record["ess"],
                "fraction_clipped": w_record["fraction_clipped"],
                "best_epoch": state.best_epoch,
                "weighted_val_nll": state.best_val,
                "history": state.history,
            }
        )
    return records


def weighted_fit(
    model: Any,
    train: Mapping[str, NDArray],
    val: Mapping[str, NDArray],
    w_train: NDArray,
    w_val: NDArray,
    training: Mapping[str, Any],
    settings: DiscFlowSettings,
    *,
    seed: int,
) -> Any:
    """Continue training ``model.flow`` for ``settings.epochs`` at ``settings.lr`` on the NLL
    weighted by ``w_train`` (n_train,), picking the epoch by the ``w_val``-weighted validation
    NLL; the flow keeps the best epoch's weights.  All weights 1: plain continued training,
    the control of a fine-tuning."""
    import torch

    from hepflows.training import Trainer

    flow = model.flow
    train_data = _dataset(model, train, w_train)
    val_data = _dataset(model, val, w_val)
    settings_now = {
        **training,
        "epochs": settings.epochs,
        "lr": settings.lr,
        "scheduler": "none",
        "warmup_epochs": 0,
        "patience": None,
        "ema": None,
    }
    flow.train()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            flow,
            train_data,
            val_data,
            settings_now,
            seed=seed,
            resume_path=f"{tmp}/resume.pt",
            log_path=f"{tmp}/log.csv",
            progress=False,
        )
        state = trainer.fit()
    flow.load_state_dict(state.best_state)
    flow.eval()
    return state


def _dataset(model: Any, events: Mapping[str, NDArray], weight: NDArray) -> Any:
    """The events preprocessed for the flow, carrying ``weight`` (n,); events outside the
    preprocessing's fitted range are left out (as the validation NLL leaves them out)."""
    import torch

    from hepflows.training import Dataset

    pre = model.preprocessor
    values = np.column_stack([np.asarray(events[f], np.float64) for f in model.features])
    label = np.asarray(events.get(LABEL, np.zeros(len(values), np.int8)))
    keep = ~pre.outside_mask(values).any(axis=1)
    values, label, weight = values[keep], label[keep], weight[keep]
    x = torch.from_numpy(pre.forward(values, label).astype(np.float32)).to(model.device)
    context = None
    if model.conditional:
        context = torch.from_numpy(label.astype(np.float32)).unsqueeze(1).to(model.device)
    w = torch.from_numpy((weight / weight.mean()).astype(np.float32)).to(model.device)
    return Dataset(x, context, w)


def save(model: Any, out: str, records: list[dict[str, Any]], settings: DiscFlowSettings) -> None:
    """The fine-tuned ``model`` written as a model file beside the original's metadata (the
    same hashes: it samples and validates as the run's model) plus its ``discflow`` record."""
    import dataclasses

    from hepflows import checkpoint

    discflow = {
        "settings": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(settings).items()
        },
        "rounds": [{k: v for k, v in r.items() if k != "history"} for r in records],
    }
    checkpoint.save_with_weights(model.path, out, model.flow, discflow=discflow)
