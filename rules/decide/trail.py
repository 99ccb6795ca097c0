"""Building a decision's trail from the engine's verdicts: the fired rules behind the deciding one,
each as a step with its reasons and the values it read; the facts a blocked decision needs; the
outputs a rule states; the version's reference."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rules.engine.compiler import CompiledPolicy, EngineState
from rules.engine.decision import FactUsed, MissingFact, Output, PolicyRef, TrailStep
from rules.explain import explainer
from rules.language import arith, values
from rules.language.model import FactType, PolicyVersion, Rule

UNDETERMINED_TEXT = "the decision needs facts that were not given"


def step(compiled: CompiledPolicy, rule: Rule, used: dict[str, Any], kinds: dict[str, FactType],
         derived: dict[str, Any]) -> TrailStep:
    """One fired rule as the trail shows it: its reasons in words and the values it read."""
    decoded = {name: values.decode(kinds[name], v) for name, v in used.items()}
    shown = {**derived, **decoded}
    return TrailStep(
        rule_id=rule.id,
        concludes=rule.concludes,
        because=explainer.render(rule.because, compiled.version, shown, kinds, compiled.labels),
        citations=list(rule.cites),
        facts_used=[FactUsed(name=n, value=values.to_json(v)) for n, v in decoded.items()])


def fired(compiled: CompiledPolicy, roots: list[int], state: EngineState, whole: bool) -> list[int]:
    """The fired rules behind `roots`: each root and every fired rule that supports a derived
    value it read (all of them, not only the first: each is a reason). Unless `whole` (a decided
    outcome), only values the conditions read are followed, not those of amounts and outputs."""
    via, fired_set, wanted, todo = state.via, set(state.true), set(), list(roots)
    while todo:
        index = todo.pop()
        if index is None or index in wanted:
            continue
        wanted.add(index)
        rule = compiled.rules[index]
        for name in (rule.tests if whole else rule.condition_reads):
            if (through := via.get(name)) is not None:
                value = compiled.rules[through].conclusion
                todo += [r.index for r in compiled.rules if r.index in fired_set and r.rule.derive
                         and r.rule.derive.name == name and r.conclusion == value]
    return [i for i in state.true if i in wanted]


def missing(compiled: CompiledPolicy, blockers: Iterable[int], given: dict[str, Any], state: EngineState,
            pending: dict[str, list[MissingFact]]) -> list[MissingFact]:
    """The absent facts that the blocking rules (and the derived values they read) need;
    for a list or a used policy, the facts its undecided items or decision need."""
    blocked = state.blocked
    names, todo, seen = set(), list(blockers), set()
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        for name in compiled.rules[index].tests:
            if name in blocked:
                todo += blocked[name]
            elif name not in given:
                names.add(name)
    out = [MissingFact(name=f.name, description=f.description, question=f.question)
           for f in compiled.version.facts if f.name in names]
    for name in sorted(n for n in names if n in pending):
        out += [m for m in pending[name] if m.name not in {x.name for x in out}]
    return out


def output(pv: PolicyVersion, name: str, expr: Any, known: dict[str, Any]) -> Output:
    """An output the deciding rule states, worked out and in words."""
    spec = pv.outputs[name]
    value = arith.store(spec.type, arith.evaluate(expr, pv, known.__getitem__))
    return Output(name=name, value=value, text=explainer.format_value(spec.type, value), description=spec.description)


def policy_ref(compiled: CompiledPolicy) -> PolicyRef:
    """The version's reference (frozen), made once per compiled version and shared by its decisions."""
    ref = _REFS.get(compiled.ruleset)
    if ref is None:
        pv = compiled.version
        ref = _REFS[compiled.ruleset] = PolicyRef(
            policy=pv.policy, version=pv.version, status=pv.status.value, title=pv.title,
            effective_from=pv.effective_from, effective_to=pv.effective_to, content_hash=compiled.content_hash,
            revision=pv.revision)
    return ref


_REFS: dict[str, PolicyRef] = {}  # by ruleset name (policy, version and content hash)
