"""The validation's outputs for people and machines: metrics.json, metrics.csv, verdict.csv and
the verdict as HTML (the report) or reStructuredText.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hepflows import layout
from hepflows.atomic import atomic_write_text
from hepflows.validation import null as nl
from hepflows.validation.judge import (
    METRIC_TITLES,
)

CSV_COLUMNS = (
    "feature",
    "slice",
    "metric",
    "value",
    "null_mean",
    "null_p95",
    "ratio",
    "pvalue",
    "status",
)
VERDICT_COLUMNS = (
    "metric",
    "n_tested",
    "n_outside",
    "n_expected",
    "n_outside_null_p95",
    "worst_feature",
    "worst_slice",
    "worst_ratio",
    "worst_ratio_null_p95",
    "status",
)


def _fmt(v: object) -> str:
    """CSV cell: floats to 6 significant digits, missing values empty."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.6g}")
    return str(v)


def csv_text(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row[c]) for c in columns])
    return buf.getvalue()


def verdict_html(metrics: Mapping, *, full_document: bool = True) -> str:
    """The verdict as an HTML table with green/amber/red status cells.

    ``metrics`` is the dict returned by :func:`validate_samples` (or read from metrics.json).
    Inline styles only, so the table looks the same in the Snakemake report and standalone.
    """
    esc = html.escape
    band = metrics["settings"]["band"]
    lines = [
        _TABLE,
        '<caption style="text-align:left;padding:4px">Cells (feature &times; slice) outside '
        f"the MC-vs-MC null band (edge: rank {band['rank']} of {band['n_null']} null values; "
        f"chance rate {100 * band['chance_rate']:.1f} %). Overall: "
        f"<b>{esc(metrics['overall_status'])}</b></caption>",
        _row(_cell(h, tag="th") for h in _VERDICT_TITLES),
    ]
    for v in metrics["verdict"]:
        *cells, status = (esc(text) for text in _verdict_cells(v).values())
        lines.append(_row([*map(_cell, cells), _cell(status, status=v["status"])]))
    lines.append("</table>")
    return _page(lines, _verdict_notes(metrics), "Validation verdict", full_document)


def _verdict_notes(metrics: Mapping) -> list[str]:
    """The paragraphs under the verdict table: the classifier test and its judges, the signal
    fraction and the input weights, each where metrics.json holds it."""
    return [
        *_classifier_notes(metrics.get("classifier")),
        *_label_fraction_notes(metrics.get("label_fraction")),
        *_input_weight_notes(metrics.get("input_weights")),
    ]


def _classifier_notes(clf: Mapping | None) -> list[str]:
    if not clf:
        return []
    notes = [
        f"Classifier ROC AUC {clf['auc']:.3f} (95 % bootstrap interval "
        f"{clf['auc_lo']:.3f}-{clf['auc_hi']:.3f}); 0.5 means indistinguishable, "
        f"null band edge {clf['null']['edge']:.3f}."
    ]
    for j in clf.get("judges", []):
        notes.append(
            f"Judge {j['name']}: AUC {j['auc']:.3f} [{j['auc_lo']:.3f}, {j['auc_hi']:.3f}], "
            f"edge {j['edge']:.3f}, MC-vs-MC {_fmt_num(j['null_mean'], 3)}; inputs: "
            f"{', '.join(j['inputs'])}; trained on half of the compared held-out MC and "
            f"generated events{' (gives the verdict)' if j['verdict'] else ''}."
        )
    return notes


def _label_fraction_notes(lf: Mapping | None) -> list[str]:
    if not lf:
        return []
    if lf.get("chosen"):
        return [
            f"Signal fraction: MC {lf['reference']:.3g} (weighted), generated "
            f"{lf['generated']:.3g} (chosen: data.normalise per_process compares each "
            "process's shape, the mixture is sampling.signal_fraction)."
        ]
    return [
        f"Signal fraction: MC {lf['reference']:.3f}, generated "
        f"{lf['generated']:.3f} (p = {lf['pvalue']:.2g})."
    ]


def _input_weight_notes(iw: Mapping | None) -> list[str]:
    if not iw or not iw.get("weighted"):
        return []
    size = {k: f"{iw[k]['kish_effective_size']:.0f}" for k in ("all", "signal", "background")}
    return [
        f"Input (held-out MC) weights: {iw['all']['events']} events, Kish effective sample "
        f"size {size['all']} (signal {size['signal']}, background {size['background']})."
    ]


#: The verdict table's columns, in order.
_VERDICT_TITLES = (
    "Metric",
    "Outside band",
    "Expected by chance",
    "Null 95 % of count",
    "Worst cell",
    "Worst ratio",
    "Status",
)


def _verdict_cells(v: Mapping) -> dict[str, str]:
    """One metric's row of the verdict table (a ``verdict`` entry of metrics.json), as plain
    text by column title (:data:`_VERDICT_TITLES`)."""
    worst = f"{v['worst_feature']} ({v['worst_slice']})" if v["worst_feature"] else "-"
    return {
        "Metric": METRIC_TITLES.get(v["metric"], v["metric"]),
        "Outside band": f"{v['n_outside']} / {v['n_tested']}",
        "Expected by chance": _fmt_num(v["n_expected"], 1),
        "Null 95 % of count": _fmt_num(v["n_outside_null_p95"], 0),
        "Worst cell": worst,
        "Worst ratio": _fmt_num(v["worst_ratio"], 2),
        "Status": v["status"],
    }


def _fmt_num(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def verdict_rst(metrics: Mapping) -> str:
    """The verdict as a reStructuredText list-table (status as text), e.g. for captions."""
    titles = [t for t in _VERDICT_TITLES if t != "Null 95 % of count"]
    out = [
        ".. list-table:: Verdict: cells outside the MC-vs-MC null band",
        "   :header-rows: 1",
        "",
        *(f"   {'*' if i == 0 else ' '} - {t}" for i, t in enumerate(titles)),
    ]
    for v in metrics["verdict"]:
        cells = {**_verdict_cells(v), "Status": f"**{v['status']}**"}
        out += [f"   {'*' if i == 0 else ' '} - {cells[t]}" for i, t in enumerate(titles)]
    return "\n".join(out) + "\n"


def write_tables(
    out_dir: Path, result: Mapping, rows: Sequence[Mapping], verdict: Sequence[Mapping]
) -> None:
    """metrics.json, metrics.csv, verdict.csv and verdict.html into ``out_dir``, each atomically
    (names from :data:`hepflows.layout.VALIDATION_FILES`)."""
    names = layout.VALIDATION_FILES
    atomic_write_text(out_dir / names["metrics"], json.dumps(result, indent=1, allow_nan=False))
    atomic_write_text(out_dir / names["metrics_table"], csv_text(rows, CSV_COLUMNS))
    atomic_write_text(out_dir / names["verdict_table"], csv_text(verdict, VERDICT_COLUMNS))
    atomic_write_text(out_dir / names["verdict"], verdict_html(result))


def refine_html(
    raw: Mapping,
    reweighted: Mapping,
    report: Mapping,
    *,
    n_equiv: tuple[str, str] | None = None,
    full_document: bool = True,
) -> str:
    """The raw and reweighted verdicts side by side (the refine step), as an HTML table.

    ``raw`` and ``reweighted`` are metrics.json dicts of the same events without and with the
    refine weights, against the same MC; ``report`` is refine.json (the classifier and the
    weights); ``n_equiv`` the amplification's headline of each, when measured.
    """
    esc = html.escape

    def status_cell(v: Mapping) -> str:
        return _cell(f"{v['n_outside']} / {v['n_tested']} {esc(v['status'])}", status=v["status"])

    other = {v["metric"]: v for v in reweighted["verdict"]}
    lines = [
        _TABLE,
        '<caption style="text-align:left;padding:4px">Raw and reweighted (refine) verdicts: '
        "cells outside the MC-vs-MC band. Overall: raw "
        f"<b>{esc(raw['overall_status'])}</b>, reweighted "
        f"<b>{esc(reweighted['overall_status'])}</b></caption>",
        _row(_cell(h, tag="th") for h in ("Metric", "Raw", "Reweighted")),
    ]
    for v in raw["verdict"]:
        if v["metric"] in other:
            title = _cell(esc(METRIC_TITLES.get(v["metric"], v["metric"])))
            lines.append(_row([title, status_cell(v), status_cell(other[v["metric"]])]))
    rows: list[tuple[str, str, str]] = []
    clf_raw, clf_rew = raw.get("classifier"), reweighted.get("classifier")
    if clf_raw and clf_rew:
        rows.append(("Classifier ROC AUC, value", f"{clf_raw['auc']:.4f}", f"{clf_rew['auc']:.4f}"))
        families = report["fit"].get("families", [report["fit"].get("family", "gbt")])
        rew_judges = {j["name"]: j for j in clf_rew.get("judges", [])}
        for j in clf_raw.get("judges", []):
            if j["name"] in rew_judges:
                whose = "the reweighter's" if len(families) == 1 else "a reweighter's"
                same = f" ({whose} family)" if j["family"] in families else ""
                label = f"AUC of judge {esc(j['name'])}{same}"
                rows.append((label, f"{j['auc']:.4f}", f"{rew_judges[j['name']]['auc']:.4f}"))
    if n_equiv is not None:
        rows.append(("n_equiv (amplification)", esc(n_equiv[0]), esc(n_equiv[1])))
    lines += [_row(map(_cell, row)) for row in rows]
    lines.append("</table>")
    fit, w = report["fit"], report["weights"]
    compared = reweighted["sizes"]["generated"]
    notes = [
        f"Weights of the {w['events']} generated events: Kish effective sample size "
        f"{w['ess']:.0f} ({100 * w['ess'] / max(w['events'], 1):.1f} %), "
        f"{100 * w['fraction_clipped']:.3f} % clipped at {w['clip']:g} (largest before the "
        f"clip {w['max_before_clip']:.3g}); the reweighted verdict compares {compared} of them, "
        "each null pair's generated side carrying the same weights.",
        f"Refine classifier: {fit['n_mc']} MC vs {fit['n_generated']} generated events, "
        f"held-out AUC {fit['auc_check']:.4f}, calibration error {fit['ece_uncalibrated']:.4f} "
        f"before and {fit['ece_calibrated']:.4f} after Platt scaling.",
        str(report["disjoint"]),
    ]
    return _page(lines, notes, "Raw and reweighted verdicts", full_document)


def write_refine_comparison(
    path: str | Path, raw: Mapping, reweighted: Mapping, report: Mapping
) -> Path:
    """:func:`refine_html` written atomically to ``path``."""
    atomic_write_text(path, refine_html(raw, reweighted, report))
    return Path(path)


#: The report's tables: collapsed borders, the page's font.
_TABLE = '<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">'


def _cell(text: str, *, tag: str = "td", status: str | None = None) -> str:
    """One cell of a report table, ``text`` already HTML; with ``status``, the cell is bold on
    that status's colour (:data:`hepflows.validation.null.STATUS_COLOURS`)."""
    style = "border:1px solid #999;padding:4px 8px"
    if status is not None:
        colour = nl.STATUS_COLOURS.get(status, nl.STATUS_COLOURS[nl.UNKNOWN])
        style += f";background:{colour};font-weight:bold"
    return f'<{tag} style="{style}">{text}</{tag}>'


def _row(cells: Iterable[str]) -> str:
    """One table row of cells made by :func:`_cell`."""
    return "<tr>" + "".join(cells) + "</tr>"


def _page(lines: list[str], notes: list[str], title: str, full_document: bool) -> str:
    """The HTML lines followed by the notes as paragraphs; a whole page when ``full_document``."""
    body = "\n".join(
        lines + [f'<p style="font-family:sans-serif">{html.escape(n)}</p>' for n in notes]
    )
    if not full_document:
        return body
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}'
        f"</title></head><body>\n{body}\n</body></html>\n"
    )
