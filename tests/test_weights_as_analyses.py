"""Weights as analyses have them: NLO negative weights through validation, cross-section factors
with ``data.normalise: per_process``, and every reason validation would stop found when the
config is checked or at ingest, before any training.

The inputs are analysis-like ntuples built here with uproot: three background files and a
signal file, TTree ``Nominal``, the analysis's own branch names (mapped to the features with
``data.branch_map``), a generator weight ``weight_mc`` with about 5 % negative values and a
cross-section factor per file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import uproot

from hepflows import config
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_metadata
from hepflows.feasibility import MIN_EVENTS, Tally, check_splits
from hepflows.report.runner import validate_samples
from hepflows.settings import Settings
from hepflows.validation import metrics as m

FEATURES = ["lepton_pt", "met", "m_bb"]
BRANCHES = {"lepton_pt": "lep_pt", "met": "met_met", "m_bb": "mbb"}
#: (file, label, events, cross-section factor); the signal's weighted fraction is ~0.003
PROCESSES = (
    ("ttbar", 0, 900, 0.9),
    ("wjets", 0, 700, 1.1),
    ("zjets", 0, 600, 0.8),
    ("higgs", 1, 800, 0.003),
)


def _ntuple(path: Path, label: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    weight = rng.uniform(0.5, 1.5, n)
    weight[rng.random(n) < 0.05] *= -1.0  # NLO: about 5 % negative weights
    cols = {
        "lep_pt": (30.0 + rng.exponential(40.0 + 30.0 * label, n)).astype(np.float32),
        "met_met": rng.exponential(50.0, n).astype(np.float32),
        "mbb": rng.normal(120.0 if label else 90.0, 20.0, n).astype(np.float32),
        "weight_mc": weight.astype(np.float32),
    }
    with uproot.recreate(path) as f:
        f.mktree("Nominal", {k: v.dtype for k, v in cols.items()}).extend(cols)


@pytest.fixture(scope="module")
def ntuples(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ntuples")
    for i, (name, label, n, _) in enumerate(PROCESSES):
        _ntuple(d / f"{name}.root", label, n, seed=10 + i)
    return d


def _settings(d: Path, *, signal_factor: float | None = None, **sections: dict) -> dict:
    """The run's settings; ``signal_factor`` replaces the signal's cross-section factor."""
    inputs = [
        {
            "path": str(d / f"{name}.root"),
            "label": label,
            "weight": signal_factor if label and signal_factor is not None else xsec,
        }
        for name, label, _, xsec in PROCESSES
    ]
    base: dict = {
        "seed": 3,
        "features": FEATURES,
        "data": {
            "source": "root",
            "tree": "Nominal",
            "inputs": inputs,
            "branch_map": BRANCHES,
            "weight_branch": "weight_mc",
            "split": {"train": 0.5, "val": 0.2, "test": 0.3},
        },
        "model": {"coupling": "affine", "blocks": 2, "hidden": [16, 16]},
        "training": {"epochs": 1, "batch_size": 256, "device": "cpu", "patience": None},
        "sampling": {"events": 2000, "device": "cpu"},
        "validation": {"max_events": 1000, "n_null": 20, "classifier": False},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def _run(step: str, settings: dict, *args: str | Path) -> int:
    return main([step, "--quiet", "--settings", json.dumps(settings), *map(str, args)])


def _ingest(settings: dict, out: Path) -> int:
    return _run(
        "ingest",
        settings,
        *(x for k in ("train", "val", "test") for x in (f"--{k}", out / f"{k}.root")),
    )


def _pipeline(settings: dict, out: Path) -> int:
    """ingest -> preprocess -> train -> sample -> validate; the exit code of the first failure."""
    steps = [
        ("preprocess", "--train", out / "train.root", "--out", out / "pre.json"),
        (
            "train",
            *("--train", out / "train.root", "--val", out / "val.root"),
            *("--preprocess", out / "pre.json", "--model", out / "model.pt"),
            *("--log", out / "log.csv"),
        ),
        (
            "sample",
            *("--model", out / "model.pt", "--preprocess", out / "pre.json"),
            *("--out", out / "generated.root"),
        ),
        (
            "validate",
            *("--reference", out / "test.root", "--generated", out / "generated.root"),
            *("--out-dir", out / "validation"),
        ),
    ]
    rc = _ingest(settings, out)
    for step, *args in steps:
        if rc:
            return rc
        rc = _run(step, settings, *args)
    return rc


# -- negative weights end to end ---------------------------------------------------------------
def test_negative_weights_run_through_validation(ntuples, tmp_path):
    """NLO weights (5 % negative) no longer stop validate after training (it exited 2)."""
    out = tmp_path / "run"
    assert _pipeline(_settings(ntuples, signal_factor=1.0), out) == 0
    split = read_metadata(out / "test.root")["split_weights"]["test"]
    assert split["signal"]["negative_weights"] > 0
    assert 0 < split["signal"]["kish_effective_size"] < split["signal"]["events"]
    metrics = json.loads((out / "validation" / "metrics.json").read_text())
    weights = metrics["input_weights"]
    assert (
        weights["weighted"] and 0 < weights["all"]["kish_effective_size"] < weights["all"]["events"]
    )
    assert {"signal", "background"} <= set(metrics["slices"])
    assert metrics["label_fraction"]["pvalue"] is not None


def test_per_process_runs_cross_section_weights_at_a_chosen_fraction(ntuples, tmp_path):
    """Signal at 0.3 % of the cross-section, generated at 50 %: every step runs, validation
    compares each process's shape and reports the fraction as chosen."""
    out = tmp_path / "run"
    settings = _settings(
        ntuples, data={"normalise": "per_process"}, sampling={"signal_fraction": 0.5}
    )
    assert _pipeline(settings, out) == 0
    metrics = json.loads((out / "validation" / "metrics.json").read_text())
    assert metrics["normalise"] == "per_process"
    assert {"signal", "background"} <= set(metrics["slices"])
    assert metrics["sizes"]["compared_per_sample"]["signal"] >= MIN_EVENTS
    fraction = metrics["label_fraction"]
    assert fraction["chosen"] is True and fraction["pvalue"] is None
    assert fraction["reference"] < 0.01 and fraction["generated"] == pytest.approx(0.5, abs=0.05)
    assert (out / "validation" / "plots" / "lepton_pt.png").exists()


def test_signed_weights_cancel_in_the_ks_and_the_moments():
    """A component added with weight +1 and removed again by a copy at weight -1 leaves the
    signed measure that of the rest: the signed-weight KS and the weighted moments see it."""
    rng = np.random.default_rng(0)
    core = rng.normal(0.0, 1.0, (4000, 2))
    extra = rng.normal(3.0, 0.5, (1000, 2))
    x = np.concatenate([core, extra, extra + rng.normal(0.0, 0.01, extra.shape)])
    w = np.concatenate([np.ones(4000), np.ones(1000), -np.ones(1000)])
    other = rng.normal(0.0, 1.0, (4000, 2))
    signed = m.ks_statistic_columns(x, other, wa=w)
    unsigned = m.ks_statistic_columns(x, other, wa=np.abs(w))
    assert np.all(signed < 0.05) and np.all(unsigned > 0.2)
    mu, cov = m._mean_cov(x, w)
    assert np.allclose(mu, 0.0, atol=0.06) and np.allclose(np.diag(cov), 1.0, atol=0.1)
    # the resampling estimators (JetNet's FPD and KPD) draw by |w| and keep the signs
    assert m.kernel_distance(x, other, wx=w, num_batches=3, batch_size=500)[0] < 0.05
    assert m.frechet_distance(x, other, wx=w) < 0.05


def test_weighted_mmd_with_unit_weights_is_the_unweighted_one():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 3)), rng.normal(0.2, 1.0, (250, 3))
    plain = m.mmd_poly_unbiased(x, y)
    assert m.mmd_poly_unbiased(x, y, wx=np.ones(300), wy=np.ones(250)) == pytest.approx(plain)


def test_the_classifier_with_negative_weights_is_refused_before_training(ntuples, tmp_path):
    """The classifier test cannot take negative weights: a negative factor is refused when the
    config is checked, a negative event weight at ingest's first chunk, with nothing written."""
    settings = _settings(ntuples, validation={"classifier": True})
    settings["data"]["inputs"][0]["weight"] = -0.9
    with pytest.raises(InputError, match=r"data.inputs\[0\].weight.*validation.classifier: false"):
        config.validate(settings)
    # the refine step's classifier learns from the MC's weights: the same for it
    settings = _settings(ntuples, refine={"enabled": True})
    settings["data"]["inputs"][1]["weight"] = -1.1
    with pytest.raises(InputError, match=r"data.inputs\[1\].weight.*refine.enabled: false"):
        config.validate(settings)
    out = tmp_path / "out"
    assert _ingest(_settings(ntuples, validation={"classifier": True}), out) == 2
    assert not out.exists() or list(out.iterdir()) == []
    assert _ingest(_settings(ntuples, refine={"enabled": True}), out) == 2
    assert not out.exists() or list(out.iterdir()) == []


# -- cross-section weights ---------------------------------------------------------------------
def test_cross_section_weights_that_would_starve_a_slice_stop_ingest(ntuples, tmp_path, caplog):
    """The weighted signal fraction (~0.003) generates a handful of signal events, too few for
    validation: ingest says so (before: validate stopped after training), writing nothing."""
    out = tmp_path / "out"
    assert _ingest(_settings(ntuples), out) == 2
    assert "generates the signal at a fraction 0.00" in caplog.text
    assert "sampling.signal_fraction" in caplog.text and "per_process" in caplog.text
    assert not out.exists() or list(out.iterdir()) == []


def _events(n: int, fraction: float, seed: int, xsec: tuple[float, float] | None) -> dict:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < fraction).astype(np.int8)
    ev: dict = {
        "label": label,
        "lepton_pt": 30.0 + rng.exponential(40.0 + 60.0 * label),
        "met": rng.exponential(50.0, n),
    }
    if xsec is not None:
        w = np.where(label == 1, xsec[1], xsec[0]) * rng.uniform(0.5, 1.5, n)
        w[rng.random(n) < 0.05] *= -1.0
        ev["weight"] = w
    return ev


def test_per_process_compares_shapes_at_the_chosen_mixture(tmp_path):
    """MC with cross-section weights (signal 300x smaller) against a perfect generator at a
    chosen 50 % signal: per_process compares each process's shape (the "all" slice too) and
    reports the fraction untested; the whole-measure comparison sees the mixture instead."""
    ref = _events(6000, 0.5, 1, xsec=(1.0, 0.003))
    gen = _events(3000, 0.5, 2, xsec=None)
    kwargs = {"n_null": 20, "classifier": False, "plots": False}
    shapes = validate_samples(
        ref, gen, ["lepton_pt", "met"], tmp_path / "a", normalise="per_process", **kwargs
    )
    total = validate_samples(ref, gen, ["lepton_pt", "met"], tmp_path / "b", **kwargs)

    def ks_all(result: dict) -> dict:
        return next(
            r
            for r in result["rows"]
            if r["metric"] == "ks" and r["slice"] == "all" and r["feature"] == "lepton_pt"
        )

    assert ks_all(total)["status"] == "red"
    assert ks_all(shapes)["status"] != "red"
    assert ks_all(shapes)["value"] < ks_all(total)["value"] / 3
    assert shapes["label_fraction"]["pvalue"] is None
    assert shapes["label_fraction"]["reference"] < 0.01
    assert shapes["label_fraction"]["generated"] == pytest.approx(0.5, abs=0.03)
    assert total["label_fraction"]["pvalue"] < 1e-6


def test_per_process_needs_a_conditional_flow_when_the_config_is_checked(ntuples):
    settings = _settings(
        ntuples, data={"normalise": "per_process"}, training={"conditional": False}
    )
    with pytest.raises(InputError, match="data.normalise.*training.conditional: true"):
        config.validate(settings)


def test_a_chosen_fraction_too_small_for_validation_is_refused_by_the_config(ntuples):
    settings = _settings(ntuples, sampling={"signal_fraction": 0.005})
    with pytest.raises(InputError, match="sampling.signal_fraction generates the signal"):
        config.validate(settings)
    config.validate(_settings(ntuples, sampling={"signal_fraction": 0.5}))


# -- what ingest's tallies say -----------------------------------------------------------------
def _tallies(train: dict, test: dict) -> dict:
    def split(counts: dict) -> dict:
        return {c: Tally(events=n, sum_w=s, sum_w2=abs(s)) for c, (n, s) in counts.items()}

    return {"train": split(train), "val": split(train), "test": split(test)}


def test_ingest_checks_name_the_process_and_the_split():
    cfg = Settings.from_config(
        config.validate({"validation": {"classifier": False}, "sampling": {"events": 5000}})
    )
    ok = _tallies({1: (500, 500.0), 0: (500, 500.0)}, {1: (200, 200.0), 0: (200, 200.0)})
    check_splits(ok, cfg, weighted=True)
    empty = _tallies({0: (500, 500.0)}, {1: (200, 200.0), 0: (200, 200.0)})
    with pytest.raises(InputError, match="training split holds no signal event"):
        check_splits(empty, cfg, weighted=True)
    negative = _tallies({1: (500, -3.0), 0: (500, 500.0)}, {1: (200, 200.0), 0: (200, 200.0)})
    with pytest.raises(InputError, match="signal events of the train split sum to -3"):
        check_splits(negative, cfg, weighted=True)
    few = 2 * MIN_EVENTS - 2
    small = _tallies({1: (500, 500.0), 0: (500, 500.0)}, {1: (few, 1.0 * few), 0: (200, 200.0)})
    with pytest.raises(InputError, match=f"test split holds {few} signal events"):
        check_splits(small, cfg, weighted=True)


def test_per_process_figures_draw_the_mc_at_the_generated_mixture():
    """The figures of a per_process run show the MC at the chosen mixture (the "all" views)
    and each process at its own area (the per-feature figures)."""
    from hepflows.validation.samples import at_mixture, load_sample, per_process

    ref = per_process(load_sample(_events(4000, 0.5, 3, xsec=(1.0, 0.003)), ["met"], "reference"))
    gen = load_sample(_events(1000, 0.3, 4, xsec=None), ["met"], "generated")
    w = at_mixture(ref, gen).w
    assert w is not None
    share = w[ref.label == 1].sum() / w.sum()
    assert share == pytest.approx(np.mean(gen.label == 1), rel=1e-9)
    # within a class the shape (the relative weights) is kept
    sig = ref.label == 1
    assert np.allclose(w[sig] / w[sig].sum(), ref.w[sig] / ref.w[sig].sum())
