"""The validation's outputs for people and machines: metrics.json, metrics.csv, verdict.csv and
the verdict as HTML (the report) or reStructuredText.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
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
        '<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">',
        '<caption style="text-align:left;padding:4px">Cells (feature &times; slice) outside '
        f"the MC-vs-MC null band (edge: rank {band['rank']} of {band['n_null']} null values; "
        f"chance rate {100 * band['chance_rate']:.1f} %). Overall: "
        f"<b>{esc(metrics['overall_status'])}</b></caption>",
        "<tr>"
        + "".join(
            f'<th style="border:1px solid #999;padding:4px 8px">{h}</th>'
            for h in (
                "Metric",
                "Outside band",
                "Expected by chance",
                "Null 95 % of count",
                "Worst cell",
                "Worst ratio",
                "Status",
            )
        )
        + "</tr>",
    ]
    for v in metrics["verdict"]:
        worst = f"{v['worst_feature']} ({v['worst_slice']})" if v["worst_feature"] else "-"
        colour = nl.STATUS_COLOURS.get(v["status"], nl.STATUS_COLOURS[nl.UNKNOWN])
        cells = [
            esc(METRIC_TITLES.get(v["metric"], v["metric"])),
            f"{v['n_outside']} / {v['n_tested']}",
            _fmt_num(v["n_expected"], 1),
            _fmt_num(v["n_outside_null_p95"], 0),
            esc(worst),
            _fmt_num(v["worst_ratio"], 2),
        ]
        lines.append(
            "<tr>"
            + "".join(f'<td style="border:1px solid #999;padding:4px 8px">{c}</td>' for c in cells)
            + f'<td style="border:1px solid #999;padding:4px 8px;background:{colour};'
            f'font-weight:bold">{esc(v["status"])}</td></tr>'
        )
    lines.append("</table>")
    notes = []
    clf = metrics.get("classifier")
    if clf:
        notes.append(
            f"Classifier ROC AUC {clf['auc']:.3f} (95 % bootstrap interval "
            f"{clf['auc_lo']:.3f}-{clf['auc_hi']:.3f}); 0.5 means indistinguishable, "
            f"null band edge {clf['null']['edge']:.3f}."
        )
        for j in clf.get("judges", []):
            notes.append(
                f"Judge {j['name']}: AUC {j['auc']:.3f} [{j['auc_lo']:.3f}, {j['auc_hi']:.3f}], "
                f"edge {j['edge']:.3f}, MC-vs-MC {_fmt_num(j['null_mean'], 3)}; inputs: "
                f"{', '.join(j['inputs'])}; trained on half of the compared held-out MC and "
                f"generated events{' (gives the verdict)' if j['verdict'] else ''}."
            )
    lf = metrics.get("label_fraction")
    if lf and lf.get("chosen"):
        notes.append(
            f"Signal fraction: MC {lf['reference']:.3g} (weighted), generated "
            f"{lf['generated']:.3g} (chosen: data.normalise per_process compares each "
            "process's shape, the mixture is sampling.signal_fraction)."
        )
    elif lf:
        notes.append(
            f"Signal fraction: MC {lf['reference']:.3f}, generated "
            f"{lf['generated']:.3f} (p = {lf['pvalue']:.2g})."
        )
    iw = metrics.get("input_weights")
    if iw and iw.get("weighted"):
        notes.append(
            f"Input (held-out MC) weights: {iw['all']['events']} events, Kish effective sample "
            f"size {iw['all']['kish_effective_size']:.0f} (signal "
            f"{iw['signal']['kish_effective_size']:.0f}, background "
            f"{iw['background']['kish_effective_size']:.0f})."
        )
    return _page(lines, notes, "Validation verdict", full_document)


def _fmt_num(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def verdict_rst(metrics: Mapping) -> str:
    """The verdict as a reStructuredText list-table (status as text), e.g. for captions."""
    out = [
        ".. list-table:: Verdict: cells outside the MC-vs-MC null band",
        "   :header-rows: 1",
        "",
        "   * - Metric",
        "     - Outside band",
        "     - Expected by chance",
        "     - Worst cell",
        "     - Worst ratio",
        "     - Status",
    ]
    for v in metrics["verdict"]:
        worst = f"{v['worst_feature']} ({v['worst_slice']})" if v["worst_feature"] else "-"
        out += [
            f"   * - {METRIC_TITLES.get(v['metric'], v['metric'])}",
            f"     - {v['n_outside']} / {v['n_tested']}",
            f"     - {_fmt_num(v['n_expected'], 1)}",
            f"     - {worst}",
            f"     - {_fmt_num(v['worst_ratio'], 2)}",
            f"     - **{v['status']}**",
        ]
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
    td = 'style="border:1px solid #999;padding:4px 8px"'

    def status_cell(v: Mapping) -> str:
        colour = nl.STATUS_COLOURS.get(v["status"], nl.STATUS_COLOURS[nl.UNKNOWN])
        return (
            f'<td {td[:-1]};background:{colour};font-weight:bold">'
            f"{v['n_outside']} / {v['n_tested']} {esc(v['status'])}</td>"
        )

    other = {v["metric"]: v for v in reweighted["verdict"]}
    lines = [
        '<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">',
        '<caption style="text-align:left;padding:4px">Raw and reweighted (refine) verdicts: '
        "cells outside the MC-vs-MC band. Overall: raw "
        f"<b>{esc(raw['overall_status'])}</b>, reweighted "
        f"<b>{esc(reweighted['overall_status'])}</b></caption>",
        "<tr>" + "".join(f"<th {td}>{h}</th>" for h in ("Metric", "Raw", "Reweighted")) + "</tr>",
    ]
    for v in raw["verdict"]:
        if v["metric"] in other:
            lines.append(
                f"<tr><td {td}>{esc(METRIC_TITLES.get(v['metric'], v['metric']))}</td>"
                f"{status_cell(v)}{status_cell(other[v['metric']])}</tr>"
            )
    clf_raw, clf_rew = raw.get("classifier"), reweighted.get("classifier")
    if clf_raw and clf_rew:
        lines.append(
            f"<tr><td {td}>Classifier ROC AUC, value</td><td {td}>{clf_raw['auc']:.4f}</td>"
            f"<td {td}>{clf_rew['auc']:.4f}</td></tr>"
        )
        families = report["fit"].get("families", [report["fit"].get("family", "gbt")])
        rew_judges = {j["name"]: j for j in clf_rew.get("judges", [])}
        for j in clf_raw.get("judges", []):
            if j["name"] in rew_judges:
                whose = "the reweighter's" if len(families) == 1 else "a reweighter's"
                same = f" ({whose} family)" if j["family"] in families else ""
                lines.append(
                    f"<tr><td {td}>AUC of judge {esc(j['name'])}{same}</td>"
                    f"<td {td}>{j['auc']:.4f}</td><td {td}>{rew_judges[j['name']]['auc']:.4f}</td></tr>"
                )
    if n_equiv is not None:
        lines.append(
            f"<tr><td {td}>n_equiv (amplification)</td><td {td}>{esc(n_equiv[0])}</td>"
            f"<td {td}>{esc(n_equiv[1])}</td></tr>"
        )
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
