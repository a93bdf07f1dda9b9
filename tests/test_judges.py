"""The classifier panel: families, derived observables and the most sensitive judge's verdict."""

from __future__ import annotations

import numpy as np
import pytest

from hepflows.errors import InputError
from hepflows.report.runner import validate_samples
from hepflows.report.tables import refine_html
from hepflows.validation.classifier import classifier_two_sample
from hepflows.validation.derived import HIGGS_DERIVED, derived_columns, derived_expressions

FEATURES = ("m_wbb", "m_wwbb")


def diagonal_events(n: int, seed: int, width: float) -> dict:
    """Broad m_wbb (GeV) and m_wwbb = m_wbb + a narrow gap of ``width``: the marginals barely
    depend on ``width``, the difference m_wwbb - m_wbb does."""
    rng = np.random.default_rng(seed)
    m_wbb = rng.exponential(800.0, n) + 100.0
    gap = rng.normal(100.0, width, n)
    return {
        "label": (rng.random(n) < 0.5).astype(np.int8),
        "m_wbb": m_wbb.astype(np.float32),
        "m_wwbb": (m_wbb + gap).astype(np.float32),
    }


def run(tmp_path, **kwargs) -> dict:
    return validate_samples(
        diagonal_events(6000, 1, 10.0),
        diagonal_events(3000, 2, 14.0),
        FEATURES,
        tmp_path,
        n_null=20,
        seed=0,
        plots=False,
        n_null_classifier=2,
        **kwargs,
    )


def test_a_derived_observable_catches_what_trees_on_the_features_miss(tmp_path):
    trees_only = run(tmp_path / "trees", judge_families=("gbt",), derived={})
    panel = run(tmp_path / "panel")

    # the tree judge alone (the validation before the panel) passes the mismodelled gap
    assert trees_only["classifier"]["auc"] < trees_only["classifier"]["null"]["edge"]
    verdict = next(v for v in panel["verdict"] if v["metric"] == "classifier_auc")
    assert verdict["status"] == "red"
    assert "derived" in verdict["worst_feature"]
    judges = {j["name"]: j for j in panel["classifier"]["judges"]}
    assert set(judges) == {"gbt", "mlp", "gbt + derived", "mlp + derived"}
    assert judges["gbt + derived"]["auc"] > judges["gbt"]["auc"] + 0.02
    assert judges[verdict["worst_feature"]]["verdict"]
    assert panel["classifier"]["judge"]["name"] == verdict["worst_feature"]
    assert "m_wwbb-m_wbb" in judges["gbt + derived"]["inputs"]
    # which judge saw what, in the verdict page
    page = (tmp_path / "panel" / "verdict.html").read_text()
    assert "Judge mlp + derived" in page and "gives the verdict" in page


def test_mc_against_mc_passes_every_judge(tmp_path):
    result = validate_samples(
        diagonal_events(4000, 3, 10.0),
        diagonal_events(2000, 4, 10.0),
        FEATURES,
        tmp_path,
        n_null=20,
        seed=0,
        plots=False,
        n_null_classifier=2,
    )
    verdict = next(v for v in result["verdict"] if v["metric"] == "classifier_auc")
    assert verdict["n_tested"] == 4
    # the Bonferroni edge of 4 judges is wider than one judge's 95 % edge
    sigma = result["classifier"]["sigma_null"]
    assert result["classifier"]["null"]["edge"] > 0.5 + 1.645 * sigma
    assert all(j["auc"] < j["edge"] for j in result["classifier"]["judges"])


def test_mlp_family_separates_shifted_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)) + [0.5, 0.0, 0.0]
    assert classifier_two_sample(a, b, seed=0, n_bootstrap=0, family="mlp")["auc"] > 0.6
    with pytest.raises(ValueError, match="family 'svm'"):
        classifier_two_sample(a, b, seed=0, n_bootstrap=0, family="svm")


def test_derived_expressions_defaults_and_errors():
    # the defaults keep what the features can form, the user's own must name features
    assert set(derived_expressions(None, FEATURES)) == {"m_wwbb/m_wbb", "m_wwbb-m_wbb"}
    assert derived_expressions(None, ("a", "b")) == {}
    assert len(derived_expressions(None, list(_higgs_features()))) == len(HIGGS_DERIVED)
    with pytest.raises(InputError, match=r"validation.judges.derived.r .*unknown feature"):
        derived_expressions({"r": "m_wbb / m_jj"}, FEATURES)
    with pytest.raises(InputError, match="not allowed"):
        derived_expressions({"r": "m_wbb.mean()"}, FEATURES)
    x = np.array([[100.0, 150.0], [0.0, 50.0]])
    cols = derived_columns(x, FEATURES, derived_expressions({"r": "m_wwbb / m_wbb"}, FEATURES))
    assert cols[:, 0].tolist() == [1.5, 0.0]  # 50 / 0 is inf: replaced, the judge takes it


def _higgs_features() -> tuple[str, ...]:
    from hepflows.events.schema import CONTINUOUS_FEATURES

    return CONTINUOUS_FEATURES


def test_refine_comparison_marks_the_reweighters_family():
    def metrics(aucs: dict) -> dict:
        judges = [
            {"name": n, "family": n.split()[0], "auc": a, "verdict": False} for n, a in aucs.items()
        ]
        return {
            "overall_status": "red",
            "verdict": [],
            "classifier": {"auc": max(aucs.values()), "judges": judges},
            "sizes": {"generated": 100},
        }

    report = {
        "fit": {
            "n_mc": 10,
            "n_generated": 10,
            "auc_check": 0.5,
            "ece_uncalibrated": 0.01,
            "ece_calibrated": 0.01,
            "family": "gbt",
        },
        "weights": {
            "events": 100,
            "ess": 80.0,
            "fraction_clipped": 0.0,
            "clip": 10.0,
            "max_before_clip": 3.0,
        },
        "disjoint": "disjoint",
    }
    page = refine_html(
        metrics({"gbt": 0.57, "mlp": 0.58}), metrics({"gbt": 0.52, "mlp": 0.56}), report
    )
    assert "AUC of judge gbt (the reweighter's family)" in page
    assert "AUC of judge mlp</td>" in page
