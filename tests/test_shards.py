"""Sharded generation and sampling: any shard alone gives its events, the shards together give
exactly the unsharded run's events, and merging keeps every event once, in order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_workflow, flat_paths, snakemake_env, step_args

from hepflows import config as hepflows_config
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import iterate_events, read_events, read_metadata
from hepflows.events.writer import write_events
from hepflows.shards import file_branches, merge_event_files, shard_range, shard_ranges

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["lepton_pt", "lepton_eta", "met", "jet1_pt", "m_jj", "m_bb"]
SETTINGS = {
    "seed": 4,
    "features": FEATURES,
    "data": {"events": {"train": 1500, "val": 500, "test": 700}, "shards": 3},
    "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
    "training": {"epochs": 1, "batch_size": 256, "device": "cpu"},
    "sampling": {"events": 1000, "chunk_size": 100, "shards": 3, "device": "cpu"},
    "toys": {"enabled": True},
}


def run(*args) -> int:
    return main([*map(str, args), "--quiet", "--settings", json.dumps(SETTINGS)])


def assert_same_events(a: Path, b: Path) -> None:
    ea, eb = read_events(a), read_events(b)
    assert ea.keys() == eb.keys()
    for name in ea:
        np.testing.assert_array_equal(ea[name], eb[name], err_msg=name)


# -- where the shards cut ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, shards, unit", [(1000, 3, 100), (1050, 4, 100), (7, 7, 1), (10**7, 10, 8192)]
)
def test_shards_cover_every_event_once_on_whole_units(n, shards, unit):
    ranges = shard_ranges(n, shards, unit)
    assert len(ranges) == shards
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
    assert all(start % unit == 0 and stop > start for start, stop in ranges)
    assert all(stop % unit == 0 for _, stop in ranges[:-1])
    units = [-(-(stop - start) // unit) for start, stop in ranges]
    assert max(units) - min(units) <= 1
    assert shard_range(n, shards, shards - 1, unit) == ranges[-1]


def test_too_many_shards_or_a_bad_index_name_the_key():
    with pytest.raises(InputError, match=r"sampling.shards: 11 shards .*at most 10 shard"):
        shard_ranges(1000, 11, 100, key="sampling.shards")
    with pytest.raises(InputError, match=r"shard index must be in 0..2"):
        shard_range(1000, 3, 3, 100)


# -- merging -------------------------------------------------------------------------------------
def _events(n: int, start: int, label: bool = True, weight: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(start)
    out = {f: rng.normal(size=n).astype(np.float32) for f in FEATURES[:3]}
    if label:
        out["label"] = (rng.random(n) < 0.5).astype(np.int8)
    if weight:
        out["weight"] = rng.random(n).astype(np.float32)
    return out


def test_merge_keeps_every_event_branch_and_dtype(tmp_path):
    parts = [_events(n, i, weight=True) for i, n in enumerate((250, 0, 400, 13))]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"shard_{i}.root")
        write_events(paths[-1], part, metadata={"seed": 9, "shard": i})
    n = merge_event_files(paths, tmp_path / "all.root", step_size=64)
    merged = read_events(tmp_path / "all.root", with_weight=True)
    assert n == len(merged["label"]) == 663
    for name in parts[0]:
        np.testing.assert_array_equal(merged[name], np.concatenate([p[name] for p in parts]))
    assert file_branches(tmp_path / "all.root") == (*FEATURES[:3], "label", "weight")
    meta = read_metadata(tmp_path / "all.root")
    assert meta["seed"] == 9 and meta["n_events"] == 663
    assert [(p["file"], p["events"], p["shard"]) for p in meta["merged_from"]] == [
        (f"shard_{i}.root", len(part["label"]), i) for i, part in enumerate(parts)
    ]


def test_merge_takes_the_first_events_of_each_input(tmp_path):
    for i, n in enumerate((300, 50, 300)):
        write_events(tmp_path / f"s{i}.root", _events(n, i, label=False))
    paths = [tmp_path / f"s{i}.root" for i in range(3)]
    n = merge_event_files(paths, tmp_path / "v.root", max_events_per_input=120, step_size=100)
    merged = read_events(tmp_path / "v.root", with_label=False)
    assert n == 120 + 50 + 120
    expected = [read_events(p, with_label=False)["met"][:120] for p in paths]
    np.testing.assert_array_equal(merged["met"], np.concatenate(expected))
    assert "label" not in file_branches(tmp_path / "v.root")


def test_merge_refuses_unlike_inputs_and_writes_nothing(tmp_path):
    write_events(tmp_path / "a.root", _events(10, 0))
    write_events(tmp_path / "b.root", _events(10, 1, label=False))
    with pytest.raises(InputError, match=r"b.root: branches .* differ"):
        merge_event_files([tmp_path / "a.root", tmp_path / "b.root"], tmp_path / "m.root")
    with pytest.raises(InputError, match="no such file"):
        merge_event_files([tmp_path / "a.root", tmp_path / "missing.root"], tmp_path / "m.root")
    with pytest.raises(InputError, match="also one of the inputs"):
        merge_event_files([tmp_path / "a.root"], tmp_path / "a.root")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.root", "b.root"]


# -- the steps, sharded and not ------------------------------------------------------------------
@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> Path:
    """Unsharded generate -> preprocess -> train -> sample, in this process."""
    d = tmp_path_factory.mktemp("shards")
    for step in ("generate", "preprocess", "train", "sample"):
        assert run(step, *step_args(step, flat_paths(d))) == 0, step
    return d


@pytest.mark.parametrize("split", ["train", "test"])
def test_generator_shards_are_the_split(steps, tmp_path, split):
    shards = [tmp_path / f"{split}_{k}.root" for k in range(3)]
    for k in (2, 0, 1):  # any order: a shard depends on nothing but its index
        assert run("generate", "--split", split, "--shard", k, "--out", shards[k]) == 0
    assert run("merge", "--inputs", *shards, "--out", tmp_path / "merged.root") == 0
    assert_same_events(tmp_path / "merged.root", steps / f"{split}.root")
    meta = read_metadata(shards[1])
    n = SETTINGS["data"]["events"][split]
    offset = 0 if split == "train" else 2000
    assert (meta["shard"], meta["start"], meta["n_events"]) == (1, offset + n // 3, n // 3)


def test_sample_shards_are_the_sample(steps, tmp_path):
    shards = [tmp_path / f"shard_{k}.root" for k in range(3)]
    for k in (1, 2, 0):
        assert (
            run(
                "sample",
                "--model",
                steps / "model.pt",
                "--preprocess",
                steps / "pre.json",
                "--shard",
                k,
                "--out",
                shards[k],
            )
            == 0
        )
    # 10 chunks of 100 in 3 shards: chunks 0-2, 3-5, 6-9.
    assert [len(read_events(p, FEATURES)["label"]) for p in shards] == [300, 300, 400]
    assert run("merge", "--inputs", *shards, "--out", tmp_path / "merged.root") == 0
    assert_same_events(tmp_path / "merged.root", steps / "gen.root")
    # Rerun alone, a shard gives its events again.
    assert (
        run(
            "sample",
            "--model",
            steps / "model.pt",
            "--preprocess",
            steps / "pre.json",
            "--shard",
            1,
            "--out",
            tmp_path / "again.root",
        )
        == 0
    )
    assert_same_events(tmp_path / "again.root", shards[1])


def test_bad_shard_exits_2_naming_the_key(steps, tmp_path, caplog):
    code = run(
        "sample",
        "--model",
        steps / "model.pt",
        "--preprocess",
        steps / "pre.json",
        "--shard",
        3,
        "--out",
        tmp_path / "x.root",
    )
    assert code == 2 and "sampling.shards" in caplog.text
    code = run("generate", "--split", "val", "--out", tmp_path / "x.root")
    assert code == 2
    assert list(tmp_path.iterdir()) == []


# -- the workflow's DAG --------------------------------------------------------------------------
def _dry_run(tmp_path: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    copy_workflow(tmp_path, {"test": config})
    env = snakemake_env()
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", "config/test.yaml", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    table = result.stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_sharded_dag(tmp_path):
    config = dict(
        SETTINGS, run="sharded", sampling=dict(SETTINGS["sampling"], validate_shards=[2, 0])
    )
    result = _dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert _jobs(result) == {
        "generate": 9,
        "merge_data": 3,
        "preprocess": 1,
        "train": 1,
        "sample": 3,
        "merge_samples": 1,
        "merge_validation_sample": 1,
        "validate": 1,
        "generate_truth": 1,
        "amplification": 1,
        "toys": 1,
        "summary": 1,
        "all": 1,
        "total": 25,
    }
    # Validation reads an equal share of the chosen shards, in the order given.
    block = result.stdout.split("rule merge_validation_sample:")[1].split("\n\n")[0]
    assert (
        "input: results/sharded/samples/shards/shard_2.root, results/sharded/samples/shards/shard_0.root"
        in block
    )
    # the config file alone (config/config.yaml is not merged under it): the schema's default
    max_events = hepflows_config.validate(config)["validation"]["max_events"]
    assert f"--max-events-per-input {max_events // 2} " in result.stdout


def test_unmerged_shards_are_the_final_outputs(tmp_path):
    config = dict(
        SETTINGS,
        run="loose",
        data=dict(SETTINGS["data"], shards=1),
        sampling=dict(SETTINGS["sampling"], merge=False),
    )
    result = _dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    jobs = _jobs(result)
    assert "merge_samples" not in jobs and jobs["sample"] == 3 and jobs["generate"] == 1


@pytest.mark.parametrize(
    "change, key",
    [
        ({"sampling": {"events": 1000, "chunk_size": 100, "shards": 11}}, "sampling.shards"),
        (
            {"sampling": {"events": 1000, "chunk_size": 100, "shards": 2, "validate_shards": [2]}},
            "sampling.validate_shards",
        ),
        ({"data": {"events": {"train": 2, "val": 2, "test": 2}, "shards": 3}}, "data.shards"),
    ],
)
def test_impossible_shards_fail_before_any_job(tmp_path, change, key):
    result = _dry_run(tmp_path, dict(SETTINGS, **change))
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


# -- at scale ------------------------------------------------------------------------------------
def _generate_shard(args: tuple[Path, int]) -> Path:
    out, k = args
    settings = {"seed": 11, "data": {"events": {"train": 10**7, "val": 1, "test": 2}, "shards": 10}}
    assert (
        main(
            [
                "generate",
                "--quiet",
                "--settings",
                json.dumps(settings),
                "--split",
                "train",
                "--shard",
                str(k),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_1e7_events_in_10_shards(tmp_path):
    """1e7 generator events in 10 shards, two at a time: each equals the same shard made alone,
    and the merged file is the unsharded stream, every event once and in order."""
    from hepflows.events.generator import generate

    parallel = [tmp_path / f"p_{k}.root" for k in range(10)]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_generate_shard, [(p, k) for k, p in enumerate(parallel)]))
    for k in range(10):
        alone = _generate_shard((tmp_path / "alone.root", k))
        assert_same_events(alone, parallel[k])
        alone.unlink()
    merged = tmp_path / "merged.root"
    assert merge_event_files(parallel, merged) == 10**7
    for p in parallel:
        p.unlink()
    done = 0
    for chunk in iterate_events(merged, step_size=500_000):
        n = len(chunk["label"])
        expected = generate(n, seed=11, start=done, signal_fraction=0.5)
        for name, values in chunk.items():
            np.testing.assert_array_equal(values, expected[name], err_msg=f"{name} at {done}")
        done += n
    assert done == 10**7
