"""The embedded generator against the real HIGGS rows: the calibration targets.

Needs ``../shared/data/higgs/higgs_real_subset.csv.gz`` (15,977 real events); skipped with the
reason otherwise.  ``python benchmarks/generator_vs_higgs.py`` prints the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hepflows.events import calibration as cal
from hepflows.events.generator import HIGGS_SIGNAL_FRACTION, generate
from hepflows.events.schema import LABEL

REAL = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "higgs" / "higgs_real_subset.csv.gz"
)


@pytest.fixture(scope="module")
def comparison() -> dict:
    if not REAL.exists():
        pytest.skip(f"real HIGGS subset not present at {REAL}")
    # 300k events: with 60k the modes of the broad t tbar masses move by several per cent
    # from one seed to another (m_bb: -7 +- 5 % over five seeds of version 2).
    gen = generate(300_000, seed=7, units="higgs")
    return cal.compare(gen, cal.read_real(REAL))


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_median_ks_distance_meets_the_target(comparison, process):
    ks = comparison["ks"][process]
    assert len(ks) == 22
    assert np.median(list(ks.values())) <= cal.KS_MEDIAN_TARGET, ks


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_every_ks_distance_meets_the_target(comparison, process):
    over = {
        f: round(d, 3) for f, d in comparison["ks"][process].items() if d > cal.KS_FEATURE_TARGET
    }
    assert not over, over


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_ks_distances_stay_near_the_target(comparison, process):
    # What the tune reached, so that a change that undoes it fails here.
    worst = max(comparison["ks"][process].values())
    assert worst <= 0.09, comparison["ks"][process]


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_mass_peak_widths_meet_the_target(comparison, process):
    off = {
        m: round(p["width_ratio"], 2)
        for m, p in comparison["peaks"][process].items()
        if abs(p["width_ratio"] - 1) > cal.PEAK_WIDTH_TOLERANCE
    }
    assert not off, off


_PEAKS_OFF = pytest.mark.xfail(
    strict=True,
    reason="m_jj 4 % and m_jjj 3 % low in signal, the broad m_bb 5 % low in t tbar (one scale "
    "per feature for both processes); docs/generator.md, 'Fourth round'",
)


@pytest.mark.parametrize("process", [pytest.param(p, marks=_PEAKS_OFF) for p in cal.PROCESSES])
def test_mass_peak_positions_meet_the_target(comparison, process):
    shifted = {
        m: round(p["position_shift"], 3)
        for m, p in comparison["peaks"][process].items()
        if abs(p["position_shift"]) > cal.PEAK_POSITION_TOLERANCE
    }
    assert not shifted, shifted


@pytest.mark.parametrize("process", list(cal.PROCESSES))
def test_mass_peak_positions_stay_near_the_target(comparison, process):
    worst = max(abs(p["position_shift"]) for p in comparison["peaks"][process].values())
    assert worst <= 0.07, comparison["peaks"][process]


def test_signal_fraction_is_the_datasets(comparison):
    assert comparison["signal_fraction"]["real"] == pytest.approx(0.532, abs=1e-3)
    assert comparison["signal_fraction"]["generator"] == pytest.approx(
        HIGGS_SIGNAL_FRACTION, abs=0.01
    )


def test_peak_finds_a_known_line():
    # A Gaussian line on a flat floor: the mode and FWHM/mode of the construction.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1.0, 0.1, 200_000), rng.uniform(0.0, 3.0, 20_000)])
    position, width = cal.peak(x, np.linspace(0.0, 3.0, 301))
    assert position == pytest.approx(1.0, abs=0.01)
    assert width == pytest.approx(2.3548 * 0.1, rel=0.08)


def test_compare_sees_a_shifted_sample():
    # The same generator against itself is close; scaling one feature by 10 % is seen.
    a = generate(20_000, seed=1, units="higgs")
    b = generate(20_000, seed=2, units="higgs")
    same = cal.compare(a, b)
    assert same["summary"]["signal"]["ks_max"] < 0.05
    b["m_bb"] = b["m_bb"] * 1.1
    shifted = cal.compare(a, b)
    assert "m_bb" in shifted["summary"]["signal"]["ks_over_target"]
    assert abs(shifted["peaks"]["signal"]["m_bb"]["position_shift"] + 0.09) < 0.03
    assert np.mean(a[LABEL]) == pytest.approx(HIGGS_SIGNAL_FRACTION, abs=0.02)
