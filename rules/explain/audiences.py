"""Who may be told what: each parent's view of a decision, and what its outcome may give away.

Noninterference by construction. A parent's view is worked out from the *reader's request*: the
request with every sensitive fact that is not that parent's own taken out (`reader_facts`), so
it holds only their own facts and facts about nobody. It also uses what they are lawfully told:
the outcome, amount and outputs. Two requests that differ only in the other parent's secrets
give the same reader's request, so the same view. The engine's three-valued logic is monotone
(more facts never undo a definite verdict), so a decision that the reader's request settles is
the one the whole request gets, and everything it says is true of the case. Where it does not
settle it, the outcome they are told may still be explained by a rule stating it that holds on
their facts (`Evaluator._told_rule`): a function of what they know and are told, and true.

Otherwise the outcome rests on the other parent's information: that parent gets one fixed text
for the outcome, or nothing yet when the outcome is pending (`tell.pending`). Whenever their facts
alone do not decide the outcome and the rules that decided it read the other parent's
information, the caseworker gets a disclosure risk.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import (
    UNDETERMINED,
    Audience,
    Counterfactual,
    Decision,
    DecisionRequest,
    DisclosureRisk,
    Explanation,
    MissingFact,
)
from rules.explain import explainer
from rules.language.model import PARTIES, PLACEHOLDER, ItemList, WhoseFact

PARTY: dict[Audience | None, str] = {Audience.RECEIVING_PARENT: "receiving_parent", Audience.PAYING_PARENT: "paying_parent"}
AUDIENCE = {party: audience for audience, party in PARTY.items()}
BOTH = frozenset(PARTIES)
WORDS = {"receiving_parent": "receiving parent", "paying_parent": "paying parent"}

# For a version with no `tell.review`: no time limit (a period is law, so each version that has one
# states it with its source), and worded so that it cannot be mistaken for news of the other
# parent's request for a reconsideration.
REVIEW = "If you think this decision is wrong, contact us and we will look at it again."
NEUTRAL = "We have made a decision on your child maintenance case. We will contact you if you need to do anything."
UNDECIDED = "We need more information before we can make this decision."


def owners(declarations: Sequence[tuple], request: DecisionRequest) -> frozenset[str]:
    """Whose a fact of the request is, by every declaration of it: the parents any of them may
    name (both when one cannot be told; empty: the case's, nobody's)."""
    out: set[str] = set()
    for spec, subject_fact in declarations:
        about = spec.about
        if about is None:
            continue
        if about == "subject":
            named = request.facts.get(subject_fact) if subject_fact else PARTY.get(request.subject)
        elif isinstance(about, WhoseFact):
            named = request.facts.get(about.fact)
        else:
            named = about
        out |= {named} if named in PARTIES else BOTH
    return frozenset(out)


def sensitive(declarations: Sequence[tuple]) -> bool:
    # isinstance, not getattr(spec, "facts", ()): a pydantic model's missing attribute raises and
    # catches inside __getattr__, which was a sixth of a fee decision (this runs per fact and reader).
    return any(spec.sensitive or (isinstance(spec, ItemList) and any(f.sensitive for f in spec.facts))
               for spec, _ in declarations)


def reader_facts(declared: dict[str, list[tuple]], request: DecisionRequest, reader: Audience) -> dict:
    """The request's facts that `reader` may know: all but the sensitive ones that are not theirs
    alone (the other parent's, or of no known owner)."""
    mine = frozenset({PARTY[reader]})
    return {name: value for name, value in request.facts.items()
            if not sensitive(declared.get(name, ())) or owners(declared[name], request) == mine}


@dataclass
class Reading:
    """A decision as one parent may know it: worked out from their reader's request only."""
    reader: Audience
    facts: dict  # the reader's request's facts
    decision: Decision  # the decision on them (UNDETERMINED when they do not settle it)
    known: dict  # every value that decision knows
    decides: bool = True  # their facts alone decide it (not only explain the outcome they are told)
    changes: list[Counterfactual] = field(default_factory=list)  # the reader's own "what would change it"
    questions: list[MissingFact] = field(default_factory=list)  # the reader's own facts still needed
    seen: Any = None  # the Worked decision it came from (for the other parent's reading of the same facts)

    @property
    def settled(self) -> bool:
        """Their facts explain the outcome: they decide it, or a rule stating it holds on them."""
        return self.decision.outcome != UNDETERMINED


def parent_explanation(compiled: CompiledPolicy, decision: Decision, request: DecisionRequest, reading: Reading
                       ) -> Explanation:
    """The reader's text, from `reading` and the outcome, amount and outputs alone."""
    pv, me = compiled.version, PARTY[reading.reader]
    subject = PARTY.get(request.subject)
    keys = [me] + ([] if subject is None else ["subject" if subject == me else "other_parent"])
    values = {**reading.known, **{o.name: o.value for o in decision.outputs}, "amount": decision.amount_pence}
    kinds = compiled.text_kinds

    def wording(tell: dict) -> str | None:
        return next((tell[k] for k in keys if k in tell), None)

    def say(text: str | None) -> str | None:
        """The wording rendered, or None when it reads a value the reader's request does not know."""
        if text is None or any(values.get(n) is None for n in _placeholders(text) if n in kinds):
            return None
        return explainer.render(text, pv, values, kinds, compiled.labels)

    review = wording(pv.tell.review) or REVIEW
    if decision.outcome == UNDETERMINED:
        if not reading.questions:  # nothing of theirs is missing: nothing to send them yet
            return Explanation(audience=reading.reader, text="", notify=False)
        lines = [UNDECIDED, "Please tell us:", *(f"- {m.question or m.description}" for m in reading.questions)]
        return Explanation(audience=reading.reader, text="\n".join(lines), questions=reading.questions)
    headline = say(wording(pv.tell.outcomes.get(decision.outcome, {})))
    if not reading.settled:  # the outcome rests on the other parent's information
        if decision.outcome in pv.tell.pending:
            return Explanation(audience=reading.reader, text="", withheld=True, notify=False)
        return Explanation(audience=reading.reader, text="\n".join([headline or NEUTRAL, review]), withheld=True)
    if headline is None and not reading.decides:  # no wording for them, and the outcome is not theirs alone
        headline = NEUTRAL
    elif headline is None:
        amount = f" ({explainer.money(decision.amount_pence)})" if decision.amount_pence is not None else ""
        headline = f"Decision: {decision.outcome_description}{amount}."
    lines = [headline]
    reasons = [r for r in (say(wording(compiled.by_id[s.rule_id].rule.tell)) for s in reading.decision.trail
                           if compiled.by_id[s.rule_id].rule.flag is None) if r]
    if reasons:
        lines += ["Why:"] + [f"- {r}" for r in reasons]
    if reading.changes:
        lines += ["What would change it:"] + [f"- {c.parent_text}" for c in reading.changes]
    lines.append(review)
    return Explanation(audience=reading.reader, text="\n".join(lines), counterfactuals=reading.changes)


@functools.lru_cache(maxsize=4096)
def _placeholders(text: str) -> tuple[str, ...]:
    """The names a wording's {placeholders} read (the policies' wordings are few)."""
    return tuple(PLACEHOLDER.findall(text))


def mark_shown(counterfactuals: list[Counterfactual], explanations: list[Explanation]) -> None:
    """A caseworker's counterfactual is shown to each parent whose own list has the same change."""
    for e in explanations:
        theirs = {(c.fact, repr(c.value), c.direction, c.outcome) for c in e.counterfactuals}
        for c in counterfactuals:
            if (c.fact, repr(c.value), c.direction, c.outcome) in theirs:
                c.shown_to.append(e.audience)


def disclosure_risks(declared: dict[str, list[tuple]], compiled: CompiledPolicy, request: DecisionRequest,
                     decision: Decision, root: int | None, readings: list[Reading],
                     request_names: dict[str, set[str]]) -> list[DisclosureRisk]:
    """For each parent whose reader's request does not decide the outcome: the other parent's
    sensitive facts that the rules behind the outcome read (the deciding rule, the rules that
    derived what it read, the items and used decisions it read). Empty when those rules read
    none: the outcome then rests on such information only by rules that did not apply."""
    if root is None:
        return []
    read = compiled.sources_of(name for step in decision.trail for name in compiled.by_id[step.rule_id].tests)
    for use in compiled.version.uses:
        if set(use.facts()) & read:
            read |= request_names[use.policy]
    out = []
    for reading in readings:
        if reading.decides:
            continue
        facts = sorted(name for name in read if name in request.facts and name not in reading.facts)
        if facts:
            out.append(_risk(declared, compiled, request, decision, root, reading, facts))
    return out


def _risk(declared: dict, compiled: CompiledPolicy, request: DecisionRequest, decision: Decision, root: int,
          reading: Reading, facts: list[str]) -> DisclosureRisk:
    reader = PARTY[reading.reader]
    whose = frozenset().union(*(owners(declared[name], request) for name in facts)) - {reader}
    other = WORDS[next(iter(whose))] if len(whose) == 1 else "other parent"
    about = "; ".join(_description(declared[name]) for name in facts)
    pending = decision.outcome in compiled.version.tell.pending
    if pending:
        advice = (f"Send the {WORDS[reader]} nothing until this is decided; before they are told the decision, "
                  f"check with the {other} that it is safe for them to learn it.")
    else:
        advice = (f"Before the {WORDS[reader]} is told this outcome, check with the {other} that it is safe "
                  f"for them to learn it, and complete any safety steps first.")
    return DisclosureRisk(
        parent=reading.reader, whose=AUDIENCE[next(iter(whose))] if len(whose) == 1 else None, facts=facts,
        rule_id=compiled.rules[root].rule.id,
        infers=f"Told {decision.outcome}, the {WORDS[reader]} could infer the {other}'s information it rests on: {about}",
        advice=advice)


def _description(declarations: list[tuple]) -> str:
    text = declarations[0][0].description.rstrip(".")
    return text[0].lower() + text[1:]


def caseworker_lines(explanations: list[Explanation]) -> list[str]:
    """What the caseworker is told of each parent's text (the rationale's "Parents:" section)."""
    lines = []
    for e in explanations:
        who = WORDS[PARTY[e.audience]]
        if not e.notify:
            lines.append(f"- Send the {who} nothing yet: the decision is pending on information that is not theirs.")
        elif e.withheld:
            lines.append(f"- The {who} is told the outcome only: it rests on information that is not theirs.")
    return lines


def own_facts(declared: dict[str, list[tuple]], request: DecisionRequest, reader: Audience) -> set[str]:
    """The request's facts that are the reader's alone and not sensitive: those a parent may be told
    to change (never an answer about abuse or its reporting)."""
    mine = frozenset({PARTY[reader]})
    return {name for name, declarations in declared.items()
            if not sensitive(declarations) and owners(declarations, request) == mine}


def own_questions(declared: dict[str, list[tuple]], request: DecisionRequest, reader: Audience,
                  missing: list[MissingFact]) -> list[MissingFact]:
    mine = frozenset({PARTY[reader]})
    return [m for m in missing if (name := m.name.split("[")[0]) in declared and owners(declared[name], request) == mine]
