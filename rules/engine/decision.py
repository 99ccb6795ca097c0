"""What a caller asks for and what the engine answers (mirrors protos/cms_policy/v1)."""
from __future__ import annotations

import builtins
import datetime as dt
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rules.language.model import Citation

UNDETERMINED = "UNDETERMINED"


class Audience(str, Enum):
    """Who reads a text; as a party, who a decision is about or was asked for by
    (CASEWORKER as a party is the Service itself)."""
    CASEWORKER = "CASEWORKER"
    RECEIVING_PARENT = "RECEIVING_PARENT"
    PAYING_PARENT = "PAYING_PARENT"


PARENTS = (Audience.RECEIVING_PARENT, Audience.PAYING_PARENT)


class RequestReason(str, Enum):
    NEW_APPLICATION = "NEW_APPLICATION"
    CHANGE_OF_CIRCUMSTANCES = "CHANGE_OF_CIRCUMSTANCES"
    ANNUAL_REVIEW = "ANNUAL_REVIEW"
    MANDATORY_RECONSIDERATION = "MANDATORY_RECONSIDERATION"
    ENFORCEMENT = "ENFORCEMENT"


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str
    version: str = ""
    as_at: dt.date | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    subject: Audience | None = None  # the parent the decision is about (applicant, customer, evidence giver)
    requested_by: Audience | None = None  # sensitive: who asked for the decision
    reason: RequestReason | None = None
    counterfactuals: bool = True  # work out what would change the outcome
    shadow_version: str = ""  # also decide under this version of the policy, without acting on it


class Violation(BaseModel):
    field: str
    description: str


class RequestError(ValueError):
    """The request cannot be decided as asked; every problem is listed by field."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class FactUsed(BaseModel):
    name: str
    value: Any


class TrailStep(BaseModel):
    rule_id: str
    concludes: str
    because: str
    citations: list[Citation] = Field(default_factory=list)
    facts_used: list[FactUsed] = Field(default_factory=list)


class MissingFact(BaseModel):
    name: str
    description: str
    question: str = ""


class Flag(BaseModel):
    code: str
    description: str


class Output(BaseModel):
    name: str
    value: Any  # a whole number (pence for money) or a percent as decimal text
    text: str  # the value in words, e.g. "£7.00" or "20%"
    description: str


class ItemVerdict(BaseModel):
    """One item of a list fact (e.g. one evidence document), judged on its own."""
    list: str
    index: int  # position in the request, from 0
    outcome: str
    outcome_description: str
    step: TrailStep | None = None  # the rule that decided it
    missing_facts: builtins.list[MissingFact] = Field(default_factory=builtins.list)  # `list` here is the field above


class PolicyRef(BaseModel):
    model_config = ConfigDict(frozen=True)  # one per version, shared by its decisions
    policy: str
    version: str
    status: str
    title: str
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    content_hash: str
    revision: int = 1  # the version's revision (a correction is a new revision; content_hash tells which file)


class Counterfactual(BaseModel):
    fact: str
    value: Any  # JSON form of the value that changes the outcome
    direction: str = ""  # "" (this value), "at_least" or "at_most" (a threshold)
    outcome: str
    text: str = ""  # for the caseworker ("" in a parent's own list)
    shown_to: list[Audience] = [Audience.CASEWORKER]
    parent_text: str = ""  # the same in a parent's words


class Explanation(BaseModel):
    """The decision for one audience. A parent's is worked out only from what that parent may know
    (their own facts, facts about nobody) and what they are lawfully told (outcome, amount, outputs),
    so it is the same whatever the other parent's sensitive facts are."""
    audience: Audience
    text: str
    withheld: bool = False  # the outcome rests on the other parent's sensitive information: no reasons
    notify: bool = True  # False: send this parent nothing yet (pending on the other parent's information)
    counterfactuals: list[Counterfactual] = Field(default_factory=list)  # a parent's own "what would change it"
    questions: list[MissingFact] = Field(default_factory=list)  # what a parent is asked next (UNDETERMINED)


class DisclosureRisk(BaseModel):
    """For the caseworker: told this outcome, `parent` could infer some of the other parent's
    sensitive information, because the rules that decided it read it."""
    parent: Audience  # who could infer it
    whose: Audience | None = None  # whose information it is (None: not known whose)
    facts: list[str] = Field(default_factory=list)  # the sensitive facts (and lists) the outcome rests on
    rule_id: str  # the rule that decided the outcome
    infers: str  # what that parent could infer, in words
    advice: str  # what to do before that parent is told anything


class Shadow(BaseModel):
    """What another version of the policy would have decided on the same request: for a policy
    team watching a reform on live traffic. It never changes the decision it rides along with."""
    policy: PolicyRef | None = None  # None if the shadow version could not decide
    outcome: str = ""
    amount_pence: int | None = None
    outputs: list[Output] = Field(default_factory=list)
    rule_ids: list[str] = Field(default_factory=list)  # the shadow's trail
    missing_facts: list[str] = Field(default_factory=list)
    rationale: str = ""  # for the caseworker and the policy team, never for a parent
    agrees: bool = False  # same outcome, amount and outputs as the decision
    error: str = ""  # why the shadow version could not decide


class Decision(BaseModel):
    decision_id: str = ""
    decided_at: str = ""
    bundle_hash: str = ""  # the policy bundle loaded when it was decided
    policy: PolicyRef
    as_at: dt.date | None = None
    outcome: str
    outcome_description: str
    amount_pence: int | None = None
    outputs: list[Output] = Field(default_factory=list)
    items: list[ItemVerdict] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    rationale: str
    trail: list[TrailStep] = Field(default_factory=list)
    missing_facts: list[MissingFact] = Field(default_factory=list)
    ignored_facts: list[str] = Field(default_factory=list)
    sub_decisions: list[Decision] = Field(default_factory=list)  # decisions of other policies this one used, each with its own version
    explanations: list[Explanation] = Field(default_factory=list)  # one per audience
    counterfactuals: list[Counterfactual] = Field(default_factory=list)
    shadow: Shadow | None = None  # asked for with `shadow_version`
    disclosure_risks: list[DisclosureRisk] = Field(default_factory=list)  # for the caseworker, never a parent

    def for_parent(self, audience: Audience) -> Decision:
        """The decision as one parent may see it: the outcome, amount and outputs, their own
        explanation, counterfactuals and next questions, the id, time and policy reference; nothing
        else (no rationale, trail, items, flags, actions, sub-decisions, shadow or other texts).
        When they are to be sent nothing yet, only the id, time, policy and their held explanation."""
        mine = next(e for e in self.explanations if e.audience is audience)
        if not mine.notify:  # nothing yet: not even the outcome code, which would mark the case
            return Decision(decision_id=self.decision_id, decided_at=self.decided_at, policy=self.policy, outcome="",
                            outcome_description="", rationale="", explanations=[mine])
        return Decision(decision_id=self.decision_id, decided_at=self.decided_at, policy=self.policy,
                        outcome=self.outcome, outcome_description=self.outcome_description,
                        amount_pence=self.amount_pence, outputs=self.outputs, rationale="", explanations=[mine],
                        counterfactuals=mine.counterfactuals, missing_facts=mine.questions)

    def golden(self) -> dict:
        """The decision as golden files pin it: everything but its id, time, the bundle it came
        from (a golden case pins one version, whatever else is loaded) and any shadow (another
        version's result, not part of this decision), and the sections for outputs, items and
        sub-decisions only when a policy has them."""
        data = self.model_dump(mode="json", exclude=_NOT_PINNED)
        _drop_empty(data)
        return data


_NOT_PINNED = {"decision_id", "decided_at", "bundle_hash", "shadow"}
_OPTIONAL = ("outputs", "items", "sub_decisions", "explanations", "counterfactuals", "disclosure_risks")
_PARENT_ONLY = ("counterfactuals", "questions")  # of an explanation: only a parent's has them


def _drop_empty(data: dict) -> None:
    if data.get("policy", {}).get("revision") == 1:  # pinned only once a version has been corrected
        del data["policy"]["revision"]
    for key in _OPTIONAL:
        if not data.get(key):
            data.pop(key, None)
    for explanation in data.get("explanations", ()):
        for key in _PARENT_ONLY:
            if not explanation.get(key):
                explanation.pop(key, None)
        if explanation.get("notify"):  # pinned only where a parent is sent nothing yet
            del explanation["notify"]
    for sub in data.get("sub_decisions", ()):
        for key in _NOT_PINNED:
            sub.pop(key, None)
        _drop_empty(sub)
