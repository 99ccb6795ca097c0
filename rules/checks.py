"""Meaning checks on a parsed policy version: every name resolves, every
comparison is between compatible types, and derived values do not depend
on themselves. Each problem is reported with the path of the offending value.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

from . import arith
from .model import (PARTIES, PLACEHOLDER, AllOf, AnyOf, Compare, Condition, Expr, FactType, Lookup, NotOf, ParamType,
                    PolicyVersion, Ref, Rule, WhoseFact)

Problem = tuple[tuple, str]

_ORDER_OPS = {"lt", "lte", "gt", "gte"}
_SET_OPS = {"in", "not_in"}


def walk(cond: Condition | None, path: tuple) -> Iterator[tuple[Compare, tuple]]:
    """Every comparison in a condition, with its path."""
    if isinstance(cond, AllOf):
        for i, c in enumerate(cond.all):
            yield from walk(c, path + ("all", i))
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            yield from walk(c, path + ("any", i))
    elif isinstance(cond, NotOf):
        yield from walk(cond.not_, path + ("not",))
    elif isinstance(cond, Compare):
        yield cond, path


def value_types(pv: PolicyVersion) -> dict[str, FactType]:
    """The type of every name a condition may test: facts, list aggregates, results of used
    policies and derived values."""
    types = {f.name: f.type for f in pv.facts}
    for lst in pv.lists:
        types.update(lst.aggregates())
    for use in pv.uses:
        types.update(use.facts())
    types.update({d.name: d.type for d in pv.derived})
    return types


def tested(cond: Condition | None) -> list[str]:
    """The facts and derived values a condition reads, in order."""
    names = []
    for cmp, _ in walk(cond, ()):
        names.append(cmp.fact)
        if isinstance(cmp.operand, Ref) and cmp.operand.fact:
            names.append(cmp.operand.fact)
    return names


def expressions(rule: Rule) -> list[tuple[tuple, Expr]]:
    """The arithmetic a rule works out, with paths."""
    out = []
    if rule.amount is not None:
        out.append((("amount",), rule.amount))
    out += [(("outputs", name), e) for name, e in rule.outputs.items()]
    if rule.derive is not None and not isinstance(rule.derive.value, (bool, str)):
        out.append((("derive", "value"), rule.derive.value))
    return out


def needs(rule: Rule, known: dict | None = None) -> list[str]:
    """Every fact and derived value a rule reads: its condition, its arithmetic, then (given the
    `known` names) the values its because-text names, other than the one it derives itself."""
    names = tested(rule.when) + [n for _, e in expressions(rule) for n in arith.fact_names(e)]
    if known is not None:
        own = rule.derive.name if rule.derive else None
        names += [n for n in PLACEHOLDER.findall(rule.because) if n in known and n != own]
    return list(dict.fromkeys(names))


_NUMERIC = {FactType.INTEGER, FactType.MONEY, FactType.PERCENT}
_DEFAULT_OK = {
    FactType.BOOL: lambda v: isinstance(v, bool),
    FactType.STRING: lambda v: isinstance(v, str),
    FactType.INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
    FactType.MONEY: lambda v: isinstance(v, int) and not isinstance(v, bool),
    FactType.PERCENT: lambda v: isinstance(v, (int, str)) and not isinstance(v, bool),
}


def check(pv: PolicyVersion) -> list[Problem]:
    problems: list[Problem] = []
    types = value_types(pv)
    allowed = {f.name: set(f.allowed) for f in pv.facts}
    derived = {d.name: d for d in pv.derived}

    seen: set[str] = set()
    declared = ([f.name for f in pv.facts] + [lst.name for lst in pv.lists]
                + [n for lst in pv.lists for n in lst.aggregates()] + [n for u in pv.uses for n in u.facts()]
                + [d.name for d in pv.derived])
    for name in declared:
        if name in seen:
            problems.append((("facts",), f"'{name}' is declared twice (facts, lists, results of used policies "
                                         "and derived values share one namespace)"))
        seen.add(name)
    for i, d in enumerate(pv.derived):
        if d.default is None and d.type in (FactType.BOOL, FactType.STRING):
            problems.append((("derived", i), f"'{d.name}' needs a default"))
        elif d.default is not None and not _DEFAULT_OK[d.type](d.default):
            problems.append((("derived", i, "default"), f"default of '{d.name}' is not a {d.type.value}"))
    for i, use in enumerate(pv.uses):
        if use.policy == pv.policy:
            problems.append((("uses", i, "policy"), "a policy cannot use itself"))
    for i, lst in enumerate(pv.lists):
        problems += _check_list(pv, lst, ("lists", i), types)

    problems += _check_ownership(pv)
    problems += _check_parent_texts(pv, types)

    if pv.as_at_fact is not None and types.get(pv.as_at_fact) is not FactType.DATE:
        problems.append((("as_at_fact",), f"'{pv.as_at_fact}' is not a date fact of this version"))

    ids: set[str] = set()
    for i, rule in enumerate(pv.rules):
        at = ("rules", i)
        if rule.id in ids:
            problems.append((at + ("id",), f"duplicate rule id '{rule.id}'"))
        ids.add(rule.id)
        if rule.outcome is not None and rule.outcome not in pv.outcomes:
            problems.append((at + ("outcome",), f"outcome '{rule.outcome}' is not declared in 'outcomes'"))
        if rule.flag is not None and rule.flag not in pv.flags:
            problems.append((at + ("flag",), f"flag '{rule.flag}' is not declared in 'flags'"))
        if rule.derive is not None:
            d = derived.get(rule.derive.name)
            value = rule.derive.value
            if d is None:
                problems.append((at + ("derive", "name"), f"derived value '{rule.derive.name}' is not declared in 'derived'"))
            elif not (isinstance(value, bool) if d.type is FactType.BOOL else
                      isinstance(value, str) if d.type is FactType.STRING else not isinstance(value, (bool, str))):
                problems.append((at + ("derive", "value"), f"'{d.name}' is a {d.type.value}"))
        for name in rule.outputs:
            if name not in pv.outputs:
                problems.append((at + ("outputs", name), f"output '{name}' is not declared in 'outputs'"))
        problems += _check_rule_body(pv, rule, at, types, allowed)
    problems += _check_cycles(pv)
    return problems


def _check_rule_body(pv: PolicyVersion, rule: Rule, at: tuple, types: dict, allowed: dict) -> list[Problem]:
    problems = []
    for cmp, path in walk(rule.when, at + ("when",)):
        problems += _check_compare(pv, cmp, path, types, allowed)
    for path, expr in expressions(rule):
        problems += _check_expr(pv, expr, at + path, types)
    for name in PLACEHOLDER.findall(rule.because):
        if name not in types and name not in pv.parameters:
            problems.append((at + ("because",), f"'{{{name}}}' is neither a parameter nor a value this policy knows"))
    for key, text in rule.tell.items():
        problems += _check_text(pv, text, at + ("tell", key), types)
    return problems


def _check_text(pv: PolicyVersion, text: str, at: tuple, known) -> list[Problem]:
    return [(at, f"'{{{name}}}' is neither a parameter nor a value this policy knows")
            for name in PLACEHOLDER.findall(text) if name not in known and name not in pv.parameters]


def _check_parent_texts(pv: PolicyVersion, types: dict) -> list[Problem]:
    problems = []
    known = {*types, *pv.outputs, "amount"}
    for outcome, tell in pv.tell.outcomes.items():
        if outcome not in pv.outcomes:
            problems.append((("tell", "outcomes", outcome), f"outcome '{outcome}' is not declared in 'outcomes'"))
        for key, text in tell.items():
            problems += _check_text(pv, text, ("tell", "outcomes", outcome, key), known)
    for key, text in pv.tell.review.items():
        problems += _check_text(pv, text, ("tell", "review", key), pv.parameters)
    return problems


def _check_ownership(pv: PolicyVersion) -> list[Problem]:
    """Sensitive information says whose it is; a fact that names the owner names a parent."""
    problems = []
    enums = {f.name: f for f in pv.facts if f.type is FactType.ENUM}

    def names_a_parent(name: str, at: tuple) -> list[Problem]:
        fact = enums.get(name)
        if fact is None or not set(fact.allowed) <= set(PARTIES):
            return [(at, f"'{name}' is not an enum fact of this version whose values are {' / '.join(PARTIES)}")]
        return []

    for i, fact in enumerate(pv.facts):
        if fact.sensitive and fact.about is None:
            problems.append((("facts", i), f"sensitive fact '{fact.name}' needs 'about': whose information it is"))
        if isinstance(fact.about, WhoseFact):
            problems += names_a_parent(fact.about.fact, ("facts", i, "about", "fact"))
    for i, lst in enumerate(pv.lists):
        if (lst.sensitive or any(f.sensitive for f in lst.facts)) and lst.about is None:
            problems.append((("lists", i), f"list '{lst.name}' holds sensitive facts and needs 'about': whose they are"))
        if isinstance(lst.about, WhoseFact):
            problems += names_a_parent(lst.about.fact, ("lists", i, "about", "fact"))
    for i, use in enumerate(pv.uses):
        if use.subject is not None:
            problems += names_a_parent(use.subject, ("uses", i, "subject"))
    return problems


def _check_expr(pv: PolicyVersion, expr: Expr, at: tuple, types: dict) -> list[Problem]:
    problems = []
    for ref in arith.refs(expr):
        if isinstance(ref, Lookup):
            problems += _check_param(pv, Ref(param=ref.lookup), at, {ParamType.PERCENT_TABLE})
        elif ref.param is not None:
            problems += _check_param(pv, ref, at, {ParamType.MONEY, ParamType.INTEGER, ParamType.PERCENT})
        elif types.get(ref.fact) not in _NUMERIC:
            problems.append((at, f"'{ref.fact}' is not a number this policy knows (integer, money or percent)"))
        elif ref.plus_years is not None or ref.plus_months is not None:
            problems.append((at, "only dates can be shifted by years or months"))
    return problems


def _check_list(pv: PolicyVersion, lst, at: tuple, policy_types: dict) -> list[Problem]:
    problems = []
    own = {f.name: f.type for f in lst.facts}
    for name in sorted(set(own) & set(policy_types)):
        problems.append((at + ("facts",), f"item fact '{name}' is also a fact of the policy"))
    types = {**{f.name: f.type for f in pv.facts}, **own}
    allowed = {f.name: set(f.allowed) for f in (*pv.facts, *lst.facts)}
    ids = set()
    for i, rule in enumerate(lst.rules):
        rat = at + ("rules", i)
        if rule.id in ids:
            problems.append((rat + ("id",), f"duplicate rule id '{rule.id}'"))
        ids.add(rule.id)
        if rule.outcome is None or rule.amount is not None or rule.outputs or rule.actions:
            problems.append((rat, "an item rule concludes only an outcome of its list"))
        elif rule.outcome not in lst.outcomes:
            problems.append((rat + ("outcome",), f"outcome '{rule.outcome}' is not declared in the list's 'outcomes'"))
        problems += _check_rule_body(pv, rule, rat, types, allowed)
    if lst.rules[-1].when is not None:
        problems.append((at + ("rules", len(lst.rules) - 1), "the last item rule has no 'when': it decides any item no other rule does"))
    return problems


def _check_param(pv: PolicyVersion, ref: Ref, path: tuple, kinds: set[ParamType]) -> list[Problem]:
    if ref.param is None:
        return [(path, "expected a parameter here")]
    p = pv.parameters.get(ref.param)
    if p is None:
        return [(path + ("param",), f"unknown parameter '{ref.param}'")]
    if p.type not in kinds:
        return [(path + ("param",), f"parameter '{ref.param}' is a {p.type.value}; expected {' or '.join(sorted(k.value for k in kinds))}")]
    return []


def _check_compare(pv, cmp: Compare, path: tuple, types: dict, allowed: dict) -> list[Problem]:
    ftype = types.get(cmp.fact)
    if ftype is None:
        return [(path + ("fact",), f"unknown fact '{cmp.fact}'")]
    op, operand, at = cmp.op, cmp.operand, path + (cmp.op,)
    bad = [(at, f"'{op}' does not apply to {ftype.value} fact '{cmp.fact}'")]
    if ftype is FactType.PERCENT:
        return bad  # percents are for arithmetic; compare the money they produce
    if ftype is FactType.ENUM_LIST:
        if op != "any_in":
            return bad
        return _check_choices(pv, cmp.fact, operand, at, allowed)
    if op == "any_in":
        return bad
    if op in _SET_OPS:
        if ftype not in (FactType.ENUM, FactType.STRING):
            return bad
        return _check_choices(pv, cmp.fact, operand, at, allowed)
    if op in _ORDER_OPS and ftype not in (FactType.INTEGER, FactType.MONEY, FactType.DATE):
        return bad
    if isinstance(operand, Ref):
        if operand.param is not None:
            kinds = {FactType.INTEGER: {ParamType.INTEGER}, FactType.MONEY: {ParamType.MONEY},
                     FactType.DATE: {ParamType.DATE},
                     FactType.STRING: {ParamType.STRING}, FactType.ENUM: {ParamType.STRING}}.get(ftype)
            return _check_param(pv, operand, at, kinds) if kinds else bad
        other = types.get(operand.fact)
        if other is None:
            return [(at + ("fact",), f"unknown fact '{operand.fact}'")]
        if other != ftype:
            return [(at, f"cannot compare {ftype.value} '{cmp.fact}' with {other.value} '{operand.fact}'")]
        shifted = operand.plus_years is not None or operand.plus_months is not None
        if shifted and ftype is not FactType.DATE:
            return [(at, "only dates can be shifted by years or months")]
        return [p for s in ("plus_years", "plus_months") if isinstance(getattr(operand, s), Ref)
                for p in _check_param(pv, getattr(operand, s), at + (s,), {ParamType.INTEGER})]
    literal_ok = {
        FactType.BOOL: lambda v: isinstance(v, bool),
        FactType.INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
        FactType.MONEY: lambda v: isinstance(v, int) and not isinstance(v, bool),
        FactType.STRING: lambda v: isinstance(v, str),
        FactType.ENUM: lambda v: isinstance(v, str) and v in allowed.get(cmp.fact, {v}),
        FactType.DATE: lambda v: isinstance(v, dt.date),
    }[ftype]
    if not literal_ok(operand):
        return [(at, f"{operand!r} is not a valid value for {ftype.value} fact '{cmp.fact}'")]
    return []


def _check_choices(pv, fact: str, operand, at: tuple, allowed: dict) -> list[Problem]:
    if isinstance(operand, Ref):
        problems = _check_param(pv, operand, at, {ParamType.STRING_LIST})
        if problems:
            return problems
        values = pv.parameters[operand.param].value
    elif isinstance(operand, tuple) and operand:
        values = operand
    else:
        return [(at, "expected a non-empty list of values or a string_list parameter")]
    unknown = sorted(set(values) - allowed[fact]) if allowed.get(fact) else []
    return [(at, f"{', '.join(unknown)} not among the allowed values of '{fact}'")] if unknown else []


def _check_cycles(pv: PolicyVersion) -> list[Problem]:
    derived = {d.name for d in pv.derived}
    deps: dict[str, set[str]] = {d: set() for d in derived}
    for rule in pv.rules:
        if rule.derive is not None and rule.derive.name in deps:
            deps[rule.derive.name] |= set(needs(rule, derived)) & derived
    state: dict[str, int] = {}

    def visit(name: str) -> bool:
        if state.get(name) == 1:
            return True
        if state.get(name) == 2:
            return False
        state[name] = 1
        cyclic = any(visit(d) for d in deps[name])
        state[name] = 2
        return cyclic

    return [(("derived",), f"derived value '{n}' depends on itself") for n in sorted(deps) if visit(n)][:1]
