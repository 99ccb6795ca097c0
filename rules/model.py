"""The policy-file format: pydantic models for one policy version.

A policy file is pure data. Conditions are a small structured language
(all/any/not over comparisons of facts, derived values and parameters);
nothing in a file is ever evaluated as Python.
"""
from __future__ import annotations

import datetime as dt
import re
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"  # snake_case; "__" is kept for engine fields
RULE_ID = r"^[a-z0-9][a-z0-9_.-]*$"
OUTCOME = r"^[A-Z][A-Z0-9_]*$"
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")

Name = Annotated[str, Field(pattern=NAME, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Status(str, Enum):
    ENACTED = "enacted"
    PROSPECTIVE = "prospective"
    PROPOSED = "proposed"


class FactType(str, Enum):
    BOOL = "bool"
    INTEGER = "integer"
    MONEY = "money"  # integer pence
    STRING = "string"
    ENUM = "enum"
    DATE = "date"
    ENUM_LIST = "enum_list"


class Citation(Strict):
    source: str = Field(min_length=1)
    provision: str = ""
    url: str = ""

    def text(self) -> str:
        return f"{self.source}, {self.provision}" if self.provision else self.source


class Fact(Strict):
    name: Name
    type: FactType
    description: str = Field(min_length=1)
    question: str = ""
    allowed: tuple[str, ...] = ()
    sensitive: bool = False

    @model_validator(mode="after")
    def _allowed_matches_type(self) -> Fact:
        listed = self.type in (FactType.ENUM, FactType.ENUM_LIST)
        if listed and not self.allowed:
            raise ValueError(f"fact '{self.name}' of type {self.type.value} needs 'allowed' values")
        if not listed and self.allowed:
            raise ValueError(f"'allowed' is only for enum and enum_list facts, not {self.type.value}")
        return self


class ParamType(str, Enum):
    MONEY = "money"
    INTEGER = "integer"
    STRING = "string"
    STRING_LIST = "string_list"


class Parameter(Strict):
    type: ParamType
    value: Union[int, str, tuple[str, ...]]
    description: str = Field(min_length=1)
    cites: tuple[Citation, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _value_matches_type(self) -> Parameter:
        wanted = {ParamType.MONEY: int, ParamType.INTEGER: int,
                  ParamType.STRING: str, ParamType.STRING_LIST: tuple}[self.type]
        if not isinstance(self.value, wanted) or isinstance(self.value, bool):
            raise ValueError(f"value {self.value!r} is not a {self.type.value}")
        return self


class Derived(Strict):
    """A value the rules themselves work out (e.g. whether the applicant counts as a victim)."""
    name: Name
    type: Literal[FactType.BOOL, FactType.STRING]
    description: str = Field(min_length=1)
    default: Union[bool, str]


# --- conditions -------------------------------------------------------------

class Ref(Strict):
    """An operand naming a parameter, or a fact/derived value (dates may be shifted)."""
    param: Name | None = None
    fact: Name | None = None
    plus_years: Union[int, "Ref", None] = None
    plus_months: Union[int, "Ref", None] = None

    @model_validator(mode="after")
    def _one_target(self) -> Ref:
        if (self.param is None) == (self.fact is None):
            raise ValueError("an operand names exactly one of 'param' or 'fact'")
        if self.param and (self.plus_years is not None or self.plus_months is not None):
            raise ValueError("'plus_years'/'plus_months' apply to a date fact, not a parameter")
        for shift in (self.plus_years, self.plus_months):
            if isinstance(shift, Ref) and shift.param is None:
                raise ValueError("a date shift is a number or a parameter")
        return self


Scalar = Union[bool, int, str, dt.date]
Operand = Union[Ref, Scalar, tuple[str, ...]]
OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "any_in")


class Compare(Strict):
    fact: Name
    eq: Operand | None = None
    ne: Operand | None = None
    lt: Operand | None = None
    lte: Operand | None = None
    gt: Operand | None = None
    gte: Operand | None = None
    in_: Operand | None = Field(None, alias="in")
    not_in: Operand | None = None
    any_in: Operand | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one_op(self) -> Compare:
        given = [op for op in OPS if self.operand_for(op) is not None]
        if len(given) != 1:
            raise ValueError(f"a comparison needs exactly one operator of {', '.join(OPS)}; got {given or 'none'}")
        return self

    def operand_for(self, op: str):
        return getattr(self, "in_" if op == "in" else op)

    @property
    def op(self) -> str:
        return next(op for op in OPS if self.operand_for(op) is not None)

    @property
    def operand(self) -> Operand:
        return self.operand_for(self.op)


class AllOf(Strict):
    all: tuple["Condition", ...] = Field(min_length=1)


class AnyOf(Strict):
    any: tuple["Condition", ...] = Field(min_length=1)


class NotOf(Strict):
    not_: "Condition" = Field(alias="not")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Condition = Union[AllOf, AnyOf, NotOf, Compare]


# --- rules ------------------------------------------------------------------

class Derive(Strict):
    name: Name
    value: Union[bool, str]


class Rule(Strict):
    id: str = Field(pattern=RULE_ID, max_length=80)
    when: Condition | None = None  # absent: always applies
    outcome: str | None = Field(None, pattern=OUTCOME)
    amount: Ref | None = None
    derive: Derive | None = None
    flag: str | None = Field(None, pattern=OUTCOME)
    actions: tuple[Annotated[str, Field(min_length=1)], ...] = ()  # for the caseworker, in order
    because: str = Field(min_length=1)
    cites: tuple[Citation, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_conclusion(self) -> Rule:
        if sum(x is not None for x in (self.outcome, self.derive, self.flag)) != 1:
            raise ValueError("a rule concludes exactly one of 'outcome', 'derive' or 'flag'")
        if self.amount is not None and self.outcome is None:
            raise ValueError("'amount' goes with an 'outcome'")
        if self.actions and self.derive is not None:
            raise ValueError("'actions' go with an 'outcome' or a 'flag'")
        return self

    @property
    def concludes(self) -> str:
        if self.derive is not None:
            value = self.derive.value
            return f"{self.derive.name} = {str(value).lower() if isinstance(value, bool) else value}"
        return self.outcome or self.flag



class PolicyVersion(Strict):
    policy: Name
    version: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    status: Status
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    cites: tuple[Citation, ...] = Field(min_length=1)
    as_at_fact: Name | None = None  # date fact that picks the version when the caller gives neither
    outcomes: dict[Annotated[str, Field(pattern=OUTCOME)], str] = Field(min_length=1)
    flags: dict[Annotated[str, Field(pattern=OUTCOME)], str] = {}
    parameters: dict[Name, Parameter] = {}
    facts: tuple[Fact, ...] = ()
    derived: tuple[Derived, ...] = ()
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("outcomes")
    @classmethod
    def _undetermined_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        if "UNDETERMINED" in v:
            raise ValueError("UNDETERMINED is built in; do not declare it")
        return v

    @model_validator(mode="after")
    def _dates(self) -> PolicyVersion:
        if self.status is Status.ENACTED and self.effective_from is None:
            raise ValueError("an enacted version needs 'effective_from'")
        if self.effective_from and self.effective_to and self.effective_to < self.effective_from:
            raise ValueError("'effective_to' is before 'effective_from'")
        return self

    def in_force_on(self, day: dt.date) -> bool:
        return (self.status is Status.ENACTED and self.effective_from <= day
                and (self.effective_to is None or day <= self.effective_to))


for _m in (Ref, AllOf, AnyOf, NotOf, Rule):
    _m.model_rebuild()
