"""The closes' compiled arithmetic (compiler._worker) is worth exactly what arith.evaluate gives,
for every expression the shipped policies hold and for the shapes they do not (min, max, a table
index past its end, division by zero)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.engine import compiler
from rules.language import arith
from rules.language.checks import expressions
from rules.language.model import Add, Div, FactType, Lookup, MaxOf, MinOf, Mul, PercentOf, Ref, Sub

NUMBERS = st.integers(-10**9, 10**9)
PERCENTS = st.decimals(-1000, 1000, places=4, allow_nan=False, allow_infinity=False).map(lambda d: str(d.normalize()))


def _shipped(bundle):
    for versions in bundle.policies.values():
        for c in versions.values():
            for rule in c.version.rules:
                for _, expr in expressions(rule):
                    yield c, expr


def _same(expr, pv, known) -> None:
    try:
        expected = arith.evaluate(expr, pv, known.__getitem__)
    except arith.ExpressionError:
        with pytest.raises(arith.ExpressionError):
            compiler._worker(expr, pv)(known)
        return
    got = compiler._worker(expr, pv)(known)
    assert got == expected and arith.store(FactType.MONEY, got) == arith.store(FactType.MONEY, expected)
    assert arith.store(FactType.PERCENT, got) == arith.store(FactType.PERCENT, expected)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_shipped_expression(bundle, data):
    for compiled, expr in _shipped(bundle):
        known = {name: data.draw(PERCENTS if compiled.kinds.get(name) is FactType.PERCENT else NUMBERS)
                 for name in arith.fact_names(expr)}
        _same(expr, compiled.version, known)


@settings(max_examples=200, deadline=None)
@given(st.integers(-5, 9), st.integers(-5, 9), NUMBERS, NUMBERS, PERCENTS)
def test_other_shapes(bundle, row, column, a, b, percent):
    pv = bundle.policies["maintenance_calculation"]["2012"].version
    known = {"row": row, "column": column, "a": a, "b": b, "p": percent}
    fact = {name: Ref(fact=name) for name in known}
    for expr in (Lookup(lookup="reduced_rates", row=fact["row"], column=Sub(sub=(fact["column"], 1))),
                 MinOf(min=(fact["a"], PercentOf(percent=fact["p"], of=fact["b"]), 7)),
                 MaxOf(max=(Div(div=(fact["a"], fact["b"])), Mul(mul=(fact["p"], fact["b"], 3)))),
                 Add(add=(fact["a"], Ref(param="flat_rate"), Div(div=(fact["b"], Sub(sub=(fact["row"], fact["row"]))))))):
        _same(expr, pv, known)


def test_a_whole_number_is_an_int():
    assert type(compiler._whole(arith.number("12.0"))) is int and compiler._whole(arith.number("14.1")) == arith.number("14.1")
