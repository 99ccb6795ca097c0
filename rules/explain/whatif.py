"""What would change a decision, and which missing fact to ask about first.

Both are found by deciding the case again with one fact changed (`decide` below, which runs
the engine); this module only chooses which changes to try. Numbers and dates are searched
from the policy's own thresholds outwards, so a boundary such as "£200.00 or more" is found
in a few decisions, not by stepping through every value.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from rules.engine.decision import UNDETERMINED
from rules.language.checks import walk
from rules.language.model import Add, Fact, FactType, ParamType, PolicyVersion, Ref, Sub
from rules.language.values import date_code, date_from_code, months_code

MAX_TRIES = 48  # decisions tried per request, for counterfactuals and for ordering questions each
_ORDERED = (FactType.INTEGER, FactType.MONEY, FactType.DATE)


@dataclass(frozen=True)
class Result:
    outcome: str
    missing: int  # facts still needed (when UNDETERMINED)
    detail: Any = None  # whatever the caller needs to describe it


@dataclass(frozen=True)
class Change:
    fact: Fact
    value: Any  # the request's (JSON) form
    direction: str  # "" / "at_least" / "at_most"
    result: Result


class _Budget:
    def __init__(self, decide: Callable[[dict], Result], facts: dict):
        self.decide, self.facts, self.left = decide, facts, MAX_TRIES

    def __call__(self, name: str, value: Any) -> Result | None:
        if self.left <= 0:
            return None
        self.left -= 1
        return self.decide({**self.facts, name: value})


def changes(facts: dict, specs: list[Fact], marks: dict[str, set[int]], outcome: str,
            decide: Callable[[dict], Result]) -> list[Change]:
    """For each fact (in order), the single changes that give another (decided) outcome: every
    other value of a yes/no or a choice, and the nearest threshold above and below a number or date."""
    attempt, found = _Budget(decide, facts), []
    for spec in specs:
        current = facts[spec.name]
        if spec.type in _ORDERED:
            for step, direction in ((1, "at_least"), (-1, "at_most")):
                hit = _threshold(spec, current, marks.get(spec.name, set()), step, outcome, attempt)
                if hit is not None:
                    found.append(Change(spec, hit[0], direction, hit[1]))
            continue
        for value in _alternatives(spec, current):
            result = attempt(spec.name, value)
            if result is not None and result.outcome not in (outcome, UNDETERMINED):
                found.append(Change(spec, value, "", result))
    return found


def ask_order(facts: dict, missing: list[str], specs: dict[str, Fact], marks: dict[str, set[int]],
              decide: Callable[[dict], Result]) -> list[str]:
    """The missing facts, those whose answer most often settles the decision (or leaves the fewest
    still needed) first; facts that cannot be tried (items of a list) keep their order, last."""
    attempt, score = _Budget(decide, facts), {}
    for name in missing:
        spec = specs.get(name)
        probes = _probes(spec, marks.get(name, set())) if spec is not None else []
        results = [r for r in (attempt(name, v) for v in probes) if r is not None]
        if results:
            score[name] = sum(0 if r.outcome != UNDETERMINED else r.missing for r in results) / len(results)
    position = {name: n for n, name in enumerate(missing)}
    return sorted(missing, key=lambda n: (n not in score, score.get(n, 0), position[n]))


@dataclass(frozen=True)
class Thresholds:
    """Where a version's comparisons of number and date facts change (`marks`): the fixed points of
    each fact, and the comparisons with another date fact, placed with each request's facts."""
    fixed: dict[str, frozenset[int]]
    relative: tuple[tuple[str, Ref], ...]


def thresholds(pv: PolicyVersion, kinds: dict[str, FactType], derived: bool = True) -> Thresholds:
    """The thresholds its rules compare each number or date fact with, each with its neighbours
    (dates as day ordinals). `derived`: also those of derived values that are the fact plus or
    minus a constant."""
    out: dict[str, set[int]] = {}
    relative = []
    for rule in pv.rules:
        for cmp, _ in walk(rule.when, ()):
            kind = kinds.get(cmp.fact)
            if kind not in _ORDERED:
                continue
            operand = cmp.operand
            if isinstance(operand, Ref) and operand.param:
                _add(out, cmp.fact, _param_point(pv, operand.param))
            elif isinstance(operand, Ref):
                relative.append((cmp.fact, operand))
            elif isinstance(operand, (int, dt.date)) and not isinstance(operand, bool):
                _add(out, cmp.fact, operand.toordinal() if isinstance(operand, dt.date) else operand)
    if derived:
        _through_derived(pv, kinds, out)
    return Thresholds({name: frozenset(points) for name, points in out.items()}, tuple(relative))


def marks(pv: PolicyVersion, found: Thresholds, facts: dict) -> dict[str, set[int]]:
    """Where a number or date fact's comparisons change for a request: the version's thresholds,
    with relative dates ("born + 19 years") placed with the request's other facts."""
    out = {name: set(points) for name, points in found.fixed.items()}
    for name, ref in found.relative:
        _relative(pv, name, ref, facts, out)
    return out


def _through_derived(pv: PolicyVersion, kinds: dict[str, FactType], out: dict[str, set[int]]) -> None:
    """A derived number that is another value plus or minus a constant (`capped_income` is the income
    itself below the cap) passes its thresholds on to that value, moved by the constant: the income
    bands are then probed at once rather than found by bisection."""
    for _ in pv.derived:  # one pass per link of the longest chain
        for rule in pv.rules:
            if rule.derive is None or rule.derive.name not in out or kinds.get(rule.derive.name) not in _ORDERED:
                continue
            linear = _linear(pv, rule.derive.value)
            if linear is not None and kinds.get(linear[0]) in _ORDERED:
                out.setdefault(linear[0], set()).update(p - linear[1] for p in out[rule.derive.name])


def _linear(pv: PolicyVersion, expr: Any) -> tuple[str, int] | None:
    """(name, c) for an expression that is `name + c` (c a whole constant or parameter), else None."""
    def constant(e: Any) -> int | None:
        if isinstance(e, Ref) and e.param:
            return _param_point(pv, e.param)
        return e if isinstance(e, int) and not isinstance(e, bool) else None

    if isinstance(expr, Ref) and expr.fact and expr.plus_years is None and expr.plus_months is None:
        return expr.fact, 0
    if isinstance(expr, Sub):
        inner, c = _linear(pv, expr.sub[0]), constant(expr.sub[1])
        return None if inner is None or c is None else (inner[0], inner[1] - c)
    if isinstance(expr, Add) and len(expr.add) == 2:
        for a, b in (expr.add, expr.add[::-1]):
            inner, c = _linear(pv, a), constant(b)
            if inner is not None and c is not None:
                return inner[0], inner[1] + c
    return None


def _add(out: dict, name: str, point: int | None) -> None:
    if point is not None:
        out.setdefault(name, set()).update((point - 1, point, point + 1))


def _param_point(pv: PolicyVersion, name: str) -> int | None:
    param = pv.parameters[name]
    if param.type is ParamType.DATE:
        return cast(dt.date, param.value).toordinal()
    return cast(int, param.value) if param.type in (ParamType.MONEY, ParamType.INTEGER) else None


def _relative(pv: PolicyVersion, name: str, ref: Ref, facts: dict, out: dict) -> None:
    """`name op other + shift`: the point for `name` given the other fact, and for the other given `name`."""
    shift = sum(months_code(**{unit: pv.parameters[v.param].value if isinstance(v, Ref) else v})  # type: ignore[misc, arg-type, index]  # shifts are ints or integer parameters
                for unit, v in (("years", ref.plus_years), ("months", ref.plus_months)) if v is not None)
    for target, known, sign in ((name, ref.fact, 1), (ref.fact, name, -1)):
        day = _date(facts.get(known))
        if day is not None:
            _add(out, target, _from_code(date_code(day) + sign * shift))  # type: ignore[arg-type]  # a relative Ref names a fact


def _from_code(code: int) -> int:
    try:
        return date_from_code(code).toordinal()
    except ValueError:  # e.g. 29 February in a common year: the boundary is about 1 March
        return date_from_code((code // 100 + 1) * 100 + 1).toordinal()


def _date(raw) -> dt.date | None:
    if isinstance(raw, dt.date):  # the Python API may pass dates; gRPC passes text
        return raw
    try:
        return dt.date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _alternatives(spec: Fact, current) -> list:
    if spec.type is FactType.BOOL:
        return [not current]
    if spec.type is FactType.ENUM:
        return [v for v in spec.allowed if v != current]
    if spec.type is FactType.ENUM_LIST and isinstance(current, list):
        return [[v for v in current if v != x] if x in current else [*current, x] for x in spec.allowed]
    return []


def _probes(spec: Fact, points: set[int]) -> list:
    if spec.type in (FactType.BOOL, FactType.ENUM):
        return _alternatives(spec, None) if spec.type is FactType.ENUM else [True, False]
    if spec.type is FactType.ENUM_LIST:
        return [[]] + [[v] for v in spec.allowed]
    if spec.type in (FactType.INTEGER, FactType.MONEY):
        return sorted({0, *(p for p in points if p >= 0)})[:4]
    if spec.type is FactType.DATE and points:
        return [dt.date.fromordinal(p).isoformat() for p in sorted(points)[:3]]
    return []


def _threshold(spec: Fact, current, points: set[int], step: int, outcome: str, attempt) -> tuple[Any, Result] | None:
    """The nearest value beyond `current` in one direction that gives another outcome, and that outcome."""
    is_date = spec.type is FactType.DATE
    here = _date(current).toordinal() if is_date else current  # type: ignore[union-attr]  # a date fact's value is a date
    if here is None or isinstance(here, bool) or not isinstance(here, int):
        return None
    lowest = dt.date(1900, 1, 1).toordinal() if is_date else 0
    highest = dt.date(2100, 12, 31).toordinal() if is_date else None

    def value(point: int):
        return dt.date.fromordinal(point).isoformat() if is_date else point

    ahead = sorted({p for p in points | {here + step} if (p - here) * step > 0 and p >= lowest
                    and (highest is None or p <= highest)}, key=lambda p: abs(p - here))
    same = here
    for point in ahead:
        result = attempt(spec.name, value(point))
        if result is None or result.outcome == UNDETERMINED:
            return None
        if result.outcome == outcome:
            same = point
            continue
        while abs(point - same) > 1:  # the boundary lies between the last same point and this one
            middle = (same + point) // 2
            probe = attempt(spec.name, value(middle))
            if probe is None:
                return None
            if probe.outcome == outcome:
                same = middle
            else:
                point, result = middle, probe
        return (value(point), result) if result.outcome != UNDETERMINED else None
    return None
