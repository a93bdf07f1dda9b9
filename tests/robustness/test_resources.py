"""A full disk, a read-only folder or a folder that cannot be made ends each writing step with
exit 3 and a message naming the output and the cause, never a traceback, and leaves nothing.

The disk is filled by replacing ``open`` (the one of ``builtins`` and of ``io``, which uproot,
pathlib and the model files use) for files in the output folder: they open, but every write
fails with ENOSPC, as on a full file system; a read-only folder refuses to create files.
"""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hepflows.atomic import atomic_write_text, resource_error
from hepflows.cli import EXIT_RESOURCES

from .conftest import TINY, Pipeline, assert_names, files_in, run_step


class _FullFile:
    """A file on a full disk: everything works but writing."""

    def __init__(self, file) -> None:
        self._file = file

    def write(self, data) -> int:
        if len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return 0

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


def _inside(path, folder: Path) -> bool:
    try:
        return isinstance(path, str | os.PathLike) and folder in Path(os.fspath(path)).parents
    except TypeError:
        return False


@pytest.fixture
def full_disk(monkeypatch) -> Callable[[Path], None]:
    """``full_disk(folder)``: from now on every file opened for writing in ``folder`` fails."""

    def fill(folder: Path) -> None:
        real = builtins.open

        def full_open(file, mode="r", *args, **kwargs):
            f = real(file, mode, *args, **kwargs)
            writing = any(c in mode for c in "wax+")
            return _FullFile(f) if writing and _inside(file, folder) else f

        monkeypatch.setattr(builtins, "open", full_open)
        monkeypatch.setattr(io, "open", full_open)

    return fill


@pytest.fixture
def read_only(monkeypatch) -> Callable[[Path], None]:
    """``read_only(folder)``: no file can be created in ``folder`` (EROFS); root ignores the
    permission bits, so the refusal is the file system's."""

    def freeze(folder: Path) -> None:
        real = os.open

        def ro_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT and _inside(path, folder):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", ro_open)

    return freeze


def _steps(p: Pipeline, out: Path) -> dict[str, tuple[list[object], dict, Path]]:
    """Each writing step: its arguments, settings and the output the message must name."""
    return {
        "ingest": (
            ["--train", out / "train.root", "--val", out / "val.root", "--test", out / "test.root"],
            dict(TINY, data={"source": "root", "path": str(p.path("test"))}),
            out / "train.root",
        ),
        "preprocess": (
            ["--train", p.path("train"), "--out", out / "pre.json"],
            TINY,
            out / "pre.json",
        ),
        "train": (
            [
                *("--train", p.path("train"), "--val", p.path("val")),
                *("--preprocess", p.path("preprocess")),
                *("--model", out / "model.pt", "--log", out / "log.csv"),
            ],
            dict(TINY, training=dict(TINY["training"], epochs=1)),
            out / "model.resume.pt",  # the first file training writes
        ),
        "sample": (
            [
                *("--model", p.path("model"), "--preprocess", p.path("preprocess")),
                *("--out", out / "gen.root", "--events", 3000),
            ],
            TINY,
            out / "gen.root",
        ),
    }


@pytest.mark.parametrize("step", ["ingest", "preprocess", "train", "sample"])
def test_full_disk_is_named(pipeline, tmp_path, caplog, full_disk, step):
    out = tmp_path / "out"
    out.mkdir()
    args, settings, target = _steps(pipeline, out)[step]
    full_disk(out)
    with caplog.at_level(logging.ERROR):
        assert run_step(step, *args, settings=settings) == EXIT_RESOURCES
    assert_names(caplog.text, ["No space left on device while writing", str(target), "ENOSPC"])
    assert "Traceback" not in caplog.text
    assert files_in(out) == []


@pytest.mark.parametrize("step", ["ingest", "preprocess", "train", "sample"])
def test_read_only_folder_is_named(pipeline, tmp_path, caplog, read_only, step):
    out = tmp_path / "out"
    out.mkdir()
    args, settings, target = _steps(pipeline, out)[step]
    read_only(out)
    with caplog.at_level(logging.ERROR):
        assert run_step(step, *args, settings=settings) == EXIT_RESOURCES
    assert_names(caplog.text, ["Read-only file system while writing", str(target), "EROFS"])
    assert files_in(out) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 16 KiB file system (tmpfs), where the machine lets this user mount one."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("step", ["train", "sample"])
def test_a_real_full_file_system_is_named(pipeline, small_tmpfs, caplog, step):
    """torch's own writer reported a short write as 'unexpected pos 768 vs 662'."""
    out = small_tmpfs / "out"
    args, settings, target = _steps(pipeline, out)[step]
    with caplog.at_level(logging.ERROR):
        assert run_step(step, *args, settings=settings) == EXIT_RESOURCES
    assert_names(caplog.text, ["No space left on device while writing", "ENOSPC"])
    assert str(out) in caplog.text
    assert [p for p in files_in(out) if p.endswith((".pt", ".root"))] == []


def test_a_folder_that_cannot_be_made_is_named(pipeline, tmp_path, caplog):
    """A file stands where the output's folder should be."""
    (tmp_path / "results").write_text("not a folder")
    out = tmp_path / "results" / "run" / "pre.json"
    with caplog.at_level(logging.ERROR):
        code = run_step(
            "preprocess", "--train", pipeline.path("train"), "--out", out, settings=TINY
        )
    assert code == EXIT_RESOURCES
    assert_names(caplog.text, ["Not a directory while writing", str(out), "ENOTDIR"])


def test_an_unreadable_input_inside_a_write_is_not_a_resource_error(tmp_path):
    """Only errors on the outputs are the machine's: another file's error stays as it was."""
    other = OSError(errno.EACCES, "Permission denied", str(tmp_path / "elsewhere" / "in.root"))
    assert resource_error(other, tmp_path / "out" / "x.root") is None
    assert resource_error(ValueError("x"), tmp_path / "x") is None
    mine = OSError(errno.EACCES, "Permission denied", str(tmp_path / "out" / ".x.root.1.tmp"))
    assert "Permission denied while writing" in str(
        resource_error(mine, tmp_path / "out" / "x.root")
    )


def test_atomic_write_on_a_full_disk_leaves_nothing(tmp_path, full_disk):
    full_disk(tmp_path)
    with pytest.raises(
        Exception, match=f"No space left on device while writing {tmp_path / 'a.txt'}"
    ):
        atomic_write_text(tmp_path / "a.txt", "hello")
    assert files_in(tmp_path) == []
