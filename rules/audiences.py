"""Who may be told what: the decision's text for the caseworker and for each parent.

The policy file gives each parent's wording (`tell` on rules and outcomes); the engine decides
whether it may be used, without trusting the words. Every value a rule reads is traced back to
the facts it comes from (`CompiledPolicy.sources`), and each sensitive fact says whose it is
(`about`). A reason is given to a parent only when none of those facts is the other parent's
sensitive information (or of unknown ownership). When the deciding reason cannot be given, the
parent is told only what was decided, what to do and how to ask for a review.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import explainer
from .compiler import CompiledPolicy
from .decision import PARENTS, UNDETERMINED, Audience, Decision, Explanation
from .model import PARTIES, PLACEHOLDER, WhoseFact

PARTY = {Audience.RECEIVING_PARENT: "receiving_parent", Audience.PAYING_PARENT: "paying_parent"}
BOTH = frozenset(PARTIES)

# Worded so that it cannot be mistaken for news of the other parent's request for a reconsideration.
REVIEW = "If you think this decision is wrong, contact us within one month of the date of this decision and we will look at it again."
NEUTRAL = "We have made a decision on your child maintenance case. We will contact you if you need to do anything."
UNDECIDED = "We need more information before we can make this decision."


@dataclass
class Ownership:
    """Whose information each value of one decision holds."""
    compiled: CompiledPolicy
    given: dict
    subject: str | None  # "receiving_parent" / "paying_parent", or None when not known
    used: dict[str, frozenset[str]] = field(default_factory=dict)  # a used result -> whose secrets it read
    _seen: dict[frozenset[str], frozenset[str]] = field(default_factory=dict, repr=False)

    def whose(self, about) -> frozenset[str]:
        """The parents an `about` may name (both when it cannot be told)."""
        if about is None:
            return frozenset()
        if about == "subject":
            return frozenset({self.subject}) if self.subject else BOTH
        if isinstance(about, WhoseFact):
            value = self.given.get(about.fact)
            return frozenset({value}) if value in PARTIES else BOTH
        return frozenset({about})

    def owner_of(self, name: str) -> frozenset[str]:
        """Whose a fact of the request is, sensitive or not (empty: the case's)."""
        spec = self.compiled.specs.get(name)
        return self.whose(spec.about) if spec is not None else frozenset()

    def secrets(self, sources) -> frozenset[str]:
        """The parents whose sensitive information any of these sources holds."""
        out: set[str] = set()
        for name in sources:
            if name in self.used:
                out |= self.used[name]
            elif name in self.compiled.secret:
                out |= self.whose(self.compiled.secret[name])
        return frozenset(out)

    def _secrets_of(self, sources: frozenset[str]) -> frozenset[str]:
        """`secrets`, worked out once per set of sources (both parents' texts ask the same)."""
        found = self._seen.get(sources)
        if found is None:
            found = self._seen[sources] = self.secrets(sources)
        return found

    def all_secrets(self) -> frozenset[str]:
        """Whose sensitive information this decision may have read (for a policy that uses it)."""
        return self.secrets(set(self.compiled.secret) | set(self.used))

    def hidden_from(self, audience: Audience, sources: frozenset[str]) -> bool:
        return bool(self._secrets_of(sources) - {PARTY[audience]})


def parent_explanations(compiled: CompiledPolicy, decision: Decision, owners: Ownership, known: dict,
                        root: int | None) -> list[Explanation]:
    values = {**known, **{o.name: o.value for o in decision.outputs}, "amount": decision.amount_pence}
    return [_parent(audience, compiled, decision, owners, values, root) for audience in PARENTS]


def _parent(audience: Audience, compiled: CompiledPolicy, decision: Decision, owners: Ownership, values: dict,
            root: int | None) -> Explanation:
    pv, me = compiled.version, PARTY[audience]
    keys = [me] + ([] if owners.subject is None else ["subject" if owners.subject == me else "other_parent"])
    kinds = compiled.text_kinds

    def wording(tell: dict) -> str | None:
        return next((tell[k] for k in keys if k in tell), None)

    def say(text: str, read=()) -> str | None:
        """The wording rendered, or None if it (or what it explains) reads the other parent's secrets."""
        names = [n for n in _placeholders(text) if n in compiled.kinds]
        if owners.hidden_from(audience, compiled.sources_of([*names, *read])):
            return None
        return explainer.render(text, pv, values, kinds, compiled.labels)

    lines, withheld = [], False
    if decision.outcome == UNDETERMINED:
        lines.append(UNDECIDED)
        own = [m for m in decision.missing_facts if owners.owner_of(m.name) == {me}]
        if own:
            lines += ["Please tell us:"] + [f"- {m.question or m.description}" for m in own]
    else:
        # `withheld`: the outcome rests on the other parent's secrets (the deciding rule held and every
        # outcome rule before it did not). The same for every such case, so the flag gives nothing away.
        withheld = owners.hidden_from(audience, compiled.decided_on[root])
        explained = not owners.hidden_from(audience, compiled.sources_of(compiled.rules[root].reads))
        headline = wording(pv.tell.outcomes.get(decision.outcome, {}))
        said = say(headline) if headline else None
        if said is None and not withheld:
            amount = f" ({explainer.money(decision.amount_pence)})" if decision.amount_pence is not None else ""
            said = f"Decision: {decision.outcome_description}{amount}."
        lines.append(said or NEUTRAL)
        if explained:  # the deciding rule's own reasons reveal nothing of the other parent's
            reasons = []
            for step in decision.trail:
                cr = compiled.by_id[step.rule_id]
                text = wording(cr.rule.tell) if cr.rule.flag is None else None
                reason = say(text, cr.reads) if text else None
                if reason:
                    reasons.append(reason)
            if reasons:
                lines += ["Why:"] + [f"- {r}" for r in reasons]
            changes = [c.parent_text for c in decision.counterfactuals if audience in c.shown_to]
            if changes and not withheld:
                lines += ["What would change it:"] + [f"- {c}" for c in changes]
    lines.append(wording(pv.tell.review) or REVIEW)
    return Explanation(audience=audience, text="\n".join(lines), withheld=withheld)


@functools.lru_cache(maxsize=4096)
def _placeholders(text: str) -> tuple[str, ...]:
    """The names a wording's {placeholders} read (the policies' wordings are few)."""
    return tuple(PLACEHOLDER.findall(text))


def visible_to(owners: Ownership, compiled: CompiledPolicy, root: int | None, fact_owner: frozenset[str]
               ) -> list[Audience]:
    """Who may see a counterfactual: the caseworker always; a parent when the policy tells parents
    what would change it, the fact is theirs, and the outcome it would give reveals none of the
    other parent's secrets."""
    shown = [Audience.CASEWORKER]
    if not compiled.version.tell.counterfactuals:
        return shown
    for audience in PARENTS:
        if fact_owner == {PARTY[audience]} and root is not None and not owners.hidden_from(
                audience, compiled.decided_on[root]):
            shown.append(audience)
    return shown
