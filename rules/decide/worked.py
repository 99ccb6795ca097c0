"""A decision with what explaining it needs, passed between the Decide modules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.engine.decision import Decision


@dataclass(frozen=True, kw_only=True)
class Worked:
    """A decision with what explaining it needs: every known value, the subject (a party, or None)
    and the deciding rule (None when UNDETERMINED)."""
    decision: Decision
    known: dict[str, Any]
    subject: str | None
    root: int | None
    decided: bool = True  # False: the root was found from the outcome a parent is told (Evaluator._told_rule)
