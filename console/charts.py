"""Bar charts as inline SVG, drawn on the server (no script, no inline style: the CSP forbids both).

A chart is a picture for sighted readers: it has role="img", a <title> and a <desc>, and the page
always shows the same numbers in a table beside it. Colour is never the only signal: each bar is
labelled with its series' name and its value.
"""
from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

BAR_AREA = 330  # px for the longest bar
CHAR = 10  # px a character of the 14px labels, at most (capitals in bold), so that no label is cut off
BAR = 18
GAP = 4  # between the bars of one category
GROUP_GAP = 16  # between categories
LEGEND = 30


@dataclass(frozen=True)
class Series:
    name: str  # shown in the legend and beside each bar
    values: list[int]  # one a category
    css_class: str  # its fill, from the page's stylesheet (and a pattern or outline where needed)


def bar_chart(chart_id: str, title: str, description: str, categories: list[str], series: list[Series]) -> Markup:
    """Horizontal bars, one group a category with one bar a series, as an SVG element."""
    top = max([v for s in series for v in s.values] + [1])
    group = len(series) * BAR + (len(series) - 1) * GAP
    height = LEGEND + len(categories) * (group + GROUP_GAP)
    label_width = 12 + CHAR * max([len(c) for c in categories] + [4])
    value_width = 12 + CHAR * max([len(f"{s.name}: {v:,}") for s in series for v in s.values] + [4])
    width = label_width + BAR_AREA + value_width
    parts = [f'<svg id="{escape(chart_id)}" class="console-chart" role="img" '
             f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
             f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>']
    x = label_width
    for s in series:  # the legend: a swatch and the series' name
        parts.append(f'<rect class="{escape(s.css_class)}" x="{x}" y="4" width="16" height="16"/>')
        parts.append(f'<text class="console-chart__text" x="{x + 22}" y="17">{escape(s.name)}</text>')
        x += 22 + CHAR * len(s.name) + 16
    y = LEGEND
    for n, category in enumerate(categories):
        parts.append(f'<text class="console-chart__label" x="{label_width - 8}" y="{y + group / 2 + 5:g}" '
                     f'text-anchor="end">{escape(category)}</text>')
        for k, s in enumerate(series):
            value = s.values[n]
            bar_y = y + k * (BAR + GAP)
            length = round(BAR_AREA * value / top)
            parts.append(f'<rect class="{escape(s.css_class)}" x="{label_width}" y="{bar_y}" '
                         f'width="{length}" height="{BAR}"/>')
            parts.append(f'<text class="console-chart__text" x="{label_width + length + 6}" y="{bar_y + BAR - 4}">'
                         f'{escape(s.name)}: {value:,}</text>')
        y += group + GROUP_GAP
    parts.append("</svg>")
    return Markup("".join(parts))
