"""The validated config as typed, frozen settings: one dataclass per section of the schema.

:func:`hepflows.config.load` (or :func:`~hepflows.config.validate`) checks a config and fills
its defaults; :meth:`Settings.from_config` turns that dict, once, into a :class:`Settings`
whose attributes are the schema's keys (``settings.training.lr``, ``settings.data.split.val``).
Nested blocks are nested dataclasses, lists are tuples and mappings read-only, so no step can
change what another step reads.  :meth:`Settings.to_dict` (and each section's ``to_dict``)
gives back exactly the validated dict: the section hashes recorded in model files
(:func:`hepflows.config.section_hash`) and the ``model:`` block a model file stores are
computed from it, unchanged.  A partial block as a caller or a model file writes it (``model:``,
``training:``) becomes settings through :meth:`Section.from_block`; a grid model's settings
are :meth:`Settings.variant`.

Only the standard library is imported: every step's environment loads this.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints

__all__ = [
    "AmplificationSettings",
    "AxisLabel",
    "DataSettings",
    "EventCounts",
    "GridModel",
    "InputFile",
    "JudgeSettings",
    "ModelSettings",
    "PlotSettings",
    "PreprocessSettings",
    "RefineSettings",
    "SamplingSettings",
    "Settings",
    "Splits",
    "ToySettings",
    "TrainingSettings",
    "ValidationSettings",
]

#: Field metadata of a key the schema lets the user leave out (no default): absent from the
#: validated dict, None here, and left out again by ``to_dict``.
OPTIONAL = {"optional": True}


def optional() -> Any:
    """A field for a key without a default: None when the config leaves it out."""
    return field(default=None, metadata=OPTIONAL)


class Section:
    """What every settings class can do: be built from its validated block (or from a partial
    one, :meth:`from_block`), and give it back."""

    __slots__ = ()

    #: The top-level key of the schema whose defaults :meth:`completed` fills in, if any.
    SECTION: ClassVar[str | None] = None

    @classmethod
    def from_dict(cls, block: Mapping[str, Any]) -> Self:
        """The settings of a validated block (every key present, defaults filled)."""
        hints = get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in block and f.metadata.get("optional"):
                continue
            values[f.name] = _build(hints[f.name], block[f.name])
        return cls(**values)

    @classmethod
    def from_block(cls, block: Mapping[str, Any] | None) -> Self:
        """The settings of a block as a caller or a model file writes it, keys left out:
        :meth:`completed` first, then :meth:`from_dict`."""
        return cls.from_dict(cls.completed(block))

    @classmethod
    def completed(cls, block: Mapping[str, Any] | None) -> dict[str, Any]:
        """``block`` with the schema's default under each key of top-level section
        :attr:`SECTION` that it leaves out; a class that is not a top-level section (``SECTION``
        None) raises ``TypeError``."""
        from hepflows import config

        if cls.SECTION is None:
            raise TypeError(f"{cls.__name__} is not a top-level section of the schema")
        return {**config.section_defaults(cls.SECTION), **(block or {})}

    def to_dict(self) -> dict[str, Any]:
        """The validated block this was built from (lists, dicts), e.g. for a model file."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(value)
        return out


def _build(hint: Any, value: Any) -> Any:
    """``value`` (from the validated dict) as a field typed ``hint``: a block becomes its
    dataclass, a list a tuple, a mapping a read-only mapping."""
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return _build(_branch(get_args(hint), value), value)
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_dict(value)
    if origin is tuple:
        item = get_args(hint)[0]
        return tuple(_build(item, v) for v in value)
    if origin is Mapping:
        item = get_args(hint)[1]
        return types.MappingProxyType({k: _build(item, v) for k, v in value.items()})
    if hint is Any:
        return _frozen(value)
    return value


def _branch(options: tuple[Any, ...], value: Any) -> Any:
    """The member of a union that holds ``value``: the container kind it is, or a scalar."""
    for option in options:
        origin = get_origin(option)
        if isinstance(value, list | tuple) and origin is tuple:
            return option
        if isinstance(value, Mapping) and (
            origin is Mapping or (isinstance(option, type) and issubclass(option, Section))
        ):
            return option
    return Any if isinstance(value, list | tuple | Mapping) else type(value)


def _frozen(value: Any) -> Any:
    """A read-only copy of a free-form value (a grid entry's partial blocks)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The inverse of :func:`_build`: dicts and lists, as the validated config holds them."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventCounts(Section):
    """``data.events``: events per split made by the embedded generator."""

    train: int
    val: int
    test: int


@dataclass(frozen=True, slots=True)
class Splits(Section):
    """``data.split``: fractions of the input rows for each split (they sum to 1)."""

    train: float
    val: float
    test: float


@dataclass(frozen=True, slots=True)
class InputFile(Section):
    """One entry of ``data.inputs``: a file or glob with its label, weight factor and tree;
    a key the config leaves out is None (the data section's default applies)."""

    path: str
    label: int | None = optional()
    label_branch: str | None = optional()
    weight: float | None = optional()
    tree: str | None = optional()


@dataclass(frozen=True, slots=True)
class DataSettings(Section):
    """``data:``: where the events come from and how they are read and split."""

    source: str
    events: EventCounts
    signal_fraction: float | None
    units: str
    shards: int
    path: str | None
    inputs: tuple[InputFile, ...]
    weight_branch: str | None
    wild_values: str
    normalise: str
    selection: str | None
    limit: int | None
    split: Splits
    tree: str
    branch_map: Mapping[str, str]
    label_branch: str | None


@dataclass(frozen=True, slots=True)
class PreprocessSettings(Section):
    """``preprocess:``: the invertible feature transforms fitted on the training events."""

    margin: float
    transform: str
    quantiles: int
    per_process: bool
    discrete_values: int


# -- model and training --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelSettings(Section):
    """``model:``, checked and filled by :func:`hepflows.model_config.check_model_config`
    (its keys are :data:`hepflows.model_config.MODEL_DEFAULTS`'s, documented there)."""

    family: str
    coupling: str
    blocks: int
    hidden: tuple[int, ...]
    activation: str
    dropout: float
    mask: str
    permutation: str
    norm: str
    batchnorm_momentum: float
    batchnorm_eps: float
    scale_bound: float | None
    bins: int
    tail_bound: float
    residual: bool
    base: str
    base_components: int
    components: int
    ode_solver: str
    ode_steps: int
    sigma_min: float

    @classmethod
    def completed(cls, block: Mapping[str, Any] | None) -> dict[str, Any]:
        """A ``model:`` block as a model file or a caller writes it, checked and filled by
        :func:`~hepflows.model_config.check_model_config` (the schema leaves it free)."""
        from hepflows.model_config import check_model_config

        return check_model_config(block)


@dataclass(frozen=True, slots=True)
class GridModel(Section):
    """One model of the ``models:`` grid: its blocks as written, merged over the top-level
    ones by :func:`hepflows.config.model_variant`."""

    model: Mapping[str, Any] | None = optional()
    training: Mapping[str, Any] | None = optional()


@dataclass(frozen=True, slots=True)
class TrainingSettings(Section):
    """``training:``: the loop of :class:`hepflows.training.Trainer` (which checks the values
    of a block given to :meth:`~Section.from_block`)."""

    SECTION: ClassVar[str] = "training"

    seed: int | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    scheduler: str
    warmup_epochs: float
    ema: float | None
    patience: int | None
    conditional: bool
    grad_clip: float | None
    max_bad_steps: int
    device: str
    compile: bool | str
    threads: int | None


# -- sampling and validation ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SamplingSettings(Section):
    """``sampling:``: how many events, in which chunks, shards and precision."""

    events: int
    chunk_size: int
    support: bool
    ensemble: tuple[str, ...]
    signal_fraction: float | None
    compression: str
    device: str
    precision: str
    shards: int
    merge: bool
    validate_shards: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class JudgeSettings(Section):
    """``validation.judges``: the classifier two-sample test's panel."""

    families: tuple[str, ...]
    derived: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class AmplificationSettings(Section):
    """``validation.amplification``: how many MC events the generated sample is worth."""

    enabled: bool
    truth_events: int
    bins: int
    cells: int
    alpha: float


@dataclass(frozen=True, slots=True)
class ValidationSettings(Section):
    """``validation:``: generated events against held-out MC."""

    max_events: int
    n_null: int
    classifier: bool
    judges: JudgeSettings
    amplification: AmplificationSettings


@dataclass(frozen=True, slots=True)
class PlotSettings(Section):
    """``plots:``: the text of the validation figures."""

    label: str
    energy: str
    lumi: str | None


@dataclass(frozen=True, slots=True)
class ToySettings(Section):
    """``toys:``: the 2-D toy densities of the report."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class RefineSettings(Section):
    """``refine:``: classifier reweighting of a generated sample."""

    enabled: bool
    mc_events: int
    generated_events: int
    families: tuple[str, ...]
    folds: int
    calibration_fraction: float
    max_iter: int
    learning_rate: float
    max_leaf_nodes: int
    min_samples_leaf: int
    clip: float


@dataclass(frozen=True, slots=True)
class AxisLabel(Section):
    """One entry of ``labels:``: a feature's axis label and unit."""

    label: str | None = optional()
    unit: str | None = optional()


# -- the whole config ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Settings(Section):
    """A validated config, typed and frozen: one attribute per top-level key of the schema."""

    run: str
    seed: int
    features: str | tuple[str, ...]
    derived: Mapping[str, str]
    discrete: tuple[str, ...]
    labels: Mapping[str, AxisLabel]
    data: DataSettings
    preprocess: PreprocessSettings
    model: ModelSettings
    models: Mapping[str, GridModel]
    training: TrainingSettings
    sampling: SamplingSettings
    validation: ValidationSettings
    plots: PlotSettings
    toys: ToySettings
    refine: RefineSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings of a config validated by :func:`hepflows.config.validate`."""
        return cls.from_dict(config)

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Read, merge, validate (:func:`hepflows.config.load`) and type a config."""
        from hepflows import config

        return cls.from_config(config.load(path, overrides))

    def variant(self, name: str) -> Settings:
        """The settings of model ``name`` of the grid (``models:``): its partial ``model`` and
        ``training`` blocks merged over the top-level ones and validated, as the dict merge of
        :func:`hepflows.config.model_variant` does it."""
        from hepflows import config

        return Settings.from_config(config.model_variant(self.to_dict(), name))

    def section_hash(self, sections: Iterable[str]) -> str:
        """:func:`hepflows.config.section_hash` of the validated dict these settings hold."""
        from hepflows import config

        return config.section_hash(self.to_dict(), sections)

    @property
    def training_seed(self) -> int:
        """The seed of the flow's initial weights and batch order: ``training.seed``, or the
        run's ``seed`` when that is null."""
        return self.seed if self.training.seed is None else self.training.seed
