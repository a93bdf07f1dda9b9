"""Invertible feature transforms: the seed study's min-max, logit, standardise, or quantiles.

``transform="logit"`` (the seed study's)::

    x1 = (x - low) / (high - low)      low, high: the fitted range widened by a margin
    x2 = logit(x1)
    y  = (x2 - mean) / std

The logit maps the bounded physical range onto the real line, where flows are at home; the
margin keeps every training point away from 0 and 1, where the logit diverges.

``transform="quantile"`` replaces ``logit(x1)`` by ``Phi^-1(F(x))``, where ``F`` is the training
events' CDF, piecewise linear between ``quantiles`` knots (``low`` and ``high`` are its end
points): each marginal becomes close to a standard normal, and a narrow mass peak is spread
over as much of the latent space as the events it holds, instead of a sliver of it.  The inverse
clamps nothing: ``sigmoid`` lands inside (0, 1), so every sample maps back inside the widened
range.

``per_process=True`` (with ``"quantile"``) fits one table of knots per process, on the events
of that label alone, for a flow conditioned on the label: event ``i`` of label ``c_i`` maps as
``Phi^-1(F_{c_i}(x_i))``, so each process's marginals, not only their mixture's, start close to
a standard normal and a resonance of the signal is spread over the whole latent line instead of
the half of it the mixture's CDF gives it.  The methods whose result depends on the table take
the events' ``labels`` (n,); with one table (the mixture) they may be omitted, and every label
uses it.  The widened range, the point masses and the standardisation stay common to both
processes.

Parameters are saved as JSON with the feature names and the config hash they were fitted with,
and loading checks both; a ``metadata`` record (package version, git commit, seed, ...) travels
with them for provenance.  The file's ``parameters_hash`` (SHA-256 of its parameters, the
metadata aside) is checked on loading, so an edited or damaged file is refused, and a model
records it, so it is never used with parameters other than those it was trained on; a zero or
non-finite ``std``, or a range whose ``low`` is not below its ``high``, is refused too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import special

from hepflows import __version__
from hepflows.atomic import atomic_write_text
from hepflows.errors import InputError
from hepflows.events.feature_cut import FeatureCut
from hepflows.records import read_json
from hepflows.support import Support, fit_support

log = logging.getLogger("hepflows")

#: Out-of-range inputs are clipped this far inside (0, 1) before the logit.
_CLIP = 1e-7
#: The process labels, which are also the indices of the per-process tables.
PROCESSES = {0: "background", 1: "signal"}


@dataclass(frozen=True)
class Preprocessor:
    """Fitted transform of ``features``; arrays are (n_events, n_features) in file order."""

    features: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    margin: float
    config_hash: str = ""
    metadata: dict = field(default_factory=dict)  # provenance; not used by the transform
    #: feature -> point mass {"centre", "width" (half-width of its box), "values", "weights"};
    #: see :meth:`dequantize` and :meth:`snap`.
    spikes: dict = field(default_factory=dict)
    #: ``"logit"`` or ``"quantile"`` (see the module docstring).
    transform: str = "logit"
    #: with ``"quantile"``: the CDF's knots, increasing from ``low`` to ``high``: (d, K), one
    #: table for every event, or (P, d, K) fitted per process, table ``p`` for label ``p`` ...
    knots: np.ndarray | None = None
    #: ... and its values there (K,), increasing from 0 to 1, the same for every table.
    levels: np.ndarray | None = None
    #: discrete feature -> its values in training, increasing; see :meth:`dequantize`.
    discrete: dict = field(default_factory=dict)
    #: the training events' physical support, ``{"low": [...], "high": [...]}`` (null: open);
    #: generated events outside it are redrawn (:mod:`hepflows.support`); {} in older files
    support: dict = field(default_factory=dict)

    @property
    def per_process(self) -> bool:
        """Whether the quantile transform has one table per process label."""
        return self.knots is not None and self.knots.ndim == 3

    def _quantile_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The quantile transform's knots (d, K) or (P, d, K) and levels (K,)."""
        if self.knots is None or self.levels is None:
            raise ValueError("the quantile transform needs its knots and levels")
        return self.knots, self.levels

    def _tables(
        self, n: int, labels: np.ndarray | None
    ) -> list[tuple[slice | np.ndarray, np.ndarray]]:
        """Each table's knots (d, K) with the rows of the ``n`` events it maps.

        One table maps every row (``labels`` is not needed); per process, table ``p`` maps the
        events of label ``p``.
        """
        knots, _ = self._quantile_tables()
        if knots.ndim == 2:
            return [(slice(None), knots)]
        if labels is None:
            raise ValueError("the per-process quantile tables need the events' labels")
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"expected labels of shape ({n},), got {labels.shape}")
        unknown = ~np.isin(labels, np.arange(len(knots)))
        if unknown.any():
            raise ValueError(
                f"labels {np.unique(labels[unknown]).tolist()}: no quantile table for them, "
                f"expected labels in {list(range(len(knots)))}"
            )
        return [(labels == p, table) for p, table in enumerate(knots)]

    def _by_table(
        self,
        x: np.ndarray,
        labels: np.ndarray | None,
        column: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """``column(x[:, j], knots[j])`` for every feature ``j`` (n, d), each event with the
        knots of its label's table."""
        out = np.empty_like(x)
        for rows, knots in self._tables(len(x), labels):
            out[rows] = np.column_stack(
                [column(x[rows, j], knots[j]) for j in range(len(self.features))]
            )
        return out

    def forward(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Physical values (n, d) of events with ``labels`` (n,) -> standardised latent values
        (n, d), float64."""
        x = self.dequantize(np.asarray(x, np.float64))
        return (self._unbounded(x, labels) - self.mean) / self.std

    def inverse(self, y: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Standardised latent values (n, d) of events with ``labels`` (n,) -> physical values
        (n, d) inside [low, high], float64."""
        x2 = np.asarray(y, np.float64) * self.std + self.mean
        if self.transform == "quantile":
            _, levels = self._quantile_tables()
            return self.snap(
                self._by_table(special.ndtr(x2), labels, lambda u, k: np.interp(u, levels, k))
            )
        x1 = 0.5 * (1.0 + np.tanh(0.5 * x2))  # sigmoid without overflow warnings
        return self.snap(self.low + x1 * (self.high - self.low))

    def _cdf(self, x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """The piecewise-linear CDF of each feature (n, d), clipped inside (0, 1)."""
        _, levels = self._quantile_tables()
        u = self._by_table(x, labels, lambda v, k: np.interp(v, k, levels))
        return np.clip(u, _CLIP, 1 - _CLIP)

    def _unbounded(self, x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """logit((x - low) / (high - low)) or Phi^-1(F(x)), before standardising."""
        if self.transform == "quantile":
            return special.ndtri(self._cdf(x, labels))
        x1 = np.clip((x - self.low) / (self.high - self.low), _CLIP, 1 - _CLIP)
        return np.log(x1) - np.log1p(-x1)

    def dequantize(self, x: np.ndarray) -> np.ndarray:
        """Spread each point mass uniformly over (centre - w, centre + w), and each value of a
        discrete feature over its cell (half-way to its neighbours), reproducibly.

        A flow has a density: it cannot put a finite fraction of events on one value (m_lv is
        m_W, to float32 rounding, whenever the W-mass constraint has a real solution; n_bjets
        is 0, 1 or 2).  It learns the box or the cells instead (uniform dequantisation: Uria,
        Murray, Larochelle, "RNADE", arXiv:1306.0186; Theis, van den Oord, Bethge, "A note on
        the evaluation of generative models", arXiv:1511.01844), and :meth:`snap` puts what it
        generates back on the values seen in training.
        """
        if not self.spikes and not self.discrete:
            return x
        x = self._spread_discrete(x) if self.discrete else x.copy()
        if not self.spikes:
            return x
        rng = np.random.default_rng(0)
        for name, spike in self.spikes.items():
            j = self.features.index(name)
            at = np.isin(x[:, j].astype(np.float32), np.asarray(spike["values"], np.float32))
            x[at, j] = spike["centre"] + spike["width"] * rng.uniform(-1.0, 1.0, int(at.sum()))
        return x

    def _spread_discrete(self, x: np.ndarray) -> np.ndarray:
        """Each discrete feature's values (n,) spread uniformly over their cells; a copy."""
        if not self.discrete:
            return x
        x = np.array(x, np.float64)
        rng = np.random.default_rng(2)
        for name, values in self.discrete.items():
            j = self.features.index(name)
            edges = discrete_edges(values)
            k = np.clip(np.searchsorted(edges, x[:, j], side="right") - 1, 0, len(values) - 1)
            x[:, j] = edges[k] + (edges[k + 1] - edges[k]) * rng.uniform(0.0, 1.0, len(x))
        return x

    def snap(self, x: np.ndarray) -> np.ndarray:
        """Values (n, d) inside a point mass's box get the point's values again, those of a
        discrete feature the value of their cell; in place.

        A point mass's values are drawn with the frequencies seen in training, so the few
        float32 neighbours a rounded point mass occupies are reproduced too.
        """
        for name, values in self.discrete.items():
            j = self.features.index(name)
            edges = discrete_edges(values)
            k = np.clip(np.searchsorted(edges, x[:, j], side="right") - 1, 0, len(values) - 1)
            x[:, j] = np.asarray(values, np.float64)[k]
        rng = np.random.default_rng(1)
        for name, spike in self.spikes.items():
            j = self.features.index(name)
            inside = np.abs(x[:, j] - spike["centre"]) < spike["width"]
            x[inside, j] = rng.choice(spike["values"], size=int(inside.sum()), p=spike["weights"])
        return x

    def log_abs_det(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """log|det dy/dx| per event (n,) of events with ``labels`` (n,), to turn a density of y
        into one of x."""
        x = self._spread_discrete(np.asarray(x, np.float64))
        if self.transform == "quantile":
            # dy/dx = F'(x) / phi(y): the slope of the knot segment over the normal density
            slope = self._by_table(x, labels, self._segment_slope)
            z = self._unbounded(x, labels)
            per_feature = np.log(slope) + 0.5 * z**2 + 0.5 * np.log(2 * np.pi) - np.log(self.std)
            return per_feature.sum(axis=1)
        x1 = np.clip((x - self.low) / (self.high - self.low), _CLIP, 1 - _CLIP)
        per_feature = -np.log(self.high - self.low) - np.log(x1) - np.log1p(-x1) - np.log(self.std)
        return per_feature.sum(axis=1)

    def _segment_slope(self, x: np.ndarray, knots: np.ndarray) -> np.ndarray:
        """dF/dx of the piecewise-linear CDF at ``x`` (n,) between ``knots`` (K,)."""
        k = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
        _, levels = self._quantile_tables()
        return (levels[k + 1] - levels[k]) / (knots[k + 1] - knots[k])

    def outside_mask(self, x: np.ndarray) -> np.ndarray:
        """Which values (n, d) of ``x`` lie outside the widened range (and would be clipped).

        The range is common to every process (each table spans it), so no labels are needed.
        """
        x = np.asarray(x)
        return (x <= self.low) | (x >= self.high)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """Number of values per feature (d,) outside the widened range."""
        return self.outside_mask(x).sum(axis=0)

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "config_hash": self.config_hash,
            "margin": self.margin,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "metadata": {"hepflows_version": __version__, **self.metadata},
            "spikes": self.spikes,
            "transform": self.transform,
            **(
                {
                    "knots": self._quantile_tables()[0].tolist(),
                    "levels": self._quantile_tables()[1].tolist(),
                }
                if self.transform == "quantile"
                else {}
            ),
            # written only when true, so that files with one table are as before
            **({"per_process": True} if self.per_process else {}),
            # written only with discrete features, so that other files are as before
            **({"discrete": self.discrete} if self.discrete else {}),
            **({"support": self.support} if self.support else {}),
        }

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "preprocessing parameters") -> Preprocessor:
        try:
            features = tuple(data["features"])
            arrays = {k: np.asarray(data[k], np.float64) for k in ("low", "high", "mean", "std")}
            margin = float(data["margin"])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{source}: malformed preprocessing parameters ({err!r})") from None
        for key, value in arrays.items():
            if value.shape != (len(features),):
                raise InputError(
                    f"{source}: '{key}' has shape {value.shape}, expected ({len(features)},) "
                    f"for features {list(features)}"
                )
        _check_values(arrays, features, source)
        stored = data.get("parameters_hash")
        if stored is not None and stored != parameters_hash(data):
            raise InputError(
                f"{source}: its parameters do not match their hash {stored!r} (now "
                f"{parameters_hash(data)!r}): the file was edited or damaged; rerun the "
                "preprocess step"
            )
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InputError(
                f"{source}: 'metadata' is a {type(metadata).__name__}, expected a mapping"
            )
        spikes = data.get("spikes") or {}
        keys = {"centre", "width", "values", "weights"}
        if not isinstance(spikes, dict) or any(
            name not in features or not isinstance(spike, dict) or set(spike) != keys
            for name, spike in spikes.items()
        ):
            raise InputError(
                f"{source}: 'spikes' must map fitted features to {{{', '.join(sorted(keys))}}}"
            )
        discrete = data.get("discrete") or {}
        if not isinstance(discrete, dict) or any(
            name not in features
            or not isinstance(values, list)
            or len(values) < 2
            or np.any(np.diff(np.asarray(values, np.float64)) <= 0)
            for name, values in discrete.items()
        ):
            raise InputError(
                f"{source}: 'discrete' must map fitted features to their increasing values "
                "(at least 2)"
            )
        transform = data.get("transform", "logit")
        per_process = data.get("per_process", False)  # absent from files with one table
        knots = levels = None
        if per_process not in (True, False):
            raise InputError(f"{source}: 'per_process' is {per_process!r}, expected true or false")
        if per_process and transform != "quantile":
            raise InputError(
                f"{source}: 'per_process' is true with transform {transform!r}, expected 'quantile'"
            )
        if transform == "quantile":
            try:
                knots = np.asarray(data["knots"], np.float64)
                levels = np.asarray(data["levels"], np.float64)
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"{source}: malformed quantile knots ({err!r})") from None
            tables = (len(PROCESSES),) if per_process else ()
            if (
                levels.ndim != 1
                or knots.shape != (*tables, len(features), len(levels))
                or np.any(np.diff(knots, axis=-1) <= 0)
                or np.any(np.diff(levels) <= 0)
            ):
                expected = ", ".join(map(str, (*tables, len(features), "K")))
                raise InputError(
                    f"{source}: 'knots' must be ({expected}) and 'levels' (K,), both "
                    f"increasing; got {knots.shape} and {levels.shape}"
                )
        elif transform != "logit":
            raise InputError(
                f"{source}: 'transform' is {transform!r}, expected 'logit' or 'quantile'"
            )
        support = data.get("support") or {}
        if support:  # checked here, so that a broken file fails at load, naming itself
            support = Support.from_dict(support, features, source).to_dict()
        return cls(
            features,
            margin=margin,
            support=support,
            config_hash=str(data.get("config_hash", "")),
            metadata=metadata,
            spikes=spikes,
            transform=transform,
            knots=knots,
            levels=levels,
            discrete=discrete,
            **arrays,
        )

    @property
    def parameters_hash(self) -> str:
        """SHA-256 of the parameters (everything the file holds but its metadata)."""
        return parameters_hash(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the parameters as JSON, with their hash, atomically."""
        data = self.to_dict()
        data["parameters_hash"] = parameters_hash(data)
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        features: Sequence[str] | None = None,
        config_hash: str | None = None,
    ) -> Preprocessor:
        """Read parameters; if ``features`` or ``config_hash`` are given they must match."""
        path = Path(path)
        data = read_json(path, missing="preprocessing file not found")
        pre = cls.from_dict(data, source=str(path))
        if features is not None and tuple(features) != pre.features:
            raise InputError(
                f"{path}: fitted for features {list(pre.features)}, expected {list(features)}"
            )
        if config_hash is not None and config_hash != pre.config_hash:
            raise InputError(
                f"{path}: made with config hash {pre.config_hash!r}, expected {config_hash!r}: "
                "it belongs to another configuration; rerun the preprocess step"
            )
        return pre


def parameters_hash(data: dict) -> str:
    """SHA-256 of a parameters file's content without its ``metadata`` and the hash itself:
    canonical JSON (sorted keys), in which floats round-trip exactly."""
    import hashlib

    content = {k: v for k, v in data.items() if k not in ("metadata", "parameters_hash")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _check_values(arrays: dict[str, np.ndarray], features: Sequence[str], source: str) -> None:
    """Refuse parameters no fit produces: non-finite values, low >= high, std <= 0."""
    for key, value in arrays.items():
        if not np.isfinite(value).all():
            raise InputError(f"{source}: '{key}' holds non-finite values {value.tolist()}")
    swapped = [f for f, a, b in zip(features, arrays["low"], arrays["high"]) if not a < b]
    if swapped:
        raise InputError(
            f"{source}: feature(s) {swapped} have 'low' not below 'high', expected a range "
            "low < high"
        )
    flat = [f for f, s in zip(features, arrays["std"]) if not s > 0]
    if flat:
        raise InputError(f"{source}: feature(s) {flat} have 'std' <= 0, expected a positive std")


def fit(
    x: np.ndarray,
    features: Sequence[str],
    *,
    margin: float = 0.05,
    config_hash: str = "",
    source: str = "training events",
    metadata: dict | None = None,
    spike_fraction: float | None = 0.01,
    transform: str = "logit",
    quantiles: int = 128,
    labels: np.ndarray | None = None,
    per_process: bool = False,
    discrete: Sequence[str] = (),
    discrete_values: int = 0,
    cut: FeatureCut | None = None,
) -> Preprocessor:
    """Fit the transform on training events ``x`` (n, d) in the order of ``features``.

    ``source`` (the training file) is named in every error; ``metadata`` is stored with the
    parameters.  A value held by more than ``spike_fraction`` of the events is a point mass
    (see :meth:`Preprocessor.dequantize`); None turns the search off.  ``transform`` is
    ``"logit"`` or ``"quantile"`` (with ``quantiles`` knots of the CDF, the widened range's
    ends included).  ``per_process`` fits the quantile knots of each process on its own events,
    told apart by ``labels`` (n,) (0 background, 1 signal); the range, point masses and
    standardisation are fitted on all events.  The features named in ``discrete``, and those
    with at most ``discrete_values`` distinct values, are discrete (:func:`find_discrete`).
    ``cut``: the ingest selection on the features, kept with the support (:mod:`hepflows.support`).
    """
    if transform not in ("logit", "quantile"):
        raise ValueError(f"transform: expected 'logit' or 'quantile', got {transform!r}")
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != len(features):
        raise ValueError(f"expected events of shape (n, {len(features)}), got {x.shape}")
    if len(x) < 2:
        raise InputError(
            f"{source}: {len(x)} event(s), expected at least 2 to fit the preprocessing range"
        )
    if not np.isfinite(x).all():
        bad = [f for f, ok in zip(features, np.isfinite(x).all(axis=0)) if not ok]
        raise InputError(
            f"{source}: non-finite values in feature(s) {bad}, expected finite numbers"
        )
    lo, hi = _robust_range(x, features, source)
    constant = [f for f, a, b in zip(features, lo, hi) if a == b]
    if constant:
        raise InputError(
            f"{source}: feature(s) {constant} are constant in the training data, expected a "
            "spread of values: nothing to learn"
        )
    levels_of = find_discrete(x, features, discrete, discrete_values)
    continuous = [f for f in features if f not in levels_of]
    spikes = {} if spike_fraction is None else find_spikes(x, features, spike_fraction)
    spikes = {f: spike for f, spike in spikes.items() if f in continuous}
    if levels_of:  # the range must hold the discrete values' cells
        spread = Preprocessor(
            tuple(features), lo, hi, lo, hi, margin, discrete=levels_of
        )._spread_discrete(x)
        lo, hi = spread.min(axis=0), spread.max(axis=0)
    width = hi - lo
    partial = Preprocessor(
        tuple(features),
        lo - margin * width,
        hi + margin * width,
        np.zeros(len(features)),
        np.ones(len(features)),
        margin,
        config_hash,
        spikes=spikes,
        discrete=levels_of,
        support=fit_support(x, features, cut).to_dict(),
    )
    if per_process:
        labels = _process_labels(labels, len(x), transform, quantiles, source)
    if transform == "quantile":
        spread = partial.dequantize(x)
        if per_process:
            tables = [
                _cdf_knots(spread[labels == p], partial.low, partial.high, quantiles)
                for p in PROCESSES
            ]
            knots, levels = np.stack([k for k, _ in tables]), tables[0][1]
        else:
            knots, levels = _cdf_knots(spread, partial.low, partial.high, quantiles)
        partial = replace(partial, transform=transform, knots=knots, levels=levels)
    latent = partial.forward(x, labels)
    return replace(
        partial, mean=latent.mean(axis=0), std=latent.std(axis=0), metadata=dict(metadata or {})
    )


def _robust_range(
    x: np.ndarray, features: Sequence[str], source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's (d,) lowest and highest value that is not wild
    (:mod:`hepflows.events.wild`: beyond 1e6 robust scales from the median), so that one absurd
    event cannot stretch the range over which every other event is squeezed; the wild events
    themselves are clipped to the range's edge by the transform."""
    from hepflows.events.wild import robust_scale, wild_mask

    lo, hi = x.min(axis=0), x.max(axis=0)
    for j, name in enumerate(features):
        wild = wild_mask(x[:, j], *robust_scale(x[:, j]))
        if wild.any():
            i = int(np.argmax(wild))
            log.warning(
                "%s: feature %r: %d wild value(s) (the first %r, at event %d) left out of the "
                "preprocessing range",
                source,
                name,
                int(wild.sum()),
                float(x[i, j]),
                i,
            )
            lo[j], hi[j] = x[~wild, j].min(), x[~wild, j].max()
    return lo, hi


def _process_labels(
    labels: np.ndarray | None, n: int, transform: str, quantiles: int, source: str
) -> np.ndarray:
    """The labels (n,) of the training events, checked for a fit per process."""
    if transform != "quantile":
        raise InputError(
            f"key preprocess.per_process: one table per process needs transform quantile, "
            f"got transform {transform!r}"
        )
    if labels is None:
        raise ValueError("per_process needs the training events' labels")
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"expected labels of shape ({n},), got {labels.shape}")
    unknown = ~np.isin(labels, list(PROCESSES))
    if unknown.any():
        raise InputError(
            f"{source}: labels {np.unique(labels[unknown]).tolist()}, expected "
            f"{list(PROCESSES)} for a preprocessing fitted per process"
        )
    for p, name in PROCESSES.items():
        count = int((labels == p).sum())
        if count < quantiles:
            raise InputError(
                f"{source}: {count} {name} event(s) (label {p}), expected at least "
                f"preprocess.quantiles = {quantiles} to fit its own quantile knots "
                "(key preprocess.per_process)"
            )
    return labels


def _cdf_knots(
    x: np.ndarray, low: np.ndarray, high: np.ndarray, quantiles: int
) -> tuple[np.ndarray, np.ndarray]:
    """Knots (d, K) and levels (K,) of the piecewise-linear CDF of the events ``x`` (n, d).

    The inner knots are the events' quantiles at equally spaced levels; the ends are the widened
    range (levels 0 and 1), so the transform is defined on all of it and its inverse lands
    inside it.  Tied quantiles (rounded data) are pulled apart to keep the knots increasing.
    """
    levels = np.linspace(0.0, 1.0, quantiles)
    inner = np.quantile(x, levels[1:-1], axis=0).T  # (d, K - 2)
    knots = np.column_stack([low, inner, high])
    step = 1e-9 * (high - low)
    for k in range(1, knots.shape[1]):
        knots[:, k] = np.maximum(knots[:, k], knots[:, k - 1] + step)
    return knots, levels


def find_discrete(
    x: np.ndarray, features: Sequence[str], declared: Sequence[str], max_values: int
) -> dict[str, list[float]]:
    """Discrete features of events ``x`` (n, d): those ``declared`` and those with at most
    ``max_values`` distinct values (0: none found); feature -> its increasing values.

    Multiplicities, b-tag working points and charges take a few values; a continuous feature
    of even a few hundred events takes as many values as it has events.
    """
    found = {}
    for j, name in enumerate(features):
        values = np.unique(np.asarray(x[:, j], np.float32)).astype(np.float64)
        if name in declared or len(values) <= max_values:
            found[name] = values.tolist()
    return found


def discrete_edges(values: Sequence[float]) -> np.ndarray:
    """Cell edges (K + 1,) of the increasing ``values`` (K,): half-way between neighbours, and
    as far outside the end values as the half gap next to them."""
    v = np.asarray(values, np.float64)
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


#: Half-width of a point mass's box, as a fraction of the feature's fitted range.
SPIKE_WIDTH = 1e-3
#: Values within this fraction of the feature's largest |value| count as the same point.
SPIKE_TOLERANCE = 1e-5
#: At most this many distinct float32 values are kept for a point mass.
SPIKE_VALUES = 64


def find_spikes(x: np.ndarray, features: Sequence[str], fraction: float) -> dict[str, dict]:
    """Features (columns of ``x`` (n, d)) with a point mass holding more than ``fraction``.

    Values equal to within ``SPIKE_TOLERANCE`` of the feature's scale are one point (a point
    computed in float32 lands on a few neighbouring floats).  Returns feature -> {"centre",
    "width", "values", "weights"}.
    """
    spikes = {}
    for j, name in enumerate(features):
        col = x[:, j]
        step = SPIKE_TOLERANCE * float(np.max(np.abs(col)))
        key = np.round(col / step)
        keys, counts = np.unique(key, return_counts=True)
        top = keys[int(np.argmax(counts))]
        cluster = col[np.abs(key - top) <= 1].astype(np.float32)
        if len(cluster) <= fraction * len(col):
            continue
        values, weights = np.unique(cluster, return_counts=True)
        keep = np.argsort(weights)[::-1][:SPIKE_VALUES]
        # A point mass repeats a few exact values; a narrow continuous line (m_lv about m_W
        # when the constraint's mass spreads) has as many values as events and is no spike.
        if weights[keep].sum() <= fraction * len(col):
            continue
        values, weights = values[keep], weights[keep] / weights[keep].sum()
        spikes[name] = {
            "centre": float(np.median(cluster)),
            "width": SPIKE_WIDTH * float(col.max() - col.min()),
            "values": values.astype(float).tolist(),
            "weights": weights.tolist(),
        }
    return spikes
