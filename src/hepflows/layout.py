"""The results layout: where every output of a run lives and which step writes it.

This module is the one map of ``results/<run>/``.  The Snakemake rules (``workflow/rules/``),
``hepflows run`` (:mod:`hepflows.pipeline`) and the tests all take their paths from it, so
that files made by the scripts and by Snakemake carry the same names.  Nothing here imports
more than the standard library: the Snakefile reads it while parsing the DAG.

Paths are relative: :data:`RUN_FILES` to a run's folder ``results/<run>/``, :data:`MODEL_FILES`
to a model's folder, which is the run's folder itself, or ``models/<name>/`` in it for each
model of a grid (config ``models:``).  Patterns hold Snakemake wildcards (``{split}``,
``{shard}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where runs go, one folder per config ``run`` name.
RESULTS = "results"

#: A grid's models, one folder each below the run's folder.
MODELS = "models"

#: Files of a run that every model of a grid shares: the data and their preprocessing.
RUN_FILES: dict[str, str] = {
    "train": "data/train.root",
    "val": "data/val.root",
    "test": "data/test.root",
    "truth": "data/truth.root",  # generator data: the amplification's truth, a disjoint range
    "refine_mc": "data/refine.root",  # generator data: the refine classifier's MC, another range
    "data_split": "data/{split}.root",
    "data_shards": "data/shards",
    "data_shard": "data/shards/{split}_{shard}.root",
    "preprocess": "preprocess.json",
    "comparison": "comparison",
    "comparison_table": "comparison/models.csv",
    "comparison_html": "comparison/models.html",
    "comparison_figure": "comparison/models",  # .png and .pdf
    "comparison_png": "comparison/models.png",
    "comparison_pdf": "comparison/models.pdf",
    "toys": "toys/figure7",  # .png and .pdf: the seed study's 2-D toys
    "toys_png": "toys/figure7.png",
    "toys_pdf": "toys/figure7.pdf",
    "summary": "summary.html",  # the report's first page: what ran and the verdict
}

#: Files of one model, relative to its folder.
MODEL_FILES: dict[str, str] = {
    "model": "model/model.pt",
    "log": "model/training_log.csv",
    "curve": "model/training_curve",  # .png and .pdf
    "curve_png": "model/training_curve.png",
    "curve_pdf": "model/training_curve.pdf",
    "generated": "samples/generated.root",
    "sample_shards": "samples/shards",
    "sample_shard": "samples/shards/shard_{shard}.root",
    "validation_sample": "samples/validation.root",
    "refine_draw": "samples/refine_draw.root",  # refine: the classifier's own draw of the model
    "refined": "samples/refined.root",  # refine: the generated events with a weight branch
    "refine_report": "samples/refine.json",  # refine: the classifier, its calibration, the weights
    "validation": "validation",
    "metrics": "validation/metrics.json",
    "metrics_table": "validation/metrics.csv",
    "verdict_table": "validation/verdict.csv",
    "verdict": "validation/verdict.html",
    "closure": "validation/closure.csv",
    "plots": "validation/plots",
    "amplification": "validation/amplification.json",
    "amplification_table": "validation/amplification.csv",
    "amplification_summary": "validation/amplification_summary.html",
    "amplification_plot": "validation/amplification",  # .png and .pdf
    "amplification_png": "validation/amplification.png",
    "amplification_pdf": "validation/amplification.pdf",
    "reweighted": "validation/reweighted",  # refine: the reweighted sample's validation folder
    "reweighted_metrics": "validation/reweighted/metrics.json",
    "reweighted_amplification": "validation/reweighted/amplification.json",
    "refine_comparison": "validation/refine.html",  # refine: raw and reweighted side by side
}

#: File names inside a validation folder (``validate --out-dir``), as its runner writes them.
VALIDATION_FILES: dict[str, str] = {
    key: MODEL_FILES[key].removeprefix("validation/")
    for key in (
        "metrics",
        "metrics_table",
        "verdict_table",
        "verdict",
        "closure",
        "plots",
        "amplification",
        "amplification_table",
        "amplification_summary",
        "amplification_plot",
        "amplification_png",
        "amplification_pdf",
        "reweighted",
        "refine_comparison",
    )
}

#: File names inside a comparison folder (``compare --out-dir``).
COMPARISON_FILES: dict[str, str] = {
    key: RUN_FILES[key].removeprefix("comparison/")
    for key in ("comparison_table", "comparison_html", "comparison_figure")
}


@dataclass(frozen=True)
class Step:
    """A pipeline step: its script, its conda env and the module that holds its code."""

    script: str
    env: str
    module: str
    per_model: bool = False  # its outputs are a model's (under the model's folder)


#: Every step of the pipeline, in DAG order; each is one Snakemake rule (merges: one per kind).
STEPS: dict[str, Step] = {
    "generate": Step("scripts/generate.py", "envs/data.yaml", "hepflows.steps.generate"),
    "generate_truth": Step("scripts/generate.py", "envs/data.yaml", "hepflows.steps.generate"),
    "merge_data": Step("scripts/merge.py", "envs/data.yaml", "hepflows.shards"),
    "ingest": Step("scripts/ingest.py", "envs/data.yaml", "hepflows.steps.ingest"),
    "preprocess": Step("scripts/preprocess.py", "envs/data.yaml", "hepflows.steps.preprocess"),
    "train": Step("scripts/train.py", "envs/train.yaml", "hepflows.steps.train", True),
    "sample": Step("scripts/sample.py", "envs/train.yaml", "hepflows.steps.sample", True),
    "generate_refine": Step("scripts/generate.py", "envs/data.yaml", "hepflows.steps.generate"),
    "sample_refine": Step("scripts/sample.py", "envs/train.yaml", "hepflows.steps.sample", True),
    "refine": Step("scripts/refine.py", "envs/validate.yaml", "hepflows.steps.refine", True),
    "merge_samples": Step("scripts/merge.py", "envs/data.yaml", "hepflows.shards", True),
    "merge_validation_sample": Step("scripts/merge.py", "envs/data.yaml", "hepflows.shards", True),
    "validate": Step("scripts/validate.py", "envs/validate.yaml", "hepflows.steps.validate", True),
    "amplification": Step(
        "scripts/amplification.py", "envs/validate.yaml", "hepflows.steps.amplification", True
    ),
    "amplification_reweighted": Step(
        "scripts/amplification.py", "envs/validate.yaml", "hepflows.steps.amplification", True
    ),
    "compare": Step("scripts/compare.py", "envs/validate.yaml", "hepflows.steps.compare"),
    "toys": Step("scripts/toys.py", "envs/train.yaml", "hepflows.toys"),
    "summary": Step("scripts/summary.py", "envs/validate.yaml", "hepflows.steps.summary"),
}


def log(step: str, job: str | None = None) -> str:
    """A step's log, relative to the folder of its outputs: ``logs/<step>.log``, or
    ``logs/<step>/<job>.log`` for one of several jobs of the step (a shard)."""
    return f"logs/{step}.log" if job is None else f"logs/{step}/{job}.log"


def benchmark(step: str, job: str | None = None) -> str:
    """Snakemake's time and memory record of a step, placed as :func:`log` places the log."""
    return f"benchmarks/{step}.tsv" if job is None else f"benchmarks/{step}/{job}.tsv"


def run_dir(run: str, results: str | Path = RESULTS) -> Path:
    """The folder of the run named ``run``."""
    return Path(results) / run


def model_dir(run_root: str | Path, model: str | None = None) -> Path:
    """The folder of a model: the run's own, or ``models/<model>/`` of a grid."""
    root = Path(run_root)
    return root if model is None else root / MODELS / model


def paths(run_root: str | Path, model: str | None = None) -> dict[str, Path]:
    """Every output of a run (the data and one model's files) as paths below ``run_root``.

    Patterns with wildcards are left out; ``model`` selects a grid model's folder.
    """
    root = Path(run_root)
    own = model_dir(root, model)
    out = {k: root / v for k, v in RUN_FILES.items() if "{" not in v}
    out.update({k: own / v for k, v in MODEL_FILES.items() if "{" not in v})
    return out
