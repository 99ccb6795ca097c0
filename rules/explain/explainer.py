"""Plain-English text: rule "because" templates and the decision's rationale.

Templates name facts, derived values and parameters in braces, e.g.
"reported to {abuse_reported_to}". Only bare names are substituted (no
attribute access, no format specs): a policy file cannot reach into Python.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rules.engine.decision import UNDETERMINED, Decision
from rules.language.model import PLACEHOLDER, AllOf, AnyOf, Condition, FactType, NotOf, ParamType, PolicyVersion, Ref

NOT_GIVEN = "(not given)"


def money(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    pounds, p = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{p:02d}"


def join(items: list[str], last: str = "and") -> str:
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


def format_value(kind: FactType | ParamType, value: Any) -> str:
    if value is None:
        return NOT_GIVEN
    if kind in (FactType.MONEY, ParamType.MONEY):
        return money(value)
    if kind in (FactType.PERCENT, ParamType.PERCENT):
        return f"{value}%"
    if kind is ParamType.PERCENT_TABLE:
        return "; ".join(", ".join(f"{v}%" for v in row) for row in value)
    if kind is FactType.BOOL:
        return "yes" if value else "no"
    if kind in (FactType.DATE, ParamType.DATE):
        return f"{value.day} {value:%B %Y}" if isinstance(value, dt.date) else str(value)
    if kind is FactType.ENUM:
        return str(value).replace("_", " ")
    if kind in (FactType.ENUM_LIST, ParamType.STRING_LIST):
        return join([str(v).replace("_", " ") for v in value])
    return str(value)


def render(template: str, pv: PolicyVersion, values: dict[str, Any], kinds: dict[str, FactType],
           labels: dict[str, dict[str, str]] | None = None) -> str:
    def sub(match) -> str:
        name = match.group(1)
        if name in kinds:
            value = values.get(name)
            named = (labels or {}).get(name, {})
            if isinstance(value, str) and value in named:
                return named[value]
            if isinstance(value, tuple) and named:
                return join([named.get(v, v.replace("_", " ")) for v in value])
            return format_value(kinds[name], value)
        param = pv.parameters[name]
        return format_value(param.type, param.value)
    return PLACEHOLDER.sub(sub, template)


_ASKED = {"CASEWORKER": "the Child Maintenance Service", "RECEIVING_PARENT": "the receiving parent",
          "PAYING_PARENT": "the paying parent"}


def rationale(pv: PolicyVersion, d: Decision, request=None, parents: Sequence[str] = ()) -> str:
    """The caseworker's explanation: everything, with rule ids and citations. `request` adds who
    asked for the decision (sensitive: never in a parent's text); `parents`, what each parent is
    told when it is not the whole story."""
    head = f"{d.outcome}: {d.outcome_description}" + (f" ({money(d.amount_pence)})" if d.amount_pence is not None else "")
    lines = [f"{head}.", f"Policy: {pv.title} [{pv.policy}/{pv.version}, {pv.status.value}]."]
    if request is not None and request.requested_by is not None:
        why = f" ({request.reason.value.lower().replace('_', ' ')})" if request.reason is not None else ""
        lines.append(f"Asked for by {_ASKED[request.requested_by.value]}{why}: do not tell the other parent.")
    lines += [f"{o.description}: {o.text}." for o in d.outputs]
    if d.items:
        lines.append("Items:")
        for v in d.items:
            if v.step is not None:
                cites = "; ".join(c.text() for c in v.step.citations)
                lines.append(f"- {v.list}[{v.index}]: {v.outcome}. {v.step.because} [{v.step.rule_id}: {cites}]")
            else:
                lines.append(f"- {v.list}[{v.index}]: {v.outcome}; needs " + ", ".join(m.name for m in v.missing_facts))
    for sub in d.sub_decisions:
        lines.append(f"Uses {sub.policy.policy}/{sub.policy.version} ({sub.policy.status}):")
        lines += ["  " + line for line in sub.rationale.splitlines()]
    if d.trail:
        lines.append("Why:")
        for n, step in enumerate(d.trail, 1):
            cites = "; ".join(c.text() for c in step.citations)
            lines.append(f"{n}. {step.because} [{step.rule_id}: {cites}]")
    if d.outcome == UNDETERMINED:
        lines.append("Needed to decide (ask in this order):")
        lines += [f"{n}. {m.question or m.description} [{m.name}]" for n, m in enumerate(d.missing_facts, 1)]
    if d.counterfactuals:
        lines.append("What would change it:")
        lines += [f"- {c.text}" for c in d.counterfactuals]
    if d.actions:
        lines.append("Actions:")
        lines += [f"{n}. {a}" for n, a in enumerate(d.actions, 1)]
    if d.flags:
        lines.append("Flags for the caseworker:")
        lines += [f"- {f.code}: {f.description}" for f in d.flags]
    if d.disclosure_risks:
        lines.append("Disclosure risks:")
        lines += [f"- {r.infers} [{r.rule_id}]. {r.advice}" for r in d.disclosure_risks]
    if parents:
        lines += ["Parents:", *parents]
    return "\n".join(lines)


_OP_WORDS = {"eq": "is", "ne": "is not", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥",
             "in": "is one of", "not_in": "is not one of", "any_in": "includes any of"}


def describe(pv: PolicyVersion, cond: Condition) -> str:
    """A condition in words, e.g. "application_date < applicant_date_of_birth + 19 years"."""
    if isinstance(cond, AllOf):
        return " and ".join(_group(pv, c) for c in cond.all)
    if isinstance(cond, AnyOf):
        return " or ".join(_group(pv, c) for c in cond.any)
    if isinstance(cond, NotOf):
        return f"not {_group(pv, cond.not_)}"
    operand = cond.operand
    if isinstance(operand, Ref):
        text = _ref(pv, operand)
    elif isinstance(operand, tuple):
        text = "[" + ", ".join(operand) + "]"
    else:
        text = str(operand).lower() if isinstance(operand, bool) else str(operand)
    return f"{cond.fact} {_OP_WORDS[cond.op]} {text}"


def _group(pv: PolicyVersion, cond: Condition) -> str:
    text = describe(pv, cond)
    return f"({text})" if isinstance(cond, (AllOf, AnyOf)) else text


def _ref(pv: PolicyVersion, ref: Ref) -> str:
    if ref.param:
        value = pv.parameters[ref.param].value
        shown = "[" + ", ".join(value) + "]" if isinstance(value, tuple) else value  # type: ignore[arg-type]  # a parameter a condition compares with is a list of codes
        return f"{ref.param} ({shown})"
    text = ref.fact
    assert text is not None  # a Ref names a parameter or a fact
    for unit, shift in (("years", ref.plus_years), ("months", ref.plus_months)):
        if shift is not None:
            text += f" + {_ref(pv, shift) if isinstance(shift, Ref) else shift} {unit}"
    return text
