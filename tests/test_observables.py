"""The user's observables: any branch name as a feature, ``derived`` expressions with
``name[i]`` and ``len(name)`` of jagged branches, ``labels``, through config and ingest."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from analysis_ntuples import TREE, build

from hepflows import config
from hepflows.cli import main
from hepflows.errors import InputError
from hepflows.events.reader import read_events, read_metadata
from hepflows.events.schema import HIGGS_FEATURES
from hepflows.settings import AxisLabel, Settings

FEATURES = ["lep_pt", "met_met", "n_bjets", "mbb"]
DERIVED = {"HT": "jet_pt[0] + jet_pt[1] + lep_pt", "jet3_pt": "jet_pt[2]"}


@pytest.fixture(scope="module")
def ntuples(tmp_path_factory):
    d = tmp_path_factory.mktemp("ntuples")
    return build(d, negative_fraction=0.05, xsec={"signal": 0.01, "ttbar": 0.5})


def _settings(inputs, **top) -> dict:
    data = {
        "source": "root",
        "inputs": inputs,
        "weight_branch": "weight_mc",
        "selection": "(lep_pt > 25) & (len(jet_pt) >= 3)",
    }
    data.update(top.pop("data", {}))
    # NLO-like weights, some negative: the classifier judges cannot take them
    top.setdefault("validation", {"classifier": False})
    return {"seed": 3, "features": FEATURES, "derived": DERIVED, "data": data, **top}


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


def test_config_takes_the_users_names_and_derived(ntuples):
    from hepflows.events.observables import feature_names

    settings = Settings.from_config(config.validate(_settings(ntuples), source="t"))
    assert feature_names(settings.features, settings.derived) == (*FEATURES, "HT", "jet3_pt")
    # a derived name that is also listed keeps its place among the features
    assert feature_names(["HT", "lep_pt"], settings.derived) == ("HT", "lep_pt", "jet3_pt")
    assert feature_names("all") == HIGGS_FEATURES


@pytest.mark.parametrize(
    ("top", "words"),
    [
        ({"data": {"source": "generator"}}, "unknown feature(s) ['lep_pt'"),
        ({"features": ["lep_pt", "jet_pt[0]"]}, 'derived: {jet_pt_0: "jet_pt[0]"}'),
        ({"features": ["lep_pt", "label"]}, "'label' is the event files' label branch"),
        ({"discrete": ["n_jets"]}, "discrete: ['n_jets'] are not features"),
        ({"labels": {"pt": {"label": "x"}}}, "labels: ['pt'] are not features"),
        ({"data": {"branch_map": {"met": "met_met"}}}, "branch_map: ['met'] are not features"),
    ],
)
def test_config_refuses_what_is_not_an_observable(ntuples, top, words):
    settings = _settings(ntuples, **top)
    if top.get("data", {}).get("source") == "generator":
        settings.pop("derived")
        settings["data"] = {"source": "generator"}
    with pytest.raises(InputError) as info:
        config.validate(settings, source="my.yaml")
    assert words in str(info.value) and "my.yaml" in str(info.value)


def test_ingest_writes_the_users_names_and_derived_values(ntuples, tmp_path):
    out = tmp_path / "out"
    assert _ingest(_settings(ntuples), out) == 0
    names = (*FEATURES, "HT", "jet3_pt")
    ev = {k: read_events(out / f"{k}.root", names) for k in ("train", "val", "test")}
    got = {n: np.concatenate([e[n] for e in ev.values()]) for n in names}
    # the same events recomputed from the files with awkward
    expected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for entry in ntuples:
        with uproot.open(entry["path"]) as f:
            a = f[TREE].arrays(["lep_pt", "met_met", "n_bjets", "mbb", "jet_pt"])
        a = a[(a.lep_pt > 25) & (ak.num(a.jet_pt) >= 3)]
        for n in FEATURES:
            expected[n].append(ak.to_numpy(a[n]).astype(np.float32))
        expected["HT"].append(ak.to_numpy(a.jet_pt[:, 0] + a.jet_pt[:, 1] + a.lep_pt))
        expected["jet3_pt"].append(ak.to_numpy(a.jet_pt[:, 2]))
    order = np.lexsort((got["HT"], got["lep_pt"]))
    for n in names:
        want = np.concatenate(expected[n]).astype(np.float32)
        want_order = np.lexsort(
            (np.concatenate(expected["HT"]).astype(np.float32), np.concatenate(expected["lep_pt"]))
        )
        np.testing.assert_allclose(got[n][order], want[want_order], rtol=1e-6)
    assert set(np.unique(got["n_bjets"])) == {0.0, 1.0, 2.0}
    with uproot.open(out / "train.root") as f:
        assert set(f["events"].keys()) == {*names, "label", "weight"}
    # found at ingest: the integer-valued features, modelled as discrete by the preprocessing
    assert read_metadata(out / "train.root")["integer_features"] == ["n_bjets"]
    settings = _settings(ntuples, preprocess={"discrete_values": 0})
    args = ["preprocess", "--quiet", "--settings", json.dumps(settings)]
    assert main([*args, "--train", str(out / "train.root"), "--out", str(out / "p.json")]) == 0
    assert list(json.loads((out / "p.json").read_text())["discrete"]) == ["n_bjets"]


def test_an_event_without_the_element_is_refused_by_name(ntuples, tmp_path, caplog):
    out = tmp_path / "out"
    settings = _settings(ntuples, data={"selection": "lep_pt > 25"})
    assert _ingest(settings, out) == 2
    assert not out.exists() or not any(out.iterdir())
    message = caplog.text
    for words in ("ttbar_0.root", "derived.jet3_pt", "jet_pt[2]", "branch 'jet_pt'", "entry 2"):
        assert words in message, message
    assert "len(jet_pt) >= 3" in message


def test_a_scalar_branch_read_as_a_collection_is_named(ntuples, tmp_path, caplog):
    out = tmp_path / "out"
    settings = _settings(ntuples, derived={"x": "lep_eta[0]"})
    assert _ingest(settings, out) == 2
    assert not out.exists() or not any(out.iterdir())
    assert "branch 'lep_eta' holds one number per event, not a collection" in caplog.text


def test_labels_give_axis_labels_and_higgs_names_keep_theirs():
    from hepflows.events.observables import axis_label, unit

    labels = {"lep_pt": AxisLabel("$p_T^\\ell$", "GeV"), "n_bjets": AxisLabel("b-jets")}
    assert axis_label("lep_pt", labels) == "$p_T^\\ell$ [GeV]"
    assert axis_label("lep_pt", labels, units="none") == "$p_T^\\ell$"
    assert axis_label("n_bjets", labels) == "b-jets"
    assert axis_label("mbb", labels) == "mbb"
    assert axis_label("m_bb") == "$m_{bb}$ [GeV]"
    assert unit("lep_pt", labels) == "GeV" and unit("n_bjets", labels) == ""
    assert unit("m_bb") == "GeV" and unit("mbb") == ""
    # as the steps hand them to the figures: the config's labels settings
    s = Settings.from_config(
        config.validate(
            {
                "data": {"source": "root", "path": "a.root"},
                "features": ["lep_pt", "n_bjets"],
                "labels": {"lep_pt": {"label": "$p_T^\\ell$", "unit": "GeV"}},
            }
        )
    )
    assert axis_label("lep_pt", s.labels) == "$p_T^\\ell$ [GeV]"
    assert axis_label("n_bjets", s.labels) == "n_bjets"


def test_features_are_the_users_branch_names(ntuples, tmp_path):
    """Failure 1 of the analysis trial: ``features: [lep_pt, ...]`` was refused."""
    out = tmp_path / "out"
    settings = _settings(ntuples, data={"selection": "lep_pt > 25"})
    settings.pop("derived")
    settings["features"] = ["lep_pt", "met_met", "mbb"]
    assert _ingest(settings, out) == 0
    ev = read_events(out / "train.root", ["lep_pt", "met_met", "mbb"])
    assert ev["lep_pt"].min() > 25 and ev["met_met"].dtype == np.float32


@pytest.mark.parametrize(
    ("features", "derived", "words"),
    [
        (["lep_pt", "jet_pt"], {}, "hold several values per event"),
        (["lep_pt", "jet_pt"], {"HT": "jet_pt[0] + lep_pt"}, "read as collections"),
    ],
)
def test_a_collection_is_no_feature(ntuples, tmp_path, caplog, features, derived, words):
    out = tmp_path / "out"
    settings = _settings(ntuples, data={"selection": "lep_pt > 25"})
    settings.update(features=features, derived=derived)
    assert _ingest(settings, out) == 2
    assert not out.exists() or not any(out.iterdir())
    assert words in caplog.text and "jet_pt" in caplog.text
