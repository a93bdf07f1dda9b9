"""The selection language bounds its own work: whatever a configuration holds, reading and
evaluating a cut either gives a mask or an InputError, at once (tests/test_inputs.py has what
the language accepts and evaluates)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hepflows.errors import InputError
from hepflows.events.selection import MAX_DEPTH, MAX_LENGTH, Selection

ARRAYS = {
    "a": np.array([1.0, -2.0, 0.0, np.inf, np.nan]),
    "b": np.array([5, 0, -4, 2, 1], dtype=np.int64),
}

# (expression, words of the InputError)
REFUSED = {
    "tower of powers": ("a > 9**9**9", ["'9**9**9'", "inf", "finite"]),
    "division by zero": ("a > 1/0", ["division by a constant zero", "'1/0'"]),
    "modulo zero": ("a > 1 % 0", ["division by a constant zero"]),
    "floor division by a zero expression": ("a // (2 - 2) > 1", ["constant zero"]),
    "overflowing power": ("a < 10.0**400", ["'10.0**400'", "finite"]),
    "huge integer literal": ("a < 1" + "0" * 400, ["finite"]),
    "constant nan": ("a < sqrt(-1)", ["'sqrt(-1)'", "nan"]),
    "many unary minus": ("-" * 10_000 + "a > 0", ["10005 characters", f"at most {MAX_LENGTH}"]),
    "long chain": (" + ".join(["a"] * 3000) + " > 0", [f"at most {MAX_LENGTH}"]),
    "deep chain": (" + ".join(["a"] * 200) + " > 0", ["levels deep", f"at most {MAX_DEPTH}"]),
    "deep unary": ("-" * 500 + "a > 0", ["levels deep"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unbounded_work_is_refused_when_read(case):
    """Run in a subprocess so that a hang (9**9**9 took minutes) fails instead of blocking."""
    expression, words = REFUSED[case]
    code = (
        "import sys\n"
        "from hepflows.errors import InputError\n"
        "from hepflows.events.selection import Selection\n"
        "try:\n"
        "    Selection(sys.stdin.read()).check('test')\n"
        "except InputError as err:\n"
        "    print(err)\n"
        "else:\n"
        "    print('accepted')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=expression, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout
    assert message.startswith("data.selection"), message
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in {message!r}"


def test_numbers_are_float64_so_branches_divide_freely():
    """Only a constant zero divisor is refused: a branch holding zeros divides to inf (nan
    fails every comparison); an integer branch to a negative power is a float."""
    mask = Selection("1 / b > 0.3").mask(ARRAYS, 5)
    assert mask.tolist() == [False, True, False, True, True]
    assert Selection("a ** 1000 > 1e300").mask(ARRAYS, 5).tolist() == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert Selection("b ** -1 < 0").mask(ARRAYS, 5).tolist() == [False, False, True, False, False]


def test_a_chain_within_the_limits_evaluates():
    sel = Selection(" + ".join(["a"] * (MAX_DEPTH - 2)) + " > 0")
    assert sel.mask(ARRAYS, 5).tolist() == [True, False, False, True, False]


NAMES = st.sampled_from(["a", "b", "True", "False"])
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0", "0.0", "9**9**9", "1e308", "1e-320"]),
)
BINARY = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "&",
    "|",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "and",
    "or",
]


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(st.sampled_from(["-", "+", "~", "not "]), inner).map("".join),
            st.tuples(st.sampled_from(["abs", "sqrt", "exp", "log", "log10"]), inner).map(
                lambda t: f"{t[0]}({t[1]})"
            ),
            st.tuples(st.sampled_from(["-", "~"]), st.integers(1, 3000), inner).map(
                lambda t: t[0] * t[1] + t[2]
            ),
        )

    return st.recursive(st.one_of(NAMES, NUMBERS), extend, max_leaves=40)


def _evaluate_or_refuse(expression: str) -> None:
    try:
        sel = Selection(expression)
        sel.check("test")
        mask = sel.mask({name: ARRAYS.get(name, ARRAYS["a"]) for name in sel.names}, 5)
    except InputError:
        return
    assert mask.dtype == bool and mask.shape == (5,)


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions())
def test_random_expressions_evaluate_or_are_refused(expression):
    """Every expression of the language's pieces gives a mask or an InputError, never another
    exception; hypothesis's deadline (5 s an example, against a hang) bounds the time."""
    _evaluate_or_refuse(expression)


@settings(max_examples=200, deadline=5000)
@given(st.text(alphabet="ab01.e+-*/%()<>=!&|~ ", max_size=200))
def test_random_text_evaluates_or_is_refused(text):
    _evaluate_or_refuse(text)
