"""Exact arithmetic for `derive` values, amounts and outputs (see model.Expr).

Numbers are Fractions while an expression is worked out, so there is no
floating-point drift; a result stored as money or an integer is rounded half
up (a half penny or more counts as a penny). Percents travel as decimal text
("14.1"), which is exact.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, cast

from rules.language.model import (
    Add,
    Div,
    Expr,
    FactType,
    Lookup,
    MaxOf,
    MinOf,
    Mul,
    ParamType,
    PercentOf,
    PolicyVersion,
    Ref,
    Sub,
)


class ExpressionError(ValueError):
    """An expression cannot be worked out (division by zero)."""


def refs(expr: Expr | None) -> Iterator[Ref | Lookup]:
    """Every parameter, fact and table an expression reads."""
    if expr is None or isinstance(expr, int):
        return
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, Lookup):
        yield expr
        yield from refs(expr.row)
        yield from refs(expr.column)
    elif isinstance(expr, PercentOf):
        yield from refs(expr.percent)
        yield from refs(expr.of)
    else:
        for part in _parts(expr):
            yield from refs(part)


def fact_names(expr: Expr | None) -> list[str]:
    return [r.fact for r in refs(expr) if isinstance(r, Ref) and r.fact]


# An operation's operands by its type: hasattr on a pydantic model that lacks the field raises
# and catches inside __getattr__, slow on the path every amount is worked out on.
_OPERANDS: dict[type, str] = {Add: "add", Sub: "sub", Mul: "mul", Div: "div", MinOf: "min", MaxOf: "max"}


def _parts(expr) -> tuple:
    field = _OPERANDS.get(type(expr))
    if field is None:
        raise AssertionError(expr)
    return getattr(expr, field)


def number(value: Any) -> Fraction:
    """An engine value (int, or percent text) as an exact number."""
    return Fraction(value) if isinstance(value, str) else Fraction(int(value))


def evaluate(expr: Expr, pv: PolicyVersion, lookup: Callable[[str], Any]) -> Fraction:
    """Work out `expr`; `lookup(name)` gives a fact or derived value."""
    if isinstance(expr, bool):
        raise AssertionError("booleans are not numbers")
    if isinstance(expr, int):
        return Fraction(expr)
    if isinstance(expr, Ref):
        return number(pv.parameters[expr.param].value if expr.param else lookup(expr.fact))  # type: ignore[arg-type]  # a Ref names a parameter or a fact
    if isinstance(expr, PercentOf):
        return evaluate(expr.percent, pv, lookup) * evaluate(expr.of, pv, lookup) / 100
    if isinstance(expr, Lookup):
        table = cast("tuple[tuple[str, ...], ...]", pv.parameters[expr.lookup].value)  # a percent_table (checked)
        row = table[_index(expr.row, len(table), pv, lookup)]
        return number(row[_index(expr.column, len(row), pv, lookup)])
    values = [evaluate(p, pv, lookup) for p in _parts(expr)]
    if isinstance(expr, Add):
        return sum(values, Fraction(0))
    if isinstance(expr, Sub):
        return values[0] - values[1]
    if isinstance(expr, Mul):
        out = Fraction(1)
        for v in values:
            out *= v
        return out
    if isinstance(expr, Div):
        if values[1] == 0:
            raise ExpressionError("division by zero")
        return values[0] / values[1]
    if isinstance(expr, MinOf):
        return min(values)
    if isinstance(expr, MaxOf):
        return max(values)
    raise AssertionError(expr)


def _index(expr: Expr | None, size: int, pv: PolicyVersion, lookup) -> int:
    if expr is None:
        return 0
    return max(0, min(size - 1, int(round_half_up(evaluate(expr, pv, lookup)))))


def round_half_up(x: Fraction) -> int:
    """Nearest whole number; halves go up (away from zero for negatives)."""
    whole = (abs(x.numerator) * 2 + x.denominator) // (2 * x.denominator)
    return whole if x >= 0 else -whole


def percent_text(x: Fraction) -> str:
    """An exact percent as short decimal text (up to 4 places)."""
    scaled = round_half_up(x * 10_000)
    whole, frac = divmod(abs(scaled), 10_000)
    text = f"{whole}.{frac:04d}".rstrip("0").rstrip(".")
    return ("-" if scaled < 0 else "") + text


def store(kind: FactType | ParamType, x: Fraction) -> int | str:
    """How a worked-out number is kept: whole (rounded half up), or percent text."""
    if kind in (FactType.PERCENT, ParamType.PERCENT):
        return percent_text(x)
    return round_half_up(x)


def describe(expr: Expr) -> str:
    """An expression in words, for GetPolicy and reviewers."""
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, Ref):
        return expr.param or expr.fact  # type: ignore[return-value]  # a Ref names a parameter or a fact
    if isinstance(expr, PercentOf):
        return f"{describe(expr.percent)}% of {_wrap(expr.of)}"
    if isinstance(expr, Lookup):
        at = [f"{k} {describe(e)}" for k, e in (("row", expr.row), ("column", expr.column)) if e is not None]
        return f"{expr.lookup}[{', '.join(at)}]"
    if isinstance(expr, (MinOf, MaxOf)):
        name = "min" if isinstance(expr, MinOf) else "max"
        return f"{name}({', '.join(describe(p) for p in _parts(expr))})"
    seps: dict[type, str] = {Add: " + ", Sub: " − ", Mul: " × ", Div: " ÷ "}
    sep = seps[type(expr)]
    return sep.join(_wrap(p) for p in _parts(expr))


def _wrap(expr: Expr) -> str:
    text = describe(expr)
    return f"({text})" if isinstance(expr, (Add, Sub, Mul, Div)) else text
