"""The amplification's verdict as a small standalone HTML page, ``amplification_summary.html``:
the statistics are :mod:`hepflows.validation.amplification`'s."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepflows.atomic import atomic_write_text
from hepflows.validation.amplification import DEFAULT_ALPHA, events_text, headline, summarize


def write_summary_html(
    rows: Sequence[Mapping[str, Any]], path: str | Path, alpha: float = DEFAULT_ALPHA
) -> Path:
    """The amplification's verdict as a small standalone HTML page (atomically): the
    :func:`headline`, then per partition (joint, worst feature) n_equiv, its lower limit, the
    worth of the generated sample and G, and the count of cells with a significant excess."""
    esc = html.escape
    head = summarize(rows, alpha)
    first = rows[0] if rows else {}
    th = '<th style="border:1px solid #999;padding:4px 8px">'
    td = '<td style="border:1px solid #999;padding:4px 8px">'

    def fmt(v: Any, bound: bool = False) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return ("&ge; " if bound else "") + esc(events_text(float(v)))

    out = [
        '<table style="border-collapse:collapse;font-family:sans-serif;font-size:14px">',
        '<caption style="text-align:left;padding:4px"><b>' + esc(headline(head)) + "</b></caption>",
        "<tr>"
        + "".join(
            f"{th}{h}</th>"
            for h in (
                "partition",
                "worst cell",
                "n_equiv (MC events)",
                f"lower limit ({100 * (1 - alpha):g} % CL)",
                "worth of the generated sample",
                "G = n_equiv / n_train",
                "G lower limit",
            )
        )
        + "</tr>",
    ]
    for key, label in (("joint", "joint (k-means cells)"), ("features", "per feature")):
        w = head[key]
        if not w:
            continue
        g = (
            ""
            if w["G"] is None or math.isnan(w["G"])
            else ("&ge; " if w["lower_bound"] else "") + f"{w['G']:.3g}"
        )
        g_lo = "" if w["G_lo"] is None or math.isnan(w["G_lo"]) else f"{w['G_lo']:.3g}"
        out.append(
            "<tr>"
            + "".join(
                f"{td}{c}</td>"
                for c in (
                    label,
                    esc(f"{w['feature']} ({w['slice']})"),
                    fmt(w["n_equiv"], w["lower_bound"]),
                    fmt(w["n_equiv_lo"]),
                    fmt(w["worth"], w["lower_bound"]),
                    g,
                    g_lo,
                )
            )
            + "</tr>"
        )
    out.append("</table>")
    note = (
        f"<p>{head['n_significant']} of {head['n_cells']} cells (feature &times; slice, and "
        f"the joint partition per slice) show a significant excess at level {alpha:g}, "
        f"about {head['n_expected']:.1f} expected by chance for a bias-free sample. "
        f"Truth: {fmt(first.get('n_truth'))} events; generated: "
        f"{fmt(first.get('n_generated'))}; training: {fmt(first.get('n_train'))}. "
        "&ge;: no significant excess, the number is what this truth and sample resolve.</p>"
    )
    doc = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Amplification'
        "</title></head><body>\n" + "\n".join(out) + "\n" + note + "\n</body></html>\n"
    )
    path = Path(path)
    atomic_write_text(path, doc)
    return path
