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
    flags: list[Flag] = []
    actions: list[str] = []
    rationale: str
    trail: list[TrailStep] = []
    missing_facts: list[MissingFact] = []
    ignored_facts: list[str] = []

    def golden(self) -> dict:
        """The decision as golden files pin it: everything but its id and time."""
        return self.model_dump(mode="json", exclude={"decision_id", "decided_at"})
