"""The ``hepflows`` command: every pipeline step, runnable without Snakemake.

Each subcommand is one step of the workflow (``scripts/<step>.py`` calls the same code, and
each Snakemake rule calls its script).  Settings come from ``--config FILE`` (a pipeline
config) and/or ``--settings JSON`` (sections merged on top, as the Snakemake rules pass them);
both are validated against the same schema.  Inputs and outputs are explicit paths.

    hepflows generate --config config/config.yaml --train t.root --val v.root --test x.root
    hepflows run --config config/config.yaml        # all steps in order, into results/<run>/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hepflows import heap, layout
from hepflows.errors import InputError, Interrupted, ResourceError
from hepflows.steps.generate import TRUTH_START

if TYPE_CHECKING:
    from hepflows.settings import Settings

log = logging.getLogger("hepflows")

EXIT_BAD_INPUT = 2
EXIT_RESOURCES = 3  # the machine could not hold an output: disk full, read-only, no permission
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what batch systems expect of a pre-empted job

#: Libraries whose INFO lines (pyhf's fits, iminuit's minimisations) drown the steps' own.
QUIET_LIBRARIES = ("pyhf", "iminuit", "matplotlib", "numba", "jax", "PIL", "fsspec", "urllib3")


def _settings(args: argparse.Namespace) -> Settings:
    from hepflows.settings import Settings

    overrides = None
    if args.settings:
        try:
            overrides = json.loads(args.settings)
        except json.JSONDecodeError as err:
            raise InputError(f"--settings: not valid JSON ({err})") from None
    if args.config is None and overrides is None:
        raise InputError("give --config FILE and/or --settings JSON")
    return Settings.load(args.config, overrides)


# -- steps ---------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    """MC events from the embedded generator: one ROOT file per split, or one shard of a split."""
    from hepflows.steps import generate

    outputs = generate.Outputs(
        train=args.train,
        val=args.val,
        test=args.test,
        split=args.split,
        shard=args.shard,
        out=args.out,
        truth=args.truth,
        refine=args.refine,
    )
    generate.run(_settings(args), outputs, progress=not args.quiet)


def cmd_ingest(args: argparse.Namespace) -> None:
    """Convert a HIGGS CSV or ROOT ntuples (data.inputs) into train/val/test event files."""
    from hepflows.steps import ingest

    settings = _settings(args)
    outputs = {"train": args.train, "val": args.val, "test": args.test}
    ingest.run(settings, outputs, _checked_settings(args, settings))


def _checked_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings ingest's fail-fast checks see: ``settings`` with ``--checks`` merged over
    them (the workflow passes ingest only its own sections, and the later steps' choices
    apart)."""
    from hepflows import config
    from hepflows.settings import Settings

    if not getattr(args, "checks", None):
        return settings
    try:
        checks = json.loads(args.checks)
    except json.JSONDecodeError as err:
        raise InputError(f"--checks: not valid JSON ({err})") from None
    return Settings.load(args.config, config.merge(json.loads(args.settings or "{}"), checks))


def cmd_preprocess(args: argparse.Namespace) -> None:
    """Fit min-max (with margin) -> logit -> standardise on the training events."""
    from hepflows.steps import preprocess

    preprocess.run(_settings(args), train=args.train, out=args.out)


def cmd_train(args: argparse.Namespace) -> None:
    """Train the flow; writes the best model, the per-epoch log (CSV) and its plot."""
    from hepflows.steps import train

    train.run(
        _settings(args),
        train=args.train,
        val=args.val,
        preprocess=args.preprocess,
        model=args.model,
        log_path=args.log,
        plot=args.plot,
        device=args.device,
        progress=not args.quiet,
    )


def cmd_convert_checkpoint(args: argparse.Namespace) -> None:
    """Rewrite a model file of an older hepflows as plain data; it unpickles SOURCE: trust it."""
    from hepflows import checkpoint

    if not args.trust:
        raise InputError(
            f"{args.source}: converting unpickles the file, which can run any code it holds; "
            "pass --trust only for a file whose maker you trust"
        )
    checkpoint.convert_trusted(args.source, args.dest)
    log.info("converted %s -> %s", args.source, args.dest)


def cmd_sample(args: argparse.Namespace) -> None:
    """Generate N events from a trained flow, streamed to ROOT in chunks (or one shard of them)."""
    from hepflows.steps import sample

    # Without --config/--settings the model alone is the identity (its weights and
    # preprocessing) and the sampling settings are the schema's defaults.
    with_config = args.config is not None or args.settings is not None
    sample.run(
        _settings(args) if with_config else None,
        model=args.model,
        out=args.out,
        preprocess=args.preprocess,
        events=args.events,
        shard=args.shard,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        refine_draw=args.refine_draw,
        progress=not args.quiet,
    )


def cmd_refine(args: argparse.Namespace) -> None:
    """Weight each generated event by a classifier of MC vs a separate draw of the model:
    samples/refined.root (the events plus a ``weight`` branch) and its record refine.json."""
    from hepflows.steps import refine

    refine.run(
        _settings(args),
        mc_path=args.mc,
        draw_path=args.draw,
        generated=args.generated,
        out=args.out,
        report=args.report,
    )


def cmd_merge(args: argparse.Namespace) -> None:
    """Join event files (shards) in order into one, chunk by chunk, keeping every event once."""
    from hepflows import __version__
    from hepflows.shards import merge_event_files

    compression = None if args.compression == "none" else args.compression
    n = merge_event_files(
        args.inputs,
        args.out,
        compression=compression,
        max_events_per_input=args.max_events_per_input,
        metadata={"merged_by": f"hepflows {__version__} merge"},
    )
    log.info("merged %d events from %d file(s) -> %s", n, len(args.inputs), args.out)


def cmd_validate(args: argparse.Namespace) -> None:
    """Compare generated events with held-out MC: metrics (JSON, CSV), verdict and plots."""
    from hepflows.steps import validate

    validate.run(
        _settings(args),
        reference=args.reference,
        generated=args.generated,
        out_dir=args.out_dir,
        train=args.train,
        reweighted=args.reweighted,
        refine_report=args.refine_report,
    )


def cmd_amplification(args: argparse.Namespace) -> None:
    """How many MC events the generated sample is worth (n_equiv, G): amplification.{csv,json},
    the d(n) figure and the verdict line amplification_summary.html."""
    from hepflows.steps import amplification

    amplification.run(
        _settings(args),
        truth_path=args.truth,
        generated=args.generated,
        out_dir=args.out_dir,
        train=args.train,
    )


def cmd_compare(args: argparse.Namespace) -> None:
    """The verdicts of a grid's models side by side: models.csv and models.html."""
    from hepflows.steps import compare

    compare.run(_settings(args), models=args.models, out_dir=args.out_dir)


def cmd_summary(args: argparse.Namespace) -> None:
    """The report's first page: what ran (config, model, epochs, device, wall time per step,
    commit) and the verdict in one sentence with its coloured table."""
    from hepflows.steps import summary

    summary.run(_settings(args), run_dir=args.run_dir, models=args.models, out=args.out)


def cmd_run(args: argparse.Namespace) -> None:
    """All steps in order into results/<run>/, for use without Snakemake (no skipping).

    With a grid of models (``models:``) each model is trained, sampled and validated under
    results/<run>/models/<name>/, then compared in results/<run>/comparison/.
    """
    from hepflows import pipeline, precheck
    from hepflows.settings import Settings

    settings = Settings.load(args.config)
    precheck.check_run(settings, source=args.config)  # inputs and selection, before any step
    root = layout.run_dir(settings.run, args.results)
    options = ["--config", args.config] + (["--quiet"] if args.quiet else [])
    grid = list(settings.models)
    for step in pipeline.plan(settings, root):
        if step[0] in args.skip:  # e.g. judge a trained model again: its outputs are reused
            log.info("== hepflows %s: skipped (--skip), its outputs reused", step[0])
            continue
        log.info("== hepflows %s", step[0])
        pipeline.run_step(step, options, root, grid, _call)


def _call(argv: list[str]) -> None:
    """One subcommand with its arguments, as ``hepflows`` runs it (for ``hepflows run``)."""
    _dispatch(build_parser().parse_args(argv))


# -- argument parsing ----------------------------------------------------------------------------
_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], list[tuple[str, dict]]]] = {
    "generate": (
        cmd_generate,
        [
            ("--train", {"help": "the training split's ROOT file to write"}),
            ("--val", {"help": "the validation split's ROOT file to write"}),
            ("--test", {"help": "the test split's ROOT file to write"}),
            (
                "--split",
                {"choices": ["train", "val", "test"], "help": "with --shard: the split to cut"},
            ),
            (
                "--shard",
                {
                    "type": int,
                    "help": "write only shard K of data.shards (0-based) of --split, to --out",
                },
            ),
            ("--out", {"help": "with --shard: the shard's file"}),
            (
                "--truth",
                {
                    "help": "write only the amplification's truth "
                    "sample (validation.amplification.truth_events "
                    f"events from event {TRUTH_START}) to this file"
                },
            ),
            (
                "--refine",
                {
                    "help": "write only the refine classifier's MC (refine.mc_events events "
                    "from event 2e9) to this file"
                },
            ),
        ],
    ),
    "ingest": (
        cmd_ingest,
        [
            ("--train", {"required": True, "help": "the training split's ROOT file to write"}),
            ("--val", {"required": True, "help": "the validation split's ROOT file to write"}),
            ("--test", {"required": True, "help": "the test split's ROOT file to write"}),
            (
                "--checks",
                {
                    "help": "JSON of the later steps' settings that ingest's fail-fast checks "
                    "read (validation.classifier, refine.enabled, training.conditional, "
                    "sampling.events and signal_fraction, validation.max_events), merged over "
                    "--config/--settings for those checks only"
                },
            ),
        ],
    ),
    "preprocess": (
        cmd_preprocess,
        [
            ("--train", {"required": True, "help": "the training events (ROOT) to fit on"}),
            ("--out", {"required": True, "help": "the preprocessing parameters (JSON) to write"}),
        ],
    ),
    "train": (
        cmd_train,
        [
            ("--train", {"required": True, "help": "the training events (ROOT)"}),
            (
                "--val",
                {"required": True, "help": "the validation events (ROOT): early stopping"},
            ),
            ("--preprocess", {"required": True, "help": "the preprocess step's JSON file"}),
            ("--model", {"required": True, "help": "the model file to write"}),
            ("--log", {"required": True, "help": "the per-epoch log (CSV) to write"}),
            ("--plot", {"help": "training-curve path without suffix (.png and .pdf)"}),
            ("--device", {"help": "override training.device: auto, cpu, cuda[:N]"}),
        ],
    ),
    "sample": (
        cmd_sample,
        [
            (
                "--model",
                {
                    "required": True,
                    "nargs": "+",
                    "help": "the trained model: its file, or a run's folder (results/<run>); "
                    "several: an ensemble of the same events and preprocessing, chunk c drawn "
                    "by model c mod k",
                },
            ),
            (
                "--preprocess",
                {"help": "its preprocessing file (default: the run's preprocess.json)"},
            ),
            ("--out", {"required": True, "help": "the ROOT file to write"}),
            ("--events", {"type": int, "help": "override sampling.events"}),
            (
                "--seed",
                {
                    "type": int,
                    "help": "draw the sample of this seed: another seed than the run's gives an "
                    "independent sample of the same model (default: the config's seed)",
                },
            ),
            (
                "--refine-draw",
                {
                    "action": "store_true",
                    "help": "the refine classifier's separate draw: refine.generated_events "
                    "events from chunk 2^31 on, not the sample",
                },
            ),
            ("--shard", {"type": int, "help": "write only shard K of sampling.shards (0-based)"}),
            ("--device", {"help": "override sampling.device"}),
            (
                "--precision",
                {"choices": ["auto", "float32", "bf16"], "help": "override sampling.precision"},
            ),
        ],
    ),
    "convert-checkpoint": (
        cmd_convert_checkpoint,
        [
            ("source", {"help": "a model or resume file of an older hepflows"}),
            ("dest", {"help": "the converted file"}),
            (
                "--trust",
                {
                    "action": "store_true",
                    "help": "required: the source is unpickled, so it can run code",
                },
            ),
        ],
    ),
    "refine": (
        cmd_refine,
        [
            (
                "--mc",
                {
                    "required": True,
                    "help": "the classifier's MC: generate --refine's file, or the training "
                    "split of ingested data",
                },
            ),
            ("--draw", {"required": True, "help": "sample --refine-draw's file"}),
            ("--generated", {"required": True, "help": "the sample to weight"}),
            ("--out", {"required": True, "help": "the weighted sample (refined.root)"}),
            ("--report", {"required": True, "help": "the step's record (refine.json)"}),
        ],
    ),
    "merge": (
        cmd_merge,
        [
            ("--inputs", {"required": True, "nargs": "+", "help": "files, in order"}),
            ("--out", {"required": True, "help": "the merged ROOT file to write"}),
            (
                "--compression",
                {
                    "default": "lz4",
                    "choices": ["lz4", "zlib", "zstd", "lzma", "none"],
                    "help": "the output's ROOT compression (default lz4)",
                },
            ),
            (
                "--max-events-per-input",
                {"type": int, "help": "take only the first N events of each input"},
            ),
        ],
    ),
    "validate": (
        cmd_validate,
        [
            (
                "--reference",
                {"required": True, "help": "held-out MC events (the test split), the reference"},
            ),
            ("--generated", {"required": True, "help": "the generated events to judge"}),
            ("--train", {"help": "MC training events: adds the physics closure table closure.csv"}),
            ("--out-dir", {"required": True, "help": "the folder of metrics, tables and plots"}),
            (
                "--reweighted",
                {
                    "help": "refine's weighted sample (refined.root): adds the reweighted "
                    "verdict (reweighted/) and refine.html"
                },
            ),
            ("--refine-report", {"help": "with --reweighted: refine's record (refine.json)"}),
        ],
    ),
    "amplification": (
        cmd_amplification,
        [
            (
                "--truth",
                {
                    "required": True,
                    "help": "MC events the flow never saw (generate "
                    "--truth's file, or the test split of ingested data)",
                },
            ),
            (
                "--generated",
                {
                    "required": True,
                    "nargs": "+",
                    "help": "generated events (one file, or the shards of one sample)",
                },
            ),
            ("--train", {"help": "MC training events: their number gives G = n_equiv / n_train"}),
            ("--out-dir", {"required": True, "help": "the folder of the amplification's files"}),
        ],
    ),
    "compare": (
        cmd_compare,
        [
            (
                "--models",
                {
                    "required": True,
                    "nargs": "+",
                    "help": "each model's output folder (named as in the grid), in table order",
                },
            ),
            ("--out-dir", {"required": True, "help": "the comparison's folder"}),
        ],
    ),
    "summary": (
        cmd_summary,
        [
            ("--run-dir", {"required": True, "help": "the run's folder"}),
            (
                "--models",
                {
                    "nargs": "+",
                    "help": "each grid model's folder (default: the run's folder, one model)",
                },
            ),
            ("--out", {"required": True, "help": "the summary HTML"}),
        ],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from hepflows import __version__

    parser = argparse.ArgumentParser(prog="hepflows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"hepflows {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, options) in _COMMANDS.items():
        p = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.add_argument("--config", help="pipeline config YAML")
        p.add_argument("--settings", help="config sections as JSON, merged over --config")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        for flag, kwargs in options:
            p.add_argument(flag, **kwargs)
        p.set_defaults(func=func)
    run = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    run.add_argument(
        "--config", default="config/config.yaml", help="pipeline config YAML (default: %(default)s)"
    )
    run.add_argument("--results", default="results", help="folder of the runs (results/)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="STEP",
        help="steps not to run, their outputs in results/<run>/ reused (e.g. generate train: "
        "sample and validate a trained model again)",
    )
    run.set_defaults(func=cmd_run)
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    args.func(args)


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM as an exception: outputs being written are removed on the way out."""

    raise Interrupted(
        f"stopped by signal {signum}; unfinished outputs were removed, rerun the step"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hepflows`` and of ``scripts/*.py``; returns the exit status."""
    import signal

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    # every step's tensors reuse freed pages instead of faulting in fresh ones (hepflows.heap)
    heap.retain_freed_memory()
    # SIGTERM becomes an exception, so that files being written are removed on the way out;
    # training replaces this handler while it runs, to save a checkpoint first.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop)
    try:
        _dispatch(args)
    except InputError as err:
        log.error("%s", err)
        return EXIT_BAD_INPUT
    except ResourceError as err:
        log.error("%s", err)
        return EXIT_RESOURCES
    except Interrupted as err:
        log.warning("%s", err)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
