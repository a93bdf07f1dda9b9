"""Every kind of bad HIGGS CSV fed to the ingest step: exit code 2, a message naming the file, the
row and column and what was expected, and none of the three outputs (nor a temporary file).

tests/test_io.py checks the reader's messages; here they go through the step as a user runs it,
including a bad row after the first chunk, when the outputs have already been written to.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from .conftest import assert_names, files_in, run_script, run_step

N_ROWS = 300


def _rows(n: int = N_ROWS, seed: int = 0) -> list[str]:
    """Valid HIGGS rows: a 0/1 label, then 28 positive numbers."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    values = rng.uniform(0.1, 3.0, (n, 28))
    return [f"{label}," + ",".join(f"{v:.6g}" for v in row) for label, row in zip(labels, values)]


def _edit(rows: list[str], row: int, column: int, token: str) -> list[str]:
    """A copy with the 1-based ``column`` of the 1-based ``row`` replaced by ``token``."""
    out = list(rows)
    fields = out[row - 1].split(",")
    fields[column - 1] = token
    out[row - 1] = ",".join(fields)
    return out


def _write(path: Path, rows: list[str]) -> Path:
    data = ("\n".join(rows) + "\n").encode() if rows else b""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _bad_csv(case: str, folder: Path) -> tuple[Path, list[str]]:
    """The bad file of ``case`` and the words its error must contain."""
    rows = _rows()
    if case == "missing":
        return folder / "absent.csv", ["absent.csv", "no such file"]
    if case == "empty":
        return _write(folder / "empty.csv", []), [
            "empty.csv",
            "empty file",
            "expected HIGGS CSV rows",
        ]
    if case == "empty gzip":
        return _write(folder / "empty.csv.gz", []), ["empty.csv.gz", "empty file"]
    if case == "short row":
        short = list(rows)
        short[56] = short[56].rsplit(",", 1)[0]
        return _write(folder / "short.csv", short), [
            "short.csv",
            "row 57",
            "28 value(s)",
            "expected 29",
        ]
    if case == "long row":
        long = list(rows)
        long[11] += ",1.0"
        return _write(folder / "long.csv", long), [
            "long.csv",
            "row 12",
            "30 value(s)",
            "expected 29",
        ]
    if case == "non-numeric":
        return (
            _write(folder / "token.csv", _edit(rows, 123, 7, "1.2.3")),
            ["token.csv", "row 123", "column 7 (jet1_pt)", "'1.2.3'", "not a number"],
        )
    if case == "non-numeric gzip":
        return (
            _write(folder / "token.csv.gz", _edit(rows, 5, 29, "abc")),
            ["token.csv.gz", "row 5", "column 29 (m_wwbb)", "'abc'", "not a number"],
        )
    if case == "empty field":
        return (
            _write(folder / "blank.csv", _edit(rows, 40, 12, "")),
            ["blank.csv", "row 40", "column 12", "not a number"],
        )
    if case == "header line":
        return (
            _write(folder / "header.csv", ["label,lepton_pt," + ",".join(["x"] * 27), *rows]),
            ["header.csv", "row 1", "column 1 (label)", "not a number"],
        )
    if case == "NaN":
        return (
            _write(folder / "nan.csv", _edit(rows, 88, 11, "nan")),
            ["nan.csv", "column 11 (jet2_pt)", "first at row 88", "NaN or Inf", "expected finite"],
        )
    if case == "Inf":
        return (
            _write(folder / "inf.csv.gz", _edit(rows, 5, 29, "-inf")),
            ["inf.csv.gz", "column 29 (m_wwbb)", "first at row 5", "expected finite"],
        )
    if case == "truncated gzip":
        data = gzip.compress(("\n".join(rows) + "\n").encode())
        path = folder / "truncated.csv.gz"
        path.write_bytes(data[: len(data) // 2])
        return path, ["truncated.csv.gz", "truncated or corrupt", "after row"]
    if case == "label 2":
        return (
            _write(folder / "label.csv", _edit(rows, 201, 1, "2")),
            ["label.csv", "row 201", "column 1 (label)", "2.0", "expected 0 or 1"],
        )
    if case == "label 0.5":
        return (
            _write(folder / "half.csv", _edit(rows, 7, 1, "0.5")),
            ["half.csv", "row 7", "column 1 (label)", "0.5", "expected 0 or 1"],
        )
    if case == "bad row after the first chunk":
        # The step converts in chunks of 100,000 rows: this row fails after the first chunk has
        # been written to all three outputs, which must then disappear again.
        line = _rows(1)[0]
        late = [line] * 100_050
        late[100_010 - 1] = _edit([line], 1, 3, "oops")[0]
        return (
            _write(folder / "late.csv", late),
            ["late.csv", "row 100010", "column 3 (lepton_eta)", "'oops'", "not a number"],
        )
    raise AssertionError(case)


CASES = [
    "missing",
    "empty",
    "empty gzip",
    "short row",
    "long row",
    "non-numeric",
    "non-numeric gzip",
    "empty field",
    "header line",
    "NaN",
    "Inf",
    "truncated gzip",
    "label 2",
    "label 0.5",
    "bad row after the first chunk",
]


def _ingest_args(out: Path) -> list[object]:
    return ["--train", out / "train.root", "--val", out / "val.root", "--test", out / "test.root"]


@pytest.mark.parametrize("case", CASES)
def test_bad_csv_is_named_and_nothing_written(case, tmp_path, caplog):
    path, words = _bad_csv(case, tmp_path)
    settings = {"data": {"source": "higgs_csv", "path": str(path)}}
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = run_step("ingest", *_ingest_args(out), settings=settings)
    assert code == 2
    assert_names(caplog.text, words)
    assert files_in(out) == []


def test_good_csv_is_ingested(tmp_path):
    """The control: the same rows, intact, give three files and exit code 0."""
    path = _write(tmp_path / "good.csv.gz", _rows())
    out = tmp_path / "out"
    assert (
        run_step(
            "ingest",
            *_ingest_args(out),
            settings={"data": {"source": "higgs_csv", "path": str(path)}},
        )
        == 0
    )
    assert files_in(out) == ["test.root", "train.root", "val.root"]


def test_ingest_process_exit_code(tmp_path):
    """The real process of scripts/ingest.py: status 2 and the message, no traceback."""
    path, words = _bad_csv("truncated gzip", tmp_path)
    out = tmp_path / "out"
    run = run_script(
        "ingest", *_ingest_args(out), settings={"data": {"source": "higgs_csv", "path": str(path)}}
    )
    assert run.returncode == 2, run.stderr
    assert_names(run.stderr, words)
    assert "Traceback" not in run.stderr
    assert files_in(out) == []
