"""The documentation site: runnable examples, the generated config reference, the nav, the README."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: A fenced Python block whose first line is this comment runs as a test.
RUNNABLE = "# runnable"
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _hook():
    spec = importlib.util.spec_from_file_location(
        "config_reference", DOCS / "hooks" / "config_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        for code in FENCE.findall(page.read_text(encoding="utf-8")):
            if code.startswith(RUNNABLE):
                blocks.append((f"{page.relative_to(DOCS)}:{len(blocks)}", code))
    return blocks


def test_the_docs_hold_runnable_examples():
    assert len(_runnable_blocks()) >= 2


@pytest.mark.parametrize("name,code", _runnable_blocks(), ids=lambda v: v if ":" in v else "")
def test_runnable_example(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})


def _keys(spec: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in spec.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append(key)
        keys += _keys(sub, key)
        if isinstance(sub.get("items"), dict):
            keys += _keys(sub["items"], f"{key}[]")
    return keys


def test_config_reference_names_every_schema_key_and_model_default():
    from hepflows.model_config import MODEL_DEFAULTS

    text = _hook().reference()
    schema = yaml.safe_load((ROOT / "src/hepflows/schemas/config.schema.yaml").read_text())
    keys = [k for k in _keys(schema) if not k.startswith("model.")]
    assert len(keys) > 50
    for key in keys:
        assert f"`{key}`" in text, key
    for key in MODEL_DEFAULTS:
        assert f"`model.{key}`" in text, key
    assert "| `training.epochs` | integer (≥ 1) | `30` |" in text


def test_config_reference_follows_the_schema():
    hook = _hook()
    schema = {
        "properties": {
            "training": {
                "type": "object",
                "properties": {
                    "new_key": {"type": "number", "default": 0.5, "description": "a | b"}
                },
            }
        }
    }
    text = hook.render(schema, {})
    assert "| `training.new_key` | number | `0.5` | a \\| b |" in text
    page = "intro\n" + hook.MARKER + "\n"
    assert "| `training.epochs` |" in hook.on_page_markdown(page, page=None)


def test_configuration_page_is_generated_not_copied():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert page.count("<!-- config-reference -->") == 1
    assert "`data.inputs[].path`" not in page  # the reference is not written by hand


def _nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert set(nav) == pages
    assert config["strict"] is True


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260
    assert "make run" in readme and "make test" in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="the docs extra is not installed")
def test_docs_build_strictly(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
