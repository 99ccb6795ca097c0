"""Meaning checks on a parsed policy version: every name resolves, every
comparison is between compatible types, and derived values do not depend
on themselves. Each problem is reported with the path of the offending value.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterator

from rules.language import arith, values
from rules.language.model import (
    PARTIES,
    PLACEHOLDER,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Expr,
    FactType,
    Lookup,
    NotOf,
    ParamType,
    PolicyVersion,
    Ref,
    Rule,
    WhoseFact,
)

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


def needs(rule: Rule, known: Collection[str] | None = None) -> list[str]:
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


# durable_rules' C core has fixed capacities. Beyond them a version fails to register, fails
# whenever it decides, or (an OR of 512 branches or more) never finishes registering, while it
# holds the engine's lock. Measured (tests/test_fuzz_policies.py): about 128 values and rules;
# 65 branches of one engine rule holding at once; 150 tests in one branch. A version beyond these
# limits is refused, with room to spare.
MAX_VALUES_AND_RULES = 100  # facts, list results, used results, derived values and rules of a version (or an item list)
MAX_ENGINE_BRANCHES = 256  # ANDs of an engine rule's condition written as an OR of ANDs (2^11 take a second)
MAX_ENGINE_AT_ONCE = 48  # of those, how many can hold at once (the values of one 'in' exclude each other)
MAX_ENGINE_TESTS = 100  # tests in one of those ANDs
MAX_NESTING = 10  # 'all' and 'any' inside one another (about 15 fail to register)
MAX_SHIFT_YEARS = 150  # a date shifted further would leave the dates a fact may hold (values.MIN_DATE..MAX_DATE)


def check(pv: PolicyVersion) -> list[Problem]:
    problems: list[Problem] = _check_size(pv)
    if problems:  # too big for the engine: the other checks (some recursive) are not worth running
        return problems
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

    problems += [(("parameters", name, "value"), values.DATE_RANGE_PROBLEM) for name, p in pv.parameters.items()
                 if p.type is ParamType.DATE and not values.MIN_DATE <= p.value <= values.MAX_DATE]
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


def _check_size(pv: PolicyVersion) -> list[Problem]:
    problems = []
    size = len(value_types(pv)) + len(pv.rules)
    if size > MAX_VALUES_AND_RULES:
        problems.append((("rules",), f"{size} facts, values and rules: the rules engine takes at most {MAX_VALUES_AND_RULES}"))
    for i, lst in enumerate(pv.lists):
        size = len(pv.facts) + len(lst.facts) + len(lst.rules)
        if size > MAX_VALUES_AND_RULES:
            problems.append((("lists", i, "rules"), f"{size} facts and item rules: the rules engine takes at most "
                                                   f"{MAX_VALUES_AND_RULES}"))
    return problems


Shape = tuple[int, int, int]  # ANDs, ANDs that can hold at once, tests in the largest AND


def _all_shape(parts: list[Shape]) -> Shape:
    return (min(math.prod(p[0] for p in parts), 10**9), min(math.prod(p[1] for p in parts), 10**9),
            sum(p[2] for p in parts))


def _any_shape(parts: list[Shape]) -> Shape:
    return sum(p[0] for p in parts), sum(p[1] for p in parts), max(p[2] for p in parts)


def _engine_shape(pv: PolicyVersion, cond: Condition) -> tuple[Shape, Shape]:
    """The shapes of the engine's definitely-true and definitely-false forms of `cond` (as the
    compiler writes them), each written as an OR of ANDs."""
    if isinstance(cond, (AllOf, AnyOf)):
        parts = [_engine_shape(pv, c) for c in (cond.all if isinstance(cond, AllOf) else cond.any)]
        true, false = [t for t, _ in parts], [f for _, f in parts]
        if isinstance(cond, AllOf):
            return _all_shape(true), _any_shape(false)
        return _any_shape(true), _all_shape(false)
    if isinstance(cond, NotOf):
        t, f = _engine_shape(pv, cond.not_)
        return f, t
    operand = cond.operand
    guard = 1 if isinstance(operand, Ref) and operand.fact else 0
    if cond.op not in ("in", "not_in", "any_in"):
        return (1, 1, 1 + guard), (1, 1, 1 + guard)
    values = pv.parameters[operand.param].value if isinstance(operand, Ref) and operand.param in pv.parameters \
        else operand
    n = len(values) if isinstance(values, tuple) else 1
    if cond.op == "any_in":  # a list fact: several of its values can be in the list at once
        return (n, n, 1 + guard), (2, 2, n + guard)
    t, f = (n, 1, 1 + guard), (1, 1, n + guard)  # a fact has one value: one branch of 'in' holds at most
    return (t, f) if cond.op == "in" else (f, t)


def _nesting(cond: Condition) -> int:
    if isinstance(cond, (AllOf, AnyOf)):
        return 1 + max(_nesting(c) for c in (cond.all if isinstance(cond, AllOf) else cond.any))
    return _nesting(cond.not_) if isinstance(cond, NotOf) else 0


def _check_engine_shape(pv: PolicyVersion, rule: Rule, at: tuple) -> list[Problem]:
    if rule.when is None:
        return []
    if _nesting(rule.when) > MAX_NESTING:
        return [(at + ("when",), f"'all' and 'any' are nested more than {MAX_NESTING} deep; the rules engine takes "
                                 f"at most {MAX_NESTING}")]
    computed = len([n for n in needs(rule) if n not in tested(rule.when)])
    true, false = _engine_shape(pv, rule.when)
    branches, at_once = max(true[0], false[0]), max(true[1], false[1])
    tests = max(true[2] + computed, false[2]) + 2  # + 2: the stratum's own tests
    if branches > MAX_ENGINE_BRANCHES:
        return [(at + ("when",), f"the condition has {branches} alternatives for the rules engine (written as an OR "
                                 f"of ANDs, each value of 'in' one); it takes at most {MAX_ENGINE_BRANCHES}")]
    if at_once > MAX_ENGINE_AT_ONCE:
        return [(at + ("when",), f"{at_once} alternatives of the condition can hold at once (written as an OR of ANDs); "
                                 f"the rules engine takes at most {MAX_ENGINE_AT_ONCE}")]
    if tests > MAX_ENGINE_TESTS:
        return [(at + ("when",), f"the condition needs {tests} tests at once (each value of 'not_in' one); the rules "
                                 f"engine takes at most {MAX_ENGINE_TESTS}")]
    return []


def _check_rule_body(pv: PolicyVersion, rule: Rule, at: tuple, types: dict, allowed: dict) -> list[Problem]:
    problems = _check_engine_shape(pv, rule, at)
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
        problems = [p for s in ("plus_years", "plus_months") if isinstance(getattr(operand, s), Ref)
                    for p in _check_param(pv, getattr(operand, s), at + (s,), {ParamType.INTEGER})]
        for s, limit in (("plus_years", MAX_SHIFT_YEARS), ("plus_months", 12 * MAX_SHIFT_YEARS)):
            shift = getattr(operand, s)
            amount = pv.parameters[shift.param].value if isinstance(shift, Ref) and shift.param in pv.parameters \
                else shift
            if isinstance(amount, int) and abs(amount) > limit:
                problems.append((at + (s,), f"a shift of more than {limit} {s[5:]}"))
        return problems
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
    if ftype is FactType.DATE and not values.MIN_DATE <= operand <= values.MAX_DATE:
        return [(at, values.DATE_RANGE_PROBLEM)]
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
