"""The pipeline without Snakemake (``hepflows run``): the step list of a config, and one step
run with the log and benchmark record Snakemake would write.

A step is its subcommand and arguments, ``["train", "--train", path, ...]``, as
``hepflows <step>`` takes them; paths come from :mod:`hepflows.layout`.  Besides the layout,
only the standard library is imported at module level.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows import layout

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")

#: One step: its subcommand, then its arguments (paths as they are, :func:`run_step` makes
#: them strings).
Step = list[Any]


def plan(settings: Settings, root: Path) -> list[Step]:
    """Every step of the validated ``settings`` in order, writing below the run's folder
    ``root``: the data and their preprocessing, each model's steps, the comparison of a grid
    (``models:``) and the summary."""
    paths = layout.paths(root)
    generator = settings.data.source == "generator"
    grid = list(settings.models)
    # a run without a grid is one model, in the run's own folder (name None)
    models: list[str | None] = list(grid) if grid else [None]
    steps = data_steps(settings, paths)
    for name in models:
        steps += model_steps(settings, name, layout.paths(root, name), paths, generator)
    if grid:
        steps.append(
            [
                "compare",
                "--models",
                *(layout.model_dir(root, name) for name in grid),
                "--out-dir",
                paths["comparison"],
            ]
        )
    steps.append(
        [
            "summary",
            "--run-dir",
            root,
            "--models",
            *(layout.model_dir(root, name) for name in models),
            "--out",
            paths["summary"],
        ]
    )
    return steps


def data_steps(settings: Settings, paths: dict[str, Path]) -> list[Step]:
    """The run's data: the three splits, their preprocessing, and the generator's disjoint
    ranges for the amplification's truth and the refine classifier's MC when those are on."""
    data_step = "generate" if settings.data.source == "generator" else "ingest"
    steps: list[Step] = [
        [data_step, "--train", paths["train"], "--val", paths["val"], "--test", paths["test"]],
        ["preprocess", "--train", paths["train"], "--out", paths["preprocess"]],
    ]
    if data_step == "generate" and settings.validation.amplification.enabled:
        steps.append(["generate", "--truth", paths["truth"]])
    if data_step == "generate" and settings.refine.enabled:
        steps.append(["generate", "--refine", paths["refine_mc"]])
    return steps


def model_steps(
    settings: Settings,
    name: str | None,
    own: dict[str, Path],
    paths: dict[str, Path],
    generator: bool,
) -> list[Step]:
    """One model's steps (``name`` of a grid, or None): train, sample, the refine steps,
    validate and the amplification; ``own`` are its paths, ``paths`` the run's."""
    from hepflows import config

    # the amplification's truth: a disjoint range of the generator, or the test split
    truth = paths["truth"] if generator else paths["test"]
    # the refine classifier's MC: another disjoint range of the generator, or the training split
    refine_mc = paths["refine_mc"] if generator else paths["train"]
    # the model's own sections, merged over the config file's by each step (as the JSON the
    # command line reads back)
    variant = (
        []
        if name is None
        else [
            "--settings",
            json.dumps(config.subset(settings.variant(name).to_dict(), config.MODEL_SECTIONS)),
        ]
    )
    steps: list[Step] = [
        [
            "train",
            *variant,
            "--train",
            paths["train"],
            "--val",
            paths["val"],
            "--preprocess",
            paths["preprocess"],
            "--model",
            own["model"],
            "--log",
            own["log"],
            "--plot",
            own["curve"],
        ],
        [
            "sample",
            *variant,
            "--model",
            own["model"],
            "--preprocess",
            paths["preprocess"],
            "--out",
            own["generated"],
        ],
        [
            "validate",
            "--reference",
            paths["test"],
            "--generated",
            own["generated"],
            "--train",
            paths["train"],
            "--out-dir",
            own["validation"],
        ],
    ]
    refine = settings.refine.enabled
    if refine:
        steps[-1:-1] = refine_steps(variant, own, paths, refine_mc)
        steps[-1] += ["--reweighted", own["refined"], "--refine-report", own["refine_report"]]
    if settings.validation.amplification.enabled:
        samples = [(own["generated"], own["validation"])]
        if refine:
            samples.append((own["refined"], own["reweighted"]))
        steps += [
            [
                "amplification",
                "--truth",
                truth,
                "--generated",
                generated,
                "--train",
                paths["train"],
                "--out-dir",
                out_dir,
            ]
            for generated, out_dir in samples
        ]
    return steps


def refine_steps(
    variant: list[str], own: dict[str, Path], paths: dict[str, Path], refine_mc: Path
) -> list[Step]:
    """One model's refine steps: the classifier's draw of the model, then the weights."""
    return [
        [
            "sample",
            *variant,
            "--refine-draw",
            "--model",
            own["model"],
            "--preprocess",
            paths["preprocess"],
            "--out",
            own["refine_draw"],
        ],
        [
            "refine",
            *variant,
            "--mc",
            refine_mc,
            "--draw",
            own["refine_draw"],
            "--generated",
            own["generated"],
            "--out",
            own["refined"],
            "--report",
            own["refine_report"],
        ],
    ]


def step_name(step: Step) -> str:
    """The layout's name of a step (a subcommand serves several steps)."""
    if step[0] == "generate" and "--truth" in step:
        return "generate_truth"
    if step[0] == "generate" and "--refine" in step:
        return "generate_refine"
    if step[0] == "sample" and "--refine-draw" in step:
        return "sample_refine"
    if step[0] == "amplification" and Path(str(step[-1])).name == "reweighted":
        return "amplification_reweighted"
    return str(step[0])


def step_folder(step: Step, root: Path, grid: Sequence[str]) -> Path:
    """The folder of a step's log and benchmark: a grid model's for its steps, else the run's."""
    if layout.STEPS[step_name(step)].per_model and grid:
        flag = "--model" if "--model" in step else "--generated"
        return Path(str(step[step.index(flag) + 1])).parents[1]
    return root


def run_step(
    step: Step,
    options: Sequence[str],
    root: Path,
    grid: Sequence[str],
    call: Callable[[list[str]], None],
) -> None:
    """Run one step as ``call(argv)`` (the command line's subcommand, ``options`` after its
    name) with the log and benchmark record Snakemake would write (``logs/<step>.log``,
    ``benchmarks/<step>.tsv``: wall seconds, for the summary)."""
    from hepflows.atomic import atomic_write_text

    name = step_name(step)
    folder = step_folder(step, root, grid)
    log_path = folder / layout.log(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    start = time.perf_counter()
    try:
        call([*step[:1], *options, *map(str, step[1:])])
    finally:
        log.removeHandler(handler)
        handler.close()
    seconds = time.perf_counter() - start
    hms = time.strftime("%H:%M:%S", time.gmtime(seconds))
    atomic_write_text(folder / layout.benchmark(name), f"s\th:m:s\n{seconds:.4f}\t{hms}\n")
