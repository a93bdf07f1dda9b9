"""The normalisation of a generated sample: what its events stand for in cross-section x luminosity.

When the inputs' event weights are cross-section x luminosity / generated events (the usual MC
convention), their sum over the selected events of every input is sigma x L of the selection,
in the weights' unit (events, or fb x fb^-1).  The train step stores that sum with the model;
a sample of ``n`` events drawn with signal fraction ``f`` then gets, per process, the weight
that makes each process's events sum to its share of sigma x L:

    w_signal = S f_train / (n f),    w_background = S (1 - f_train) / (n (1 - f)),

with ``f_train`` the (weighted) signal fraction the model learnt.  Without weights (the
embedded generator, unweighted ntuples) there is no normalisation: the sample is a shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["input_normalisation", "sample_normalisation"]


def input_normalisation(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """sigma x L of the inputs from an ingested file's metadata (its ``inputs`` records), or None.

    Returns ``{"sum_weights": S, "inputs": k}``: S sums the weights of the selected events of
    the ``k`` input files (all splits together).  None when the inputs carry no weights.
    """
    inputs = metadata.get("inputs") or []
    sums = [f.get("sum_weights") for f in inputs if isinstance(f, Mapping)]
    if not sums or any(s is None for s in sums):
        return None
    total = sum(float(s) for s in sums if s is not None)
    normalisation: dict[str, Any] = {"sum_weights": total, "inputs": len(sums)}
    if metadata.get("limit") is not None:
        # data.limit read only the first entries of each file: the sum is that of a part
        normalisation["limit"] = metadata["limit"]
    return normalisation


def sample_normalisation(
    normalisation: Mapping[str, Any] | None,
    n_events: int,
    signal_fraction: float | None,
    training_fraction: float | None,
) -> dict[str, Any] | None:
    """The weight per generated event of each process, for a sample of ``n_events``.

    ``signal_fraction`` is the fraction drawn, ``training_fraction`` the one learnt (both None
    for an unconditional model: one weight for every event).  None without a normalisation.
    """
    if normalisation is None or n_events <= 0:
        return None
    total = float(normalisation["sum_weights"])
    out: dict[str, Any] = {"sigma_x_lumi": total, "n_events": n_events}
    if signal_fraction is None or training_fraction is None:
        out["weight_per_event"] = total / n_events
        return out
    per_process = {}
    for name, drawn, learnt in (
        ("signal", signal_fraction, training_fraction),
        ("background", 1.0 - signal_fraction, 1.0 - training_fraction),
    ):
        # a process not drawn has no events to weight
        per_process[name] = total * learnt / (n_events * drawn) if drawn > 0 else None
    out["weight_per_event"] = per_process
    return out
