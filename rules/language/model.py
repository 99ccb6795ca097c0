"""The policy-file format: pydantic models for one policy version.

A policy file is pure data. Conditions are a small structured language
(all/any/not over comparisons of facts, derived values and parameters);
nothing in a file is ever evaluated as Python.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
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
    PERCENT = "percent"  # exact decimal text, e.g. "14.1"
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


PARTY_KEYWORDS = ("receiving_parent", "paying_parent", "subject")
PARTIES = ("receiving_parent", "paying_parent")


class WhoseFact(Strict):
    """Ownership that depends on the case: the fact names the parent (e.g. abuse_disclosed_by)."""
    fact: Name


# Whose information a fact is: a parent, the parent the request is about (`subject`: the applicant,
# the customer, the evidence giver), or the parent another fact names.
About = Union[Literal["receiving_parent", "paying_parent", "subject"], WhoseFact, None]

# Per-audience wording: `receiving_parent`/`paying_parent`, or `subject`/`other_parent` relative to
# the parent the request is about.
TELL_KEYS = ("receiving_parent", "paying_parent", "subject", "other_parent")
Tell = dict[Literal["receiving_parent", "paying_parent", "subject", "other_parent"], Annotated[str, Field(min_length=1)]]


class Fact(Strict):
    name: Name
    type: FactType
    description: str = Field(min_length=1)
    question: str = ""
    allowed: tuple[str, ...] = ()
    labels: dict[str, str] = {}  # how an allowed value reads in text, e.g. marac_letter: MARAC letter
    sensitive: bool = False  # never in a text for the other parent (needs `about`)
    about: About = None  # whose information it is; absent: the case's, not a parent's

    @model_validator(mode="after")
    def _allowed_matches_type(self) -> Fact:
        unknown = sorted(set(self.labels) - set(self.allowed))
        if unknown:
            raise ValueError(f"labels for values that are not allowed: {', '.join(unknown)}")
        listed = self.type in (FactType.ENUM, FactType.ENUM_LIST)
        if listed and not self.allowed:
            raise ValueError(f"fact '{self.name}' of type {self.type.value} needs 'allowed' values")
        if not listed and self.allowed:
            raise ValueError(f"'allowed' is only for enum and enum_list facts, not {self.type.value}")
        return self


class ParamType(str, Enum):
    MONEY = "money"
    INTEGER = "integer"
    PERCENT = "percent"  # exact decimal, e.g. 14.1
    DATE = "date"
    STRING = "string"
    STRING_LIST = "string_list"
    PERCENT_TABLE = "percent_table"  # rows of percents, read with a `lookup` expression


PERCENT_PLACES = 6  # decimal places a percent may have


def percent_text(raw) -> str:
    """A percent as exact decimal text ("17", "14.1"), or ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"{raw!r} is not a percent")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a percent") from None
    if not value.is_finite() or not 0 <= value <= 100:
        raise ValueError(f"{raw!r} is not a percent between 0 and 100")
    # Checked before and after normalising: "1e-999999999" would otherwise become a huge text (or 0)
    if value.as_tuple().exponent < -2 * PERCENT_PLACES or (value.normalize() + 0).as_tuple().exponent < -PERCENT_PLACES:  # type: ignore[operator]  # finite: an int exponent
        raise ValueError(f"{raw!r} has more than {PERCENT_PLACES} decimal places")
    value = value.normalize() + 0  # + 0: "-0" is "0"
    return format(value, "f")


class Parameter(Strict):
    type: ParamType
    value: int | float | dt.date | str | tuple[int | float | str, ...] | tuple[tuple[int | float | str, ...], ...]
    description: str = Field(min_length=1)
    cites: tuple[Citation, ...] = Field(min_length=1)
    rows: str = ""  # percent_table: what the rows and columns are, in words
    columns: str = ""

    @model_validator(mode="after")
    def _value_matches_type(self) -> Parameter:
        t, v = self.type, self.value
        if t is ParamType.PERCENT:
            object.__setattr__(self, "value", percent_text(v))
            return self
        if t is ParamType.PERCENT_TABLE:
            if not (isinstance(v, tuple) and v and all(isinstance(r, tuple) and r for r in v)):
                raise ValueError("a percent_table is a list of non-empty rows of percents")
            if len({len(r) for r in v}) != 1:  # type: ignore[arg-type]  # rows are tuples: checked above
                raise ValueError("every row of a percent_table has the same number of columns")
            object.__setattr__(self, "value", tuple(tuple(percent_text(x) for x in r) for r in v))  # type: ignore[union-attr]  # as above
            return self
        wanted = {ParamType.MONEY: int, ParamType.INTEGER: int, ParamType.DATE: dt.date,
                  ParamType.STRING: str, ParamType.STRING_LIST: tuple}[t]
        if not isinstance(v, wanted) or isinstance(v, bool):
            raise ValueError(f"value {v!r} is not a {t.value}")
        if t is ParamType.STRING_LIST and not all(isinstance(x, str) for x in v):  # type: ignore[union-attr]  # a tuple: checked above
            raise ValueError("a string_list holds text values")
        return self


class Derived(Strict):
    """A value the rules themselves work out (e.g. whether the applicant counts as a victim,
    or a weekly amount). Numbers are exact; money and integers are rounded half up."""
    name: Name
    type: Literal[FactType.BOOL, FactType.STRING, FactType.INTEGER, FactType.MONEY, FactType.PERCENT]
    description: str = Field(min_length=1)
    default: bool | int | str | None = None


# --- conditions -------------------------------------------------------------

class Ref(Strict):
    """An operand naming a parameter, or a fact/derived value (dates may be shifted)."""
    param: Name | None = None
    fact: Name | None = None
    plus_years: int | Ref | None = None
    plus_months: int | Ref | None = None

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
    all: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(Strict):
    any: tuple[Condition, ...] = Field(min_length=1)


class NotOf(Strict):
    not_: Condition = Field(alias="not")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Condition = Union[AllOf, AnyOf, NotOf, Compare]


# --- arithmetic -------------------------------------------------------------
# Exact arithmetic on integers, money (pence) and percents. A value stored as
# money or an integer is rounded half up to a whole number when it is derived.

class Add(Strict):
    add: tuple[Expr, ...] = Field(min_length=2)


class Sub(Strict):
    sub: tuple[Expr, Expr]


class Mul(Strict):
    mul: tuple[Expr, ...] = Field(min_length=2)


class Div(Strict):
    div: tuple[Expr, Expr]


class MinOf(Strict):
    min: tuple[Expr, ...] = Field(min_length=2)


class MaxOf(Strict):
    max: tuple[Expr, ...] = Field(min_length=2)


class PercentOf(Strict):
    """`percent` per cent of `of`."""
    percent: Expr
    of: Expr


class Lookup(Strict):
    """A cell of a percent_table parameter; `row`/`column` count from 0, and an index past
    the last row or column reads the last one (e.g. "3 or more children")."""
    lookup: Name
    row: Expr | None = None
    column: Expr | None = None


Expr = Union[int, Ref, Add, Sub, Mul, Div, MinOf, MaxOf, PercentOf, Lookup]


# --- rules ------------------------------------------------------------------

class Derive(Strict):
    name: Name
    value: bool | Expr | str


class Rule(Strict):
    id: str = Field(pattern=RULE_ID, max_length=80)
    when: Condition | None = None  # absent: always applies
    outcome: str | None = Field(None, pattern=OUTCOME)
    amount: Expr | None = None  # money, with an outcome
    outputs: dict[Name, Expr] = {}  # further values the outcome states (see the version's `outputs`)
    derive: Derive | None = None
    flag: str | None = Field(None, pattern=OUTCOME)
    actions: tuple[Annotated[str, Field(min_length=1)], ...] = ()  # for the caseworker, in order
    because: str = Field(min_length=1)  # for the caseworker
    tell: Tell = {}  # the reason in plain English for each parent; absent: not given to that parent
    cites: tuple[Citation, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_conclusion(self) -> Rule:
        if sum(x is not None for x in (self.outcome, self.derive, self.flag)) != 1:
            raise ValueError("a rule concludes exactly one of 'outcome', 'derive' or 'flag'")
        if (self.amount is not None or self.outputs) and self.outcome is None:
            raise ValueError("'amount' and 'outputs' go with an 'outcome'")
        if self.actions and self.derive is not None:
            raise ValueError("'actions' go with an 'outcome' or a 'flag'")
        return self

    @property
    def concludes(self) -> str:
        if self.derive is not None:
            value = self.derive.value
            if isinstance(value, bool):
                return f"{self.derive.name} = {str(value).lower()}"
            return f"{self.derive.name} = {value}" if isinstance(value, (str, int)) else f"{self.derive.name} (worked out)"
        return self.outcome or self.flag  # type: ignore[return-value]  # a rule has an outcome or a flag (validated)


class ItemList(Strict):
    """A list fact whose items are judged one by one (first hit per item), e.g. evidence
    documents. Each item gets one of the list's `outcomes`; the policy's rules then read
    aggregates: `<list>_count`, `<list>_<outcome>_count` (known once every item is decided)
    and `<list>_any_<outcome>` (true as soon as one item has it)."""
    name: Name
    description: str = Field(min_length=1)
    question: str = ""
    sensitive: bool = False
    about: About = None  # whose information the items are
    facts: tuple[Fact, ...] = Field(min_length=1)
    outcomes: dict[Annotated[str, Field(pattern=OUTCOME)], str] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)

    def aggregates(self) -> dict[str, FactType]:
        names = {f"{self.name}_count": FactType.INTEGER}
        for code in self.outcomes:
            names[f"{self.name}_{code.lower()}_count"] = FactType.INTEGER
            names[f"{self.name}_any_{code.lower()}"] = FactType.BOOL
        return names


class Uses(Strict):
    """Another policy this one decides on. Its outcome and amount become the facts
    `<as>_outcome` and `<as>_amount`; its own facts are taken from the request."""
    policy: Name
    # A version id; "in_force": the enacted version on the same as-at date; "latest_enacted".
    version: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    as_: Name = Field(alias="as")
    set: dict[Name, bool | int | str] = {}  # facts fixed for the other policy
    subject: Name | None = None  # a fact naming the parent the other policy is about (default: the same)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def facts(self) -> dict[str, FactType]:
        return {f"{self.as_}_outcome": FactType.STRING, f"{self.as_}_amount": FactType.MONEY}


class OutputSpec(Strict):
    type: Literal[FactType.INTEGER, FactType.MONEY, FactType.PERCENT]
    description: str = Field(min_length=1)



class ParentTexts(Strict):
    """What each parent is told: the outcome and what to do, and how to ask for a review.
    Placeholders may name parameters, facts, derived values, outputs and `amount`."""
    outcomes: dict[Annotated[str, Field(pattern=OUTCOME)], Tell] = {}
    review: Tell = {}
    counterfactuals: bool = True  # tell a parent what of their own would change it (not e.g. for safety routing)
    # Outcomes that are not yet a decision (a referral): a parent whose view of one rests on the other
    # parent's information is sent nothing until it is decided (a text would mark the case).
    pending: tuple[Annotated[str, Field(pattern=OUTCOME)], ...] = ("REFER_TO_DECISION_MAKER",)


class Correction(Strict):
    """What one revision of a version corrected, and the law that says so."""
    revision: int = Field(ge=2)
    date: dt.date  # when the correction was made
    change: str = Field(min_length=1)  # what changed, in words
    cites: tuple[Citation, ...] = Field(min_length=1)


class PolicyVersion(Strict):
    policy: Name
    version: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    # A correction of a version is a new revision of it, never a silent edit: the earlier revision's
    # file is kept (revisions/<version>.r<N>.yaml) so that its logged decisions still replay.
    revision: int = Field(1, ge=1)
    corrections: tuple[Correction, ...] = ()
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
    lists: tuple[ItemList, ...] = ()
    uses: tuple[Uses, ...] = ()
    outputs: dict[Name, OutputSpec] = {}
    tell: ParentTexts = ParentTexts()
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("outcomes")
    @classmethod
    def _undetermined_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        if "UNDETERMINED" in v:
            raise ValueError("UNDETERMINED is built in; do not declare it")
        return v

    @model_validator(mode="after")
    def _corrections(self) -> PolicyVersion:
        listed = [c.revision for c in self.corrections]
        if sorted(set(listed)) != list(range(2, self.revision + 1)) or listed != sorted(listed):
            raise ValueError(f"revision {self.revision} needs at least one correction for each revision from 2 to "
                             f"{self.revision}, in order (listed: {listed or 'none'})")
        return self

    @model_validator(mode="after")
    def _dates(self) -> PolicyVersion:
        if self.status is Status.ENACTED and self.effective_from is None:
            raise ValueError("an enacted version needs 'effective_from'")
        if self.effective_from and self.effective_to and self.effective_to < self.effective_from:
            raise ValueError("'effective_to' is before 'effective_from'")
        return self

    def in_force_on(self, day: dt.date) -> bool:
        return (self.status is Status.ENACTED and self.effective_from <= day  # type: ignore[operator]  # enacted: has one
                and (self.effective_to is None or day <= self.effective_to))


for _m in (Ref, AllOf, AnyOf, NotOf, Add, Sub, Mul, Div, MinOf, MaxOf, PercentOf, Lookup, Derive, Rule):
    _m.model_rebuild()
