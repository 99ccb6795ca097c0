"""What each parent of a recorded decision was not told, and why, in words a reviewer can check.

Worked out from the decision and its request alone (and the fact schema GetPolicy gives: which facts
are sensitive and whose they are), never by deciding anything again: the service already chose each
parent's text; this says what that text leaves out. A parent is not told:

- the other parent's sensitive facts (or sensitive facts whose owner is not known) that the
  decision read;
- who asked for the decision and why, when the other parent asked;
- the reasons and changes, when their text is withheld (the outcome rests on what is not theirs),
  or anything at all yet, when it is held;
- each of the caseworker's "what would change it" that their own list lacks;
- what the outcome could let them infer (the disclosure risks naming them).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cms_policy.v1 import policy_pb2 as pb

from .formatting import shown

PARENTS: tuple[int, ...] = (pb.AUDIENCE_RECEIVING_PARENT, pb.AUDIENCE_PAYING_PARENT)
PARTY: dict[str, int] = {"receiving_parent": pb.AUDIENCE_RECEIVING_PARENT, "paying_parent": pb.AUDIENCE_PAYING_PARENT}
WORDS: dict[int, str] = {pb.AUDIENCE_RECEIVING_PARENT: "receiving parent", pb.AUDIENCE_PAYING_PARENT: "paying parent",
         pb.AUDIENCE_CASEWORKER: "caseworker"}
UNDETERMINED = "UNDETERMINED"


@dataclass(frozen=True)
class Spec:
    """What the schema says of a request fact (or list of items): sensitive, and whose."""
    sensitive: bool
    about: str  # as FactSpec.about: a party, "subject", "fact:<name>", or "" (the case's)
    description: str
    type: str  # as FactSpec.type; "list" for a list of items


def specs(policies: Iterable[pb.GetPolicyResponse]) -> dict[str, Spec]:
    """The request facts' specs from a version and the versions it used (first declaration wins)."""
    out: dict[str, Spec] = {}
    for policy in policies:
        for fact in policy.facts:
            out.setdefault(fact.name, Spec(fact.sensitive, fact.about, fact.description, fact.type))
        for items in policy.lists:
            out.setdefault(items.name, Spec(items.sensitive, items.about, items.description, "list"))
    return out


def owners(spec: Spec, request: pb.DecideRequest) -> frozenset[int]:
    """The parents a fact is about: one, both when it cannot be told whose it is, none for the case's."""
    about = spec.about
    if not about:
        return frozenset()
    named: int | None
    if about == "subject":
        named = request.subject
    elif about.startswith("fact:"):
        value = request.facts.fields.get(about[5:])
        named = PARTY.get(value.string_value) if value is not None else None
    else:
        named = PARTY.get(about)
    return frozenset({named}) if named in PARENTS else frozenset(PARENTS)


def read_facts(decision: pb.DecideResponse, request: pb.DecideRequest) -> set[str]:
    """The request's facts the decision read: in its trail and its sub-decisions', its items' lists,
    and those its disclosure risks say the outcome rests on."""
    names: set[str] = set()

    def walk(d: pb.DecideResponse) -> None:
        names.update(used.name for step in d.trail for used in step.facts_used)
        names.update(item.list for item in d.items)
        names.update(fact for risk in d.disclosure_risks for fact in risk.facts)
        for sub in d.sub_decisions:
            walk(sub)
    walk(decision)
    return {name for name in names if name in request.facts.fields}


@dataclass
class NotTold:
    what: str
    why: str
    fact: str = ""  # the fact it is about, if one
    value: str = ""  # that fact's value in the request (the page is for reviewers)


@dataclass
class ParentView:
    audience: int
    explanation: pb.Explanation | None
    not_told: list[NotTold] = field(default_factory=list)

    @property
    def key(self) -> str:  # for element ids
        return WORDS[self.audience].replace(" ", "-")


def _whose(owned: frozenset[int], me: int) -> str:
    others = owned - {me}
    if len(others) == 1 and me not in owned:
        return f"the {WORDS[next(iter(others))]}'s"
    return "not known whose (no parent is named as the one it is about)"


def _facts(request: pb.DecideRequest, decision: pb.DecideResponse, known: dict[str, Spec], me: int) -> list[NotTold]:
    out = []
    for name in sorted(read_facts(decision, request)):
        spec = known.get(name)
        if spec is None or not spec.sensitive:
            continue
        owned = owners(spec, request)
        if owned == {me}:
            continue
        known_other = len(owned) == 1
        why = (f"It is sensitive information, {_whose(owned, me)}, and the decision read it: a parent is never told "
               + ("the other parent's sensitive information." if known_other else
                  "sensitive information that may be the other parent's."))
        out.append(NotTold(what=spec.description, why=why, fact=name, value=shown(request.facts.fields[name])))
    return out


def _who_asked(request: pb.DecideRequest, me: int) -> list[NotTold]:
    if request.requested_by not in PARENTS or request.requested_by == me:
        return []
    reason = pb.RequestReason.Name(request.reason).removeprefix("REQUEST_REASON_").replace("_", " ").lower()
    return [NotTold(what=f"That the {WORDS[request.requested_by]} asked for this decision ({reason})",
                    why="Who asked for a decision, and why, is told only to the parent who asked and to the caseworker.")]


def _text(explanation: pb.Explanation | None, decision: pb.DecideResponse) -> list[NotTold]:
    if explanation is None:
        return []
    if explanation.hold:
        why = ("The decision needs facts that are not theirs to give, so there is nothing to send them yet."
               if decision.outcome == UNDETERMINED else
               "The outcome is pending and rests on information that is not theirs: they are sent nothing until it is decided.")
        return [NotTold(what="Anything at all yet: their letter is held", why=why)]
    if explanation.withheld:
        return [NotTold(what="Why: the reasons for the outcome, and what would change it",
                        why="Their own facts do not explain the outcome: it rests on the other parent's sensitive "
                            "information (or on information whose owner is not known), so they are told the outcome only.")]
    return []


def _changes(counterfactuals: Iterable[pb.Counterfactual], explanation: pb.Explanation | None,
             request: pb.DecideRequest, known: dict[str, Spec], me: int) -> list[NotTold]:
    missing = [c for c in counterfactuals if me not in c.shown_to]
    if not missing:
        return []
    if explanation is None or explanation.withheld or explanation.hold:
        return [NotTold(what=f"What would change it ({len(missing)} change{'s' if len(missing) != 1 else ''} the caseworker sees)",
                        why="They are told the outcome only, so no change is offered to them.")]
    out = []
    for change in missing:
        name = change.fact.split("[", 1)[0]
        spec = known.get(name)
        owned = owners(spec, request) if spec else frozenset()
        if spec is not None and spec.sensitive and owned != {me}:
            why = f"It would reveal sensitive information, {_whose(owned, me)}."
        elif spec is not None and spec.sensitive:
            why = "It is an answer about their own sensitive information (such as abuse or its reporting): a parent is never asked to change such an answer."
        elif me not in owned:
            why = ("It is not theirs to change: " +
                   (f"it is {_whose(owned, me)} information." if owned else "it is a fact about the case, not about them."))
        else:
            why = "Worked out on their own facts alone, this change does not give another outcome."
        out.append(NotTold(what=change.text or change.parent_text, why=why, fact=change.fact))
    return out


def _risks(decision: pb.DecideResponse, me: int) -> list[NotTold]:
    return [NotTold(what=f"What the outcome could let them infer (rule {risk.rule_id})", why=f"{risk.infers}. {risk.advice}")
            for risk in decision.disclosure_risks if risk.parent == me]


def parent_views(request: pb.DecideRequest, decision: pb.DecideResponse, known: dict[str, Spec],
                 counterfactuals: Iterable[pb.Counterfactual] | None = None,
                 explanations: Iterable[pb.Explanation] | None = None) -> list[ParentView]:
    """Each parent's text and what it leaves out. `counterfactuals` and `explanations`: a WhatIf's,
    when it was asked (a decision recorded without them has none)."""
    changes = list(decision.counterfactuals if counterfactuals is None else counterfactuals)
    texts: dict[int, pb.Explanation] = {e.audience: e for e in (decision.explanations if explanations is None else explanations)}
    views = []
    for me in PARENTS:
        explanation = texts.get(me)
        views.append(ParentView(me, explanation, [
            *_facts(request, decision, known, me), *_who_asked(request, me), *_text(explanation, decision),
            *_changes(changes, explanation, request, known, me), *_risks(decision, me)]))
    return views
