"""A policy's versions as a picture: an inline SVG made on the server (the pages have no script).

One bar a dated version, from its effective_from to its effective_to (or on past today, marked
open-ended), on a date axis with a line at today; versions with no dates (proposed, or prospective
and not yet commenced) in a part of their own below. Each status has its own fill pattern and its
name is written beside the bar, so colour is never the only sign. The pages put the same facts in a
table beside it; the picture's <title> and <desc> say them too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from cms_policy.v1 import policy_pb2 as pb

from .formatting import long_date

INK = "#0b0c0c"  # GOV.UK text colour: 19:1 on white
BLUE = "#1d70b8"
STATUSES = ("enacted", "prospective", "proposed")


@dataclass(frozen=True)
class Size:
    width: int
    label: int  # the least width of the label column, left of the axis
    row: int


COMPACT = Size(width=760, label=180, row=26)
LARGE = Size(width=960, label=220, row=34)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _label(ref: pb.PolicyRef) -> str:
    return f"{ref.version} · {ref.status or 'no status'} · revision {ref.revision}"


def _when(ref: pb.PolicyRef) -> str:
    if not ref.effective_from:
        return "no dates: not in force"
    end = f"to {long_date(ref.effective_to)}" if ref.effective_to else "open-ended"
    return f"from {long_date(ref.effective_from)} {end}"


def description(versions: Sequence[pb.PolicyRef]) -> str:
    """The picture in words (its <desc>)."""
    return "; ".join(f"{ref.version}, {ref.status}, revision {ref.revision}, {_when(ref)}" for ref in versions) + "."


def _patterns(key: str) -> str:
    """A fill for each status: solid (enacted), hatched (prospective), dotted (proposed)."""
    return (f'<defs>'
            f'<pattern id="{key}-enacted" width="8" height="8" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="8" fill="{BLUE}"/></pattern>'
            f'<pattern id="{key}-prospective" width="8" height="8" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffffff"/>'
            f'<rect width="4" height="8" fill="{BLUE}"/></pattern>'
            f'<pattern id="{key}-proposed" width="8" height="8" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="8" fill="#ffffff"/><circle cx="4" cy="4" r="2" fill="{INK}"/></pattern>'
            f'</defs>')


def _fill(key: str, status: str) -> str:
    return f"url(#{key}-{status if status in STATUSES else 'proposed'})"


def timeline(key: str, name: str, versions: Sequence[pb.PolicyRef], today: date, size: Size = COMPACT) -> Markup:
    """The SVG for one policy's versions. `key` makes its ids unique on the page (a page may hold
    several); `name` is the policy's, for its title."""
    key = "timeline-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in key)
    dated = [(ref, start) for ref in versions if (start := _day(ref.effective_from)) is not None]
    undated = [ref for ref in versions if _day(ref.effective_from) is None]
    ends = [day for ref, _ in dated if (day := _day(ref.effective_to)) is not None]
    first = min((start for _, start in dated), default=today)
    last = max([today, *ends, *(start for _, start in dated)])
    axis_from, axis_to = date(first.year, 1, 1), date(last.year + 2, 1, 1)
    # The label column fits the longest label (about 7 units a character at this font size).
    left = max(size.label, 16 + 7 * max((len(_label(ref)) for ref in versions), default=0))
    right = size.width - 16
    span = (axis_to - axis_from).days

    def x(day: date) -> float:
        return round(left + (right - left) * (day - axis_from).days / span, 1)

    parts: list[str] = []
    y = 20  # room above the bars for today's label
    for ref, start in dated:
        end_day = _day(ref.effective_to)
        open_ended = end_day is None
        stop = end_day or max(today, start)
        bar_end = x(stop) if not open_ended else right - 24
        parts.append(f'<text x="{left - 8}" y="{y + size.row * 0.6:.0f}" text-anchor="end" fill="{INK}">{escape(_label(ref))}</text>'
                     f'<rect x="{x(start)}" y="{y + 4}" width="{max(bar_end - x(start), 3):.1f}" height="{size.row - 10}" '
                     f'fill="{_fill(key, ref.status)}" stroke="{INK}" stroke-width="1"/>')
        if open_ended:  # an arrow past the bar's end: it has no end date
            tip, mid = right - 4, y + size.row / 2 - 1
            parts.append(f'<path d="M{bar_end + 2} {mid - 6} L{tip} {mid} L{bar_end + 2} {mid + 6} Z" fill="{INK}"/>')
        y += size.row
    axis_y = y + 4
    if dated:
        parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{right}" y2="{axis_y}" stroke="{INK}"/>')
        step = -(-40 * span // (365 * (right - left)))  # years between labelled ticks, 40 units or more apart
        for year in range(axis_from.year, axis_to.year + 1, step):
            tick = x(date(year, 1, 1))
            parts.append(f'<line x1="{tick}" y1="{axis_y}" x2="{tick}" y2="{axis_y + 5}" stroke="{INK}"/>'
                         f'<text x="{tick}" y="{axis_y + 18}" text-anchor="middle" font-size="11" fill="{INK}">{year}</text>')
        now = x(today)
        parts.append(f'<line x1="{now}" y1="16" x2="{now}" y2="{axis_y}" stroke="{INK}" stroke-dasharray="4 3"/>'
                     f'<text x="{now}" y="12" text-anchor="middle" font-size="11" fill="{INK}">Today</text>')
        y = axis_y + 30
    if undated:
        parts.append(f'<text x="8" y="{y + 12}" font-weight="bold" fill="{INK}">Not in force, no dates (proposed or prospective)</text>')
        y += 20
        for ref in undated:
            parts.append(f'<text x="{left - 8}" y="{y + size.row * 0.6:.0f}" text-anchor="end" fill="{INK}">{escape(_label(ref))}</text>'
                         f'<rect x="{left}" y="{y + 4}" width="40" height="{size.row - 10}" '
                         f'fill="{_fill(key, ref.status)}" stroke="{INK}" stroke-dasharray="4 2"/>'
                         f'<text x="{left + 48}" y="{y + size.row * 0.6:.0f}" fill="{INK}">no effective dates</text>')
            y += size.row
    legend_top = y + 8
    height = legend_top + 30
    title = f"Timeline of the versions of {name}"
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="console-figure policies-timeline" role="img" '
        f'viewBox="0 0 {size.width} {height}" width="{size.width}" height="{height}" '
        f'aria-labelledby="{key}-title {key}-desc" font-family="Arial, sans-serif" font-size="13">'
        f'<title id="{key}-title">{escape(title)}</title><desc id="{key}-desc">{escape(description(versions))}</desc>'
        f'{_patterns(key)}{"".join(parts)}{_legend(key, legend_top)}</svg>')


def _legend(key: str, top: int) -> str:
    """Which pattern is which status, in words beside each swatch."""
    parts, x = [], 8
    for status in STATUSES:
        parts.append(f'<rect x="{x}" y="{top + 4}" width="22" height="14" fill="{_fill(key, status)}" stroke="{INK}"/>'
                     f'<text x="{x + 28}" y="{top + 16}" fill="{INK}">{status.capitalize()}</text>')
        x += 130
    parts.append(f'<path d="M{x} {top + 4} L{x + 14} {top + 11} L{x} {top + 18} Z" fill="{INK}"/>'
                 f'<text x="{x + 20}" y="{top + 16}" fill="{INK}">Open-ended (no end date)</text>')
    return "".join(parts)
