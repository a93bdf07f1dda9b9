"""What several steps read from the settings and the event files: the features, the provenance
written into every output, the discrete features and the ingest selection.

Only the standard library and :mod:`hepflows.errors` are imported at module level: every
step's environment loads this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hepflows.errors import InputError

if TYPE_CHECKING:
    from hepflows.events.feature_cut import FeatureCut
    from hepflows.settings import AxisLabel, Settings

log = logging.getLogger("hepflows")


def features(settings: Settings) -> tuple[str, ...]:
    """The feature names the settings select, in their order."""
    from hepflows.events.observables import feature_names

    return feature_names(settings.features, settings.derived)


def metadata(settings: Settings, sections: Sequence[str], **extra: Any) -> dict[str, Any]:
    """Provenance written into every output: version, git commit, config hash, seed."""
    from hepflows import __version__
    from hepflows.provenance import git_commit

    return {
        "hepflows_version": __version__,
        "git_commit": git_commit(),
        "config_hash": settings.section_hash(sections),
        "seed": settings.seed,
        **extra,
    }


def axis_labels(settings: Settings) -> dict[str, AxisLabel]:
    """The ``labels:`` settings (feature -> label, unit) as a dict: the figures are drawn in
    worker processes, and a read-only mapping does not pickle."""
    return dict(settings.labels)


def matrix(events: dict[str, Any], features: Sequence[str]) -> Any:
    """The ``features`` of ``events`` as one (n, d) array."""
    import numpy as np

    return np.stack([events[f] for f in features], axis=1)


def check_per_process_is_conditional(conditional: bool) -> None:
    """Quantile tables fitted per process need the label at generation: a conditional flow."""
    if not conditional:
        raise InputError(
            "key preprocess.per_process: one quantile table per process needs a flow "
            "conditioned on the process label, expected training.conditional true"
        )


def selection_on_features(path: str, features: Sequence[str]) -> FeatureCut:
    """The selection the events of ``path`` passed at ingest, on the features
    (:mod:`hepflows.events.feature_cut`): what generated events are held to."""
    from hepflows.events.feature_cut import feature_cut
    from hepflows.events.reader import read_metadata

    meta = read_metadata(path)
    cut = feature_cut(meta.get("selection"), features, meta.get("branch_map"), meta.get("derived"))
    if cut.expression is not None:
        log.info("selection: generated events will pass %s", cut.expression)
    if cut.skipped:
        log.info(
            "selection: the terms %s read branches that are not features; generated events "
            "cannot be checked against them",
            list(cut.skipped),
        )
    return cut


def declared_discrete(settings: Settings, path: str) -> list[str]:
    """The features of ``discrete:`` and those that ingest found integer-valued in ``path``."""
    from hepflows.events.reader import read_metadata

    found = read_metadata(path).get("integer_features") or []
    return list(dict.fromkeys([*settings.discrete, *found]))


def discrete_features(
    settings: Settings, events: dict, features: Sequence[str], path: str
) -> list[str]:
    """The discrete features of the events of ``path``, by the preprocessing's rule."""
    from hepflows.preprocess import find_discrete

    x = matrix(events, features)
    limit = settings.preprocess.discrete_values
    return list(find_discrete(x, features, declared_discrete(settings, path), limit))


def has_weight(path: str) -> bool:
    """Whether the event file at ``path`` has a weight branch."""
    from hepflows.events.reader import branch_names
    from hepflows.events.schema import WEIGHT

    return WEIGHT in branch_names(path)


def has_label(path: str) -> bool:
    """Whether the event file at ``path`` has a label branch (conditional flows write one)."""
    from hepflows.events.reader import branch_names
    from hepflows.events.schema import LABEL

    return LABEL in branch_names(path)
