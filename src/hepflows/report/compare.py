"""The verdicts of several trained models side by side (a grid of models, ``models:``).

Each model's outputs follow the layout of one run (``model/training_log.csv``,
``validation/metrics.json``, ``validation/closure.csv``); :func:`model_summary` reads one such
folder into a row and :func:`write_comparison` writes the table of all of them as CSV and HTML.

    summary = model_summary("results/grid/models/spline", "spline", description="rq_spline, 6 blocks")
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows import layout
from hepflows.atomic import atomic_write_text
from hepflows.errors import InputError
from hepflows.model_config import model_kind
from hepflows.records import read_json
from hepflows.validation import null as nl

if TYPE_CHECKING:
    from hepflows.settings import Settings

__all__ = [
    "CLOSURE_CHECK",
    "model_summary",
    "describe_model",
    "comparison_csv",
    "comparison_html",
    "write_comparison",
]

#: The row of ``closure.csv`` that the comparison shows: the physics closure in one number.
CLOSURE_CHECK = "AUC generated - MC"

#: Per-feature metrics whose count of cells outside the null band is a column of the table.
COUNTED = {
    "ks": "KS outside",
    "chi2_ndf": "chi2/ndf outside",
    "wasserstein": "W1 outside",
    "separation_power": "separation outside",
}


def describe_model(settings: Settings) -> str:
    """A short description of the settings' model and training, for the table."""
    model, training = settings.model, settings.training
    hidden = "x".join(map(str, model.hidden))
    text = f"{model_kind(model)}, {model.blocks} blocks, {hidden}"
    if model.family == "flow_matching":
        text = f"{model_kind(model)}, {hidden}"
    elif model.family == "flow" and model.coupling in (
        "rq_spline",
        "rq_autoregressive",
        "quadratic",
    ):
        text += f", {model.bins} bins"
    return text + f"; lr {training.lr:g}, batch {training.batch_size}"


def read_training_log(path: Path) -> tuple[int, int | None, float]:
    """(epochs run, best epoch, best validation NLL) from a training log."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; run the model's train step first") from None
    finite = [
        (float(r["val_nll"]), int(r["epoch"]))
        for r in rows
        if r.get("val_nll") not in (None, "") and math.isfinite(float(r["val_nll"]))
    ]
    if not finite:
        return len(rows), None, math.nan
    best, epoch = min(finite)
    return len(rows), epoch, best


def _closure(path: Path) -> tuple[float, float]:
    """(value, error) of :data:`CLOSURE_CHECK`, NaN when the table has none (no labels)."""
    if not path.exists():
        return math.nan, math.nan
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["check"] == CLOSURE_CHECK:
                return float(r["value"]), float(r["error"])
    return math.nan, math.nan


def model_summary(model_dir: str | Path, name: str, *, description: str = "") -> dict[str, Any]:
    """One row of the comparison: training, cells outside the null band, classifier, closure.

    ``model_dir`` holds ``model/training_log.csv`` and ``validation/{metrics.json,closure.csv}``.
    """
    model_dir = Path(model_dir)
    metrics = read_json(model_dir / layout.MODEL_FILES["metrics"])
    epochs, best_epoch, best_val = read_training_log(model_dir / layout.MODEL_FILES["log"])
    verdict = {v["metric"]: v for v in metrics.get("verdict", [])}
    row: dict[str, Any] = {
        "model": name,
        "description": description,
        "epochs": epochs,
        "best epoch": best_epoch,
        "best val NLL": best_val,
    }
    for metric, column in COUNTED.items():
        v = verdict.get(metric)
        row[column] = f"{v['n_outside']}/{v['n_tested']}" if v else ""
        row[column + " expected"] = v["n_expected"] if v else math.nan
    clf = metrics.get("classifier") or {}
    row["classifier AUC"] = clf.get("auc", math.nan)
    row["AUC interval"] = f"[{clf['auc_lo']:.3f}, {clf['auc_hi']:.3f}]" if clf else ""
    row["MC-vs-MC AUC"] = (clf.get("null") or {}).get("empirical_mean") or math.nan
    row["sig/bkg AUC gen - MC"], row["closure error"] = _closure(
        model_dir / layout.MODEL_FILES["closure"]
    )
    row.update(_amplification(model_dir / layout.MODEL_FILES["amplification"]))
    row["status"] = metrics.get("overall_status", nl.UNKNOWN)
    return row


#: Columns of the amplification (``validation/amplification.json``, when measured).
AMPLIFICATION_COLUMNS = ("n_equiv features", "n_equiv joint", "G")


def _amplification(path: Path) -> dict[str, str]:
    """n_equiv of the worst feature x slice and of the joint partition, and G of the smaller of
    the two, as text ("≥" marks a lower bound); empty where the model has no amplification."""
    if not path.exists():
        return dict.fromkeys(AMPLIFICATION_COLUMNS, "")
    summary = read_json(path).get("summary") or {}

    def text(w: Mapping[str, Any] | None, key: str) -> str:
        if not w:
            return ""
        v = w.get(key)
        if v is None:  # JSON null: infinite, or NaN (no training count)
            return "" if key == "G" else "inf"
        return ("≥" if w["lower_bound"] else "") + f"{v:.4g}"

    feats, joint = summary.get("features"), summary.get("joint")
    worst = min(
        (w for w in (feats, joint) if w),
        key=lambda w: math.inf if w["n_equiv"] is None else w["n_equiv"],
        default=None,
    )
    return {
        "n_equiv features": text(feats, "n_equiv"),
        "n_equiv joint": text(joint, "n_equiv"),
        "G": text(worst, "G"),
    }


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def comparison_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV text, one model a row, the columns of :func:`model_summary`."""
    if not rows:
        raise ValueError("no models to compare")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row[c]) for c in columns] for row in rows)
    return buffer.getvalue()


def comparison_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a standalone HTML table, the status cell coloured like the verdict's."""
    esc = html.escape
    headers = [
        "Model",
        "Description",
        "Epochs (best)",
        "Best val NLL",
        *[c for c in COUNTED.values()],
        "Classifier AUC",
        "MC-vs-MC AUC",
        "sig/bkg AUC gen &minus; MC",
        "n<sub>equiv</sub>, worst feature",
        "n<sub>equiv</sub>, joint",
        "G = n<sub>equiv</sub> / n<sub>train</sub>",
        "Status",
    ]
    td = '<td style="border:1px solid #999;padding:4px 8px">'
    out = [
        '<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">',
        '<caption style="text-align:left;padding:4px">The models of the grid: cells (feature '
        "&times; slice) outside the MC-vs-MC null band (expected by chance in brackets), the "
        "classifier two-sample AUC with its bootstrap interval (0.5: indistinguishable) and "
        "the physics closure; the MC events each model is worth (n<sub>equiv</sub>, &ge;: a "
        "lower bound) and its amplification G of the training sample.</caption>",
        "<tr>"
        + "".join(f'<th style="border:1px solid #999;padding:4px 8px">{h}</th>' for h in headers)
        + "</tr>",
    ]
    for r in rows:
        counted = [f"{r[c]} ({r[c + ' expected']:.1f})" if r[c] else "" for c in COUNTED.values()]
        closure = (
            ""
            if math.isnan(r["sig/bkg AUC gen - MC"])
            else f"{r['sig/bkg AUC gen - MC']:+.4f} &plusmn; {r['closure error']:.4f}"
        )
        cells = [
            esc(r["model"]),
            esc(r["description"]),
            f"{r['epochs']} ({_cell(r['best epoch'])})",
            _cell(r["best val NLL"]),
            *counted,
            f"{_cell(r['classifier AUC'])} {r['AUC interval']}",
            _cell(r["MC-vs-MC AUC"]),
            closure,
            *(esc(r.get(c, "")).replace("≥", "&ge;") for c in AMPLIFICATION_COLUMNS),
        ]
        colour = nl.STATUS_COLOURS.get(r["status"], nl.STATUS_COLOURS[nl.UNKNOWN])
        out.append(
            "<tr>"
            + "".join(f"{td}{c}</td>" for c in cells)
            + f'<td style="border:1px solid #999;padding:4px 8px;background:{colour};'
            f'font-weight:bold">{esc(r["status"])}</td></tr>'
        )
    out.append("</table>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Model comparison'
        "</title></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def write_comparison(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> None:
    """Write ``models.csv``, ``models.html`` and the figure ``models.{png,pdf}`` into
    ``out_dir`` (each appears only when complete)."""
    from hepflows.report.compare_plot import plot_comparison

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / layout.COMPARISON_FILES["comparison_table"], comparison_csv(rows))
    atomic_write_text(out_dir / layout.COMPARISON_FILES["comparison_html"], comparison_html(rows))
    plot_comparison(rows, out_dir / layout.COMPARISON_FILES["comparison_figure"])
