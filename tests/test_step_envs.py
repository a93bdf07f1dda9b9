"""Each step's environment (envs/*.yaml, layout.STEPS says which) is enough for its steps, and
holds nothing they do not import; the DAG parses without torch.

The fast tests run each environment's steps on a tiny config with this venv's python, seeing
only the environment's packages and what they require (every other package is not there).  The slow test
builds a fresh venv from exactly an environment's packages and runs its steps there; .ci/run
runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import step_args
from packaging.requirements import Requirement

from hepflows import layout
from hepflows.events.schema import HIGGS_FEATURES

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"
ENVS = ("envs/data.yaml", "envs/train.yaml", "envs/validate.yaml")
#: Present in every conda env with python and pip, and imported by some packages' metadata code.
BASE = {"pip", "setuptools", "wheel", "packaging"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_packages(env: str) -> dict[str, str]:
    """The pip packages of an env file, name -> pinned version."""
    deps = yaml.safe_load((ROOT / env).read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return {_norm(r.partition("==")[0]): r.partition("==")[2] for r in pip}


def _closure(names: set[str]) -> set[str]:
    """The packages and everything they require (installed metadata, markers evaluated)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def _steps(root: Path, env: str, config: Path, csv: Path) -> list[list[str]]:
    """Every step of ``env`` (as layout.STEPS assigns them), on the tiny run below ``root``."""
    p = {k: str(v) for k, v in layout.paths(root / "results" / "tiny").items()}
    cfg = ["--quiet", "--config", str(config)]
    ingest = json.dumps({"data": {"source": "higgs_csv", "path": str(csv)}})
    split = {k: str(root / "ingested" / f"{k}.root") for k in ("train", "val", "test")}
    every = {
        "generate": ["generate", *cfg, *step_args("generate", p)],
        "generate_truth": ["generate", *cfg, "--truth", p["truth"]],
        "ingest": [
            "ingest",
            *cfg,
            "--settings",
            ingest,
            *(a for k, v in split.items() for a in (f"--{k}", v)),
        ],
        "preprocess": ["preprocess", *cfg, *step_args("preprocess", p)],
        "merge_data": [
            "merge",
            "--quiet",
            "--inputs",
            p["val"],
            p["test"],
            "--out",
            str(root / "merged.root"),
        ],
        "train": ["train", *cfg, *step_args("train", p), "--plot", p["curve"]],
        "sample": ["sample", *cfg, *step_args("sample", p)],
        "validate": [
            "validate",
            *cfg,
            "--reference",
            p["test"],
            "--generated",
            p["generated"],
            "--train",
            p["train"],
            "--out-dir",
            p["validation"],
        ],
        "amplification": [
            "amplification",
            *cfg,
            "--truth",
            p["truth"],
            "--generated",
            p["generated"],
            "--train",
            p["train"],
            "--out-dir",
            p["validation"],
        ],
        "compare": [
            "compare",
            *cfg,
            "--models",
            str(root / "results" / "tiny"),
            "--out-dir",
            p["comparison"],
        ],
    }
    names = [n for n, step in layout.STEPS.items() if step.env == env]
    return [every[n] for n in names if n in every]


def _tiny_csv(path: Path, rows: int = 400) -> Path:
    rng = np.random.default_rng(5)
    table = np.abs(rng.normal(1.0, 0.3, (rows, len(HIGGS_FEATURES) + 1)))
    table[:, 0] = rng.random(rows) < 0.5
    np.savetxt(path, table, delimiter=",", fmt="%.6g")
    return path


def _view(allowed: set[str], folder: Path) -> Path:
    """A folder of links to the installed files of the ``allowed`` distributions only: with
    ``python -S`` and it as PYTHONPATH, everything else is not installed."""
    folder.mkdir()
    for name in allowed:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not top.endswith(".pth") and (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)
    return folder


def _probe(
    python: list[str], env: str, steps: list[list[str]], work: Path, extra_env: dict | None = None
) -> list[str]:
    spec = work / f"{Path(env).stem}.json"
    spec.write_text(json.dumps({"steps": steps}))
    run = subprocess.run(
        [*python, str(ROOT / "tests" / "env_probe.py"), str(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})},
    )
    missing = re.findall(r"No module named '([\w.]+)'", run.stderr)
    assert not missing, (
        f"{env} lacks the package of module(s) {sorted(set(missing))}:\n{run.stderr[-3000:]}"
    )
    assert run.returncode == 0, f"{env}: its steps failed:\n{run.stderr[-3000:]}"
    return [_norm(d) for d in json.loads(run.stdout.strip().splitlines()[-1])]


def _check_unused(env: str, used: list[str]) -> None:
    unused = sorted(set(env_packages(env)) - set(used))
    assert not unused, f"{env} declares {unused}, which none of its steps imports: drop them"


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict[str, list[str]]:
    """Every env's steps, in DAG order (each env reads what the one before wrote)."""
    work = tmp_path_factory.mktemp("envs")
    csv = _tiny_csv(work / "higgs.csv")
    used = {}
    for env in ENVS:
        view = _view(_closure(set(env_packages(env)) | BASE), work / f"site-{Path(env).stem}")
        used[env] = _probe(
            [sys.executable, "-S"],
            env,
            _steps(work, env, TINY, csv),
            work,
            {"PYTHONPATH": str(view)},
        )
    return used


@pytest.mark.parametrize("env", ENVS)
def test_env_is_enough_and_holds_nothing_unused(probed, env):
    _check_unused(env, probed[env])


def test_only_the_train_env_has_torch():
    assert [env for env in ENVS if "torch" in env_packages(env)] == ["envs/train.yaml"]
    assert not any("snakemake" in env_packages(env) for env in ENVS)


def test_every_step_has_an_env_of_envs():
    assert {step.env for step in layout.STEPS.values()} == set(ENVS)


def test_config_and_dag_need_no_torch(tmp_path):
    """Validation imports neither torch nor Snakemake; the Snakefile parses with torch absent."""
    code = (
        "import sys; from hepflows import config; config.load(sys.argv[1]); "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'snakemake'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(TINY)], check=True, timeout=120)
    (tmp_path / "torch.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "-n",
            "--quiet",
            "--configfile",
            str(TINY),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_env_in_a_fresh_venv(tmp_path):
    """A venv of exactly each env's packages (pip resolves their needs) runs that env's steps."""
    csv = _tiny_csv(tmp_path / "higgs.csv")
    for env in ENVS:
        venv = tmp_path / f"venv-{Path(env).stem}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = [f"{n}=={v}" for n, v in env_packages(env).items()]
        install = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        used = _probe(
            [str(venv / "bin" / "python")], env, _steps(tmp_path, env, TINY, csv), tmp_path
        )
        _check_unused(env, used)


def test_model_config_names_what_the_flow_modules_implement():
    """hepflows.model_config (torch-free) lists the choices the flow modules build."""
    from hepflows import model_config
    from hepflows.flows import coupling, nets

    assert set(model_config.ACTIVATIONS) == set(nets.ACTIVATIONS)
    assert tuple(model_config.MASKS) == tuple(coupling.MASKS)
