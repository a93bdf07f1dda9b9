"""The report's first page: what ran and the verdict in one sentence.

:func:`write_summary` reads a finished run's folder (layout of :mod:`hepflows.layout`) and writes
``summary.html``: the run name and the hash of its validated config, the git commit, per model
its coupling, blocks and parameters, training events, epochs run and best epoch, the device,
the verdict sentence and the coloured verdict table (beside it the reweighted verdict, when
the refine step ran), and the wall time of every step from the
Snakemake benchmark records ``benchmarks/*.tsv`` (``hepflows run`` writes the same records).

Only the standard library and the validation's table code: the step runs in the validate env.

    write_summary(settings, "results/default", [("results/default", None)], "results/default/summary.html")
"""

from __future__ import annotations

import csv
import dataclasses
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows import layout
from hepflows.atomic import atomic_write_text
from hepflows.errors import InputError
from hepflows.model_config import model_kind
from hepflows.provenance import git_commit
from hepflows.records import read_json
from hepflows.report.tables import refine_html, verdict_html
from hepflows.validation import null as nl
from hepflows.validation.judge import FEATURE_METRICS

if TYPE_CHECKING:
    from hepflows.settings import Settings

__all__ = [
    "config_hash",
    "read_benchmarks",
    "training_info",
    "verdict_sentence",
    "read_closure",
    "summary_html",
    "write_summary",
]

#: The summary's own record is written after it; it is not one of the steps it reports.
_OWN_STEP = "summary"


def config_hash(settings: Settings) -> str:
    """The hash of every section of the validated config (defaults filled): the run's identity."""
    return settings.section_hash(sorted(f.name for f in dataclasses.fields(settings)))


def read_benchmarks(folder: str | Path) -> dict[str, tuple[int, float]]:
    """``{step: (jobs, seconds)}`` from the benchmark records under ``folder/benchmarks/``.

    A step of several jobs (``benchmarks/<step>/<job>.tsv``: shards) sums their wall times;
    a record with repeats counts its first row.  Records that do not exist (a step that did not
    run) are simply absent; unreadable ones raise :class:`InputError`.
    """
    root = Path(folder) / "benchmarks"
    steps: dict[str, tuple[int, float]] = {}
    for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rel = tsv.relative_to(root)
        step = rel.parts[0].removesuffix(".tsv")
        if step == _OWN_STEP:
            continue
        with tsv.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        try:
            seconds = float(rows[0]["s"])
        except (IndexError, KeyError, TypeError, ValueError):
            raise InputError(f"{tsv}: not a benchmark record (no 's' column)") from None
        jobs, total = steps.get(step, (0, 0.0))
        steps[step] = (jobs + 1, total + seconds)
    return steps


def training_info(model_dir: str | Path) -> dict[str, Any]:
    """Epochs run, best epoch and best validation NLL from ``model/training_log.csv``; device
    and parameter count from the train step's log, where there is one."""
    from hepflows.report.compare import read_training_log

    model_dir = Path(model_dir)
    epochs, best_epoch, best_val = read_training_log(model_dir / layout.MODEL_FILES["log"])
    info: dict[str, Any] = {
        "epochs": epochs,
        "best_epoch": best_epoch,
        "best_val_nll": best_val,
        "device": "unknown",
        "parameters": None,
    }
    train_log = model_dir / layout.log("train")
    text = train_log.read_text(errors="replace") if train_log.is_file() else ""
    if m := re.findall(r"hepflows: training on (\S+(?: \([^)]*\))?)", text):
        info["device"] = m[-1]
    if m := re.findall(r"model: \S+, (\d+) parameters", text):
        info["parameters"] = int(m[-1])
    return info


def _refine_section(folder: Path, metrics: Mapping[str, Any]) -> list[str]:
    """The raw and reweighted verdicts side by side, when the model's refine step ran."""
    files = layout.MODEL_FILES
    reweighted = folder / files["reweighted_metrics"]
    if not reweighted.is_file():
        return []
    report = read_json(folder / files["refine_report"], missing="not found; run refine first")
    n_equiv = None
    raw_amp, rew_amp = folder / files["amplification"], folder / files["reweighted_amplification"]
    if raw_amp.is_file() and rew_amp.is_file():
        from hepflows.validation.amplification import headline

        n_equiv = (
            headline(read_json(raw_amp)["summary"]),
            headline(read_json(rew_amp)["summary"]),
        )
    return [
        '<h4 style="font-family:sans-serif">Refine: raw and reweighted</h4>',
        refine_html(metrics, read_json(reweighted), report, n_equiv=n_equiv, full_document=False),
    ]


def read_closure(path: str | Path) -> dict[str, tuple[float, float]]:
    """The physics closure table (validate's closure.csv) as {check: (value, error)}; {} when
    the run has none."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {
            row["check"]: (float(row["value"]), float(row["error"])) for row in csv.DictReader(f)
        }


def support_sentence(folder: Path) -> str:
    """The sample's support acceptance per process (:mod:`hepflows.support`), from the generated
    file's metadata; empty where the file or the record is absent (sharded samples, old runs)."""
    from hepflows.events.reader import read_metadata

    path = folder / layout.MODEL_FILES["generated"]
    meta = read_metadata(path) if path.is_file() else {}
    record = meta.get("support_acceptance")
    if not record:
        return ""
    selection = meta.get("support_selection") or {}
    cut = f", the selection {selection['checked']}" if selection.get("checked") else ""
    terms = "; ".join(selection.get("skipped") or ())
    skipped = (
        f" Not checked (the terms read branches that are not features): {terms}." if terms else ""
    )
    parts = [
        f"{name} {r['acceptance']:.5f} ({r['drawn'] - r['accepted']:,} of {r['drawn']:,} drawn "
        "events redrawn)"
        for name, r in record.items()
    ]
    return (
        "Every generated event lies inside the training events' support (cuts, bounds, "
        f"non-negative masses, pT and MET{cut}); acceptance per process: {'; '.join(parts)}."
        + skipped
    )


#: The closure checks the verdict sentence quotes.
AUC_MC = "signal/background classifier AUC on MC"
AUC_GENERATED = "signal/background classifier AUC on generated"


def verdict_sentence(
    metrics: Mapping[str, Any], closure: Mapping[str, tuple[float, float]] | None = None
) -> str:
    """The verdict in one sentence: (in)distinguishable, the cells outside the MC-vs-MC band
    over all per-feature metrics, the classifier AUC and, given the ``closure`` table, the
    physics closure: the signal/background separation a classifier finds on MC and on
    generated events."""
    rows = [v for v in metrics.get("verdict", []) if v["metric"] in FEATURE_METRICS]
    outside = sum(int(v["n_outside"]) for v in rows)
    tested = sum(int(v["n_tested"]) for v in rows)
    expected = sum(float(v["n_expected"] or 0.0) for v in rows)
    status = metrics.get("overall_status", nl.UNKNOWN)
    word = "indistinguishable" if status == nl.GREEN else "distinguishable"
    text = (
        f"Generated events are {word} from MC: {outside} of {tested} cells outside the "
        f"MC-vs-MC band ({expected:.1f} expected by chance)"
    )
    clf = metrics.get("classifier")
    if clf:
        judge = f" of the most sensitive judge ({clf['judge']['name']})" if "judge" in clf else ""
        text += (
            f", classifier AUC{judge} {clf['auc']:.3f} "
            f"(MC-vs-MC band edge {clf['null']['edge']:.3f})"
        )
    if closure and AUC_MC in closure and AUC_GENERATED in closure:
        (mc, mc_err), (gen, gen_err) = closure[AUC_MC], closure[AUC_GENERATED]
        text += (
            f"; physics closure: signal/background AUC {mc:.3f} \u00b1 {mc_err:.3f} on MC, "
            f"{gen:.3f} \u00b1 {gen_err:.3f} on generated events"
        )
    return text + "."


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min {sec:02d} s"


_CELL = 'style="border:1px solid #999;padding:4px 8px;text-align:left"'


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">'
        f"<tr>{head}</tr>{body}</table>"
    )


def _training_events(settings: Settings, run_dir: Path) -> int:
    """The events the model trained on: those of the run's training file (ingested data has no
    configured number), the generator's configured number before the file exists."""
    from hepflows.events.reader import count_events

    train = run_dir / layout.RUN_FILES["train"]
    if train.is_file():
        return count_events(train)
    return settings.data.events.train


def summary_html(
    settings: Settings,
    run_dir: str | Path,
    models: Sequence[tuple[str | Path, str | None]],
    *,
    commit: str | None = None,
) -> str:
    """The summary page of a finished run.

    ``models`` lists ``(folder, name)`` per model: the run's folder with name None for a single
    model, each ``models/<name>/`` of a grid.
    """
    esc = html.escape
    run_dir = Path(run_dir)
    commit = git_commit(short=True) if commit is None else commit
    parts = [
        f'<h2 style="font-family:sans-serif">Run <code>{esc(settings.run)}</code></h2>',
        _table(
            [
                [
                    esc(settings.run),
                    f"<code>{config_hash(settings)}</code>",
                    f"<code>{esc(commit)}</code>",
                    esc(settings.data.source),
                    f"{_training_events(settings, run_dir):,}",
                    f"{settings.sampling.events:,}",
                ]
            ],
            ["Run", "Config hash", "Git commit", "Data", "Training events", "Generated events"],
        ),
    ]
    wall: dict[str, tuple[int, float]] = dict(read_benchmarks(run_dir))
    for folder, name in models:
        folder = Path(folder)
        variant = settings.variant(name) if name is not None else settings
        model, info = variant.model, training_info(folder)
        metrics = read_json(folder / layout.MODEL_FILES["metrics"])
        title = f"Model {esc(name)}" if name is not None else "Model"
        best = "-" if info["best_epoch"] is None else str(info["best_epoch"])
        nll = "-" if math.isnan(info["best_val_nll"]) else f"{info['best_val_nll']:.4f}"
        params = "-" if info["parameters"] is None else f"{info['parameters']:,}"
        status = metrics.get("overall_status", nl.UNKNOWN)
        colour = nl.STATUS_COLOURS.get(status, nl.STATUS_COLOURS[nl.UNKNOWN])
        parts += [
            f'<h3 style="font-family:sans-serif">{title}</h3>',
            _table(
                [
                    [
                        esc(model_kind(model)),
                        str(model.blocks),
                        params,
                        f"{info['epochs']} / {best}",
                        nll,
                        esc(info["device"]),
                    ]
                ],
                [
                    "Coupling",
                    "Blocks",
                    "Parameters",
                    "Epochs (run / best)",
                    "Best val NLL",
                    "Device",
                ],
            ),
            f'<p class="verdict" style="font-family:sans-serif;font-size:16px;padding:6px;'
            f'background:{colour}"><b>'
            f"{esc(verdict_sentence(metrics, read_closure(folder / layout.MODEL_FILES['closure'])))}"
            "</b></p>",
            verdict_html(metrics, full_document=False),
            *_refine_section(folder, metrics),
        ]
        support = support_sentence(folder)
        if support:
            parts.append(f'<p style="font-family:sans-serif">{esc(support)}</p>')
        if name is not None:  # a grid model's own steps, under its folder
            for step, (jobs, s) in read_benchmarks(folder).items():
                wall[f"{step} ({name})"] = (jobs, s)
    if wall:
        rows = [[esc(step), str(jobs), _fmt_seconds(s)] for step, (jobs, s) in wall.items()]
        rows.append(
            [
                "<b>total</b>",
                str(sum(j for j, _ in wall.values())),
                f"<b>{_fmt_seconds(sum(s for _, s in wall.values()))}</b>",
            ]
        )
        parts += [
            '<h3 style="font-family:sans-serif">Wall time per step</h3>',
            _table(rows, ["Step", "Jobs", "Wall time"]),
        ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Run summary</title>'
        f"</head><body>\n{body}\n</body></html>\n"
    )


def write_summary(
    settings: Settings,
    run_dir: str | Path,
    models: Sequence[tuple[str | Path, str | None]],
    out: str | Path,
) -> Path:
    """:func:`summary_html` written atomically to ``out``."""
    atomic_write_text(out, summary_html(settings, run_dir, models))
    return Path(out)
