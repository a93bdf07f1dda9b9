"""hepflows.heap: freed tensor memory is reused instead of faulted in afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from hepflows import heap

# Two rounds of the pattern of a training step (many 2 MB tensors alive at once, then all
# freed); the page faults of the second round tell whether the first round's pages were kept.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from hepflows.heap import retain_freed_memory
    assert retain_freed_memory()
def step():
    blocks = [torch.empty(512 * 1024).fill_(1.0) for _ in range(50)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip().splitlines()[-1])


@glibc
def test_retained_memory_is_reused_without_page_faults():
    default, retained = _faults("default"), _faults("retain")
    # 50 blocks of 512 pages: glibc's defaults give them all back and fault every page again
    assert default > 10_000
    assert retained < default / 4


@glibc
def test_settings_take_effect_and_are_idempotent():
    assert heap.retain_freed_memory()
    assert heap.retain_freed_memory()


def test_every_cli_step_retains_freed_memory(monkeypatch, tmp_path):
    from hepflows import cli

    calls = []
    monkeypatch.setattr(heap, "retain_freed_memory", lambda: calls.append(1) or True)
    out = [str(tmp_path / f"{name}.root") for name in ("train", "val", "test")]
    argv = ["generate", "--config", str(tmp_path / "missing.yaml"), "--train", out[0]]
    status = cli.main([*argv, "--val", out[1], "--test", out[2]])
    assert status == cli.EXIT_BAD_INPUT  # the step ran (and refused the missing config)
    assert calls == [1]
