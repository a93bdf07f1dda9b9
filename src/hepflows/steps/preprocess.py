"""The ``preprocess`` step: fit the preprocessing on the training events and save it."""

from __future__ import annotations

import logging
from typing import Any

from hepflows.steps.common import (
    check_per_process_is_conditional,
    declared_discrete,
    features,
    matrix,
    metadata,
    selection_on_features,
)

log = logging.getLogger("hepflows")


def run(cfg: dict[str, Any], *, train: str, out: str) -> None:
    """Fit min-max (with margin) -> logit -> standardise on the training events.

    Args:
        cfg: The validated settings.
        train: The training events (ROOT) to fit on.
        out: The preprocessing file to write (JSON).
    """
    from hepflows import config, preprocess
    from hepflows.events.reader import read_events
    from hepflows.events.schema import LABEL

    names = features(cfg)
    settings = cfg["preprocess"]
    if settings["per_process"]:
        check_per_process_is_conditional(cfg["training"]["conditional"])
    events = read_events(train, names)
    x = matrix(events, names)
    pre = preprocess.fit(
        x,
        names,
        margin=settings["margin"],
        transform=settings["transform"],
        quantiles=settings["quantiles"],
        labels=events[LABEL],
        per_process=settings["per_process"],
        discrete=declared_discrete(cfg, train),
        discrete_values=settings["discrete_values"],
        cut=selection_on_features(train, names),
        config_hash=config.section_hash(cfg, config.PREPROCESS_SECTIONS),
        source=str(train),
        metadata=metadata(cfg, config.PREPROCESS_SECTIONS),
    )
    pre.save(out)
    log.info("fitted preprocessing on %d events of %d features -> %s", len(x), len(names), out)
