"""A decision with what explaining it needs, passed between the Decide modules."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.engine.decision import Decision, ItemVerdict, MissingFact


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What a decision worked out before running the engine, kept so that deciding the case again
    with one fact changed redoes only what that fact feeds (Evaluator._redecide)."""
    facts: Mapping[str, Any]  # the request's facts
    parsed: dict[str, Any]  # this version's own facts, parsed
    lists: dict[str, list[dict]]  # its lists' items, parsed
    uses: dict[str, Worked | MissingFact]  # each used policy's decision (or why it has none), by its `as`
    judged: dict[str, list[ItemVerdict]]  # each given list's item verdicts, by list
    # Engine runs already made, by their request's facts (Evaluator._redecide): one dict for the
    # caseworker's and the parents' searches of one decision, which often try the same facts.
    tried: dict[str, tuple]


@dataclass(frozen=True, kw_only=True)
class Worked:
    """A decision with what explaining it needs: every known value, the subject (a party, or None)
    and the deciding rule (None when UNDETERMINED)."""
    decision: Decision
    known: dict[str, Any]
    subject: str | None
    root: int | None
    decided: bool = True  # False: the root was found from the outcome a parent is told (Evaluator._told_rule)
    inputs: Inputs | None = None
