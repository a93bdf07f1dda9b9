"""Load, validate and hash pipeline configurations.

One schema (``hepflows/schemas/config.schema.yaml``, shipped with the package) serves the
Snakefile and every script: it fills defaults and rejects unknown keys before any job starts.
What a JSON schema cannot say (feature names, a buildable model block, split fractions summing
to one) is checked here.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hepflows.errors import InputError
from hepflows.feasibility import check_config
from hepflows.settings import Settings

#: Package data: present in a wheel or any install, not only in a checkout.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

#: Sections each step depends on; their hash decides whether a file may be reused.
#: The sections that define the observables (labels only dress the plots).
FEATURE_SECTIONS = ("features", "derived", "discrete")
PREPROCESS_SECTIONS = ("seed", *FEATURE_SECTIONS, "data", "preprocess")
MODEL_SECTIONS = (*PREPROCESS_SECTIONS, "model", "training")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; an error names the file."""
    path = Path(path)
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def validate(config: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Return a validated copy of ``config`` with every default filled in.

    Raises :class:`InputError` naming ``source`` and the dotted key that is wrong.  Needs
    neither Snakemake nor torch: every step's environment can validate its config.
    """
    filled = copy.deepcopy(dict(config))
    error = _fill_defaults(filled)
    if error is not None:
        raise InputError(f"{source}: {_describe(error)}")
    _check_semantics(filled, source)
    # what validation could not do, before any event is read
    check_config(Settings.from_config(filled), source)
    for name in filled["models"]:
        model_variant(filled, name, source=source)  # a bad grid entry fails here, named
    return filled


@functools.cache
def _schema() -> dict[str, Any]:
    with SCHEMA_PATH.open() as f:
        return yaml.safe_load(f)


def _fill_defaults(config: dict[str, Any]) -> Any:
    """Check ``config`` against the schema, filling each missing key that has a default.

    The recipe of jsonschema's FAQ (as ``snakemake.utils.validate(set_default=True)`` uses it):
    the ``properties`` keyword sets defaults before validating.  Returns the first error, or
    None.
    """
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Any:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    validator = jsonschema.validators.extend(base, {"properties": set_defaults})(_schema())
    return next(iter(validator.iter_errors(config)), None)


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of a top-level ``section`` that has one."""
    properties = _schema()["properties"][section].get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in properties.items() if "default" in v}


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Names of the models of a grid (``models:``), in config order; [] for a single model."""
    return list(config.get("models") or {})


def model_variant(
    config: Mapping[str, Any], name: str, *, source: str = "config"
) -> dict[str, Any]:
    """The validated config of model ``name`` of the grid: its ``model`` and ``training``
    sections merged over the top-level ones, without ``models``.

    Every step of that model runs on this config exactly as on a config without a grid.
    """
    grid = config.get("models") or {}
    if name not in grid:
        raise InputError(f"{source}: key models: no model {name!r}; the grid has {list(grid)}")
    base = {key: value for key, value in config.items() if key != "models"}
    return validate(merge(base, grid[name]), source=f"{source}: models.{name}")


#: The schema's pattern of run and grid-model names: a single path component, not . or ..
NAME_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9_.-]+$"


def _describe(exc: Any) -> str:
    """``key a.b: what is wrong, what was expected`` for one jsonschema error."""
    path = [str(p) for p in exc.absolute_path]
    where = ".".join(path) or "<top level>"
    if exc.validator == "additionalProperties" and isinstance(exc.instance, Mapping):
        # jsonschema's own text names neither the keys allowed there nor a near miss.
        allowed = sorted(exc.schema.get("properties", {}))
        unknown = [str(k) for k in exc.instance if k not in allowed]
        return f"key {where}: unknown key(s) {unknown}; expected one of {allowed}"
    if exc.validator in ("oneOf", "anyOf") and exc.context:
        reasons = " or ".join(dict.fromkeys(sub.message for sub in exc.context))
        return f"key {where}: {exc.message}: {reasons}"
    if exc.validator == "pattern" and exc.validator_value == NAME_PATTERN:
        # the name becomes a folder: a path separator, '.' or '..' would write elsewhere
        return (
            f"key {where}: {exc.instance!r} is not a usable name; expected one folder name of "
            "letters, digits, '_', '.' and '-' that is not '.' or '..'"
        )
    message = exc.message
    if (
        exc.validator == "type"
        and isinstance(exc.instance, str)
        and _parses_as_number(exc.instance)
    ):
        # PyYAML follows YAML 1.1: 1e-3 (no dot) is text, 1.0e-3 is a number.
        message += f" (YAML reads {exc.instance} as text: write it with a dot, e.g. 1.0e-3)"
    return f"key {where}: {message}"


def _parses_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_semantics(config: dict[str, Any], source: str) -> None:
    from hepflows.events.observables import check_observables
    from hepflows.model_config import check_model_config

    try:
        features = check_observables(config)
    except ValueError as err:
        raise InputError(f"{source}: key {err}") from None
    try:
        config["model"] = check_model_config(config["model"])
    except ValueError as err:
        raise InputError(
            f"{source}: key {err}"
            if str(err).startswith("model")
            else f"{source}: key model: {err}"
        ) from None
    coupling = config["model"]["coupling"]
    flow = config["model"]["family"] == "flow"
    if flow and coupling != "rq_autoregressive" and len(features) < 2:
        # A coupling transforms one part of the features given the other: it cannot be built
        # on one feature, and the train step would find out only after the data steps ran.
        raise InputError(
            f"{source}: key model.coupling: {coupling!r} needs at least 2 features, but features "
            f"gives {len(features)} ({list(features)}); add features or use rq_autoregressive"
        )
    data = config["data"]
    if data["source"] != "generator":
        if data["path"] and data["inputs"]:
            raise InputError(f"{source}: key data.inputs: give data.path or data.inputs, not both")
        if data["inputs"] and data["source"] != "root":
            raise InputError(
                f"{source}: key data.inputs: for source root; {data['source']} reads data.path"
            )
        if not data["path"] and not data["inputs"]:
            what = "data.path or data.inputs" if data["source"] == "root" else "data.path"
            raise InputError(
                f"{source}: key {what}: required when data.source is {data['source']!r}"
            )
        total = sum(data["split"].values())
        if abs(total - 1.0) > 1e-9:
            raise InputError(f"{source}: key data.split: fractions must sum to 1, got {total:g}")
    if data["source"] == "root":
        unknown = [k for k in data["branch_map"] if k not in features]
        if unknown:
            raise InputError(
                f"{source}: key data.branch_map: {unknown} are not features; the features "
                f"are {list(features)}"
            )


def load(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read a config file (optional), merge ``overrides`` on top, validate and fill defaults."""
    config = read_yaml(path) if path is not None else {}
    if overrides:
        config = merge(config, overrides)
    return validate(config, source=str(path) if path is not None else "settings")


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values of ``top`` win."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Keys added to the schema after model files were first written, with the default that
#: leaves behaviour as it was: at that value a key is left out of :func:`section_hash`, so the
#: model files and samples made before it still match their config.
LATER_KEYS: dict[tuple[str, str], Any] = {
    ("training", "seed"): None,
    ("sampling", "ensemble"): [],
    ("refine", "families"): ["gbt"],
    ("refine", "folds"): 1,
}


def section_hash(config: Mapping[str, Any], sections: Iterable[str]) -> str:
    """A short, stable hash of the named top-level sections of a validated config (the
    :data:`LATER_KEYS` at their neutral default left out)."""
    subset = {key: _without_later_keys(key, config.get(key)) for key in sections}
    text = json.dumps(subset, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_later_keys(section: str, block: Any) -> Any:
    if not isinstance(block, Mapping):
        return block
    return {
        k: v
        for k, v in block.items()
        if (section, k) not in LATER_KEYS or v != LATER_KEYS[(section, k)]
    }


def subset(config: Mapping[str, Any], sections: Iterable[str]) -> dict[str, Any]:
    """The named top-level sections of a config, for passing to one step."""
    return {key: copy.deepcopy(config[key]) for key in sections if key in config}
