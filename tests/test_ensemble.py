"""An ensemble of flows: members trained on the same events with another ``training.seed``,
sampled chunk by chunk (chunk c from member c mod k) by ``hepflows sample``, the pipeline's
``sampling.ensemble`` and ``hepflows.load``; mismatched members are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import hepflows
from hepflows.cli import main
from hepflows.ensemble import event_members, member_of_chunk
from hepflows.errors import InputError
from hepflows.events.reader import read_events, read_metadata

FEATURES = ["lepton_pt", "met", "m_bb"]
CHUNK = 300


def _config(d: Path, name: str, **sections) -> Path:
    cfg = {
        "run": "ens",
        "seed": 5,
        "features": FEATURES,
        "data": {"events": {"train": 1500, "val": 300, "test": 300}},
        "model": {"coupling": "affine", "blocks": 2, "hidden": [8, 8]},
        "training": {"epochs": 1, "batch_size": 256, "device": "cpu"},
        "sampling": {"events": 1200, "chunk_size": CHUNK},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> dict[str, Path]:
    """Three models of the same events and preprocessing (training.seed 1, 2, 3) and one of
    other features."""
    d = tmp_path_factory.mktemp("ensemble")
    data = d / "data"
    base = _config(d, "base")
    splits = [f"--{k}={data / f'{k}.root'}" for k in ("train", "val", "test")]
    assert main(["generate", "--quiet", "--config", str(base), *splits]) == 0
    pre = d / "preprocess.json"
    train = [f"--train={data / 'train.root'}", f"--val={data / 'val.root'}"]
    assert main(["preprocess", "--quiet", "--config", str(base), train[0], "--out", str(pre)]) == 0
    out: dict[str, Path] = {"preprocess": pre, "data": data}
    for seed in (1, 2, 3):
        cfg = _config(d, f"seed{seed}", training={"seed": seed})
        model = d / f"seed{seed}" / "model.pt"
        log = ["--log", str(d / f"seed{seed}" / "log.csv")]
        argv = ["train", "--quiet", "--config", str(cfg), *train, "--preprocess", str(pre)]
        assert main([*argv, "--model", str(model), *log]) == 0
        out[f"seed{seed}"] = model
        out[f"seed{seed}.yaml"] = cfg
    # another feature set: its own preprocessing and model
    other = _config(d, "other", features=["lepton_pt", "met", "m_jj"])
    opre = d / "other" / "preprocess.json"
    assert (
        main(["preprocess", "--quiet", "--config", str(other), train[0], "--out", str(opre)]) == 0
    )
    omodel = d / "other" / "model.pt"
    argv = ["train", "--quiet", "--config", str(other), *train, "--preprocess", str(opre)]
    assert main([*argv, "--model", str(omodel), "--log", str(d / "other" / "log.csv")]) == 0
    out["other"] = omodel
    out["other.yaml"] = other
    return out


def _matrix(path: Path) -> np.ndarray:
    events = read_events(path, FEATURES)
    return np.column_stack([events[f] for f in FEATURES + ["label"]])


def _sample(members, out: Path, *models: str, extra: tuple[str, ...] = ()) -> int:
    """``hepflows sample`` of ``models`` with the config of the first (the run's model)."""
    return main(
        [
            "sample",
            "--quiet",
            "--config",
            str(members.get("config") or members[f"{models[0]}.yaml"]),
            "--model",
            *[str(members[m]) for m in models],
            "--preprocess",
            str(members["preprocess"]),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_chunk_c_is_drawn_by_member_c_mod_k(members, tmp_path):
    assert _sample(members, tmp_path / "ens.root", "seed1", "seed2") == 0
    assert _sample(members, tmp_path / "one.root", "seed1") == 0
    assert _sample(members, tmp_path / "two.root", "seed2") == 0
    ens, one, two = (_matrix(tmp_path / f"{n}.root") for n in ("ens", "one", "two"))
    assert len(ens) == 1200
    who = event_members(len(ens), CHUNK, 2)
    assert who.tolist() == [member_of_chunk(i // CHUNK, 2) for i in range(1200)]
    # each chunk is the lone member's own chunk of the same seed: the same events, bit for bit
    np.testing.assert_array_equal(ens[who == 0], one[who == 0])
    np.testing.assert_array_equal(ens[who == 1], two[who == 1])
    assert not np.array_equal(one[who == 1], two[who == 1])  # the members differ
    meta = read_metadata(tmp_path / "ens.root")
    assert [m["model"] for m in meta["ensemble"]["members"]] == [
        str(members["seed1"]),
        str(members["seed2"]),
    ]
    assert meta["ensemble"]["chunk_size"] == CHUNK
    assert meta["model"] == [str(members["seed1"]), str(members["seed2"])]


def test_ensemble_shards_join_into_the_whole_sample(members, tmp_path):
    assert _sample(members, tmp_path / "all.root", "seed1", "seed2", "seed3") == 0
    whole = _matrix(tmp_path / "all.root")
    cfg = yaml.safe_load(members["seed1.yaml"].read_text())
    cfg["sampling"]["shards"] = 2
    members = dict(members, config=tmp_path / "sharded.yaml")
    members["config"].write_text(yaml.safe_dump(cfg))
    parts = []
    for shard in (0, 1):
        out = tmp_path / f"shard{shard}.root"
        assert _sample(members, out, "seed1", "seed2", "seed3", extra=("--shard", str(shard))) == 0
        parts.append(_matrix(out))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_config_ensemble_adds_members_to_the_runs_model(members, tmp_path):
    assert _sample(members, tmp_path / "cli.root", "seed1", "seed2") == 0
    cfg = yaml.safe_load(members["seed1.yaml"].read_text())
    cfg["sampling"]["ensemble"] = [str(members["seed2"])]
    configured = dict(members, config=tmp_path / "with-ensemble.yaml")
    configured["config"].write_text(yaml.safe_dump(cfg))
    assert _sample(configured, tmp_path / "cfg.root", "seed1") == 0
    np.testing.assert_array_equal(_matrix(tmp_path / "cfg.root"), _matrix(tmp_path / "cli.root"))


def test_members_of_other_features_are_refused_with_no_file(members, tmp_path, caplog):
    out = tmp_path / "bad.root"
    argv = ["sample", "--quiet", "--config", str(members["seed1.yaml"]), "--preprocess"]
    argv += [str(members["preprocess"]), "--out", str(out), "--model"]
    assert main([*argv, str(members["seed1"]), str(members["other"])]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert str(members["other"]) in caplog.text and "features" in caplog.text


def test_load_an_ensemble_samples_and_averages_the_members(members, tmp_path):
    paths = [members["seed1"], members["seed2"]]
    ens = hepflows.load(paths, preprocess=members["preprocess"])
    ones = [hepflows.load(p, preprocess=members["preprocess"]) for p in paths]
    events = ens.sample(1200, seed=5, chunk_size=CHUNK)
    assert _sample(members, tmp_path / "cli.root", "seed1", "seed2") == 0
    cli = read_events(tmp_path / "cli.root", FEATURES)
    for f in [*FEATURES, "label"]:
        np.testing.assert_array_equal(events[f], cli[f])  # the API's events are the CLI's
    # the density is the members' average
    lp = ens.log_prob(events)
    each = np.stack([m.log_prob(events) for m in ones])
    np.testing.assert_allclose(lp, np.log(np.exp(each).mean(0)), rtol=1e-6, atol=1e-6)
    ens.to_root(tmp_path / "api.root", 600, seed=5, chunk_size=CHUNK)
    meta = read_metadata(tmp_path / "api.root")
    assert [m["model"] for m in meta["ensemble"]["members"]] == [str(p) for p in paths]
    assert meta["ensemble"]["chunk_size"] == CHUNK
    with pytest.raises(InputError, match="features"):
        hepflows.load([members["seed1"], members["other"]], preprocess=members["preprocess"])


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("features", ["a", "c"], "features"),
        ("context_features", 0, "context columns"),
        ("preprocess_hash", "h2", "preprocessing hash"),
        ("preprocess_parameters_hash", "p2", "preprocessing parameters"),
        ("labels", [1], "training labels"),
    ],
)
def test_check_members_names_the_file_and_what_differs(key, value, named):
    from hepflows.ensemble import check_members

    first = {
        "features": ["a", "b"],
        "context_features": 1,
        "preprocess_hash": "h",
        "preprocess_parameters_hash": "p",
        "labels": [0, 1],
    }
    check_members([first, dict(first, labels=[1, 0])], ["one.pt", "two.pt"])  # order is no matter
    with pytest.raises(InputError, match=rf"two\.pt: its {named}"):
        check_members([first, dict(first, **{key: value})], ["one.pt", "two.pt"])


def test_an_uneven_mix_is_warned(caplog):
    from hepflows.ensemble import check_even_mix

    check_even_mix(1200, 300, 2)  # 4 chunks of 300: 2 each
    assert "unevenly" not in caplog.text
    check_even_mix(1200, 300, 3)  # 4 chunks for 3 members
    assert "mixed unevenly" in caplog.text
    caplog.clear()
    check_even_mix(100_000, 100_000, 2)  # one chunk: the second member draws nothing
    assert "mixed unevenly" in caplog.text
