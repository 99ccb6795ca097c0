"""A decision's trail as a picture: the version's rules in the order they are tried, which fired, the
facts each fired rule read, and the decisions of other policies it used as nested groups.

The service's trail holds the rules that fired and that the outcome rests on; GetPolicy gives every
rule in the order tried. Under the "first hit" policy an outcome rule after the deciding one is never
reached; any other rule not in the trail did not fire, or fired without the outcome resting on it.
Each status has its own shape and label, never colour alone, and the page lists the same beside it.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from cms_policy.v1 import policy_pb2 as pb

from .formatting import shown

DECIDED, FIRED, NOT_USED, NOT_REACHED = "decided", "fired", "not-used", "not-reached"
LABELS = {DECIDED: "Decided the outcome", FIRED: "Fired", NOT_USED: "Did not fire", NOT_REACHED: "Not reached"}
# What each status means (the page says it once, beside the picture).
MEANINGS = {DECIDED: "it fired, and the outcome is its conclusion",
            FIRED: "it held, and the outcome rests on what it concluded",
            NOT_USED: "it did not hold, or it held but the outcome does not rest on it",
            NOT_REACHED: "an outcome rule after the one that decided: the first that holds decides, so it was never needed"}


@dataclass
class Row:
    rule_id: str
    status: str
    concludes: str
    when: str = ""  # the condition in words (from GetPolicy)
    because: str = ""  # the reason as rendered with the facts (a fired rule's)
    facts: list[tuple[str, str]] = field(default_factory=list)  # (name, value in words) a fired rule read
    citations: list[pb.Citation] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.status]


@dataclass
class Group:
    """One decision's rules (the top one, or a sub-decision)."""
    policy: str
    version: str
    revision: int
    outcome: str
    rows: list[Row]
    children: list[Group]
    complete: bool  # the rules come from GetPolicy (else only the trail's fired rules are known)


def group(decision: pb.DecideResponse, policies: dict[tuple[str, str, int], pb.GetPolicyResponse | None]) -> Group:
    """`decision`'s rules, with those of its sub-decisions; `policies` by (policy, version, revision)."""
    ref = decision.policy
    spec = policies.get((ref.policy, ref.version, ref.revision))
    steps = {step.rule_id: step for step in decision.trail}
    deciding = next((s.rule_id for s in reversed(decision.trail) if s.concludes == decision.outcome), None)
    rows: list[Row] = []
    if spec is not None:
        outcomes = {o.code for o in spec.outcomes}
        reached = True
        for rule in spec.rules:
            step = steps.get(rule.id)
            if step is not None:
                status = DECIDED if rule.id == deciding else FIRED
            else:
                status = NOT_USED if reached or rule.concludes not in outcomes else NOT_REACHED
            rows.append(_row(rule.id, status, rule.concludes, step, rule.when))
            if rule.id == deciding:
                reached = False
    known = {row.rule_id for row in rows}
    rows += [_row(s.rule_id, DECIDED if s.rule_id == deciding else FIRED, s.concludes, s)
             for s in decision.trail if s.rule_id not in known]
    return Group(ref.policy, ref.version, ref.revision, decision.outcome, rows,
                 [group(sub, policies) for sub in decision.sub_decisions], spec is not None)


def _row(rule_id: str, status: str, concludes: str, step: pb.TrailStep | None, when: str = "") -> Row:
    if step is None:
        return Row(rule_id, status, concludes, when)
    return Row(rule_id, status, step.concludes or concludes, when, step.because,
               [(used.name, shown(used.value)) for used in step.facts_used], list(step.citations))


# The picture. Sizes in SVG user units; the page scales it to its column.
WIDTH, LINE, GAP, INDENT, WRAP = 720, 20, 12, 28, 74
_MARK_X, _TEXT_X = 14, 36


def _marker(status: str, x: float, y: float) -> str:
    if status == DECIDED:  # a filled diamond
        return (f'<polygon class="trail-mark trail-mark--decided" points="{x},{y - 10} {x + 10},{y} {x},{y + 10} {x - 10},{y}"/>'
                f'<path class="trail-tick" d="M{x - 4},{y} l3,3 l5,-6"/>')
    if status == FIRED:  # a filled circle with a tick
        return (f'<circle class="trail-mark trail-mark--fired" cx="{x}" cy="{y}" r="8"/>'
                f'<path class="trail-tick" d="M{x - 4},{y} l3,3 l5,-6"/>')
    if status == NOT_REACHED:  # a dashed empty square
        return f'<rect class="trail-mark trail-mark--not-reached" x="{x - 7}" y="{y - 7}" width="14" height="14"/>'
    return f'<circle class="trail-mark trail-mark--not-used" cx="{x}" cy="{y}" r="7"/>'  # an empty circle


def _text(x: float, y: float, text: str, kind: str) -> str:
    return f'<text class="trail-text trail-text--{kind}" x="{x}" y="{y}">{escape(text)}</text>'


def _draw(g: Group, x: float, y: float, width: float) -> tuple[list[str], float]:
    """The group's elements from (x, y), and the height they take."""
    out = [_text(x + 8, y + LINE, f"{g.policy} {g.version} (revision {g.revision}): {g.outcome}", "group")]
    if not g.complete:
        out.append(_text(x + 8, y + 2 * LINE, "Only the rules that fired are known (the policy could not be read).", "note"))
    top, cursor = y, y + (3 if not g.complete else 2) * LINE
    wrap = max(20, int(WRAP * (width - _TEXT_X) / (WIDTH - _TEXT_X)))
    previous = None
    for number, row in enumerate(g.rows, 1):
        mark_y = cursor + 6
        if previous is not None:  # the order tried: a line from one rule's mark down to the next
            out.append(f'<line class="trail-order" x1="{x + _MARK_X}" y1="{previous + 10}" x2="{x + _MARK_X}" y2="{mark_y - 10}"/>')
        out.append(_marker(row.status, x + _MARK_X, mark_y))
        out.append(_text(x + _TEXT_X, cursor + 11, f"{number}. {row.rule_id}: {row.label}", row.status))
        lines = textwrap.wrap(f"Concludes {row.concludes}", wrap)
        if row.facts:
            lines += textwrap.wrap("Read: " + "; ".join(f"{name} = {value}" for name, value in row.facts), wrap)
        for line in lines:
            cursor += LINE
            out.append(_text(x + _TEXT_X, cursor + 11, line, "detail"))
        previous = mark_y
        cursor += LINE + GAP
    for child in g.children:
        elements, height = _draw(child, x + INDENT, cursor, width - INDENT)
        out += elements
        cursor += height + GAP
    out.insert(0, f'<rect class="trail-group" x="{x}" y="{top}" width="{width}" height="{cursor - top}" rx="4"/>')
    return out, cursor - top


def _legend(y: float) -> tuple[list[str], float]:
    out, x = [], 0.0
    for status in (DECIDED, FIRED, NOT_USED, NOT_REACHED):
        out.append(_marker(status, x + _MARK_X, y + 10))
        out.append(_text(x + _TEXT_X - 6, y + 15, LABELS[status], "legend"))
        x += WIDTH / 4
    return out, 2 * LINE


def description(g: Group) -> str:
    """The picture in one paragraph, for its <desc>."""
    fired = [r.rule_id for r in g.rows if r.status in (DECIDED, FIRED)]
    deciding = next((r.rule_id for r in g.rows if r.status == DECIDED), None)
    text = (f"{g.policy} {g.version}: {len(g.rows)} rules in the order tried; fired: {', '.join(fired) or 'none'}"
            + (f"; {deciding} decided {g.outcome}." if deciding else f"; outcome {g.outcome}."))
    return " ".join([text, *(f"It used {description(child)}" for child in g.children)])


def picture(g: Group, id_prefix: str = "trail") -> Markup:
    """The inline SVG (role img, with a title and a description)."""
    legend, top = _legend(0)
    body, height = _draw(g, 0, top, WIDTH)
    total = top + height + 2
    return Markup(
        f'<svg class="trail-picture" role="img" aria-labelledby="{id_prefix}-title {id_prefix}-desc" '
        f'viewBox="-1 -1 {WIDTH + 2} {total + 2}" width="{WIDTH + 2}" height="{total + 2}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{id_prefix}-title">The rules tried, in order, and which fired</title>'
        f'<desc id="{id_prefix}-desc">{escape(description(g))}</desc>'
        + "".join(legend) + "".join(body) + "</svg>")
