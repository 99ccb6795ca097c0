"""What would change a decision, and what to ask first: single-fact changes that give another
outcome (in words, for the caseworker and for each parent), and the order to ask missing facts in.
Both decide the same case again on other facts, briefly, through a `Redecide` the Evaluator gives."""
from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rules.decide import facts as request_facts
from rules.decide.worked import Worked
from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import UNDETERMINED, Audience, Counterfactual, DecisionRequest, MissingFact, RequestError
from rules.engine.loader import Bundle
from rules.explain import explainer, whatif
from rules.language import arith, values
from rules.language.checks import expressions, walk
from rules.language.model import AllOf, AnyOf, Compare, Condition, Fact, FactType, NotOf, PolicyVersion, Ref, Rule, Uses
from rules.language.values import date_code, months_code

Redecide = Callable[[DecisionRequest], Worked]
"""The same case decided again, briefly (outcome, amount, missing facts), on another request."""


def retry(request: DecisionRequest, redecide: Redecide) -> Callable[[dict[str, Any]], whatif.Result]:
    """Decide the same case under the same version with other facts."""
    def decide(facts: dict[str, Any]) -> whatif.Result:
        try:
            worked = redecide(request.model_copy(update={"facts": facts}))
        except RequestError:
            return whatif.Result(UNDETERMINED, len(facts))
        return whatif.Result(worked.decision.outcome, len(worked.decision.missing_facts), worked)
    return decide


def implied(decide: Callable[[dict[str, Any]], whatif.Result], facts: dict[str, Any], specs: dict[str, Fact],
            worked: Worked, verdicts: dict[str, Callable[[Any], tuple] | None]) -> Callable[[dict], whatif.Result]:
    """`decide`, except that a change of one fact whose comparisons (`verdicts`) come out as for a
    value already decided (the request's own, or one tried) is answered by that decision: where a
    fact is read by nothing but comparisons, the engine sees nothing else of it."""
    known: dict[tuple, whatif.Result] = {}
    if worked.root is not None and worked.decided:
        for name, verdict in verdicts.items():
            if verdict is not None:
                known[(name, verdict(values.parse(specs[name], facts[name])))] = whatif.Result(
                    worked.decision.outcome, len(worked.decision.missing_facts), worked)

    def decide_implied(changed: dict[str, Any]) -> whatif.Result:
        names = [n for n in changed if changed[n] != facts.get(n)]
        verdict = verdicts.get(names[0]) if len(names) == 1 and len(changed) == len(facts) else None
        if verdict is None:
            return decide(changed)
        try:
            key = (names[0], verdict(values.parse(specs[names[0]], changed[names[0]])))
        except values.FactValueError:
            return decide(changed)
        if key not in known:
            known[key] = decide(changed)
        return known[key]
    return decide_implied


def comparisons_only(bundle: Bundle, compiled: CompiledPolicy, facts: dict[str, Any], specs: dict[str, Fact],
                     names: list[str], worked: Worked) -> dict[str, Callable[[Any], tuple] | None]:
    """For each fact read by nothing but comparisons (in this version's rules and lists and in every
    version and revision of the policies it uses), the verdicts of those comparisons for a value of
    it, the request's other facts as they are; None for a fact read otherwise (arithmetic, a used
    policy's subject or date, a comparison with a derived value)."""
    other = {n: values.parse(specs[n], v) for n, v in facts.items() if n in specs}
    out: dict[str, Callable[[Any], tuple] | None] = {}
    for name in names:
        compared = _compared(bundle, compiled, name, specs[name].type)
        if compared is None:
            found = _outcome_tests(bundle, compiled, worked, name, specs[name].type, other)
            out[name] = None if found is None else _verdicts(found)
            continue
        tests = [_test(c, other) for c in compared]
        out[name] = _verdicts([t for t in tests if t is not None])
    return out


def _outcome_tests(bundle: Bundle, compiled: CompiledPolicy, worked: Worked, name: str, kind: FactType,
                   other: dict[str, Any]) -> list[Callable[[Any], bool]] | None:
    """For a fact read otherwise than by comparisons (the income, which the amounts are worked out
    from), the comparisons the outcome rests on, or None if those are not told here. The outcome
    reads what the outcome rules' conditions read and, for a derived value among those, what the
    rules that may derive it read (a rule whose condition fails on the other facts never does). A
    derived value that is the fact itself or a constant (the capped income) is compared as the fact;
    one worked out from it otherwise, or a used policy's amount that it feeds, is not told here; a
    used policy's outcome is its own decision's outcome comparisons, as decided for this case."""
    pv, rest = compiled.version, {k: v for k, v in other.items() if k != name}
    if any(u.subject == name for u in pv.uses) or worked.inputs is None:
        return None
    fed = {name} | {f"{u.as_}_{part}" for u in pv.uses if name in bundle.request_names(u.policy)
                    and name not in u.set for part in ("outcome", "amount")}
    fed |= {cl.spec.name for cl in compiled.lists.values() if any(name in r.tests for r in cl.rules)}
    conditions, value_reads, leaves = _shape(bundle, compiled)
    live = [r for r in compiled.rules if conditions[r.index](rest) is not False]
    deriving: dict[str, list] = {}
    for r in live:
        if r.rule.derive is not None:
            deriving.setdefault(r.rule.derive.name, []).append(r)
    read, todo, rules = set(), [n for r in live if r.rule.outcome for n in r.condition_reads], \
        [r for r in live if r.rule.outcome]
    while todo:
        n = todo.pop()
        if n not in read:
            read.add(n)
            rules += deriving.get(n, [])
            todo += [m for r in deriving.get(n, []) for m in (*r.condition_reads, *value_reads[r.index])]
    depends = {n for n in read if compiled.sources.get(n, frozenset({n})) & fed}
    same = {name}  # the fact, and derived values that are it (or a constant)
    while True:
        more = {n for n in depends - same if n in deriving and all(
            _is_ref_to(r.rule, same) or not value_reads[r.index] & (depends | {name}) for r in deriving[n])}
        if not more:
            break
        same |= more
    lists = {aggregate: cl for cl in compiled.lists.values() for aggregate in cl.spec.aggregates()}
    judged = []  # the lists whose aggregates it feeds
    tests: list[Callable[[Any], bool]] = []
    for n in depends - same:
        use = next((u for u in pv.uses if n == f"{u.as_}_outcome"), None)
        if use is not None:
            found = _used_outcome_tests(bundle, use, worked.inputs.uses.get(use.as_), name, kind, other)
            if found is None:
                return None
            tests += found
        elif n in lists:
            judged += [lists[n]] if lists[n] not in judged else []
        else:
            return None  # worked out from the fact, or a used policy's amount
    for cl in judged:
        for r in cl.rules:
            for cmp, _ in walk(r.rule.when, ()):
                if cmp.fact == name or (isinstance(cmp.operand, Ref) and cmp.operand.fact == name):
                    comparison = _comparison(pv, cmp, name, kind)
                    if comparison is None:
                        return None
                    tests += [t for t in (_test(comparison, other),) if t is not None]
    for r in rules:
        for cmp, operand_fact in leaves[r.index]:
            if cmp.fact not in same and operand_fact not in same:
                continue
            comparison = _comparison(pv, cmp.model_copy(update={"fact": name}) if cmp.fact in same else
                                     cmp.model_copy(update={"operand": cmp.operand.model_copy(update={"fact": name})}),
                                     name, kind) if (cmp.fact in same) != (operand_fact in same) else None
            if comparison is None:
                return None
            tests += [t for t in (_test(comparison, other),) if t is not None]
    return tests


def _used_outcome_tests(bundle: Bundle, use: Uses, sub: Worked | MissingFact | None, name: str, kind: FactType,
                        other: dict[str, Any]) -> list[Callable[[Any], bool]] | None:
    """The comparisons a used policy's outcome rests on, in the version it decided this case with."""
    if not isinstance(sub, Worked):
        return None
    ref = sub.decision.policy
    compiled = bundle.revision(ref.policy, ref.version, ref.content_hash)
    if compiled is None or name == compiled.version.as_at_fact:
        return None
    theirs = {**other, **{k: values.parse(compiled.facts[k], v) for k, v in use.set.items() if k in compiled.facts}}
    compared = _compared(bundle, compiled, name, kind)
    if compared is not None:
        return [t for t in (_test(c, theirs) for c in compared) if t is not None]
    return _outcome_tests(bundle, compiled, sub, name, kind, theirs)


# Each version's conditions as tests of the given facts alone, what each rule's arithmetic reads, and
# each rule's comparisons with the fact their operand names (`_shape`), by bundle and ruleset.
_SHAPES: weakref.WeakKeyDictionary[Bundle, dict[str, tuple]] = weakref.WeakKeyDictionary()


def _shape(bundle: Bundle, compiled: CompiledPolicy) -> tuple[list[Callable[[dict[str, Any]], bool | None]],
                                                               list[frozenset[str]], list[list[tuple[Compare, Any]]]]:
    known = _SHAPES.setdefault(bundle, {})
    if compiled.ruleset not in known:
        known[compiled.ruleset] = (
            [_holds(r.rule.when, compiled) for r in compiled.rules],
            [frozenset(n for _, e in expressions(r.rule) for n in arith.fact_names(e)) for r in compiled.rules],
            [[(cmp, cmp.operand.fact if isinstance(cmp.operand, Ref) else None) for cmp, _ in walk(r.rule.when, ())]
             for r in compiled.rules])
    return known[compiled.ruleset]


def _is_ref_to(rule: Rule, names: set[str]) -> bool:
    value = rule.derive.value if rule.derive is not None else None
    return (isinstance(value, Ref) and value.fact in names and value.plus_years is None
            and value.plus_months is None)


def _holds(cond: Condition | None, compiled: CompiledPolicy) -> Callable[[dict[str, Any]], bool | None]:
    """A condition as a test of the given facts alone, three-valued: None when it reads anything else."""
    if cond is None:
        return lambda facts: True
    if isinstance(cond, (AllOf, AnyOf)):
        parts = [_holds(c, compiled) for c in (cond.all if isinstance(cond, AllOf) else cond.any)]
        decisive = isinstance(cond, AnyOf)  # a true part decides an `any`, a false one an `all`

        def combined(facts: dict[str, Any]) -> bool | None:
            found = [part(facts) for part in parts]
            return decisive if decisive in found else (None if None in found else not decisive)
        return combined
    if isinstance(cond, NotOf):
        inner = _holds(cond.not_, compiled)
        return lambda facts: None if (held := inner(facts)) is None else not held
    fact = compiled.facts.get(cond.fact)
    comparison = None if fact is None else _comparison(compiled.version, cond, cond.fact, fact.type)
    if comparison is None:
        return lambda facts: None

    def compared(facts: dict[str, Any]) -> bool | None:
        test = _test(comparison, facts) if cond.fact in facts else None
        return None if test is None else test(_coded(facts[cond.fact]))
    return compared


def _verdicts(tests: list[Callable[[Any], bool]]) -> Callable[[Any], tuple]:
    return lambda value: tuple(test(_coded(value)) for test in tests)


@dataclass(frozen=True)
class _Comparison:
    """A comparison reading a fact: `fact op operand`, the operand a constant (coded) or another date
    fact (`there`) shifted, the fact on the left or (not `left`) the operand's."""
    op: Callable[[Any, Any], bool]
    constant: Any = None
    there: str | None = None
    shift: int = 0
    left: bool = True


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
    "any_in": lambda a, b: bool(set(a) & set(b))}
# What `_compared` found, by bundle (the versions a fact is read in) and (ruleset, fact).
_COMPARED: weakref.WeakKeyDictionary[Bundle, dict[tuple[str, str], tuple[_Comparison, ...] | None]] = (
    weakref.WeakKeyDictionary())


def _compared(bundle: Bundle, compiled: CompiledPolicy, name: str, kind: FactType) -> tuple[_Comparison, ...] | None:
    """Every comparison reading `name` that `compiled` or a policy it uses (any version or revision)
    may make, or None if one of them reads it otherwise (or compares it in a way not told here)."""
    known = _COMPARED.setdefault(bundle, {})
    key = (compiled.ruleset, name)
    if key not in known:
        versions, todo, seen = [compiled], [u.policy for u in compiled.version.uses], set()
        while todo:
            policy = todo.pop()
            if policy in seen:
                continue
            seen.add(policy)
            for c in bundle.versions(policy):
                versions += [c, *bundle.earlier_revisions(policy, c.version.version)]
                todo += [u.policy for u in c.version.uses]
        known[key] = _comparisons(versions, compiled, name, kind)
    return known[key]


def _comparisons(versions: list[CompiledPolicy], top: CompiledPolicy, name: str, kind: FactType
                 ) -> tuple[_Comparison, ...] | None:
    found = []
    for c in versions:
        pv = c.version
        if any(u.subject == name for u in pv.uses) or (c is not top and name == pv.as_at_fact):
            return None
        for rule in (*c.rules, *(r for cl in c.lists.values() for r in cl.rules)):
            if any(name in arith.fact_names(e) for _, e in expressions(rule.rule)):
                return None  # arithmetic reads it
            for cmp, _ in walk(rule.rule.when, ()):
                operand = cmp.operand
                if cmp.fact != name and not (isinstance(operand, Ref) and operand.fact == name):
                    continue
                comparison = _comparison(pv, cmp, name, kind)
                if comparison is None:
                    return None
                found.append(comparison)
    return tuple(found)


def _comparison(pv: PolicyVersion, cmp: Compare, name: str, kind: FactType) -> _Comparison | None:
    """How a comparison reading `name` judges it, or None if that is not told here: the engine's own
    reading of a list, a fact against itself, a derived value, aggregate or item fact, or a fact a
    used policy is given otherwise."""
    op, operand = cmp.op, cmp.operand
    if (kind is FactType.ENUM_LIST) != (op == "any_in") or (isinstance(operand, Ref) and cmp.fact == operand.fact):
        return None
    if not isinstance(operand, Ref):
        return _Comparison(_OPS[op], constant=_coded(operand))
    if operand.param:
        return _Comparison(_OPS[op], constant=_coded(pv.parameters[operand.param].value))
    there = cmp.fact if operand.fact == name else operand.fact
    if there not in {f.name for f in pv.facts} or any(there in u.set for u in pv.uses):
        return None
    shift = months_code(*(pv.parameters[s.param].value if isinstance(s, Ref) else (s or 0)
                          for s in (operand.plus_years, operand.plus_months)))
    return _Comparison(_OPS[op], there=there, shift=shift, left=cmp.fact == name)


def _test(c: _Comparison, other: dict[str, Any]) -> Callable[[Any], bool] | None:
    """The comparison as a test of a (coded) value, with the request's other facts; None if it is
    unknown whatever the value (the other date fact is not given)."""
    if c.there is None:
        return lambda v: c.op(v, c.constant)
    if c.there not in other:
        return None
    there = _coded(other[c.there])
    if c.left:
        return lambda v: c.op(v, there + c.shift)
    return lambda v: c.op(there, v + c.shift)


def _coded(value: Any) -> Any:
    return date_code(value) if isinstance(value, dt.date) else value


# Each version's thresholds (`marks`), by bundle (its used policies' versions) and ruleset.
_THRESHOLDS: weakref.WeakKeyDictionary[Bundle, dict[str, list[tuple[PolicyVersion, whatif.Thresholds]]]] = (
    weakref.WeakKeyDictionary())


def marks(bundle: Bundle, compiled: CompiledPolicy, facts: dict[str, Any]) -> dict[str, set[int]]:
    """The values where each fact's rules (this version's and its used policies') change their verdict.
    A used policy's derived thresholds are left out: its result is read through its outcome, which
    they seldom change for the policy using it (a prisoner is liable in every rate band)."""
    known = _THRESHOLDS.setdefault(bundle, {})
    if compiled.ruleset not in known:
        known[compiled.ruleset] = [(compiled.version, whatif.thresholds(compiled.version, compiled.kinds))] + [
            (used.version, whatif.thresholds(used.version, used.kinds, derived=False))
            for use in compiled.version.uses for used in bundle.versions(use.policy)]
    found: dict[str, set[int]] = {}
    for pv, thresholds in known[compiled.ruleset]:
        for name, points in whatif.marks(pv, thresholds, facts).items():
            found.setdefault(name, set()).update(points)
    return found


def counterfactuals(bundle: Bundle, compiled: CompiledPolicy, request: DecisionRequest, worked: Worked,
                    redecide: Redecide, only: set[str] | None = None) -> list[Counterfactual]:
    """Single-fact changes that give another outcome, one line per fact and new outcome. Only facts
    that a rule tried before (or as) the deciding one reads can change it; facts of a used policy
    count when its result is read. The date that chose the law (as_at_fact) is not varied.
    `only`: the facts that may be varied (a parent's own)."""
    pv = compiled.version
    tried = [i for i, _ in compiled.outcome_candidates if i <= worked.root]
    relevant = compiled.sources_of(n for i in tried for n in compiled.rules[i].reads)
    passed_on = {n for u in pv.uses if set(u.facts()) & relevant for n in bundle.request_names(u.policy)}
    specs = request_facts.specs(bundle, compiled)
    facts = {k: v for k, v in request.facts.items() if v is not None}
    names = [n for n in specs if n in facts and n != pv.as_at_fact and (n in relevant or n in passed_on)
             and (only is None or n in only)]
    decide = implied(retry(request, redecide), facts, specs, worked,
                     comparisons_only(bundle, compiled, facts, specs, names, worked))
    found = whatif.changes(facts, [specs[n] for n in names], marks(bundle, compiled, facts),
                           worked.decision.outcome, decide)
    groups: dict[tuple, list[whatif.Change]] = {}
    for change in found:
        groups.setdefault((change.fact.name, change.direction, change.result.outcome), []).append(change)
    return [counterfactual(group, facts[group[0].fact.name]) for group in groups.values()]


def counterfactual(group: list[whatif.Change], current: Any) -> Counterfactual:
    """One fact's changes that give the same new outcome, in words."""
    first, spec = group[0], group[0].fact

    def shown(raw: Any) -> str:
        value = values.parse(spec, raw)
        if isinstance(value, tuple):
            return explainer.join([spec.labels.get(v, v.replace("_", " ")) for v in value])
        if isinstance(value, str) and spec.type is not FactType.STRING:
            return spec.labels.get(value, value.replace("_", " "))
        return explainer.format_value(spec.type, value)

    if spec.type is FactType.ENUM_LIST:
        added = [x for c in group for x in c.value if x not in current]
        removed = [x for x in current if any(x not in c.value for c in group)]
        phrase = " or ".join(p for p in (
            f"also included {shown(added)}".replace(" and ", " or ") if added else "",
            f"did not include {shown(removed)}".replace(" and ", " or ") if removed else "") if p)
    else:
        later = spec.type is FactType.DATE  # "16 March 2000 or later", not "or more"
        beyond = {"at_least": " or later" if later else " or more",
                  "at_most": " or earlier" if later else " or less"}.get(first.direction, "")
        phrase = "were " + explainer.join([shown(c.value) for c in group], "or") + beyond
    new = first.result.detail.decision
    return Counterfactual(
        fact=spec.name, value=first.value if len(group) == 1 else [c.value for c in group],
        direction=first.direction, outcome=new.outcome,
        text=f"If {spec.name} {phrase} (it is {shown(current)}): {new.outcome} — {new.outcome_description}.",
        parent_text=f'If the answer to "{spec.question or spec.description}" {phrase}, the decision would be: '
                    f"{new.outcome_description}.",
        shown_to=[Audience.CASEWORKER])


def ask_order(bundle: Bundle, compiled: CompiledPolicy, request: DecisionRequest, missing: list[MissingFact],
              redecide: Redecide) -> list[MissingFact]:
    """The missing facts in the order to ask them (see whatif.ask_order)."""
    if len(missing) < 2:  # nothing to order: no retries (most undetermined decisions lack one fact)
        return missing
    facts = {k: v for k, v in request.facts.items() if v is not None}
    by_name = {m.name: m for m in missing}
    order = whatif.ask_order(facts, list(by_name), request_facts.specs(bundle, compiled),
                             marks(bundle, compiled, facts), retry(request, redecide))
    return [by_name[name] for name in order]
