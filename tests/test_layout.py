"""hepflows.layout is the one map of results/<run>/: the rules, the CLI and the tests use it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from hepflows import layout

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"


def _rule_names() -> set[str]:
    names = set()
    for smk in [ROOT / "Snakefile", *RULES.glob("*.smk")]:
        names |= set(re.findall(r"^\s*rule (\w+):", smk.read_text(), re.MULTILINE))
    return names - {"all"}


def test_every_rule_is_a_step_of_the_layout_and_back():
    assert _rule_names() == set(layout.STEPS)


def test_each_step_names_its_script_env_and_module():
    for name, step in layout.STEPS.items():
        assert (ROOT / step.script).is_file(), f"{name}: no {step.script}"
        assert (ROOT / step.env).is_file(), f"{name}: no {step.env}"
        importlib.import_module(step.module)


def test_rules_name_each_step_once_with_its_env_and_script():
    """One definition per rule (no if/else duplicates), with the env and script of STEPS."""
    texts = {smk.name: smk.read_text() for smk in RULES.glob("*.smk")}
    for name, step in layout.STEPS.items():
        found = [(f, t) for f, t in texts.items() if re.search(rf"^\s*rule {name}:", t, re.M)]
        defs = sum(len(re.findall(rf"^\s*rule {name}:", t, re.M)) for _, t in found)
        assert defs == 1, f"rule {name} defined {defs} times"
        body = re.split(rf"^\s*rule {name}:", found[0][1], flags=re.M)[1]
        body = re.split(r"^\s*rule \w+:", body, flags=re.M)[0]
        assert f'"../../{step.env}"' in body, f"rule {name}: env is not {step.env}"
        assert f'script("{Path(step.script).stem}")' in body, f"rule {name}: not {step.script}"


def test_rules_write_no_path_of_their_own():
    """Every output path of the rules comes from the layout: no results path spelled out."""
    for smk in [ROOT / "Snakefile", *RULES.glob("*.smk")]:
        for n, line in enumerate(smk.read_text().splitlines(), 1):
            code = line.split("#")[0]
            assert not re.search(r"\{(RESULTS|MODEL_DIR)\}/[a-z]", code), f"{smk.name}:{n}: {line}"
            assert not re.search(r'"[^"]*\.(root|json|csv|tsv|log|pt|html)"', code), (
                f"{smk.name}:{n}: {line}"
            )


def test_layout_paths(tmp_path):
    paths = layout.paths(tmp_path / "run", "wide")
    assert paths["train"] == tmp_path / "run" / "data" / "train.root"
    assert paths["model"] == tmp_path / "run" / "models" / "wide" / "model" / "model.pt"
    assert paths["comparison"] == tmp_path / "run" / "comparison"
    assert not any("{" in str(p) for p in paths.values())


def test_logs_and_benchmarks():
    assert layout.log("train") == "logs/train.log"
    assert layout.log("generate", "{split}_{shard}") == "logs/generate/{split}_{shard}.log"
    assert layout.benchmark("sample", "shard_{shard}") == "benchmarks/sample/shard_{shard}.tsv"


def test_readme_names_the_code_of_every_step():
    readme = (ROOT / "README.md").read_text()
    for name, step in layout.STEPS.items():
        assert f"`{step.module}`" in readme, f"README: no module for step {name}"


def test_the_run_without_snakemake_plans_every_step_of_the_layout(tmp_path):
    # hepflows run's step list, with refine and the amplification on and a grid of two
    # models: every step of the layout but the merges (shards), the toys and ingest (the
    # source is the generator), each model's steps writing under its own folder.
    from hepflows import pipeline
    from hepflows.settings import Settings

    settings = Settings.load(
        None,
        {
            "refine": {"enabled": True},
            "validation": {"amplification": {"enabled": True}},
            "models": {"a": {}, "b": {"training": {"lr": 1.0e-4}}},
        },
    )
    root = tmp_path / "results" / "x"
    steps = pipeline.plan(settings, root)
    names = [pipeline.step_name(s) for s in steps]
    expected = set(layout.STEPS) - {
        "merge_data",
        "merge_samples",
        "merge_validation_sample",
        "toys",
        "ingest",
    }
    assert set(names) == expected
    assert names[:2] == ["generate", "preprocess"]
    assert names.count("train") == 2 and names[-2:] == ["compare", "summary"]
    for step in steps:
        if layout.STEPS[pipeline.step_name(step)].per_model:
            folder = pipeline.step_folder(step, root, ["a", "b"])
            assert folder.parent == root / layout.MODELS and folder.name in ("a", "b"), step
