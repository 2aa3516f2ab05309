"""Moments on the patient chart: symptom reports, the next due panel, and today.

Each is a vertical line across the plot with a short label at its top (and a
<title> for the full text), drawn in its own colour and dash so that a print still
tells them apart. Kept apart from chart.py, which draws values and stop lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from markupsafe import escape

STYLE = {  # kind -> (colour, dash, short label)
    "symptoms": ("#6a1b9a", "1 3", "symptoms"),
    "next-due": ("#2e7d32", "5 3", "next due"),
    "today": ("#37474f", "", "today"),
}
# Per-analyte stop-line styles: ALT and AST lines at the same multiple must not look alike.
STOP_STYLE = {"alt": ("#c62828", ""), "ast": ("#ad1457", "7 3")}


@dataclass(frozen=True)
class Mark:
    at: datetime
    kind: str  # a key of STYLE
    text: str = ""  # the tooltip; defaults to the label and the time


def draw(
    marks: Sequence[Mark],
    x_of: Callable[[datetime], float],
    left: float,
    right: float,
    top: float,
    bottom: float,
    tz: tzinfo,
) -> list[str]:
    """SVG for the marks that fall inside [left, right]; labels alternate height so two
    marks on nearby days do not print over each other."""
    out: list[str] = []
    for i, m in enumerate(sorted(marks, key=lambda m: m.at)):
        x = x_of(m.at)
        if not left <= x <= right:
            continue
        colour, dash, label = STYLE[m.kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        when = m.at.astimezone(tz).strftime("%d %b %H:%M")
        tip = m.text or f"{label} {when}"
        y = top + 12 + (i % 2) * 12
        anchor = "end" if x > right - 60 else "start"
        dx = -3 if anchor == "end" else 3
        out.append(
            f'<g class="mark mark-{m.kind}"><title>{escape(tip)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{colour}" '
            f'stroke-width="1.5"{dash_attr}/>'
            f'<text x="{x + dx:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{colour}" '
            f'font-size="11">{escape(label)}</text></g>'
        )
    return out
