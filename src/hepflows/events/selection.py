"""Event selections: a cut expression on branches, such as ``"(lepton_pt > 25) & (m_bb < 500)"``,
evaluated on chunks of arrays without evaluating Python.

The expression is parsed with :mod:`ast` and only these pieces are allowed: branch names,
numbers, ``True``/``False``, comparisons (``< <= > >= == !=``, chained too), ``&``, ``|``, ``~``
(and their spellings ``and``, ``or``, ``not``), arithmetic (``+ - * / // % **``, unary ``-``)
the functions ``abs``, ``sqrt``, ``exp``, ``log``, ``log10``, and for a jagged branch (a
collection such as ``jet_pt``) ``name[i]``, its element ``i`` (0 is the first), and
``len(name)``, its number of elements.  Anything else (attributes, other subscripts, other calls,
strings, lambdas) is refused when the configuration is read, naming the piece.  Evaluation is
numpy on the chunk's arrays (awkward for the jagged ones); a :class:`Selection`'s result must be
true or false per event.  In a selection an event without element ``i`` compares false; an
:class:`Expression` (a derived observable, one number per event) refuses such an event by name.

The language bounds its own work, since a configuration may come from anyone: an expression
is at most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels deep, numbers are float64
(so ``9**9**9`` is ``inf`` at once, never a Python integer of a billion digits; a whole number
meets ``&`` and ``|`` as int64, for bit flags), a constant part must be finite (``10.0**400`` is
refused) and a division, ``//`` or ``%`` by a constant zero is refused when the configuration is
read.  Every failure is an :class:`InputError`.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepflows.errors import InputError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Expression", "Selection"]

#: The longest expression read, in characters: a cut on a few dozen branches fits easily.
MAX_LENGTH = 2000
#: The deepest nesting of the parsed expression (a chain ``a + b + c`` nests one per term).
MAX_DEPTH = 64

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
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS = {"abs": np.abs, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "log10": np.log10}
_ALLOWED = (
    "numbers, comparisons, &, |, ~, arithmetic, abs/sqrt/exp/log/log10, name[i] and len(name)"
)


def _syntax_hint(expression: str) -> str:
    """A hint for the spellings of other languages (C++'s ``&&``, ``||``, ``!``)."""
    for other, ours in (("&&", "&"), ("||", "|")):
        if other in expression:
            return (
                f"; write {ours} (or {'and' if ours == '&' else 'or'}) for {other}, with each "
                "comparison in parentheses: (lepton_pt > 25) & (m_bb < 500)"
            )
    if "!" in expression.replace("!=", ""):
        return "; write ~ (or not) for !"
    return ""


class Selection:
    """A parsed cut expression: :attr:`names` (the branches it reads) and :meth:`mask`."""

    def __init__(self, expression: str, key: str = "data.selection") -> None:
        self.expression = expression
        self.key = key
        if not isinstance(expression, str) or not expression.strip():
            raise InputError(f"{key}: expected a cut expression on branches, got {expression!r}")
        if len(expression) > MAX_LENGTH:
            raise InputError(
                f"{key}: the expression is {len(expression)} characters long, expected at most "
                f"{MAX_LENGTH} (it starts {expression[:40]!r})"
            )
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise InputError(
                f"{key} {expression!r}: not a valid expression ({exc.msg}){_syntax_hint(expression)}"
            ) from None
        except (RecursionError, MemoryError, ValueError) as exc:  # the parser's own limits
            raise InputError(
                f"{key} {expression!r}: not a valid expression ({type(exc).__name__}: {exc})"
            ) from None
        self._tree = tree.body
        depth = _depth(self._tree)
        if depth > MAX_DEPTH:
            raise InputError(
                f"{key} {expression!r}: nested {depth} levels deep, expected at most {MAX_DEPTH} "
                "(a chain of many terms nests one level per term)"
            )
        names: dict[str, None] = {}
        #: jagged branches -> the number of elements the expression reads (0 for len() alone)
        self.jagged: dict[str, int] = {}
        self._scalar: set[str] = set()  # names read as one number per event
        self._check(self._tree, names)
        self.names: tuple[str, ...] = tuple(names)
        #: whether an event without the element read is refused (``Expression``) or fails a cut
        self.strict = False
        scalar_and_jagged = [n for n in self.jagged if n in self._scalar]
        if scalar_and_jagged:
            raise InputError(
                f"{key} {expression!r}: {scalar_and_jagged} used both as one number per event "
                "and as a collection (name[i], len(name)); write name[i] for an element"
            )
        if not self.names:
            raise InputError(f"{key} {expression!r}: names no branch")

    def conjuncts(self) -> list[ast.expr]:
        """The top-level terms joined by ``&`` (or ``and``): each must hold for an event to
        pass, so each can be checked on its own; a selection without one is its only term."""
        terms, todo = [], [self._tree]
        while todo:
            node = todo.pop()
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
                todo += [node.right, node.left]
            elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
                todo += reversed(node.values)
            else:
                terms.append(node)
        return terms

    def text(self, node: ast.AST) -> str:
        """The expression's own text of ``node``, one of its parts."""
        return ast.get_source_segment(self.expression.strip(), node) or ast.unparse(node)

    def _refuse(self, node: ast.AST, what: str) -> InputError:
        piece = ast.get_source_segment(self.expression.strip(), node) or type(node).__name__
        return InputError(
            f"{self.key} {self.expression!r}: {what} {piece!r} is not allowed; use branch names, "
            + _ALLOWED
        )

    def _check(self, node: ast.AST, names: dict[str, None]) -> None:
        if isinstance(node, ast.Name):
            if node.id not in ("True", "False"):
                names[node.id] = None
                self._scalar.add(node.id)
        elif isinstance(node, ast.Subscript):
            index = node.slice
            if not (
                isinstance(node.value, ast.Name)
                and isinstance(index, ast.Constant)
                and type(index.value) is int
                and index.value >= 0
            ):
                raise self._refuse(node, "the subscript")
            name = node.value.id
            names[name] = None
            self.jagged[name] = max(self.jagged.get(name, 0), index.value + 1)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "len"
            and len(node.args) == 1
            and not node.keywords
        ):
            if not isinstance(node.args[0], ast.Name):
                raise self._refuse(node, "the call")
            names[node.args[0].id] = None
            self.jagged.setdefault(node.args[0].id, 0)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) or not isinstance(node.value, (bool, int, float)):
                raise self._refuse(node, "the constant")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self._refuse(node, "the operator in")
            self._check(node.left, names)
            self._check(node.right, names)
            divisor = _constant(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and divisor == 0:
                raise self._refuse(node, "the division by a constant zero in")
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
            self._check_precedence(node)
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
        value = _constant(node)
        if value is not None and not np.isfinite(value):
            piece = ast.get_source_segment(self.expression.strip(), node) or "a constant"
            raise InputError(
                f"{self.key} {self.expression!r}: the constant part {piece!r} is {value}, "
                "expected a finite number"
            )

    def _check_precedence(self, node: ast.Compare) -> None:
        """Refuse ``a > 1 & b < 2``: ``&`` and ``|`` bind tighter than comparisons, so it reads
        ``a > (1 & b) < 2``, which numpy cannot compute on floats (or computes wrongly on ints)."""
        for operand in (node.left, *node.comparators):
            if (
                isinstance(operand, ast.BinOp)
                and isinstance(operand.op, (ast.BitAnd, ast.BitOr))
                and not self._parenthesised(operand)
            ):
                sign = "&" if isinstance(operand.op, ast.BitAnd) else "|"
                piece = ast.get_source_segment(self.expression.strip(), operand) or sign
                raise InputError(
                    f"{self.key} {self.expression!r}: {sign} binds tighter than a comparison, "
                    f"so this reads ({piece}) inside a comparison; put each comparison in "
                    f"parentheses, e.g. (lepton_pt > 25) {sign} (m_bb < 500), or write "
                    f"{'and' if sign == '&' else 'or'}"
                )

    def _parenthesised(self, node: ast.expr) -> bool:
        """Whether ``node`` is written inside its own parentheses (``(n & 1) == 1``): the
        tree forgets them, the text does not."""
        text = self.expression.strip()
        starts = np.cumsum([0] + [len(line) + 1 for line in text.split("\n")])
        first = int(starts[node.lineno - 1]) + node.col_offset
        end_line = node.end_lineno if node.end_lineno is not None else node.lineno
        end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset
        last = int(starts[end_line - 1]) + end_col
        return text[:first].rstrip().endswith("(") and text[last:].lstrip().startswith(")")

    def _eval(self, node: ast.AST, arrays: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return node.id == "True"
            return arrays[node.id]
        if isinstance(node, ast.Subscript):
            assert isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant)
            index = node.slice.value
            assert isinstance(index, int)  # checked when parsed
            return self._element(arrays[node.value.id], node.value.id, index)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
            assert isinstance(node.args[0], ast.Name)
            return _counts(arrays[node.args[0].id], node.args[0].id, self._where)
        if isinstance(node, ast.Constant):
            # numpy scalars, never Python ints: their arithmetic is O(1) and overflows to inf
            value = node.value
            assert isinstance(value, int | float)  # _check admitted only numbers
            return np.bool_(value) if isinstance(value, bool) else np.float64(value)
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, arrays), self._eval(node.right, arrays)
            if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
                left, right = _bit_operand(left), _bit_operand(right)
            return _BINARY[type(node.op)](left, right)
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

    _where = ""
    _entries: np.ndarray | None = None

    def _element(self, array: Any, name: str, i: int) -> np.ndarray:
        """Element ``i`` of each event's collection ``name`` (n,), float64; NaN where missing
        (a cut), or an InputError naming the first event without it (``strict``)."""
        counts = _counts(array, name, self._where)
        short = counts <= i
        if self.strict and short.any():
            first = int(np.argmax(short))
            entry = first if self._entries is None else int(self._entries[first])
            raise InputError(
                f"{self._where + ': ' if self._where else ''}{self.key} {self.expression!r}: "
                f"{name}[{i}] needs {i + 1} element(s) of branch {name!r}, but "
                f"{int(short.sum())} event(s) have fewer, the first at entry {entry} "
                f"(with {int(counts[first])}); select them away, e.g. "
                f'data.selection: "len({name}) >= {i + 1}"'
            )
        import awkward as ak

        padded = ak.pad_none(array, i + 1, axis=1)[:, i]
        return np.asarray(ak.to_numpy(ak.fill_none(padded, np.nan)), dtype=np.float64)

    def _evaluate(
        self, arrays: Mapping[str, Any], where: str, entries: np.ndarray | None = None
    ) -> np.ndarray:
        self._where, self._entries = where, entries
        try:
            with np.errstate(all="ignore"):  # log(0), x/0: comparisons of inf/NaN are just False
                return np.asarray(self._eval(self._tree, arrays))
        except InputError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:  # ~ of a float, int ** -int
            raise InputError(
                f"{where + ': ' if where else ''}{self.key} {self.expression!r}: {exc}"
            ) from None
        finally:
            self._where, self._entries = "", None

    def mask(
        self,
        arrays: Mapping[str, Any],
        n: int,
        where: str = "",
        entries: np.ndarray | None = None,
    ) -> np.ndarray:
        """Boolean array (n,): which events of the chunk pass.  ``arrays`` holds :attr:`names`
        (numpy arrays (n,); awkward arrays (n, var) for the :attr:`jagged` ones)."""
        value = self._evaluate(arrays, where, entries)
        if value.dtype != bool:
            raise InputError(
                f"{where + ': ' if where else ''}{self.key} {self.expression!r} gives {value.dtype} "
                "values, expected true or false per event (a comparison)"
            )
        return np.broadcast_to(value, (n,))

    def check(self, where: str) -> None:
        """Evaluate on one made-up event, to refuse a non-boolean expression before any work."""
        self.mask(_made_up_event(self), 1, where)


class Expression(Selection):
    """A derived observable, e.g. ``"jet_pt[0] + jet_pt[1] + lep_pt"``: one number per event.

    The same language as :class:`Selection`; an event without an element read (``jet_pt[3]``
    of an event with three jets) is an error naming the branch and the entry.
    """

    def __init__(self, expression: str, key: str) -> None:
        super().__init__(expression, key)
        self.strict = True

    def values(
        self, arrays: Mapping[str, Any], n: int, where: str = "", entries: np.ndarray | None = None
    ) -> np.ndarray:
        """The observable's values (n,), float64, of the chunk's ``arrays`` (as for ``mask``)."""
        value = self._evaluate(arrays, where, entries)
        if value.dtype.kind not in "biuf":
            raise InputError(
                f"{where + ': ' if where else ''}{self.key} {self.expression!r} gives "
                f"{value.dtype} values, expected a number per event"
            )
        return np.broadcast_to(value.astype(np.float64), (n,))

    def check(self, where: str) -> None:
        """Evaluate on one made-up event, to refuse a non-numeric expression before any work."""
        self.values(_made_up_event(self), 1, where)


def _made_up_event(expr: Selection) -> dict[str, Any]:
    """One event of zeros with as many elements as ``expr`` reads from each jagged branch."""
    import awkward as ak

    return {
        name: ak.Array([[0.0] * max(expr.jagged[name], 1)]) if name in expr.jagged else np.zeros(1)
        for name in expr.names
    }


def _counts(array: Any, name: str, where: str) -> np.ndarray:
    """Number of elements (n,) of each event's collection, for a jagged (awkward) array."""
    import awkward as ak

    try:
        return np.asarray(ak.to_numpy(ak.num(array, axis=1)))
    except Exception:  # a branch of one number per event has no axis 1
        raise InputError(
            f"{where + ': ' if where else ''}branch {name!r} holds one number per event, not a "
            f"collection: read it as {name}, not {name}[i] or len({name})"
        ) from None


def _depth(tree: ast.AST) -> int:
    """How deep ``tree`` nests, counted without recursion (a deep tree must not overflow)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _bit_operand(value: Any) -> Any:
    """A whole-number float64 constant as int64, so that bit flags (``(flags & 4) != 0``) work:
    numbers are read as float64, which numpy's ``&`` and ``|`` do not take."""
    if isinstance(value, np.floating) and value.is_integer() and abs(value) < 2.0**63:
        return np.int64(value)
    return value


def _constant(node: ast.AST) -> float | None:
    """The float64 value of a part without branch names, or None (it names a branch, or is
    boolean); numpy arithmetic, so it costs the same for ``9**9**9`` as for ``2**3``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            return None
        try:
            return float(node.value)
        except OverflowError:  # an integer literal beyond float64
            return math.inf
    with np.errstate(all="ignore"):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = _constant(node.operand)
            return (
                None if value is None else float(-value if isinstance(node.op, ast.USub) else value)
            )
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            left, right = _constant(node.left), _constant(node.right)
            if left is None or right is None:
                return None
            return float(_BINARY[type(node.op)](np.float64(left), np.float64(right)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
            value = _constant(node.args[0])
            if value is None or node.func.id not in _FUNCTIONS:
                return None
            return float(_FUNCTIONS[node.func.id](np.float64(value)))
    return None
