"""Analysis inputs (``data.inputs``): several TTree and RNTuple files per process, renamed
branches, weight branches with negative weights, weight factors and a selection, through the
real ``ingest`` step; and every defect stopping it with exit 2, named, with nothing written."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepflows import config
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_events, read_metadata
from hepflows.events.selection import Selection
from hepflows.settings import Settings

FEATURES = ["lepton_pt", "met", "m_bb"]
SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}
SELECTION = "(lepton_pt > 25) & (m_bb < 500)"


def _columns(rng: np.random.Generator, n: int, first_id: int) -> dict[str, np.ndarray]:
    return {
        "lepton_pt": rng.uniform(0.0, 100.0, n).astype(np.float32),
        "missing_energy": rng.uniform(0.0, 200.0, n),  # float64: cast to float32 on ingest
        "m_bb": rng.uniform(0.0, 800.0, n).astype(np.float32),
        "gen_weight": rng.normal(1.0, 1.0, n).astype(np.float32),  # some negative, as at NLO
        "event_id": np.arange(first_id, first_id + n, dtype=np.int64),
    }


def _write(path: Path, cols: dict, rntuple: bool, name: str = "events") -> Path:
    with uproot.recreate(path) as f:
        if rntuple:
            f.mkrntuple(name, cols)
        else:
            f.mktree(
                name,
                {
                    k: np.asarray(v).dtype if isinstance(v, np.ndarray) else v.type
                    for k, v in cols.items()
                },
            ).extend(cols)
    return path


@pytest.fixture()
def ntuples(tmp_path):
    """Two ttbar TTree files, two signal RNTuple files (another name), all with renamed MET."""
    rng = np.random.default_rng(7)
    d = tmp_path / "ntuples"
    d.mkdir()
    truth = {}
    for i, n in enumerate((700, 500)):
        cols = _columns(rng, n, 10_000 * (i + 1))
        _write(d / f"ttbar_{i}.root", cols, rntuple=False)
        truth[f"ttbar_{i}.root"] = cols
    for i, n in enumerate((600, 400)):
        cols = _columns(rng, n, 100_000 * (i + 1))
        _write(d / f"signal_{i}.root", cols, rntuple=True, name="nominal")
        truth[f"signal_{i}.root"] = cols
    return d, truth


def _settings(d: Path, *, reverse: bool = False, step: int | None = None, **data) -> dict:
    inputs = [
        {"path": str(d / "ttbar_*.root"), "label": 0, "weight": 0.25},
        {"path": str(d / "signal_*.root"), "label": 1, "weight": 2.0, "tree": "nominal"},
    ]
    if reverse:
        inputs = [
            {"path": str(d / "signal_1.root"), "label": 1, "weight": 2.0, "tree": "nominal"},
            {"path": str(d / "ttbar_1.root"), "label": 0, "weight": 0.25},
            {"path": str(d / "signal_0.root"), "label": 1, "weight": 2.0, "tree": "nominal"},
            {"path": str(d / "ttbar_0.root"), "label": 0, "weight": 0.25},
        ]
    base = {
        "source": "root",
        "inputs": inputs,
        "branch_map": {"met": "missing_energy"},
        "weight_branch": "gen_weight",
        "selection": SELECTION,
        "split": SPLIT,
    }
    # the weights are NLO-like (some negative): the classifier test cannot take them
    return {
        "seed": 5,
        "features": FEATURES,
        "data": {**base, **data},
        "validation": {"classifier": False},
    }


def _ingest(settings: dict, out: Path) -> int:
    return main(
        [
            "ingest",
            "--quiet",
            "--settings",
            json.dumps(settings),
            *(x for k in ("train", "val", "test") for x in (f"--{k}", str(out / f"{k}.root"))),
        ]
    )


def _events(out: Path) -> dict[str, dict[str, np.ndarray]]:
    return {
        k: read_events(out / f"{k}.root", FEATURES, with_weight=True)
        for k in ("train", "val", "test")
    }


def _keys(ev: dict[str, np.ndarray]) -> set[tuple]:
    return set(zip(ev["lepton_pt"].tolist(), ev["m_bb"].tolist(), ev["weight"].tolist()))


def test_inputs_counts_labels_weights_splits_provenance(ntuples, tmp_path, caplog):
    d, truth = ntuples
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="hepflows"):
        assert _ingest(_settings(d), out) == 0
    ev = _events(out)
    every = {k: np.concatenate([e[k] for e in ev.values()]) for k in (*FEATURES, "label", "weight")}

    # counts: exactly the events passing the selection, each once
    expected = {}
    for name, cols in truth.items():
        keep = (cols["lepton_pt"] > 25) & (cols["m_bb"] < 500)
        factor = 0.25 if name.startswith("ttbar") else 2.0
        expected[name] = {
            "n": int(keep.sum()),
            "label": int(name.startswith("signal")),
            "w": (factor * cols["gen_weight"][keep].astype(np.float64)).astype(np.float32),
            "w64": factor * cols["gen_weight"][keep].astype(np.float64),
            "met": cols["missing_energy"][keep].astype(np.float32),
        }
    assert len(every["label"]) == sum(e["n"] for e in expected.values())
    assert (every["lepton_pt"] > 25).all() and (every["m_bb"] < 500).all()
    # labels per process, weights = factor x generator weight, negative ones kept
    for lab in (0, 1):
        files = [e for e in expected.values() if e["label"] == lab]
        got = np.sort(every["weight"][every["label"] == lab])
        np.testing.assert_array_equal(got, np.sort(np.concatenate([e["w"] for e in files])))
        np.testing.assert_array_equal(
            np.sort(every["met"][every["label"] == lab]),
            np.sort(np.concatenate([e["met"] for e in files])),
        )
    assert (every["weight"] < 0).any()
    # the splits hold their fractions up to binomial fluctuations
    n = len(every["label"])
    for k, frac in SPLIT.items():
        assert abs(len(ev[k]["label"]) - frac * n) < 4 * np.sqrt(n * frac * (1 - frac))

    meta = read_metadata(out / "train.root")
    recs = {Path(r["path"]).name: r for r in meta["inputs"]}
    assert list(recs) == ["ttbar_0.root", "ttbar_1.root", "signal_0.root", "signal_1.root"]
    for name, r in recs.items():
        data = (d / name).read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["size"] == len(data)
        assert r["kind"] == ("RNTuple" if name.startswith("signal") else "TTree")
        assert (r["entries"], r["selected"]) == (len(truth[name]["m_bb"]), expected[name]["n"])
        assert r["negative_weights"] == int((expected[name]["w"] < 0).sum())
        w = expected[name]["w64"]
        assert r["input_effective_size"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    w = np.concatenate([e["w64"] for e in expected.values()])
    assert meta["input_effective_size"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert meta["selection_counts"] == {"before": 2200, "after": n}
    assert meta["branch_map"] == {"lepton_pt": "lepton_pt", "met": "missing_energy", "m_bb": "m_bb"}
    assert f"selection {SELECTION!r}: {n} of 2200 events pass" in caplog.text


def test_splits_do_not_depend_on_file_order_or_chunking(ntuples, tmp_path):
    from hepflows.events.inputs import convert_inputs, resolve_inputs

    d, _ = ntuples
    a, b, c, e = (tmp_path / x for x in "abce")
    assert _ingest(_settings(d), a) == 0
    assert _ingest(_settings(d, reverse=True), b) == 0
    assert _ingest({**_settings(d), "seed": 6}, e) == 0
    data = Settings.from_config(config.validate(_settings(d))).data
    c.mkdir()
    convert_inputs(
        resolve_inputs(data),
        {k: c / f"{k}.root" for k in SPLIT},
        features=FEATURES,
        seed=5,
        branch_map=data.branch_map,
        weight_branch="gen_weight",
        selection=SELECTION,
        split=SPLIT,
        step_size=97,
    )
    ea, eb, ec, ee = _events(a), _events(b), _events(c), _events(e)
    for k in SPLIT:
        assert _keys(ea[k]) == _keys(eb[k]) == _keys(ec[k])
    assert _keys(ea["train"]) != _keys(ee["train"])  # another seed deals other splits


def test_splits_do_not_depend_on_the_order_of_the_split_keys(ntuples, tmp_path):
    # Snakemake passes settings as JSON with sorted keys (test, train, val), a config file has
    # them in its own order: the same config must deal every event to the same split.
    d, _ = ntuples
    orders = [("train", "val", "test"), ("test", "train", "val"), ("val", "test", "train")]
    events = []
    for i, order in enumerate(orders):
        out = tmp_path / f"order{i}"
        split = {k: SPLIT[k] for k in order}
        assert _ingest(_settings(d, split=split), out) == 0
        events.append(_events(out))
    for k in SPLIT:
        assert _keys(events[0][k]) == _keys(events[1][k]) == _keys(events[2][k])


def test_path_shorthand_and_unweighted_inputs(ntuples, tmp_path):
    d, truth = ntuples
    out = tmp_path / "out"
    settings = {
        "seed": 1,
        "features": FEATURES,
        "data": {
            "source": "root",
            "path": str(d / "ttbar_*.root"),
            "branch_map": {"met": "missing_energy"},
            "label_branch": None,
        },
    }
    assert _ingest(settings, out) == 0
    ev = {k: read_events(out / f"{k}.root", FEATURES, with_label=False) for k in SPLIT}
    assert sum(len(e["met"]) for e in ev.values()) == 1200
    meta = read_metadata(out / "val.root")
    assert [Path(r["path"]).name for r in meta["inputs"]] == ["ttbar_0.root", "ttbar_1.root"]
    assert "weight" not in uproot.open(out / "val.root")["events"].keys()


def _defect(case: str, d: Path) -> tuple[dict, Path | str, list[str]]:
    """Settings with one defect, the file (or pattern) at fault and words its message needs."""
    rng = np.random.default_rng(3)
    cols = _columns(rng, 50, 0)
    settings = _settings(d)
    settings["data"]["inputs"] = list(settings["data"]["inputs"])
    bad = d / "bad.root"

    def add(rntuple: bool, **entry) -> None:
        settings["data"]["inputs"].append({"path": str(bad), "label": 0, **entry})

    if case == "missing branch":
        del cols["m_bb"]
        _write(bad, cols, False)
        add(False)
        return settings, bad, ["TTree 'events' lacks branch(es) ['m_bb']", "feature 'm_bb'"]
    if case == "missing field":
        del cols["missing_energy"]
        _write(bad, cols, True)
        add(True)
        return (
            settings,
            bad,
            [
                "RNTuple 'events' lacks field(s) ['missing_energy']",
                "feature 'met' via data.branch_map",
            ],
        )
    if case == "jagged branch":
        cols["m_bb"] = ak.Array([[1.0, 2.0]] * 50)
        _write(bad, cols, False)
        add(False)
        return settings, bad, ["['m_bb']", "several values per event"]
    if case == "jagged field":
        cols["m_bb"] = ak.Array([[1.0, 2.0]] * 50)
        _write(bad, cols, True)
        add(True)
        return settings, bad, ["RNTuple 'events': field(s) ['m_bb']", "several values per event"]
    if case == "non-numeric field":
        cols["lepton_pt"] = ak.Array(["25.0"] * 50)
        _write(bad, cols, True)
        add(True)
        return settings, bad, ["field(s) ['lepton_pt (std::string)']", "not numeric"]
    if case == "glob matches nothing":
        settings["data"]["inputs"].append({"path": str(d / "zz_*.root"), "label": 0})
        return settings, str(d / "zz_*.root"), ["data.inputs[2]", "no file matches"]
    if case == "label outside 0/1":
        cols["lepton_pt"][:] = 50.0
        cols["m_bb"][:] = 100.0
        cols["is_signal"] = np.zeros(50, np.int32)
        cols["is_signal"][17] = 2
        _write(bad, cols, False)
        settings["data"]["inputs"].append({"path": str(bad), "label_branch": "is_signal"})
        return settings, bad, ["branch 'is_signal'", "entry 17", "value 2", "other than 0 or 1"]
    if case == "NaN weight":
        cols["lepton_pt"][:] = 50.0
        cols["m_bb"][:] = 100.0
        cols["gen_weight"][23] = np.nan
        _write(bad, cols, True)
        add(True)
        return settings, bad, ["field 'gen_weight'", "entry 23", "NaN or Inf"]
    if case == "bad selection":
        settings["data"]["selection"] = "__import__('os').system('true')"
        return settings, "data.selection", ["the call", "is not allowed"]
    raise AssertionError(case)


DEFECTS = [
    "missing branch",
    "missing field",
    "jagged branch",
    "jagged field",
    "non-numeric field",
    "glob matches nothing",
    "label outside 0/1",
    "NaN weight",
    "bad selection",
]


@pytest.mark.parametrize("case", DEFECTS)
def test_defects_exit_2_named_nothing_written(case, ntuples, tmp_path, caplog):
    d, _ = ntuples
    settings, where, words = _defect(case, d)
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        assert _ingest(settings, out) == 2
    missing = [w for w in [str(where), *words] if w not in caplog.text]
    assert not missing, f"{missing} not in:\n{caplog.text}"
    assert not out.exists() or sorted(out.rglob("*")) == []


@pytest.mark.parametrize(
    ("expr", "n"),
    [
        ("(a > 1) & (b < 3)", 1),
        ("a > 1 and not b >= 3", 1),
        ("~(a == 2) | (b != b)", 2),
        ("1 < a <= 2", 1),
        ("abs(a - 2) * 2 ** 1 < 1.5", 1),
        ("sqrt(a) > 1.5", 1),
    ],
)
def test_selection_evaluates(expr, n):
    arrays = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([5.0, 2.0, 4.0])}
    sel = Selection(expr)
    assert int(sel.mask(arrays, 3).sum()) == n
    assert set(sel.names) <= {"a", "b"}


@pytest.mark.parametrize(
    "expr",
    [
        "a.real > 1",
        "a[-1] > 1",
        "a[b] > 1",
        "a[0:2] > 1",
        "len(a + 1) > 1",
        "a + a[0] > 1",
        "open('x')",
        "lambda: 1",
        "'a' == a",
        "(x := 3) > a",
        "",
        "a >",
    ],
)
def test_selection_refuses_everything_else(expr):
    with pytest.raises(InputError, match="data.selection"):
        Selection(expr)


def test_selection_must_be_boolean():
    with pytest.raises(InputError, match="expected true or false per event"):
        Selection("a + 1").check("data.selection")


def test_weighted_nll_is_sum_w_nll_over_sum_w():
    import torch

    from hepflows.flows.model import DensityModel
    from hepflows.training import Dataset, _nll, mean_nll

    class Gauss(DensityModel):
        features = 2

        def log_prob(self, x, context=None):
            return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * np.log(2 * np.pi)

    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    w = torch.linspace(-0.5, 2.5, 500)  # negative weights too
    flow = Gauss()
    nll = -flow.log_prob(x).double()
    expect = float((w.double() * nll).sum() / w.double().sum())
    assert mean_nll(flow, Dataset(x, None, w), batch_size=64) == pytest.approx(expect, rel=1e-6)
    assert mean_nll(flow, Dataset(x, None), batch_size=64) == pytest.approx(
        float(nll.mean()), rel=1e-6
    )
    assert float(_nll(flow, x, None, torch.ones(500))) == pytest.approx(float(nll.mean()), rel=1e-6)
    assert float(_nll(flow, x, None, w / w.mean())) == pytest.approx(expect, rel=1e-5)


def test_weighted_events_train_and_validate_with_negative_weights(ntuples, tmp_path, caplog):
    d, _ = ntuples
    out = tmp_path / "out"
    settings = _settings(d)
    settings.update(
        model={"coupling": "affine", "blocks": 2, "hidden": [16, 16]},
        training={"epochs": 1, "batch_size": 64, "device": "cpu", "patience": None},
        validation={"max_events": 1000, "n_null": 20, "classifier": False},
    )
    assert _ingest(settings, out) == 0
    s = json.dumps(settings)
    assert (
        main(
            [
                "preprocess",
                "--quiet",
                "--settings",
                s,
                "--train",
                str(out / "train.root"),
                "--out",
                str(out / "pre.json"),
            ]
        )
        == 0
    )
    with caplog.at_level(logging.INFO, logger="hepflows"):
        assert (
            main(
                [
                    "train",
                    "--quiet",
                    "--settings",
                    s,
                    "--train",
                    str(out / "train.root"),
                    "--val",
                    str(out / "val.root"),
                    "--preprocess",
                    str(out / "pre.json"),
                    "--model",
                    str(out / "model.pt"),
                    "--log",
                    str(out / "log.csv"),
                ]
            )
            == 0
        )
    assert f"{out / 'train.root'}: weighted events" in caplog.text
    assert "effective sample size (Kish)" in caplog.text
    assert (out / "model.pt").exists()
    # negative weights are validated with the signed measure (the classifier is off)
    assert (
        main(
            [
                "validate",
                "--quiet",
                "--settings",
                s,
                "--reference",
                str(out / "test.root"),
                "--generated",
                str(out / "train.root"),
                "--out-dir",
                str(out / "v"),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "v" / "metrics.json").read_text())
    assert metrics["input_weights"]["weighted"]
    assert metrics["input_weights"]["all"]["kish_effective_size"] > 0
