"""What a caller asks for and what the engine answers (mirrors protos/cms_policy/v1)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

from .model import Citation

UNDETERMINED = "UNDETERMINED"


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str
    version: str = ""
    as_at: dt.date | None = None
    facts: dict[str, Any] = {}


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
    citations: list[Citation] = []
    facts_used: list[FactUsed] = []


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
    missing_facts: list[MissingFact] = []


class PolicyRef(BaseModel):
    policy: str
    version: str
    status: str
    title: str
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    content_hash: str


class Decision(BaseModel):
    decision_id: str = ""
    decided_at: str = ""
    policy: PolicyRef
    as_at: dt.date | None = None
    outcome: str
    outcome_description: str
    amount_pence: int | None = None
    outputs: list[Output] = []
    items: list[ItemVerdict] = []
    flags: list[Flag] = []
    actions: list[str] = []
    rationale: str
    trail: list[TrailStep] = []
    missing_facts: list[MissingFact] = []
    ignored_facts: list[str] = []
    sub_decisions: list["Decision"] = []  # decisions of other policies this one used, each with its own version

    def golden(self) -> dict:
        """The decision as golden files pin it: everything but its id and time (and the
        sections for outputs, items and sub-decisions only when a policy has them)."""
        data = self.model_dump(mode="json", exclude={"decision_id", "decided_at"})
        _drop_empty(data)
        return data


_OPTIONAL = ("outputs", "items", "sub_decisions")


def _drop_empty(data: dict) -> None:
    for key in _OPTIONAL:
        if not data.get(key):
            data.pop(key, None)
    for sub in data.get("sub_decisions", ()):
        sub.pop("decision_id", None)
        sub.pop("decided_at", None)
        _drop_empty(sub)
