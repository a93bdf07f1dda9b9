"""The typed, frozen settings: one field per schema key, the validated dict given back exactly."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from hepflows import config
from hepflows.model_config import MODEL_DEFAULTS
from hepflows.settings import (
    InputFile,
    ModelSettings,
    Section,
    Settings,
    TrainingSettings,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").rglob("*.yaml"))


def _section_class(hint: Any) -> type | None:
    """The settings class a field typed ``hint`` holds (through unions, tuples, mappings)."""
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint
    origin = get_origin(hint)
    if origin in (Union, types.UnionType, tuple, Mapping):
        for arg in get_args(hint):
            found = _section_class(arg)
            if found is not None:
                return found
    return None


def _walk(schema: Mapping[str, Any], cls: type, where: str) -> list[str]:
    """The schema's keys below ``where`` that have no field in ``cls`` (or its nested ones)."""
    missing = []
    hints = get_type_hints(cls)
    for key, sub in schema.get("properties", {}).items():
        path = f"{where}.{key}".lstrip(".")
        if key not in hints:
            missing.append(path)
            continue
        nested = sub.get("items") or sub.get("additionalProperties") or sub
        if isinstance(nested, Mapping) and "properties" in nested:
            inner = _section_class(hints[key])
            if inner is None:
                missing.append(f"{path} (a block without its settings class)")
            else:
                missing += _walk(nested, inner, path)
    return missing


def test_every_key_of_the_schema_is_a_field_of_its_settings_class():
    missing = _walk(config._schema(), Settings, "")
    # model: is checked by model_config, not by the schema: its keys are MODEL_DEFAULTS'
    missing += [f"model.{k}" for k in MODEL_DEFAULTS if k not in get_type_hints(ModelSettings)]
    assert missing == []


def test_every_field_is_a_key_of_the_schema():
    # the other direction: no field the schema does not define
    def fields(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    assert fields(Settings) == set(config._schema()["properties"])
    assert fields(ModelSettings) == set(MODEL_DEFAULTS)


def test_the_walk_finds_a_key_without_its_field():
    schema = {"properties": {"training": {"properties": {"epochs": {}, "new_key": {}}}}}
    assert _walk(schema, Settings, "") == ["training.new_key"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_settings_give_back_the_validated_dict(path):
    cfg = config.load(path)
    assert Settings.from_config(cfg).to_dict() == cfg


def test_nested_blocks_lists_and_mappings_are_typed_and_read_only():
    cfg = config.validate(
        {
            "data": {"source": "root", "inputs": [{"path": "a.root", "label": 1}]},
            "features": ["a", "b"],
            "derived": {"c": "a + b"},
            "labels": {"a": {"label": "$a$"}},
        }
    )
    s = Settings.from_config(cfg)
    assert s.features == ("a", "b")
    assert s.data.inputs == (InputFile(path="a.root", label=1),)
    assert s.data.split.train == 0.8 and s.model.hidden == (512, 512)
    assert s.labels["a"].label == "$a$" and s.labels["a"].unit is None
    assert s.to_dict() == cfg  # keys left out stay out
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.training.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.derived["d"] = "a"  # type: ignore[index]
    with pytest.raises(AttributeError):
        s.discrete.append("a")  # type: ignore[attr-defined]


def test_a_grid_entry_keeps_its_partial_blocks():
    cfg = config.validate({"models": {"small": {"model": {"blocks": 2}}}})
    s = Settings.from_config(cfg)
    assert s.models["small"].model == {"blocks": 2} and s.models["small"].training is None
    assert s.to_dict() == cfg


def test_the_default_hashes_are_those_model_files_record():
    # Computed by hepflows 0.2.0 (before the settings, training.seed, sampling.ensemble and
    # the refine committee existed): a model file made then must still match. A changed
    # default changes these on purpose, never the settings or a key added at its neutral value.
    s = Settings.from_config(config.validate({}))
    assert s.section_hash(config.FEATURE_SECTIONS) == "9a4d14972b977594"
    assert s.section_hash(config.PREPROCESS_SECTIONS) == "6655e18559c9bfa8"
    assert s.section_hash(config.MODEL_SECTIONS) == "16b9d9ba43135ebb"
    assert s.section_hash((*config.MODEL_SECTIONS, "sampling")) == "ec287d57c3adb9aa"
    assert s.section_hash((*config.MODEL_SECTIONS, "sampling", "refine")) == "4694de0d8507878e"


#: A value other than the neutral default, for each key of config.LATER_KEYS.
OTHER_VALUES = {"seed": 2, "folds": 2, "families": ["mlp"], "ensemble": ["m.pt"]}


def test_a_later_key_counts_only_away_from_its_neutral_default():
    base = config.section_hash(config.validate({}), config.MODEL_SECTIONS)
    for (section, key), neutral in config.LATER_KEYS.items():
        same = config.validate({section: {key: neutral}})
        other = config.validate({section: {key: OTHER_VALUES[key]}})
        sections = [*config.MODEL_SECTIONS, section]
        unset = config.section_hash(config.validate({}), sections)
        assert config.section_hash(same, sections) == unset, key
        assert config.section_hash(other, sections) != unset, key
    assert base == "16b9d9ba43135ebb"


def test_section_hash_is_the_config_s_for_every_shipped_config():
    for path in CONFIGS:
        cfg = config.load(path)
        s = Settings.from_config(cfg)
        for sections in (config.PREPROCESS_SECTIONS, config.MODEL_SECTIONS):
            assert s.section_hash(sections) == config.section_hash(cfg, sections), path


def test_partial_blocks_are_checked_and_filled():
    assert ModelSettings.from_block({"blocks": 2}).blocks == 2
    assert ModelSettings.from_block(None).to_dict() == MODEL_DEFAULTS
    t = TrainingSettings.from_block({"epochs": 3})
    assert t.epochs == 3 and t.batch_size == 512
    with pytest.raises(ValueError, match="model.blocks"):
        ModelSettings.from_block({"blocks": 0})
    assert TrainingSettings.from_block({}).to_dict() == config.validate({})["training"]


def test_one_constructor_of_a_partial_block_for_every_section():
    # the model block is checked by model_config, the training block filled from the schema
    assert ModelSettings.from_block.__func__ is TrainingSettings.from_block.__func__  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="not a top-level section"):
        InputFile.from_block({"path": "a.root"})


def test_a_grid_variant_is_typed_settings_of_the_merged_blocks():
    grid = {"small": {"model": {"blocks": 2}, "training": {"epochs": 3}}}
    s = Settings.from_config(config.validate({"training": {"lr": 3e-4}, "models": grid}))
    small = s.variant("small")
    assert isinstance(small, Settings) and small.models == {}
    assert (small.model.blocks, small.training.epochs, small.training.lr) == (2, 3, 3e-4)
    assert small.model.hidden == s.model.hidden and small.data == s.data
    assert small.to_dict() == config.model_variant(s.to_dict(), "small")
    with pytest.raises(ValueError, match="no model 'big'"):
        s.variant("big")


def test_training_seed_falls_back_to_the_run_seed():
    s = Settings.from_config(config.validate({"seed": 7}))
    assert s.training_seed == 7
    s = Settings.from_config(config.validate({"seed": 7, "training": {"seed": 3}}))
    assert s.training_seed == 3


def test_build_flow_takes_the_model_settings_or_the_block_a_model_file_stores():
    import torch

    from hepflows.flows import build_flow

    block = {"coupling": "rq_spline", "blocks": 2, "hidden": [8], "permutation": "lu"}
    torch.manual_seed(0)
    from_settings = build_flow(ModelSettings.from_block(block), 3, 1).state_dict()
    torch.manual_seed(0)
    from_block = build_flow(block, 3, 1).state_dict()
    assert from_settings.keys() == from_block.keys()
    assert all(torch.equal(from_settings[k], from_block[k]) for k in from_block)


def test_the_trainer_holds_typed_settings_filled_with_the_schema_defaults(tmp_path):
    import torch

    from hepflows.flows import build_flow
    from hepflows.training import Dataset, Trainer

    flow = build_flow({"blocks": 1, "hidden": [4]}, 2)
    data = Dataset(torch.randn(64, 2), None)
    trainer = Trainer(
        flow,
        data,
        data,
        {"epochs": 1},
        seed=0,
        resume_path=tmp_path / "r.pt",
        log_path=tmp_path / "l.csv",
        progress=False,
    )
    assert isinstance(trainer.settings, TrainingSettings)
    assert trainer.settings.threads == 1 and trainer.settings.batch_size == 512
    assert trainer.batch_size == 64  # at most the training events


#: Where a consumer of the settings turns them back into the validated dict, and why: each
#: of these values is written out, or handed to an API that takes more than the config's form.
TO_DICT = {
    "pipeline.py": 1,  # a grid model's sections as the command line's JSON
    "steps/ingest.py": 2,  # the split fractions, as the split router also takes "higgs"
    "steps/refine.py": 1,  # the refine block in refine.json
    "steps/train.py": 1,  # the model block in the model file
}


def test_the_steps_read_typed_settings_and_turn_them_to_dicts_only_to_write_them():
    import ast

    src = ROOT / "src" / "hepflows"
    found: dict[str, int] = {}
    for path in [*src.glob("steps/*.py"), *src.glob("report/*.py"), *src.glob("*.py")]:
        if path.name in ("settings.py", "config.py", "preprocess.py", "support.py"):
            continue  # the settings themselves, the validators, and their own records
        calls = [
            n
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "to_dict"
        ]
        if calls:
            found[str(path.relative_to(src))] = len(calls)
    assert found == TO_DICT
