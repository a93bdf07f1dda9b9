"""The validation's work shared by a pool of processes: the same numbers and figures for any
number of workers, the figure text of the caller, a worker's error raised as itself."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from test_validation_runner import FEATURES, events
from threadpoolctl import threadpool_info

from hepflows.errors import InputError
from hepflows.parallel import default_workers, task_pool
from hepflows.report import plots
from hepflows.report.runner import validate_samples


def _threads() -> int:
    return max((lib["num_threads"] for lib in threadpool_info()), default=1)


def _warn(n: int) -> int:
    warnings.warn(f"clipped to {n}", UserWarning, stacklevel=1)
    return n


def _fail(path: str) -> None:
    raise InputError(f"{path}: no events")


def test_task_pool_keeps_order_runs_one_thread_a_task_and_raises_the_tasks_error():
    tasks = [(pow, (k, 2), {}) for k in range(7)]
    with task_pool(2) as run:
        assert run(tasks) == [k * k for k in range(7)]
        assert run([(_threads, (), {})] * 2) == [1, 1]  # two workers never fight for cores
        with pytest.warns(UserWarning, match="clipped to 3"):  # a worker's warning reaches us
            assert run([(_warn, (3,), {})]) == [3]
        with pytest.raises(InputError, match="bad.root: no events"):
            run([(pow, (2, 3), {}), (_fail, ("bad.root",), {})])
    with task_pool(1) as run:
        assert run(tasks) == [k * k for k in range(7)]
    assert 1 <= default_workers() <= 2


def _result(out: Path) -> dict:
    result = json.loads((out / "metrics.json").read_text())
    result.pop("runtime_s")
    return result


def test_workers_give_the_same_numbers_and_figures_as_one_process(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_nll,val_nll\n1,3.0,3.1\n2,2.9,3.0\n")
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        # a text of the caller's: the workers draw with it too
        with plots.figure_text(label="MyExp", energy="13.6 TeV", lumi="1 fb$^{-1}$"):
            validate_samples(
                events(1200, 1, weights=True),
                events(600, 2),
                FEATURES,
                out,
                n_null=20,
                n_null_classifier=3,
                seed=5,
                training_log=log,
                workers=workers,
                derived={"pt_sum": "lepton_pt + met"},
            )
        outputs[workers] = out
    one, two = outputs[1], outputs[2]
    assert _result(one) == _result(two)
    assert _result(one)["classifier"]["judges"]  # the judges ran, and agree to the bit
    for name in ("metrics.csv", "verdict.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    pngs = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(pngs) >= len(FEATURES) + 3
    assert pngs == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    differ = [str(p) for p in pngs if (one / p).read_bytes() != (two / p).read_bytes()]
    assert not differ, differ


def test_small_samples_stay_in_one_process_by_default(tmp_path, monkeypatch):
    from hepflows.report import runner

    asked = []
    pool = runner.task_pool

    def spy(workers: int):
        asked.append(workers)
        return pool(workers)

    monkeypatch.setattr(runner, "task_pool", spy)
    validate_samples(
        events(600, 1), events(300, 2), FEATURES, tmp_path, n_null=5, classifier=False, plots=False
    )
    assert asked == [1]  # below POOL_MIN_EVENTS the pool's start-up would cost more


def test_a_workers_error_is_the_users_message(tmp_path):
    bad_log = tmp_path / "log.csv"
    bad_log.write_text("epoch,loss\n1,3.0\n")
    with pytest.raises(InputError, match="log.csv: header"):
        validate_samples(
            events(600, 1),
            events(300, 2),
            FEATURES,
            tmp_path / "out",
            n_null=5,
            classifier=False,
            training_log=bad_log,
            workers=2,
        )


@pytest.fixture()
def fit_threads(monkeypatch):
    """The most OpenMP threads any gradient-boosted fit was allowed."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    seen: list[int] = []
    fit = HistGradientBoostingClassifier.fit

    def spy(self, *args, **kwargs):
        seen.append(_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", spy)
    return seen


def test_the_judges_and_the_closure_fit_on_one_thread(tmp_path, fit_threads):
    """Threads that spin and wait on a busy machine made these fits 10-50x slower."""
    from threadpoolctl import threadpool_limits

    from hepflows.validation.closure import write_closure

    ref, gen = events(600, 1), events(300, 2)
    with threadpool_limits(limits=2):  # what a 2-core machine gives by default
        validate_samples(ref, gen, FEATURES, tmp_path, n_null=5, plots=False, workers=1)
        write_closure(events(600, 3), ref, gen, FEATURES, tmp_path / "closure.csv", seed=1)
    assert len(fit_threads) >= 2 + 1  # judges and the closure's classifier
    assert max(fit_threads) == 1, fit_threads
