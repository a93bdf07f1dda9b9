"""Same config and seed, same results on the CPU, whatever ``--cores``; every output says where it
came from (package version, git commit, config hash, seed).

Snakemake passes ``--cores`` to a job as its thread count, through OMP_NUM_THREADS and friends
(``threads: workflow.cores`` in the train and sample rules), and that is the only way the core
count reaches a step.  The session's pipeline ran every step as a script with one thread, which is
what ``snakemake --cores 1`` does; here Snakemake runs the same config with ``--cores 2``, and
every file must hold the same events, weights and provenance.  ROOT files carry a creation time
and a UUID, so they are compared by content: decoded arrays and metadata.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_workflow, snakemake_env

from hepflows import checkpoint, config, preprocess
from hepflows.events.reader import read_events, read_metadata
from hepflows.flows import build_flow
from hepflows.sampling import sample_chunk

from .conftest import LAYOUT, TINY, Pipeline

PROVENANCE = ("hepflows_version", "git_commit", "config_hash", "seed")
EVENT_FILES = ("train", "val", "test", "truth", "generated")


@pytest.fixture(scope="module")
def snakemake_run(tmp_path_factory) -> Path:
    """The same config run by Snakemake with two cores, up to the generated sample (and the
    amplification's truth sample)."""
    work = copy_workflow(tmp_path_factory.mktemp("snakemake"), {"tiny": TINY})
    env = snakemake_env()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            LAYOUT["generated"],
            LAYOUT["truth"],
            "--cores",
            "2",
            "--configfile",
            "config/tiny.yaml",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode != 0:
        logs = "\n".join(p.read_text() for p in (work / "results").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{run.stdout}\n{run.stderr}\n{logs}")
    return work


def test_two_cores_give_the_same_events_weights_and_metadata(pipeline: Pipeline, snakemake_run):
    for name in EVENT_FILES:
        ours, reference = (
            read_events(snakemake_run / LAYOUT[name]),
            read_events(pipeline.path(name)),
        )
        assert ours.keys() == reference.keys(), name
        for key, values in reference.items():
            np.testing.assert_array_equal(ours[key], values, err_msg=f"{name}: {key}")
        meta, reference_meta = (
            read_metadata(snakemake_run / LAYOUT[name]),
            read_metadata(pipeline.path(name)),
        )
        for key in PROVENANCE:
            assert meta[key] == reference_meta[key], (name, key)
        if name != "generated":  # a sharded sample may record its shards; the data files not
            assert meta == reference_meta, name
    ours = json.loads((snakemake_run / LAYOUT["preprocess"]).read_text())
    assert ours == json.loads(pipeline.path("preprocess").read_text())
    # The train job had two threads (Snakemake sets OMP_NUM_THREADS=2) and pinned them to one.
    train_log = (snakemake_run / "results" / "tiny" / "logs" / "train.log").read_text()
    assert "CPU training on 1 thread(s)" in train_log
    model, reference = (
        checkpoint.read(snakemake_run / LAYOUT["model"]),
        checkpoint.read(pipeline.path("model")),
    )
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(model["state_dict"][name], tensor), name
    assert model["metadata"] == reference["metadata"]
    assert (model["epoch"], model["val_nll"]) == (reference["epoch"], reference["val_nll"])


def _assert_provenance(meta: dict, sections: tuple[str, ...], where: str) -> None:
    """Version, commit, the hash of the config sections the file depends on, and the seed."""
    from hepflows import __version__

    cfg = config.validate(TINY)
    assert meta.get("hepflows_version") == __version__, where
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", str(meta.get("git_commit"))), where
    assert meta.get("config_hash") == config.section_hash(cfg, sections), where
    assert meta.get("seed") == TINY["seed"], where


def test_every_event_file_and_the_model_record_their_provenance(pipeline):
    for name in ("train", "val", "test", "truth"):
        _assert_provenance(read_metadata(pipeline.path(name)), ("seed", "data"), name)
    _assert_provenance(
        read_metadata(pipeline.path("generated")), (*config.MODEL_SECTIONS, "sampling"), "generated"
    )
    model = checkpoint.read(pipeline.path("model"))
    _assert_provenance(model["metadata"], config.MODEL_SECTIONS, "model")


def test_preprocessing_records_its_provenance(pipeline):
    data = json.loads(pipeline.path("preprocess").read_text())
    assert data["config_hash"] == config.section_hash(
        config.validate(TINY), config.PREPROCESS_SECTIONS
    )
    _assert_provenance(data["metadata"], config.PREPROCESS_SECTIONS, "preprocess.json")


def test_preprocessing_stores_metadata_it_is_given(pipeline, tmp_path):
    """The library half of the above: fit keeps the record and save/load round-trips it."""
    pre = preprocess.Preprocessor.load(pipeline.path("preprocess"))
    x = np.stack([read_events(pipeline.path("train"), pre.features)[f] for f in pre.features], 1)
    meta = {"git_commit": "unknown", "seed": TINY["seed"], "config_hash": pre.config_hash}
    fitted = preprocess.fit(x, pre.features, config_hash=pre.config_hash, metadata=meta)
    fitted.save(tmp_path / "pre.json")
    loaded = preprocess.Preprocessor.load(tmp_path / "pre.json")
    assert loaded.metadata["seed"] == TINY["seed"] and "hepflows_version" in loaded.metadata
    np.testing.assert_array_equal(loaded.mean, pre.mean)


# -- sampling with other thread counts, network by network ------------------------------------------
#: MKL's strict conditional numerical reproducibility: its products (gemm) round the same whatever
#: the thread count; read when MKL starts, so only a fresh process can have it
STRICT_CNR = {"MKL_CBWR": "AUTO,STRICT"}
NEEDS_STRICT_CNR = pytest.mark.skipif(
    os.environ.get("MKL_CBWR") != STRICT_CNR["MKL_CBWR"],
    reason="run in a fresh process with MKL_CBWR=AUTO,STRICT (test_strict_cnr_makes_...)",
)


@pytest.mark.parametrize(
    ("coupling", "activation", "dropout"),
    [
        ("affine", "silu", 0.0),
        ("affine", "relu", 0.1),  # the pipeline's TINY config (fused in evaluation)
        # the sweep's products are a few units wide: their rounding follows MKL's split between
        # threads on some CPUs (units 5-11 on an AMD EPYC), unless MKL's strict CNR mode is on
        pytest.param("rq_autoregressive", "relu", 0.0, marks=NEEDS_STRICT_CNR),
        ("additive", "relu", 0.0),  # fused too, but its last layer (3 wide) is not split
        ("affine", "relu", 0.0),  # the default config's networks, on the fused path
        ("rq_spline", "silu", 0.0),
        ("quadratic", "silu", 0.0),
    ],
)
def test_sampling_does_not_depend_on_the_thread_count(coupling, activation, dropout):
    torch.manual_seed(0)
    model = {
        "coupling": coupling,
        "blocks": 2,
        "hidden": [32],
        "permutation": "lu",
        "activation": activation,
        "dropout": dropout,
    }
    flow = build_flow(model, 6, 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flow.eval()
    rng = np.random.default_rng(0)
    pre = preprocess.fit(rng.normal(size=(1000, 6)), TINY["features"])
    threads = torch.get_num_threads()
    samples = []
    n_events = 10_000 if coupling == "rq_autoregressive" else 50_000  # its inverse is sequential
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            samples.append(
                sample_chunk(
                    flow,
                    pre,
                    n_events,
                    seed=1,
                    chunk=0,
                    signal_fraction=0.5,
                    device=torch.device("cpu"),
                )
            )
    finally:
        torch.set_num_threads(threads)
    for key, values in samples[0].items():
        np.testing.assert_array_equal(samples[1][key], values, err_msg=key)


def test_strict_cnr_makes_the_autoregressive_sweep_independent_of_the_thread_count():
    case = "test_sampling_does_not_depend_on_the_thread_count[rq_autoregressive-relu-0.0]"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{case}"],
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, **STRICT_CNR),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr
