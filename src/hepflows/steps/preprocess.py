"""The ``preprocess`` step: fit the preprocessing on the training events and save it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hepflows.steps.common import (
    check_per_process_is_conditional,
    declared_discrete,
    features,
    matrix,
    metadata,
    selection_on_features,
)

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")


def run(settings: Settings, *, train: str, out: str) -> None:
    """Fit min-max (with margin) -> logit -> standardise on the training events.

    Args:
        settings: The validated settings.
        train: The training events (ROOT) to fit on.
        out: The preprocessing file to write (JSON).
    """
    from hepflows import config, preprocess
    from hepflows.events.reader import read_events
    from hepflows.events.schema import LABEL

    names = features(settings)
    own = settings.preprocess
    if own.per_process:
        check_per_process_is_conditional(settings.training.conditional)
    events = read_events(train, names)
    x = matrix(events, names)
    pre = preprocess.fit(
        x,
        names,
        margin=own.margin,
        transform=own.transform,
        quantiles=own.quantiles,
        labels=events[LABEL],
        per_process=own.per_process,
        discrete=declared_discrete(settings, train),
        discrete_values=own.discrete_values,
        cut=selection_on_features(train, names),
        config_hash=settings.section_hash(config.PREPROCESS_SECTIONS),
        source=str(train),
        metadata=metadata(settings, config.PREPROCESS_SECTIONS),
    )
    pre.save(out)
    log.info("fitted preprocessing on %d events of %d features -> %s", len(x), len(names), out)
