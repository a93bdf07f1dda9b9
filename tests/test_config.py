"""Config validation: defaults filled, every mistake named by its key."""

from pathlib import Path

import pytest

from hepflows import config
from hepflows.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name", sorted(str(p.relative_to(ROOT / "config")) for p in (ROOT / "config").rglob("*.yaml"))
)
def test_shipped_configs_are_valid(name):
    cfg = config.load(ROOT / "config" / name)
    assert cfg["data"]["source"] == "generator"
    assert cfg["training"]["epochs"] >= 1
    assert "coupling" in cfg["model"]


def test_seed_paper_is_the_seed_study():
    cfg = config.load(ROOT / "config" / "seed-paper.yaml")
    model, training = cfg["model"], cfg["training"]
    assert (model["blocks"], model["hidden"], model["activation"]) == (20, [512, 512], "relu")
    assert (model["coupling"], model["norm"], model["permutation"]) == ("affine", "batchnorm", "lu")
    assert (
        training["lr"],
        training["weight_decay"],
        training["epochs"],
        training["batch_size"],
    ) == (1e-4, 1e-6, 35, 1024)
    assert cfg["data"]["events"]["train"] == 500_000
    assert cfg["features"] == "continuous"


def test_defaults_filled_without_touching_input():
    raw = {"training": {"epochs": 3}}
    cfg = config.validate(raw)
    assert cfg["training"]["epochs"] == 3
    assert cfg["training"]["batch_size"] == 512
    assert cfg["data"]["events"]["train"] > 0
    assert raw == {"training": {"epochs": 3}}
    # A second validation must not see defaults leaked from the first.
    assert config.validate({})["training"]["epochs"] != 3


@pytest.mark.parametrize(
    ("bad", "key", "expected"),
    [
        ({"trainig": {}}, "<top level>", "trainig"),
        ({"training": {"epochs": "ten"}}, "training.epochs", "'ten'"),
        ({"training": {"batch_size": -4}}, "training.batch_size", "-4"),
        ({"data": {"signal_fraction": 1.5}}, "data.signal_fraction", "1.5"),
        ({"data": {"events": {"train": 0}}}, "data.events.train", "0"),
        ({"features": ["lepton_pt", "jet9_pt"]}, "features", "jet9_pt"),
        ({"model": {"coupling": "magic"}}, "model.coupling", "magic"),
        ({"model": {"blokcs": 3}}, "model", "blokcs"),
        ({"data": {"source": "higgs_csv"}}, "data.path", "required"),
        (
            {
                "data": {
                    "source": "higgs_csv",
                    "path": "x.csv",
                    "split": {"train": 0.5, "val": 0.2, "test": 0.2},
                }
            },
            "data.split",
            "sum to 1",
        ),
    ],
)
def test_bad_config_names_key(bad, key, expected):
    with pytest.raises(InputError) as err:
        config.validate(bad, source="my.yaml")
    message = str(err.value)
    assert "my.yaml" in message
    assert key in message
    assert expected in message


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", "run name"])
@pytest.mark.parametrize("where", ["run", "models"])
def test_run_and_model_names_are_single_folder_names(name, where):
    """A run or grid-model name becomes a folder under results/: `..` would write outside."""
    bad = {"run": name} if where == "run" else {"models": {name: {}}}
    with pytest.raises(InputError) as err:
        config.validate(bad, source="my.yaml")
    message = str(err.value)
    assert f"key {where}" in message and repr(name) in message, message
    if name in (".", ".."):
        assert "not '.' or '..'" in message


@pytest.mark.parametrize("name", ["default", "v1.2", "a..b", ".hidden", "x_y-z", "..."])
def test_usable_run_and_model_names_pass(name):
    assert config.validate({"run": name})["run"] == name
    assert list(config.validate({"models": {name: {}}})["models"]) == [name]


def test_yaml_errors_name_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("training: [unclosed\n")
    with pytest.raises(InputError, match="broken.yaml"):
        config.load(path)
    with pytest.raises(InputError, match="not found"):
        config.load(tmp_path / "missing.yaml")


def test_section_hash_tracks_only_its_sections():
    cfg = config.validate({})
    other = config.validate({"model": {"blocks": 3}})
    assert config.section_hash(cfg, config.PREPROCESS_SECTIONS) == config.section_hash(
        other, config.PREPROCESS_SECTIONS
    )
    assert config.section_hash(cfg, config.MODEL_SECTIONS) != config.section_hash(
        other, config.MODEL_SECTIONS
    )
