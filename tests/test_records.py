"""The git commit and the JSON records are each read by one function."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hepflows.errors import InputError
from hepflows.provenance import SHORT_COMMIT, git_commit
from hepflows.records import read_json

SRC = Path(__file__).resolve().parents[1] / "src" / "hepflows"


def test_short_commit_is_the_prefix_of_the_whole_one():
    whole = git_commit()
    if whole == "unknown":
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}", whole)
    assert git_commit(short=True) == whole[:SHORT_COMMIT]


def test_read_json_names_the_file_and_the_step(tmp_path):
    good = tmp_path / "metrics.json"
    good.write_text('{"a": 1}')
    assert read_json(good) == {"a": 1}
    with pytest.raises(InputError, match=r"missing\.json: not found; run the model's validate"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON"):
        read_json(bad)


def test_one_reader_each():
    sources = {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    git_readers = [p.name for p, s in sources.items() if '"rev-parse"' in s]
    assert git_readers == ["provenance.py"]
    # a JSON file read in place instead of through read_json: json.loads(<path>.read_text())
    json_readers = [
        p.name for p, s in sources.items() if re.search(r"json\.loads\([^)]*read_text", s)
    ]
    assert json_readers == ["records.py"]


def test_json_form_is_written_by_one_function():
    import ast

    defined = [
        p.name
        for p in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") == "jsonable"
    ]
    assert defined == ["records.py"]


def test_jsonable_gives_plain_json_types_and_null_for_nan():
    import json

    import numpy as np

    from hepflows.records import jsonable

    doc = {
        1: np.float32(0.5),
        "a": [np.int64(3), np.bool_(True), float("nan")],
        "b": np.array([1.0, np.inf]),
        "c": (np.float64(-np.inf), "x", None),
    }
    plain = jsonable(doc)
    assert plain == {"1": 0.5, "a": [3, True, None], "b": [1.0, None], "c": [None, "x", None]}
    assert type(plain["a"][0]) is int and type(plain["a"][1]) is bool
    json.dumps(plain, allow_nan=False)  # strict JSON: raises on any NaN left
