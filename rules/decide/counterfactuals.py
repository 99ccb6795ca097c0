"""What would change a decision, and what to ask first: single-fact changes that give another
outcome (in words, for the caseworker and for each parent), and the order to ask missing facts in.
Both decide the same case again on other facts, briefly, through a `Redecide` the Evaluator gives."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rules.decide import facts as request_facts
from rules.decide.worked import Worked
from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import UNDETERMINED, Audience, Counterfactual, DecisionRequest, MissingFact, RequestError
from rules.engine.loader import Bundle
from rules.explain import explainer, whatif
from rules.language import values
from rules.language.model import FactType

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


def marks(bundle: Bundle, compiled: CompiledPolicy, facts: dict[str, Any]) -> dict[str, set[int]]:
    """The values where each fact's rules (this version's and its used policies') change their verdict."""
    found = whatif.marks(compiled.version, facts, compiled.kinds)
    for use in compiled.version.uses:
        for used in bundle.versions(use.policy):
            for name, points in whatif.marks(used.version, facts, used.kinds).items():
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
    found = whatif.changes(facts, [specs[n] for n in names], marks(bundle, compiled, facts),
                           worked.decision.outcome, retry(request, redecide))
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
