"""The per-stage conda envs pin exactly the versions pyproject.toml pins."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements):
    pins = {}
    for req in requirements:
        name, _, version = req.partition("==")
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert all(pinned.values()), "every dependency in pyproject.toml is pinned with =="
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs, "no envs/*.yaml"
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for name, version in _pins(pip).items():
            assert pinned.get(name) == version, (
                f"{env.name}: {name}=={version}, pyproject {pinned.get(name)}"
            )


def test_every_rule_names_env_log_and_benchmark():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.split(r"\n\s*rule ", text)[1:]:
            name = rule.split(":")[0]
            for directive in ("conda:", "log:", "benchmark:"):
                assert directive in rule, f"{smk.name}: rule {name} lacks {directive}"
