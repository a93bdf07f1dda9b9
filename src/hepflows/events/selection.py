"""Event selections: a cut expression on branches, such as ``"(lepton_pt > 25) & (m_bb < 500)"``,
evaluated on chunks of arrays without evaluating Python.

The expression is parsed with :mod:`ast` and only these pieces are allowed: branch names,
numbers, ``True``/``False``, comparisons (``< <= > >= == !=``, chained too), ``&``, ``|``, ``~``
(and their spellings ``and``, ``or``, ``not``), arithmetic (``+ - * / // % **``, unary ``-``)
and the functions ``abs``, ``sqrt``, ``exp``, ``log``, ``log10``.  Anything else (attributes,
subscripts, other calls, strings, lambdas) is refused when the configuration is read, naming
the piece.  Evaluation is numpy on the chunk's arrays; the result must be true or false per
event.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepflows.errors import InputError

__all__ = ["Selection"]

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS = {"abs": np.abs, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "log10": np.log10}


class Selection:
    """A parsed cut expression: :attr:`names` (the branches it reads) and :meth:`mask`."""

    def __init__(self, expression: str, key: str = "data.selection") -> None:
        self.expression = expression
        self.key = key
        if not isinstance(expression, str) or not expression.strip():
            raise InputError(f"{key}: expected a cut expression on branches, got {expression!r}")
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise InputError(f"{key} {expression!r}: not a valid expression ({exc.msg})") from None
        self._tree = tree.body
        names: dict[str, None] = {}
        self._check(self._tree, names)
        self.names: tuple[str, ...] = tuple(names)
        if not self.names:
            raise InputError(f"{key} {expression!r}: names no branch")

    def _refuse(self, node: ast.AST, what: str) -> InputError:
        piece = ast.get_source_segment(self.expression.strip(), node) or type(node).__name__
        return InputError(
            f"{self.key} {self.expression!r}: {what} {piece!r} is not allowed; use branch names, "
            "numbers, comparisons, &, |, ~, arithmetic and abs/sqrt/exp/log/log10"
        )

    def _check(self, node: ast.AST, names: dict[str, None]) -> None:
        if isinstance(node, ast.Name):
            if node.id not in ("True", "False"):
                names[node.id] = None
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) or not isinstance(node.value, (bool, int, float)):
                raise self._refuse(node, "the constant")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self._refuse(node, "the operator in")
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Invert, ast.Not, ast.USub, ast.UAdd)):
                raise self._refuse(node, "the operator in")
            self._check(node.operand, names)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v, names)
        elif isinstance(node, ast.Compare):
            if any(type(op) not in _COMPARE for op in node.ops):
                raise self._refuse(node, "the comparison")
            for v in (node.left, *node.comparators):
                self._check(v, names)
        elif isinstance(node, ast.Call):
            if not (
                isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS
                and len(node.args) == 1
                and not node.keywords
            ):
                raise self._refuse(node, "the call")
            self._check(node.args[0], names)
        else:
            raise self._refuse(node, "the expression")

    def _eval(self, node: ast.AST, arrays: Mapping[str, np.ndarray]) -> Any:
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return node.id == "True"
            return arrays[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](
                self._eval(node.left, arrays), self._eval(node.right, arrays)
            )
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, arrays)
            if isinstance(node.op, (ast.Invert, ast.Not)):
                return np.logical_not(v) if np.asarray(v).dtype == bool else ~v
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = self._eval(node.values[0], arrays)
            for v in node.values[1:]:
                out = combine(out, self._eval(v, arrays))
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, arrays)
            passed: Any = True
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, arrays)
                passed = np.logical_and(passed, _COMPARE[type(op)](left, right))
                left = right
            return passed
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](self._eval(node.args[0], arrays))

    def values(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """The expression's value per event, float64 (n,), for an arithmetic expression of
        branches (a derived observable); ``arrays`` holds :attr:`names`.  log(0), x/0 give
        -inf, inf or NaN, as numpy does."""
        with np.errstate(all="ignore"):
            return np.asarray(self._eval(self._tree, arrays), dtype=np.float64)

    def mask(self, arrays: Mapping[str, np.ndarray], n: int, where: str = "") -> np.ndarray:
        """Boolean array (n,): which events of the chunk pass.  ``arrays`` holds :attr:`names`."""
        try:
            with np.errstate(all="ignore"):  # log(0), x/0: comparisons of inf/NaN are just False
                value = np.asarray(self._eval(self._tree, arrays))
        except TypeError as exc:  # e.g. ~ of a float branch
            raise InputError(
                f"{where + ': ' if where else ''}{self.key} {self.expression!r}: {exc}"
            ) from None
        if value.dtype != bool:
            raise InputError(
                f"{where + ': ' if where else ''}{self.key} {self.expression!r} gives {value.dtype} "
                "values, expected true or false per event (a comparison)"
            )
        return np.broadcast_to(value, (n,))

    def check(self, where: str) -> None:
        """Evaluate on one made-up event, to refuse a non-boolean expression before any work."""
        self.mask({name: np.zeros(1) for name in self.names}, 1, where)
