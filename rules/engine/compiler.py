"""Compile a policy version into a durable_rules ruleset.

Every fact the engine sees is a "working fact": the request's facts (encoded,
see values.py) plus the derived values known so far, tagged `_t: w` and with
its stratum `_k`. Rules are placed in strata, each one round through the
engine: a rule sits one stratum above the derived values its condition tests
(the engine matches conditions only), so everything whose condition can be
matched at once is, in one round.

Each policy rule becomes two engine rules, one matching when its condition is
definitely true and one when it is definitely false (three-valued logic: a
comparison on a missing fact is neither; a flag's false form is never read, so
a flag has none; a rule with no condition has nothing to match, so none).
Their actions record the verdict and the fact values the engine matched. A
rule is true only if the values its arithmetic and because-text read exist
too: the engine checks those in the working fact, the closes those resolved in
the rule's own round or later ("deferred"; all of them for a rule with no
condition). A last, lowest-priority rule in each stratum (its close) resolves
that stratum's derived values by the first-hit policy, in dependency order,
with arithmetic compiled once per version, and asserts the next working fact,
so the engine chains the strata itself; in the top stratum it marks the
session complete (and doubles as the catch-all the engine needs).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

from rules.engine import durable_host
from rules.engine.hitpolicy import first_hit
from rules.language import arith
from rules.language.checks import needs, tested, value_types
from rules.language.model import (
    Add,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Div,
    Expr,
    Fact,
    FactType,
    ItemList,
    Lookup,
    MaxOf,
    MinOf,
    Mul,
    NotOf,
    PercentOf,
    PolicyVersion,
    Ref,
    Rule,
    Sub,
)
from rules.language.values import count_key, date_code, encode, months_code

WORKING = {"_t": "w"}
ITEM = {"_t": "i"}


@dataclass(frozen=True, kw_only=True)
class EngineState:
    """What the engine concluded in one session: the verdicts its actions recorded.

    `true` and `false` hold rule indexes in firing order; `used`, for each true rule, the values it
    read (engine-encoded); `derived`, the derived values resolved by the first-hit policy, `via` the
    rule that derived each (None: its default), `blocked` the unknown rules that left one unknown;
    `complete`, whether the top stratum closed (a policy's session; an item's session never sets it).
    """
    complete: bool = False
    true: tuple[int, ...] = ()
    false: tuple[int, ...] = ()
    used: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    derived: Mapping[str, Any] = field(default_factory=dict)
    via: Mapping[str, int | None] = field(default_factory=dict)
    blocked: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, session: dict[str, Any]) -> EngineState:
        """The state from a session's scratch (durable_host.evaluate), as the compiler's actions wrote it."""
        return cls(complete=bool(session.get(_COMPLETE)), true=tuple(session.get(_TRUE, ())),
                   false=tuple(session.get(_FALSE, ())), used=session.get(_USED, {}),
                   derived=session.get(_DERIVED, {}), via=session.get(_VIA, {}),
                   blocked={name: tuple(rules) for name, rules in session.get(_BLOCKED, {}).items()})


# The keys the compiler's actions write in a session's scratch (read back by EngineState.of).
_COMPLETE, _TRUE, _FALSE, _USED = "complete", "true", "false", "used"
_DERIVED, _VIA, _BLOCKED = "derived", "via", "blocked"
_PENDING = "pending"  # rules whose condition held, waiting for their deferred values


@dataclass(frozen=True, kw_only=True)
class CompiledRule:
    index: int
    rule: Rule
    stratum: int
    tests: tuple[str, ...]  # facts and derived values the rule reads (condition, arithmetic, because-text)
    reads: tuple[str, ...]  # those its condition and arithmetic read
    condition_reads: tuple[str, ...]  # those its condition reads
    # What a close checks before the rule is true: the derived values in `tests` resolved in the
    # rule's stratum or later; for a rule with no condition (no engine rule), all of `tests`.
    deferred: tuple[str, ...] = ()

    @property
    def in_close(self) -> bool:
        """Whether a close settles the rule's truth (after the engine matched its condition, if any)."""
        return bool(self.deferred) or self.rule.when is None

    @property
    def conclusion(self) -> Any:
        r = self.rule
        if r.outcome:
            return r.outcome, r.amount, tuple(r.outputs.items()), r.actions
        return r.derive.value if r.derive else True


@dataclass(frozen=True, kw_only=True)
class CompiledList:
    """The item rules of one list, compiled to their own ruleset: every item is a fact of one
    session, and each item rule records its verdict per item."""
    spec: ItemList
    ruleset: str
    rules: tuple[CompiledRule, ...]
    kinds: dict[str, FactType]

    @property
    def candidates(self) -> tuple[tuple[int, str], ...]:
        return tuple((r.index, r.rule.outcome) for r in self.rules)

    def judge(self, item: dict[str, Any], given: dict[str, Any]) -> EngineState:
        """The engine's verdicts on one item (its own session): true and false rule indexes and the
        values each true rule read."""
        fact = {**ITEM, **{name: encode(self.kinds[name], v) for name, v in given.items() if name in self.kinds},
                **{k: encode(self.kinds[k], v) for k, v in item.items()}}
        return EngineState.of(durable_host.evaluate(self.ruleset, fact))


@dataclass(frozen=True, kw_only=True)
class CompiledPolicy:
    version: PolicyVersion
    content_hash: str
    ruleset: str
    rules: tuple[CompiledRule, ...]
    strata: int
    engine_rules: int
    engine_tests: int
    kinds: dict[str, FactType]  # type of every fact and derived value
    outcome_candidates: tuple[tuple[int, Any], ...]  # (index, conclusion) of outcome rules, in order
    lists: dict[str, CompiledList]
    labels: dict[str, dict[str, str]]  # how enum values read in text, by fact (list item facts too)
    sources: dict[str, frozenset[str]]  # for each value, the facts, lists and used results it comes from

    def sources_of(self, names) -> frozenset[str]:
        return frozenset().union(*(self.sources.get(n, ()) for n in names))

    @cached_property
    def facts(self) -> dict[str, Fact]:
        return {f.name: f for f in self.version.facts}

    @cached_property
    def text_kinds(self) -> dict[str, FactType]:
        """The type of every value a parent's wording may read: facts, derived values, outputs, amount."""
        return {**self.kinds, **{name: spec.type for name, spec in self.version.outputs.items()},
                "amount": FactType.MONEY}

    @cached_property
    def item_lists(self) -> dict[str, ItemList]:
        return {lst.name: lst for lst in self.version.lists}

    @cached_property
    def by_id(self) -> dict[str, CompiledRule]:
        return {r.rule.id: r for r in self.rules}

    @cached_property
    def outcome_results(self) -> tuple[tuple[int, Any], ...]:
        """(index, what it states: outcome, amount, outputs) of the outcome rules, in order: their
        conclusions as a parent is told them, without the caseworker's actions."""
        return tuple((index, conclusion[:3]) for index, conclusion in self.outcome_candidates)

    def working_fact(self, given: dict[str, Any]) -> dict:
        """The engine's first fact for a request's (parsed) facts."""
        fact = {**WORKING, "_k": 0}
        for name, value in given.items():
            fact[name] = encode(self.kinds[name], value)
            if self.kinds[name] is FactType.ENUM_LIST:
                fact[count_key(name)] = len(value)
        return fact

    def run(self, given: dict[str, Any]) -> EngineState:
        """The engine's verdicts for a request's (parsed) facts (see EngineState)."""
        return EngineState.of(durable_host.evaluate(self.ruleset, self.working_fact(given)))


def compile_policy(pv: PolicyVersion, content_hash: str) -> CompiledPolicy:
    types = value_types(pv)
    depth = _depths(pv)
    stratum_of = _strata(pv)
    level = {d.name: stratum_of[f"derived:{d.name}"] for d in pv.derived}
    rules = tuple(_rule(i, r, stratum_of[r.id], types, level) for i, r in enumerate(pv.rules))
    strata = max(r.stratum for r in rules) + 1
    ruleset = f"{pv.policy}.{pv.version}.{content_hash[:16]}"
    leaf = _LeafCompiler(pv, types)

    definition: dict[str, dict] = {}
    for cr in rules:
        if cr.rule.when is not None:  # a rule with no condition has nothing for the engine to match
            definition.update(_engine_rules(f"r{cr.index}", cr, [WORKING, {"_k": cr.stratum}], leaf))
    # Each stratum's derived values in dependency order: one may read another resolved before it.
    ordered = sorted(pv.derived, key=lambda d: depth[f"derived:{d.name}"])
    # The true rules in the order one stratum per depth fired them in: the trail's order.
    rank = {cr.index: (depth[cr.rule.id], cr.index) for cr in rules}
    for k in range(strata):
        definition[f"stratum{k}.close"] = {
            "all": [{"m": _and([WORKING, {"_k": k}])}],
            "pri": len(rules) + 10,
            "run": _closer(pv, rules, [d for d in ordered if level[d.name] == k], rank, last=(k == strata - 1))}

    lists = {lst.name: _compile_list(pv, lst, f"{ruleset}.{lst.name}") for lst in pv.lists}
    labels = {f.name: f.labels for f in (*pv.facts, *(f for lst in pv.lists for f in lst.facts)) if f.labels}
    compiled = CompiledPolicy(
        version=pv, content_hash=content_hash, ruleset=ruleset, rules=rules, strata=strata,
        engine_rules=len(definition), engine_tests=_count_tests(definition), kinds=types,
        outcome_candidates=tuple((r.index, r.conclusion) for r in rules if r.rule.outcome), lists=lists,
        labels=labels, sources=_sources(pv))
    durable_host.register(ruleset, definition, warm_fact={**WORKING, "_k": 0})
    return compiled


def _rule(index: int, rule: Rule, stratum: int, types: dict[str, FactType],
          level: dict[str, int] | None = None) -> CompiledRule:
    """`level`: the stratum whose close resolves each derived value (None for an item list's rule:
    an item's session has no closes, and the engine matches every rule)."""
    tests = tuple(needs(rule, types))
    deferred = () if level is None else tests if rule.when is None else \
        tuple(n for n in tests if level.get(n, -1) >= stratum)
    return CompiledRule(index=index, rule=rule, stratum=stratum, tests=tests, reads=tuple(needs(rule)),
                        condition_reads=tuple(dict.fromkeys(tested(rule.when))), deferred=deferred)


def _sources(pv: PolicyVersion) -> dict[str, frozenset[str]]:
    """Where each value comes from: a fact, list or used result from itself; a list aggregate from
    its list; a derived value from everything any rule deriving it reads (conditions and arithmetic)."""
    out: dict[str, frozenset[str]] = {f.name: frozenset({f.name}) for f in pv.facts}
    for lst in pv.lists:
        out.update(dict.fromkeys(lst.aggregates(), frozenset({lst.name})))
    for use in pv.uses:
        out.update({name: frozenset({name}) for name in use.facts()})
    deriving = {d.name: [r for r in pv.rules if r.derive and r.derive.name == d.name] for d in pv.derived}

    def resolve(name: str) -> frozenset[str]:
        if name not in out:
            out[name] = frozenset()  # no cycles (checked at load); this only guards the recursion
            out[name] = frozenset().union(*(resolve(n) for r in deriving[name] for n in needs(r)))
        return out[name]

    for name in deriving:
        resolve(name)
    return out


def _engine_rules(name: str, cr: CompiledRule, scope: list[dict], leaf: _LeafCompiler) -> dict[str, dict]:
    """The definitely-true and definitely-false engine rules of one policy rule. The true form also
    needs every value the rule's arithmetic and because-text read (else the rule is unknown, not
    false) that its stratum's working fact can hold; the closes check the deferred ones."""
    true_expr, false_expr = leaf.both(cr.rule.when) if cr.rule.when else (None, None)
    computed = [n for n in cr.tests if n not in cr.condition_reads and n not in cr.deferred]
    true_parts = scope + ([true_expr] if true_expr else []) + [{"$ex": {n: 1}} for n in computed]
    out = {f"{name}.true": {"all": [{"m": _and(true_parts)}], "pri": cr.index + 1, "run": _verdict(cr, True)}}
    if false_expr is not None and not cr.rule.flag:
        out[f"{name}.false"] = {"all": [{"m": _and(scope + [false_expr])}], "pri": cr.index + 1,
                                "run": _verdict(cr, False)}
    return out


def _compile_list(pv: PolicyVersion, lst: ItemList, ruleset: str) -> CompiledList:
    kinds = {f.name: f.type for f in pv.facts} | {f.name: f.type for f in lst.facts}
    rules = tuple(_rule(i, r, 0, kinds) for i, r in enumerate(lst.rules))
    leaf = _LeafCompiler(pv, kinds)
    definition: dict[str, dict] = {}
    for cr in rules:
        definition.update(_engine_rules(f"i{cr.index}", cr, [ITEM], leaf))
    # Catch-all: every item is handled even when all its rules are unknown.
    definition["item.seen"] = {"all": [{"m": ITEM}], "pri": len(rules) + 10, "run": _seen}
    durable_host.register(ruleset, definition, warm_fact=ITEM)
    return CompiledList(spec=lst, ruleset=ruleset, rules=rules, kinds=kinds)


def _seen(state: dict, _assert) -> None:
    pass


def _depths(pv: PolicyVersion) -> dict[str, int]:
    """Depth of each rule id and derived value ("derived:<name>") in the graph of everything rules
    read: a rule is one deeper than the deepest derived value it reads, a derived value as deep as
    its deepest rule. An order in which each derived value comes after those it is worked out from."""
    derived = {d.name for d in pv.derived}
    out: dict[str, int] = {}

    def of_derived(name: str) -> int:
        key = f"derived:{name}"
        if key not in out:
            out[key] = max((of_rule(r) for r in pv.rules if r.derive and r.derive.name == name), default=0)
        return out[key]

    def of_rule(rule: Rule) -> int:
        if rule.id not in out:
            deps = [n for n in needs(rule, derived) if n in derived]
            out[rule.id] = max((of_derived(n) + 1 for n in deps), default=0)
        return out[rule.id]

    for r in pv.rules:
        of_rule(r)
    for name in derived:
        of_derived(name)
    return out


def _strata(pv: PolicyVersion) -> dict[str, int]:
    """Stratum of each rule id, and in which stratum's close each derived value is resolved
    ("derived:<name>"). A rule is one stratum above the derived values its condition tests; a
    derived value is resolved once the conditions of its rules are matched and the values they
    read are resolved (possibly earlier in the same close, which resolves in `_depths` order)."""
    derived = {d.name for d in pv.derived}
    out: dict[str, int] = {}

    def of_derived(name: str) -> int:
        key = f"derived:{name}"
        if key not in out:
            out[key] = max((max([of_rule(r)] + [of_derived(n) for n in needs(r, derived) if n in derived])
                            for r in pv.rules if r.derive and r.derive.name == name), default=0)
        return out[key]

    def of_rule(rule: Rule) -> int:
        if rule.id not in out:
            out[rule.id] = max((of_derived(n) + 1 for n in tested(rule.when) if n in derived), default=0)
        return out[rule.id]

    for r in pv.rules:
        of_rule(r)
    for name in derived:
        of_derived(name)
    return out


# --- actions ----------------------------------------------------------------

def _verdict(cr: CompiledRule, holds: bool) -> durable_host.Action:
    """Record the verdict and, when true, the values the rule read (from the fact the engine
    matched: a rule matches only the working fact of its own stratum, the latest asserted). A true
    condition of a rule with deferred values waits for the close that resolves them (_settle)."""
    settled = holds and not cr.deferred
    key, index, tests = (_PENDING if holds and cr.deferred else _TRUE if holds else _FALSE), cr.index, cr.tests

    def record(state: dict, _assert) -> None:
        verdicts = state.setdefault(key, [])
        if index in verdicts:  # an $or fires its rule once for each branch that holds: one verdict
            return
        verdicts.append(index)
        if settled:
            fact = state["fact"]
            state.setdefault(_USED, {})[index] = {n: fact[n] for n in tests if n in fact}
    return record


def _settle(state: dict, rules: list[CompiledRule], known: dict, true: set[int]) -> None:
    """The verdicts of rules whose condition held (or that have none) and whose deferred values are
    now resolved: true if those values exist (else unknown, as for a missing fact), with the values read."""
    pending = state.get(_PENDING, ())
    for cr in rules:
        if (cr.index in pending or cr.rule.when is None) and all(n in known for n in cr.deferred):
            true.add(cr.index)
            state.setdefault(_TRUE, []).append(cr.index)
            state.setdefault(_USED, {})[cr.index] = {n: known[n] for n in cr.tests if n in known}


def _closer(pv: PolicyVersion, rules: tuple[CompiledRule, ...], resolving: list, rank: dict[int, tuple],
            last: bool) -> durable_host.Action:
    candidates = {d.name: [(r.index, r.conclusion) for r in rules if r.rule.derive and r.rule.derive.name == d.name]
                  for d in resolving}
    worked = {r.index: _worker(r.conclusion, pv) for d in resolving for r in rules
              if r.rule.derive and r.rule.derive.name == d.name and not isinstance(r.conclusion, (bool, str))}
    awaiting = {d.name: [r for r in rules if r.in_close and r.rule.derive and r.rule.derive.name == d.name]
                for d in resolving}
    # Outcome and flag rules are read only once the session is complete: settled in the last close.
    concluding = [r for r in rules if r.in_close and not r.rule.derive] if last else []

    def close(state: dict, assert_fact) -> None:
        known = dict(state["fact"])
        true, false = set(state.get(_TRUE, ())), set(state.get(_FALSE, ()))
        for d in resolving:
            _settle(state, awaiting[d.name], known, true)
            hit = first_hit(candidates[d.name], true, false)
            if hit.unknown:
                state.setdefault(_BLOCKED, {})[d.name] = list(hit.blockers)
            elif hit.index is not None:
                work = worked.get(hit.index)
                value = rules[hit.index].conclusion if work is None else arith.store(d.type, work(known))
                known[d.name] = state.setdefault(_DERIVED, {})[d.name] = value
                state.setdefault(_VIA, {})[d.name] = hit.index
            elif d.default is not None:
                known[d.name] = state.setdefault(_DERIVED, {})[d.name] = d.default
                state.setdefault(_VIA, {})[d.name] = None
        if last:
            _settle(state, concluding, known, true)
            state.get(_TRUE, []).sort(key=rank.__getitem__)
            state[_COMPLETE] = True
            return
        known["_k"] += 1
        assert_fact(known)
    return close


def _worker(expr: Expr, pv: PolicyVersion) -> Callable[[Mapping[str, Any]], Fraction | int]:
    """`expr` as a function of the known values, worth what arith.evaluate gives (exact: an int
    while every step is whole, else a Fraction), its parameters and tables read once: the closes
    work derived values out in every session, and arith.evaluate's walk and Fractions cost most."""
    if isinstance(expr, bool):
        raise AssertionError("booleans are not numbers")
    if isinstance(expr, int):
        return lambda known: expr
    if isinstance(expr, Ref) and expr.param:
        constant = _whole(arith.number(pv.parameters[expr.param].value))
        return lambda known: constant
    if isinstance(expr, Ref):
        name = expr.fact
        return lambda known: _whole(arith.number(value)) if isinstance(value := known[name], str) else int(value)
    if isinstance(expr, PercentOf):
        percent, of = _worker(expr.percent, pv), _worker(expr.of, pv)
        return lambda known: Fraction(percent(known) * of(known), 100)
    if isinstance(expr, Lookup):
        table = tuple(tuple(_whole(arith.number(cell)) for cell in row) for row in pv.parameters[expr.lookup].value)
        row, column = (_index(e, pv) for e in (expr.row, expr.column))
        return lambda known: (cells := table[min(row(known), len(table) - 1)])[min(column(known), len(cells) - 1)]
    parts = [_worker(p, pv) for p in getattr(expr, _OPERANDS[type(expr)])]
    if isinstance(expr, Add):
        return lambda known: sum(p(known) for p in parts)
    if isinstance(expr, Sub):
        first, second = parts
        return lambda known: first(known) - second(known)
    if isinstance(expr, Mul):
        def product(known: Mapping[str, Any]) -> Fraction | int:
            out = 1
            for p in parts:
                out *= p(known)
            return out
        return product
    if isinstance(expr, Div):
        def quotient(known: Mapping[str, Any]) -> Fraction:
            divisor = parts[1](known)
            if divisor == 0:
                raise arith.ExpressionError("division by zero")
            return Fraction(parts[0](known), divisor)
        return quotient
    if isinstance(expr, MinOf):
        return lambda known: min(p(known) for p in parts)
    if isinstance(expr, MaxOf):
        return lambda known: max(p(known) for p in parts)
    raise AssertionError(expr)


_OPERANDS = {Add: "add", Sub: "sub", Mul: "mul", Div: "div", MinOf: "min", MaxOf: "max"}


def _whole(x: Fraction) -> Fraction | int:
    return x.numerator if x.denominator == 1 else x


def _index(expr: Expr | None, pv: PolicyVersion) -> Callable[[Mapping[str, Any]], int]:
    """A table's row or column (arith._index): rounded half up, from 0; the last one for those past it."""
    if expr is None:
        return lambda known: 0
    work = _worker(expr, pv)
    return lambda known: max(0, arith.round_half_up(work(known)))


# --- conditions to engine expressions ---------------------------------------

def _and(parts: list[dict]) -> dict:
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _or(parts: list[dict]) -> dict:
    return parts[0] if len(parts) == 1 else {"$or": parts}


_NEGATE = {"$lt": "$gte", "$lte": "$gt", "$gt": "$lte", "$gte": "$lt"}
_ORDER = {"lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}


class _LeafCompiler:
    def __init__(self, pv: PolicyVersion, types: dict[str, FactType]):
        self.pv = pv
        self.types = types

    def both(self, cond: Condition) -> tuple[dict, dict]:
        """(definitely true, definitely false) engine expressions for a condition."""
        if isinstance(cond, AllOf):
            parts = [self.both(c) for c in cond.all]
            return _and([t for t, _ in parts]), _or([f for _, f in parts])
        if isinstance(cond, AnyOf):
            parts = [self.both(c) for c in cond.any]
            return _or([t for t, _ in parts]), _and([f for _, f in parts])
        if isinstance(cond, NotOf):
            t, f = self.both(cond.not_)
            return f, t
        return self._compare(cond)

    def _param(self, name: str) -> Any:
        return self.pv.parameters[name].value

    def _shift(self, amount: int | Ref | None) -> int:
        return self._param(amount.param) if isinstance(amount, Ref) else (amount or 0)

    def _value(self, fact: str, operand) -> tuple[Any, list[dict]]:
        """The engine form of an operand, and guards it needs (a referenced fact must exist)."""
        if isinstance(operand, Ref) and operand.param:
            value = self._param(operand.param)
            return (date_code(value) if isinstance(value, dt.date) else value), []
        if isinstance(operand, Ref):
            shift = months_code(self._shift(operand.plus_years), self._shift(operand.plus_months))
            ref = {"$m": operand.fact}
            value = {"$add": {"$l": ref, "$r": shift}} if shift else ref
            return value, [{"$ex": {operand.fact: 1}}]
        if self.types[fact] is FactType.DATE:
            return date_code(operand), []
        return operand, []

    def _compare(self, cmp: Compare) -> tuple[dict, dict]:
        name, op = cmp.fact, cmp.op
        value, guards = self._value(name, cmp.operand)
        if op in ("eq", "ne"):
            t, f = {name: value}, {"$neq": {name: value}}
            t, f = (t, f) if op == "eq" else (f, t)
        elif op in _ORDER:
            t, f = {_ORDER[op]: {name: value}}, {_NEGATE[_ORDER[op]]: {name: value}}
        elif op in ("in", "not_in"):
            t, f = _or([{name: v} for v in value]), _and([{"$neq": {name: v}} for v in value])
            t, f = (t, f) if op == "in" else (f, t)
        else:  # any_in, on a list fact
            # One $iany per value, never an $or inside $iany: durable_rules 2.0.28 reads a field of
            # that $or's node it never set (rete.c createForwardAlpha), so create_ruleset refused the
            # ruleset (error 102) whenever the heap held 0x09 or 0x0C there.
            t = _or([{"$iany": {name: {"$i": v}}} for v in value])
            f = _or([{count_key(name): 0}, {"$iall": {name: _and([{"$neq": {"$i": v}} for v in value])}}])
        return _and(guards + [t]), _and(guards + [f])


def _count_tests(definition: dict) -> int:
    """Leaf tests across all engine rules (what durable_rules builds nodes for)."""
    def count(expr: dict) -> int:
        if set(expr) <= {"$and", "$or"}:
            return sum(count(e) for part in expr.values() for e in part)
        return 1
    return sum(count(pattern["m"]) for spec in definition.values() for pattern in spec["all"])


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
