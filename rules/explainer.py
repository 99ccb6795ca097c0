"""Plain-English text: rule "because" templates and the decision's rationale.

Templates name facts, derived values and parameters in braces, e.g.
"reported to {abuse_reported_to}". Only bare names are substituted (no
attribute access, no format specs): a policy file cannot reach into Python.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from .decision import UNDETERMINED, Flag, MissingFact, TrailStep
from .model import PLACEHOLDER, FactType, ParamType, PolicyVersion

NOT_GIVEN = "(not given)"


def money(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    pounds, p = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{p:02d}"


def _join(items: list[str]) -> str:
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def format_value(kind: FactType | ParamType, value: Any) -> str:
    if value is None:
        return NOT_GIVEN
    if kind in (FactType.MONEY, ParamType.MONEY):
        return money(value)
    if kind is FactType.BOOL:
        return "yes" if value else "no"
    if kind is FactType.DATE:
        return f"{value.day} {value:%B %Y}" if isinstance(value, dt.date) else str(value)
    if kind is FactType.ENUM:
        return str(value).replace("_", " ")
    if kind in (FactType.ENUM_LIST, ParamType.STRING_LIST):
        return _join([str(v).replace("_", " ") for v in value])
    return str(value)


def render(template: str, pv: PolicyVersion, values: dict[str, Any], kinds: dict[str, FactType]) -> str:
    def sub(match) -> str:
        name = match.group(1)
        if name in kinds:
            return format_value(kinds[name], values.get(name))
        param = pv.parameters[name]
        return format_value(param.type, param.value)
    return PLACEHOLDER.sub(sub, template)


def rationale(pv: PolicyVersion, outcome: str, description: str, amount: int | None,
              trail: list[TrailStep], missing: list[MissingFact], flags: list[Flag]) -> str:
    head = f"{outcome}: {description}" + (f" ({money(amount)})" if amount is not None else "")
    lines = [f"{head}.", f"Policy: {pv.title} [{pv.policy}/{pv.version}, {pv.status.value}]."]
    if trail:
        lines.append("Why:")
        for n, step in enumerate(trail, 1):
            cites = "; ".join(c.text() for c in step.citations)
            lines.append(f"{n}. {step.because} [{step.rule_id}: {cites}]")
    if outcome == UNDETERMINED:
        lines.append("Needed to decide:")
        lines += [f"- {m.name}: {m.description}" for m in missing]
    if flags:
        lines.append("Flags for the caseworker:")
        lines += [f"- {f.code}: {f.description}" for f in flags]
    return "\n".join(lines)
