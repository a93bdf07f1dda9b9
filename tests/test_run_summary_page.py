"""The summary page speaks of the run it summarises: the events the model really trained on,
and the physics closure in the verdict sentence."""

from __future__ import annotations

from test_validation_runner import FEATURES, events

from hepflows import config as hepflows_config
from hepflows import layout
from hepflows.events.writer import write_events
from hepflows.report.run_summary import summary_html, verdict_sentence
from hepflows.report.runner import validate_samples
from hepflows.settings import Settings

CLOSURE = (
    "check,value,error\n"
    "signal/background classifier AUC on MC,0.934,0.004\n"
    "signal/background classifier AUC on generated,0.547,0.006\n"
    "AUC generated - MC,-0.387,0.007\n"
)


def test_summary_counts_the_training_file_and_quotes_the_closure(tmp_path):
    run = tmp_path / "mine"
    metrics = validate_samples(
        events(800, 1),
        events(400, 2),
        FEATURES,
        run / "validation",
        n_null=20,
        plots=False,
        classifier=False,
        seed=1,
    )
    (run / layout.MODEL_FILES["closure"]).write_text(CLOSURE)
    (run / "model").mkdir()
    (run / layout.MODEL_FILES["log"]).write_text("epoch,train_nll,val_nll\n1,2.0,2.1\n")
    (run / "data").mkdir()
    write_events(run / layout.RUN_FILES["train"], events(7840, 3))
    cfg = hepflows_config.validate({"run": "mine", "features": list(FEATURES)})
    settings = Settings.from_config(cfg)
    assert settings.data.events.train == 30_000  # the generator's default, not this run's
    page = summary_html(settings, run, [(run, None)], commit="abc")
    assert "7,840" in page and "30,000" not in page
    # the run's identity: the hash of every section of the validated config
    assert f"<code>{hepflows_config.section_hash(cfg, sorted(cfg))}</code>" in page
    assert "physics closure: signal/background AUC 0.934 \u00b1 0.004 on MC" in page
    assert "0.547 \u00b1 0.006 on generated events" in page
    # without a closure table the sentence stays as it was
    assert "closure" not in verdict_sentence(metrics)
