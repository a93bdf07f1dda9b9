"""Every output is written through hepflows.atomic: whole or not at all, and with the mode an
ordinary file would have under the umask (0644 under 022, 0664 under 002), never private 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from hepflows.atomic import AtomicFile, atomic_path, atomic_write_text, current_umask
from hepflows.cli import main
from hepflows.events.convert import convert_higgs_csv
from hepflows.events.schema import HIGGS_FEATURES, LABEL
from hepflows.events.writer import EventWriter, write_events
from hepflows.shards import merge_event_files


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _events(n: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "met": rng.random(n),
        "m_jj": rng.random(n),
        LABEL: (rng.random(n) < 0.5).astype(np.int8),
    }


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_every_writer_gives_the_umask_mode(tmp_path, umask):
    expected = 0o666 & ~umask
    outputs = []
    atomic_write_text(tmp_path / "a.json", "{}")
    outputs.append(tmp_path / "a.json")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    outputs.append(tmp_path / "b.bin")
    write_events(tmp_path / "c.root", _events())
    outputs.append(tmp_path / "c.root")
    with EventWriter(tmp_path / "d.root") as w:
        w.write(_events())
    outputs.append(tmp_path / "d.root")
    merge_event_files([tmp_path / "c.root", tmp_path / "d.root"], tmp_path / "e.root")
    outputs.append(tmp_path / "e.root")
    rows = np.random.default_rng(2).random((40, len(HIGGS_FEATURES) + 1))
    rows[:, 0] = rows[:, 0] < 0.5
    np.savetxt(tmp_path / "h.csv", rows, delimiter=",", fmt="%.6g")
    split = {"train": 0.5, "test": 0.5}
    convert_higgs_csv(tmp_path / "h.csv", {k: tmp_path / f"{k}.root" for k in split}, split=split)
    outputs += [tmp_path / "train.root", tmp_path / "test.root"]
    modes = {p.name: oct(_mode(p)) for p in outputs}
    assert modes == {p.name: oct(expected) for p in outputs}
    assert not list(tmp_path.glob(".*.tmp"))


def test_pipeline_steps_outputs_follow_the_umask(tmp_path, umask):
    """The steps a user runs: generate (ROOT), preprocess (JSON), under the caller's umask."""
    settings = (
        '{"features": ["met", "m_jj"], "data": {"events": {"train": 300, "val": 100, "test": 100}}}'
    )
    paths = {k: tmp_path / "data" / f"{k}.root" for k in ("train", "val", "test")}
    assert (
        main(
            [
                "generate",
                "--quiet",
                "--settings",
                settings,
                *(a for k, p in paths.items() for a in (f"--{k}", str(p))),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "preprocess",
                "--quiet",
                "--settings",
                settings,
                "--train",
                str(paths["train"]),
                "--out",
                str(tmp_path / "preprocess.json"),
            ]
        )
        == 0
    )
    expected = 0o666 & ~umask
    for path in [*paths.values(), tmp_path / "preprocess.json"]:
        assert _mode(path) == expected, f"{path.name}: {oct(_mode(path))}, expected {oct(expected)}"


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    out = AtomicFile(tmp_path / "y.txt")
    out.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="already"):
        out.publish()
