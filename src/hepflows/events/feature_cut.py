"""The ingest selection restated on the features, so that generated events can be held to it.

``data.selection`` reads branches at ingest; a generated event has only the features.  Each
top-level term of the selection (joined by ``&`` or ``and``, :meth:`Selection.conjuncts`) is
rewritten in feature names: a branch read by a feature (``data.branch_map``, or its own name)
becomes that feature, and a part written exactly as a ``derived`` expression
(``jet_pt[0] + jet_pt[1] + lep_pt``) becomes the derived feature.  A term that still reads
anything else (``len(jet_pt) >= 4``: no feature holds the jet count) cannot be checked on
generated events and is skipped, by name.  An event passes the selection only if it passes
every term, so the kept terms are a looser cut that every training event passes too.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hepflows.events.selection import Selection

__all__ = ["FeatureCut", "feature_cut"]


@dataclass(frozen=True)
class FeatureCut:
    """``expression``: the checkable terms in feature names, joined by ``&`` (None: none);
    ``skipped``: the terms, as written in the selection, that read more than the features."""

    expression: str | None
    skipped: tuple[str, ...] = ()


def feature_cut(
    selection: str | None,
    features: Sequence[str],
    branch_map: Mapping[str, str] | None = None,
    derived: Mapping[str, str] | None = None,
) -> FeatureCut:
    """The terms of ``selection`` (an expression on branches) that read only ``features``,
    rewritten in the features' names (see the module)."""
    if not selection:
        return FeatureCut(None)
    cut = Selection(selection)
    derived = dict(derived or {})
    # a branch -> the feature that reads it (the first, when several read one branch)
    by_branch: dict[str, str] = {}
    for f in features:
        if f not in derived:
            by_branch.setdefault(dict(branch_map or {}).get(f, f), f)
    by_shape = {
        ast.dump(ast.parse(text.strip(), mode="eval").body): f for f, text in derived.items()
    }
    kept, skipped = [], []
    for term in cut.conjuncts():
        rewritten = _rename(term, by_branch, by_shape)
        if rewritten is None:
            skipped.append(cut.text(term))
        else:
            kept.append(rewritten)
    return FeatureCut(" & ".join(kept) or None, tuple(skipped))


def _rename(
    node: ast.expr, by_branch: Mapping[str, str], by_shape: Mapping[str, str]
) -> str | None:
    """``node`` written in feature names, every operation in parentheses (so that ``&`` and
    comparisons never need precedence rules); None if it reads anything but features."""
    if ast.dump(node) in by_shape:
        return by_shape[ast.dump(node)]
    if isinstance(node, ast.Name):
        if node.id in ("True", "False"):
            return node.id
        return by_branch.get(node.id)
    if isinstance(node, ast.Constant):
        return repr(node.value)
    parts: list[str | None]
    if isinstance(node, ast.BinOp):
        parts = [_rename(node.left, by_branch, by_shape)]
        parts.append(_rename(node.right, by_branch, by_shape))
        op = _OPERATORS[type(node.op)]
        return None if None in parts else f"({parts[0]} {op} {parts[1]})"
    if isinstance(node, ast.UnaryOp):
        inner = _rename(node.operand, by_branch, by_shape)
        op = {ast.Invert: "~", ast.Not: "not ", ast.USub: "-", ast.UAdd: "+"}[type(node.op)]
        return None if inner is None else f"({op}{inner})"
    if isinstance(node, ast.BoolOp):
        parts = [_rename(v, by_branch, by_shape) for v in node.values]
        op = " and " if isinstance(node.op, ast.And) else " or "
        return None if None in parts else f"({op.join(p or '' for p in parts)})"
    if isinstance(node, ast.Compare):
        parts = [_rename(v, by_branch, by_shape) for v in (node.left, *node.comparators)]
        if None in parts:
            return None
        text = parts[0] or ""
        for compare, right in zip(node.ops, parts[1:]):
            text += f" {_OPERATORS[type(compare)]} {right}"
        return f"({text})"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id != "len":
        inner = _rename(node.args[0], by_branch, by_shape)
        return None if inner is None else f"{node.func.id}({inner})"
    return None  # name[i] or len(name) that no derived feature holds


_OPERATORS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
