"""The validation step: null band, verdict and the files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hepflows.errors import InputError
from hepflows.report.runner import validate_samples
from hepflows.report.tables import verdict_html, verdict_rst
from hepflows.validation import null as nl
from hepflows.validation.judge import FEATURE_METRICS, JOINT_METRICS

FEATURES = ("lepton_pt", "lepton_eta", "met", "m_bb")


def events(n: int, seed: int, *, pt_scale: float = 1.0, weights: bool = False) -> dict:
    """Toy events in the HIGGS layout: signal harder and wider than background."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.5).astype(np.int8)
    z = rng.normal(size=(n, len(FEATURES)))
    z[:, 3] = 0.6 * z[:, 0] + 0.8 * z[:, 3]  # a correlation for the joint metrics
    out: dict = {"label": label}
    for j, f in enumerate(FEATURES):
        if f.endswith("_eta"):
            out[f] = (z[:, j] * (1 + 0.2 * label)).astype(np.float32)
        else:
            out[f] = np.exp(3.8 + 0.4 * z[:, j] + 0.3 * label).astype(np.float32)
    out["lepton_pt"] = (out["lepton_pt"] * pt_scale).astype(np.float32)
    if weights:
        out["weight"] = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    return out


# -- the null band ---------------------------------------------------------------------------


def test_band_edge_is_the_conformal_order_statistic():
    assert nl.band_rank(20) == 20 and nl.chance_rate(20) == pytest.approx(1 / 21)
    assert nl.band_rank(100) == 96 and nl.chance_rate(100) == pytest.approx(5 / 101)
    null = np.arange(20.0)[::-1, None]
    assert nl.band_edge(null)[0] == 19.0
    # exceedance of a fresh exchangeable value is the stated chance rate, unlike np.percentile
    u = np.random.default_rng(0).random((21, 40_000))
    assert np.mean(u[20] > nl.band_edge(u[:20])) == pytest.approx(1 / 21, abs=0.004)
    assert np.mean(u[20] > np.percentile(u[:20], 95, axis=0)) > 0.08


def test_empirical_pvalue_and_status():
    null = np.arange(1.0, 21.0)[:, None]
    assert nl.empirical_pvalue(np.array([0.5]), null)[0] == 1.0
    assert nl.empirical_pvalue(np.array([25.0]), null)[0] == pytest.approx(1 / 21)
    assert nl.empirical_pvalue(np.array([20.0]), null)[0] == pytest.approx(2 / 21)
    assert [nl.status(r) for r in (0.9, 1.0, 1.2, 1.5, 1.51, np.inf, np.nan)] == [
        "green",
        "green",
        "amber",
        "amber",
        "red",
        "red",
        "n/a",
    ]
    assert nl.ratio(0.56, 0.53, baseline=0.5) == pytest.approx(2.0)


def test_leave_one_out_matches_brute_force():
    null = np.random.default_rng(1).exponential(size=(20, 9))
    count, worst = nl.leave_one_out(null)
    for k in range(20):
        edge = nl.band_edge(np.delete(null, k, axis=0))
        assert count[k] == np.sum(null[k] > edge)
        assert worst[k] == pytest.approx(np.max(null[k] / edge))


# -- validate_samples -----------------------------------------------------------------------


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_distribution_is_mostly_green_and_writes_every_file(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_nll,val_nll,lr\n1,3.0,3.1,0.001\n2,2.5,2.7,0.0005\n")
    out = tmp_path / "validation"
    result = validate_samples(
        events(1600, 1), events(800, 2), FEATURES, out, n_null=20, seed=0, training_log=log
    )

    for name in ("metrics.json", "metrics.csv", "verdict.csv", "verdict.html"):
        assert (out / name).stat().st_size > 0, name
    for base in (*FEATURES, "correlation_difference", "classifier_roc", "training_curve"):
        assert (out / "plots" / f"{base}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", base
        assert (out / "plots" / f"{base}.pdf").read_bytes()[:4] == b"%PDF", base
    assert not list(out.rglob("*.tmp"))

    rows = read_csv(out / "metrics.csv")
    n_slices = 3
    # the classifier panel: gbt and mlp, on the features and with the derived observables
    # (log_lepton_pt, log_met of the defaults are formed from these features)
    n_judges = 4
    expected = (
        len(FEATURE_METRICS) * len(FEATURES) * n_slices + len(JOINT_METRICS) * n_slices + n_judges
    )
    assert len(rows) == expected
    assert list(rows[0]) == [
        "feature",
        "slice",
        "metric",
        "value",
        "null_mean",
        "null_p95",
        "ratio",
        "pvalue",
        "status",
    ]
    verdict = read_csv(out / "verdict.csv")
    assert [v["metric"] for v in verdict] == [*FEATURE_METRICS, *JOINT_METRICS, "classifier_auc"]
    assert json.loads((out / "metrics.json").read_text())["verdict"] == result["verdict"]

    statuses = [r["status"] for r in rows]
    assert statuses.count("green") >= 0.8 * len(rows)
    assert all(v["status"] != "red" for v in verdict)
    ks = next(v for v in result["verdict"] if v["metric"] == "ks")
    assert ks["n_tested"] == len(FEATURES) * n_slices
    assert ks["n_expected"] == pytest.approx(ks["n_tested"] / 21)
    assert 0.4 < result["classifier"]["auc"] < 0.6
    assert result["sizes"]["compared_per_sample"]["signal"] <= 400


def test_shifted_feature_is_red_and_named(tmp_path):
    result = validate_samples(
        events(1600, 3),
        events(800, 4, pt_scale=1.25),
        FEATURES,
        tmp_path,
        n_null=20,
        seed=1,
        classifier=False,
        plots=False,
    )
    ks = next(v for v in result["verdict"] if v["metric"] == "ks")
    assert ks["status"] == "red" and ks["worst_feature"] == "lepton_pt"
    lepton_rows = [r for r in result["rows"] if r["metric"] == "ks" and r["feature"] == "lepton_pt"]
    assert {r["status"] for r in lepton_rows} == {"red"}
    assert all(r["pvalue"] == pytest.approx(1 / 21) for r in lepton_rows)
    # an unshifted feature stays inside the band in the "all" slice
    eta = next(
        r
        for r in result["rows"]
        if r["metric"] == "ks" and r["feature"] == "lepton_eta" and r["slice"] == "all"
    )
    assert eta["status"] == "green"
    assert result["analytic_pvalues"]["ks_pvalue"]["lepton_pt"]["all"] < 1e-4
    assert result["overall_status"] == "red"


def test_independent_null_reference_and_weights(tmp_path):
    result = validate_samples(
        events(1000, 5, weights=True),
        events(1000, 6),
        FEATURES,
        tmp_path,
        null_reference=events(1000, 7, weights=True),
        n_null=20,
        seed=2,
        classifier=False,
        plots=False,
    )
    assert "null_reference" in result["settings"]["null_method"]
    # with a separate null sample the generated events meet the whole reference
    per_class = result["sizes"]["compared_per_sample"]
    assert sum(per_class.values()) > 800
    assert all(r["value"] is not None for r in result["rows"])
    assert sum(r["status"] == "red" for r in result["rows"]) <= 3


def test_bad_input_is_named(tmp_path):
    ref, gen = events(400, 8), events(400, 9)
    del gen["met"]
    with pytest.raises(InputError, match="met"):
        validate_samples(ref, gen, FEATURES, tmp_path, plots=False, classifier=False)
    gen = events(400, 9)
    gen["m_bb"][3] = np.nan
    with pytest.raises(InputError, match="m_bb"):
        validate_samples(ref, gen, FEATURES, tmp_path, plots=False, classifier=False)
    with pytest.raises(InputError, match="at least"):
        validate_samples(
            events(30, 8), events(30, 9), FEATURES, tmp_path, plots=False, classifier=False
        )


def test_verdict_tables_render_colours():
    metrics = {
        "settings": {"band": {"rank": 20, "n_null": 20, "chance_rate": 1 / 21}},
        "overall_status": "red",
        "verdict": [
            {
                "metric": "ks",
                "n_tested": 54,
                "n_outside": 3,
                "n_expected": 2.57,
                "n_outside_null_p95": 6.0,
                "worst_feature": "m_bb",
                "worst_slice": "all",
                "worst_ratio": 1.2,
                "worst_ratio_null_p95": 1.7,
                "status": "green",
            },
            {
                "metric": "fpd",
                "n_tested": 3,
                "n_outside": 3,
                "n_expected": 0.14,
                "n_outside_null_p95": 1.0,
                "worst_feature": "joint",
                "worst_slice": "signal",
                "worst_ratio": 4.0,
                "worst_ratio_null_p95": 1.2,
                "status": "red",
            },
        ],
        "classifier": None,
        "label_fraction": {"reference": 0.5, "generated": 0.47, "pvalue": 0.01},
    }
    page = verdict_html(metrics)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<tr>") == 3
    assert "#b7e1a1" in page and "#f4a3a3" in page  # a green and a red cell
    assert "m_bb (all)" in page and "0.470" in page
    rst = verdict_rst(metrics)
    assert ".. list-table::" in rst and "**red**" in rst and "3 / 3" in rst


def test_the_verdict_and_refine_tables_build_their_cells_one_way() -> None:
    # one cell builder for every report table: a status cell is bold on its status's colour
    # (an unknown status on the unknown colour) and its text is the caller's, already HTML;
    # one row builder per metric for the HTML and the reStructuredText verdicts
    from hepflows.report.tables import _cell, _verdict_cells
    from hepflows.validation import null as nl

    red = _cell("3 / 3 red", status="red")
    assert f"background:{nl.STATUS_COLOURS['red']};font-weight:bold" in red
    assert f"background:{nl.STATUS_COLOURS[nl.UNKNOWN]}" in _cell("?", status="odd")
    assert (
        _cell("a &lt; b", tag="th")
        == '<th style="border:1px solid #999;padding:4px 8px">a &lt; b</th>'
    )
    row = {
        "metric": "fpd",
        "n_tested": 3,
        "n_outside": 3,
        "n_expected": 0.14,
        "n_outside_null_p95": None,
        "worst_feature": "m<bb>",
        "worst_slice": "all",
        "worst_ratio": float("inf"),
        "status": "red",
    }
    cells = _verdict_cells(row)
    assert cells["Outside band"] == "3 / 3" and cells["Null 95 % of count"] == "-"
    assert cells["Worst cell"] == "m<bb> (all)" and cells["Worst ratio"] == "inf"
    metrics = {
        "settings": {"band": {"rank": 19, "n_null": 20, "chance_rate": 0.05}},
        "overall_status": "red",
        "verdict": [row],
    }
    assert "m&lt;bb&gt; (all)" in verdict_html(metrics)  # escaped in HTML, as it is in text
    assert "     - m<bb> (all)" in verdict_rst(metrics)


@pytest.mark.slow
def test_null_is_calibrated_under_the_null_hypothesis(tmp_path):
    """Over many seeds, about 5 % of cells fall outside the band when the flow is perfect."""
    outside = []
    for seed in range(15):
        result = validate_samples(
            events(1600, 100 + seed),
            events(800, 200 + seed),
            FEATURES,
            tmp_path,
            n_null=20,
            seed=seed,
            classifier=False,
            plots=False,
        )
        outside += [
            r["value"] > r["null_p95"] for r in result["rows"] if r["metric"] in ("ks", "chi2_ndf")
        ]
    assert np.mean(outside) < 0.09


@pytest.mark.slow
def test_full_size_run_is_fast(tmp_path):
    """5k reference, 5k generated, 18 features, 20 null pairs, classifier and plots."""
    import time

    from hepflows.events.schema import CONTINUOUS_FEATURES

    rng = np.random.default_rng(0)

    def sample(n: int) -> dict:
        out = {f: np.exp(rng.normal(4, 0.4, n)).astype(np.float32) for f in CONTINUOUS_FEATURES}
        out["label"] = (rng.random(n) < 0.5).astype(np.int8)
        return out

    # CPU time of this process: wall time on a shared machine measures the neighbours too
    start = time.process_time()
    # workers=1: all the work in this process, where process_time sees it
    validate_samples(
        sample(5000), sample(5000), CONTINUOUS_FEATURES, tmp_path, n_null=20, workers=1
    )
    assert time.process_time() - start < 60
