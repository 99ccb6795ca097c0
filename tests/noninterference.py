"""The pairwise check behind tests/test_noninterference.py: what a parent is shown must not change
when only the other parent's secrets change, and an outcome that does change must come with a
disclosure risk for that parent.

It reads the fact schema itself (whose each fact is, whether it is sensitive) and does not use the
engine's own reckoning of it (rules/explain/audiences.py): a mistake there must show up here.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from rules.engine.decision import (
    PARENTS,
    UNDETERMINED,
    Audience,
    Decision,
    DecisionRequest,
    RequestError,
    RequestReason,
)
from rules.language.model import FactType, WhoseFact

PARTY = {Audience.RECEIVING_PARENT: "receiving_parent", Audience.PAYING_PARENT: "paying_parent"}
BOTH = frozenset(PARTY.values())


def schema(bundle, policy: str) -> dict[str, list[tuple]]:
    """Every fact and list a request for `policy` may carry, with each declaration of it (any
    version, and the policies they use) and the fact naming that policy's subject."""
    out: dict[str, list[tuple]] = {}
    todo, seen = [(policy, None)], set()
    while todo:
        name, subject_fact = todo.pop()
        if (name, subject_fact) not in seen:
            seen.add((name, subject_fact))
            for compiled in bundle.versions(name):
                pv = compiled.version
                for spec in (*pv.facts, *pv.lists):
                    out.setdefault(spec.name, []).append((spec, subject_fact))
                todo += [(u.policy, u.subject or subject_fact) for u in pv.uses]
    return out


def _is_sensitive(spec) -> bool:
    return spec.sensitive or any(f.sensitive for f in getattr(spec, "facts", ()))


def _owner(declarations, request: DecisionRequest) -> frozenset[str]:
    out: set[str] = set()
    for spec, subject_fact in declarations:
        if spec.about is None:
            continue
        if spec.about == "subject":
            named = request.facts.get(subject_fact) if subject_fact else PARTY.get(request.subject)
        elif isinstance(spec.about, WhoseFact):
            named = request.facts.get(spec.about.fact)
        else:
            named = spec.about
        out |= {named} if named in BOTH else BOTH
    return frozenset(out)


def _secret(declarations) -> bool:
    return any(_is_sensitive(spec) for spec, _ in declarations)


def known_to(facts: dict[str, list[tuple]], request: DecisionRequest, reader: Audience) -> dict:
    """What `reader` may know of the request: facts that are not sensitive, and their own sensitive ones."""
    mine = frozenset({PARTY[reader]})
    low = {n: v for n, v in request.facts.items() if v is not None and (
        n not in facts or not _secret(facts[n]) or _owner(facts[n], request) == mine)}
    return {"facts": low, "subject": request.subject, "asked_by_me": request.requested_by is reader}


def _shift(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def _values(spec, current) -> list:
    """Other values of one sensitive fact (`current` None: absent), and removing it."""
    other = [] if current is None else [None]
    if spec.type is FactType.BOOL:
        return other + [v for v in (True, False) if v is not current]
    if spec.type is FactType.ENUM:
        return other + [v for v in spec.allowed if v != current]
    if current is None:
        return []  # only yes/no and choices are added where absent
    if spec.type is FactType.ENUM_LIST:
        extra = next((v for v in spec.allowed if v not in current), None)
        return other + [[], current[:-1]] + ([current + [extra]] if extra else [])
    if spec.type is FactType.DATE:
        return other + [_shift(current, -400), _shift(current, 400)]
    if spec.type in (FactType.INTEGER, FactType.MONEY):
        return other + [current + 1]
    return other


def mutations(facts: dict[str, list[tuple]], request: DecisionRequest, reader: Audience
              ) -> Iterator[tuple[str, DecisionRequest]]:
    """The request with one of the other parent's secrets changed: yes/no flipped, each other choice,
    lists emptied or one item more or fewer, dates moved, each removed (or added where absent), who
    disclosed swapped, and who asked for the decision."""
    mine = frozenset({PARTY[reader]})
    for name, declarations in facts.items():
        if not _secret(declarations) or _owner(declarations, request) == mine:
            continue
        current = request.facts.get(name)
        spec = declarations[0][0]
        if hasattr(spec, "rules"):  # a list of items, e.g. evidence documents
            changed = [None] if current is None else [None, [], current[:-1], current + current[:1]]
        else:
            changed = _values(spec, current)
        for value in changed:
            if value == current:
                continue
            facts_ = {k: v for k, v in request.facts.items() if k != name}
            if value is not None:
                facts_[name] = value
            yield f"{name}: {current!r} -> {value!r}", request.model_copy(update={"facts": facts_})
    for other in (None, Audience.CASEWORKER, *(p for p in PARENTS if p is not reader)):
        if other is not request.requested_by:
            reason = RequestReason.MANDATORY_RECONSIDERATION if other else None
            yield f"requested_by: {other}", request.model_copy(update={"requested_by": other, "reason": reason})


@dataclass(frozen=True)
class View:
    """All a parent is shown of a decision, and what they are lawfully told of it."""
    told: tuple
    shown: tuple


def view(decision: Decision, reader: Audience) -> View:
    e = next(e for e in decision.explanations if e.audience is reader)
    told = (decision.outcome, decision.amount_pence, tuple((o.name, str(o.value)) for o in decision.outputs))
    shown = (e.text, e.withheld, e.notify, tuple((c.fact, repr(c.value), c.direction, c.outcome, c.parent_text)
                                                 for c in e.counterfactuals),
             tuple((m.name, m.question) for m in e.questions))
    return View(told, shown)


def violations(evaluator, bundle, request: DecisionRequest, limit: int = 3) -> list[str]:
    """Every pair (the request, one mutation of the other parent's secrets) where the reader's view
    changes with what they are told unchanged, or what they are told changes (between decided
    outcomes) with no disclosure risk for them on either side."""
    facts = schema(bundle, request.policy)
    original, decided = evaluator.decide(request), {}
    found = []
    for reader in PARENTS:
        before, low = view(original, reader), known_to(facts, request, reader)
        for label, mutant in mutations(facts, request, reader):
            if known_to(facts, mutant, reader) != low:
                continue  # the change made it the reader's own (e.g. they are now the one who disclosed)
            key = mutant.model_dump_json()  # both readers try some of the same mutations
            try:
                other = decided[key] if key in decided else decided.setdefault(key, evaluator.decide(mutant))
            except RequestError:
                continue
            after = view(other, reader)
            where = f"{request.policy}/{original.policy.version}, {reader.value} reading, {label}"
            if after.told == before.told and after.shown != before.shown:
                found.append(f"{where}: the view changed with the same outcome\n{before.shown}\n{after.shown}")
            elif after.told != before.told and UNDETERMINED not in (original.outcome, other.outcome) and not any(
                    r.parent is reader for d in (original, other) for r in d.disclosure_risks):
                found.append(f"{where}: {before.told[0]} -> {after.told[0]} with no disclosure risk for them")
            if len(found) >= limit:
                return found
    return found
