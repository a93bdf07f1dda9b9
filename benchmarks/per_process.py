#!/usr/bin/env python
"""One model per process against one conditional model, on the same training events.

Takes the run folder of a conditional model trained by ``benchmarks/fidelity.py`` (its
``data/{train,val}.root``, ``preprocess.json`` and merged config) and, in ``--out``:

1. copies the run folder (its data, preprocessing and the conditional model, whose test NLL,
   training log and step walls the fidelity row then shows: give a finished run), and splits its training and validation events by
   process label into ``per_process/<process>/{train,val}.root``: together exactly the
   conditional model's events;
2. trains the run's model config on each process alone (``hepflows train``, the run's own
   preprocessing, so only the model differs), one after the other, each with the run's
   thread count;
3. samples the mixture (:class:`hepflows.per_process.ByProcess`: the labels of chunk ``c``
   drawn from ``(seed, c)`` at the training events' signal fraction (the conditional model's), each label's
   events from its process's model, inside the support) to ``samples/generated.root``,
   exactly the sample step's seeding and size.

Then the fidelity row judges it with the sample reused (``--skip generate train sample``);
``train s`` there is the conditional model's, the per-process trainings' walls are printed
here and kept in ``per_process/<process>/log.csv``:

    python benchmarks/per_process.py results/fidelity/best-generator --out results/per-process
    python benchmarks/fidelity.py config/best.yaml --data generator --out results/per-process \\
        --skip generate train sample
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROCESSES = {"background": 0, "signal": 1}


def split_by_process(run: Path, out: Path, features: list[str]) -> dict[str, int]:
    """``out/per_process/<process>/{train,val}.root``: the run's events of each label."""
    from hepflows.events.reader import read_events, read_metadata
    from hepflows.events.writer import write_events

    counts = {}
    for split in ("train", "val"):
        path = run / "data" / f"{split}.root"
        events = read_events(path, features)
        meta = read_metadata(path)
        for process, label in PROCESSES.items():
            keep = events["label"] == label
            part = {k: np.asarray(v)[keep] for k, v in events.items()}
            target = out / "per_process" / process / f"{split}.root"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_events(target, part, metadata={**meta, "process_of": str(path)})
            counts[f"{process} {split}"] = int(keep.sum())
    return counts


def train(config: Path, out: Path, preprocess: Path, process: str) -> float:
    """``hepflows train`` on one process's events; returns its wall seconds."""
    folder = out / "per_process" / process
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hepflows.cli",
            "train",
            "--quiet",
            "--config",
            str(config),
            "--train",
            str(folder / "train.root"),
            "--val",
            str(folder / "val.root"),
            "--preprocess",
            str(preprocess),
            "--model",
            str(folder / "model.pt"),
            "--log",
            str(folder / "log.csv"),
        ],
        check=True,
    )
    return time.perf_counter() - started


def sample(config: Path, run: Path, out: Path) -> None:
    """The mixture's sample, as the sample step would write it, to ``out/samples``."""
    from hepflows import config as configs
    from hepflows.events.reader import read_events
    from hepflows.per_process import load_by_process
    from hepflows.preprocess import Preprocessor
    from hepflows.sampling import sample_to_root, training_signal_fraction

    cfg = configs.load(config)
    pre = Preprocessor.load(out / "preprocess.json")
    models = {p: out / "per_process" / p / "model.pt" for p in PROCESSES}
    flow, metas = load_by_process(
        models,
        features=pre.features,
        preprocess_hash=pre.config_hash,
        preprocess_parameters_hash=pre.parameters_hash,
    )
    # the conditional model's sample fraction: that of the same training events
    train = read_events(run / "data" / "train.root", pre.features[:1])
    fraction = cfg["sampling"]["signal_fraction"] or training_signal_fraction(train["label"])
    target = out / "samples" / "generated.root"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    sample_to_root(
        flow,
        pre,
        target,
        cfg["sampling"]["events"],
        seed=cfg["seed"],
        chunk_size=cfg["sampling"]["chunk_size"],
        signal_fraction=fraction,
        metadata={
            "seed": cfg["seed"],
            "model": {p: str(m) for p, m in models.items()},
            "per_process": {p: {"epoch": m.get("epoch")} for p, m in metas.items()},
            "process_fractions": {"signal": fraction, "background": 1 - fraction},
        },
        support=cfg["sampling"]["support"],
        progress=False,
    )
    print(f"sampled {cfg['sampling']['events']} events at signal fraction {fraction:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a conditional model's run folder")
    parser.add_argument("--out", type=Path, required=True, help="the results folder")
    args = parser.parse_args()
    run = args.run.resolve()
    config = run.parent / f"{run.name}.yaml"
    out = args.out.resolve() / run.name
    if out.exists():
        sys.exit(f"{out} exists: give another --out")
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("samples", "validation", "amp*"))
    shutil.copy(config, args.out / config.name)
    from hepflows.settings import Settings
    from hepflows.steps.common import features

    print(split_by_process(run, out, features(Settings.load(config))))
    for process in PROCESSES:
        print(f"{process}: trained in {train(config, out, out / 'preprocess.json', process):.0f} s")
    sample(config, run, out)


if __name__ == "__main__":
    main()
