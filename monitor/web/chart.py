"""The patient chart: liver tests as multiples of ULN over time, drawn on the server as SVG.

Server-side SVG shows without scripts, prints, and is what a screenshot or a
saved page keeps. ALT, AST, ALP and bilirubin share a logarithmic axis of
multiples of ULN (a 20-fold rise and a normal value both stay readable), the
profile's stop lines are drawn across it, and the dose steps are marked in a band
below. Colours come with distinct markers and dash patterns, so a black-and-white
print still tells the series apart. Pure functions: no database, no clock.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from markupsafe import Markup, escape

from monitor.core.domain import Patient
from monitor.core.protocol import Protocol, TransaminaseStop
from monitor.core.units import DISPLAY_NAME
from monitor.web import chart_marks

SERIES: tuple[str, ...] = ("alt", "ast", "alp", "bilirubin")
COLOURS = {"alt": "#1f5fbf", "ast": "#b3541e", "alp": "#2e7d32", "bilirubin": "#7b1fa2"}
DASHES = {"alt": "", "ast": "6 3", "alp": "2 3", "bilirubin": "9 3 2 3"}
STOP_COLOUR = "#c62828"

LEFT = 60.0
TOP, PLOT_H = 40.0, 300.0
BAND_TOP, BAND_H = TOP + PLOT_H + 40.0, 70.0
H = BAND_TOP + BAND_H + 40.0
Y_TICKS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200)
# The log axis cannot reach 0: a value under this multiple of ULN (a legitimate 0
# included) is drawn on the floor, hollow, and its tooltip says so.
FLOOR = 0.05
DAY_STEPS = (1, 2, 7, 14, 28, 56, 91, 182, 364)


@dataclass(frozen=True)
class Frame:
    """The chart's width and what fits in it: a phone gets its own drawing (text stays
    readable at 390 px) rather than a desktop one shrunk or scrolled."""

    name: str
    w: float  # viewBox width
    right: float  # the right margin, which holds the stop-line labels
    max_ticks: int  # date ticks along the x axis
    legend_x: float
    legend_step: float
    label_size: int  # stop-line labels' font size
    label_chars: int = 0  # wrap stop-line labels at this many characters (0: one line)


WIDE = Frame("wide", 1080.0, 280.0, 10, LEFT, 110.0, 10)
NARROW = Frame("narrow", 400.0, 118.0, 4, 8.0, 76.0, 9, label_chars=21)


@dataclass(frozen=True)
class Point:
    analyte: str
    at: datetime
    value: float
    uln: float

    @property
    def multiple(self) -> float:
        return self.value / self.uln


@dataclass(frozen=True)
class StopLine:
    analytes: tuple[str, ...]
    multiple: float
    label: str
    symptomatic: bool = False


@dataclass(frozen=True)
class DoseMark:
    at: datetime
    dose_mg: float | None  # None: therapy stopped


def fmt(x: float) -> str:
    """A number as people write it: 110, 3.33, 0.5."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _transaminase_lines(
    line: TransaminaseStop, patient: Patient, uln: Mapping[str, float], symptomatic: bool
) -> list[StopLine]:
    sign = "≥" if line.inclusive else ">"
    symptoms = " + symptoms" if symptomatic else ""
    found: list[StopLine] = []
    for analyte in ("alt", "ast"):
        limits: list[tuple[float, str]] = []  # (U/L, how the profile states it)
        if line.baseline_multiple is not None and analyte in patient.baseline:
            u_l = line.baseline_multiple * patient.baseline[analyte]
            limits.append((u_l, f"{fmt(line.baseline_multiple)}× baseline{symptoms}: "))
        if line.absolute_u_per_l is not None:
            limits.append((line.absolute_u_per_l, ""))
        if not limits:
            continue
        # The rule stops at whichever limit is met first: the line is the lower one.
        u_l, stated = min(limits)
        multiple = u_l / uln[analyte]
        value = f"{fmt(u_l)} U/L" + ("" if stated else symptoms)
        found.append(
            StopLine(
                (analyte,),
                multiple,
                f"{DISPLAY_NAME[analyte]} {sign} {stated}{value} = {fmt(multiple)}× ULN",
                symptomatic,
            )
        )
    if len(found) == 2 and abs(found[0].multiple - found[1].multiple) < 0.02 * found[0].multiple:
        first = found[0]
        return [StopLine(("alt", "ast"), first.multiple, "ALT/AST" + first.label[3:], symptomatic)]
    return found


def stop_lines(protocol: Protocol, patient: Patient, uln: Mapping[str, float]) -> list[StopLine]:
    """The profile's stop lines for this patient, as multiples of the patient's ULN.

    `uln` is the patient's ULN per analyte (their own, else the profile's default).
    """
    lines: list[StopLine] = []
    stop = protocol.stop
    if stop.transaminase is not None:
        lines += _transaminase_lines(stop.transaminase, patient, uln, False)
    if stop.transaminase_symptomatic is not None:
        lines += _transaminase_lines(stop.transaminase_symptomatic, patient, uln, True)
    if stop.bilirubin is not None:
        b = stop.bilirubin
        lines.append(
            StopLine(
                ("bilirubin",),
                b.uln_multiple,
                f"bilirubin {'≥' if b.inclusive else '>'} {fmt(b.uln_multiple)}× ULN "
                f"with ALT/AST > {fmt(b.transaminase_above_uln_multiple)}× ULN",
            )
        )
    return lines


class _Scale:
    def __init__(
        self, start: datetime, end: datetime, lo: float, hi: float, frame: Frame = WIDE
    ) -> None:
        self.start, self.span = start, max((end - start).total_seconds(), 3600.0)
        self.lo, self.hi = math.log10(lo), math.log10(hi)
        self.plot_w = frame.w - LEFT - frame.right

    def x(self, at: datetime) -> float:
        return LEFT + self.plot_w * (at - self.start).total_seconds() / self.span

    def y(self, multiple: float) -> float:
        m = math.log10(max(multiple, 10**self.lo))  # below the floor: on it
        return TOP + PLOT_H * (1 - (m - self.lo) / (self.hi - self.lo))


def _marker(analyte: str, x: float, y: float, hollow: bool = False) -> str:
    """The series' marker; hollow (white fill, coloured outline) when clamped to the floor."""
    c = COLOURS[analyte]
    if hollow:
        return _marker(analyte, x, y).replace(
            f'fill="{c}"', f'fill="#fff" stroke="{c}" stroke-width="1.5"'
        )
    if analyte == "alt":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"/>'
    if analyte == "ast":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}"/>'
    if analyte == "alp":
        return (
            f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} '
            f'{x - 5:.1f},{y + 4:.1f}" fill="{c}"/>'
        )
    return (
        f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} '
        f'{x - 5:.1f},{y:.1f}" fill="{c}"/>'
    )


def _spread(ys: Sequence[float], gap: float = 13.0) -> list[float]:
    """Label positions near `ys`, at least `gap` apart, in the same order as `ys`."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed: dict[int, float] = {}
    last = -math.inf
    for i in order:
        placed[i] = max(ys[i], last + gap)
        last = placed[i]
    overflow = last - (TOP + PLOT_H)
    if overflow > 0:
        placed = {i: y - overflow for i, y in placed.items()}
    return [placed[i] for i in range(len(ys))]


def _label(text: str, frame: Frame, x: float) -> str:
    """A stop line's label, on up to three lines where the frame is narrow (wrapped at
    words; anything past the third line is shortened with an ellipsis)."""
    if not frame.label_chars or len(text) <= frame.label_chars:
        return str(escape(text))
    rows = textwrap.wrap(text, frame.label_chars)
    if len(rows) > 3:
        rows = [*rows[:2], " ".join(rows[2:])[: frame.label_chars - 1].rstrip() + "…"]
    tail = "".join(f'<tspan x="{x:.1f}" dy="1.1em">{escape(r)}</tspan>' for r in rows[1:])
    return f"{escape(rows[0])}{tail}"


def _time_ticks(start: datetime, end: datetime, most: int = 10) -> list[datetime]:
    days = max((end - start).days, 1)
    step = next((s for s in DAY_STEPS if days / s <= most), DAY_STEPS[-1])
    return [start + timedelta(days=d) for d in range(0, days + 1, step)]


def render(
    points: Sequence[Point],
    lines: Sequence[StopLine],
    doses: Sequence[DoseMark],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    title: str = "Liver tests as multiples of ULN",
    marks: Sequence[chart_marks.Mark] = (),
    frame: Frame = WIDE,
) -> Markup:
    """The chart as an inline <svg> element (safe to insert in a page unescaped); `marks`
    are symptom reports, the next due panel and today (monitor/web/chart_marks.py);
    `frame` its width (`WIDE`, or `NARROW` for a phone)."""
    values = [p.multiple for p in points] + [ln.multiple for ln in lines] + [1.0]
    lo = max(FLOOR, min(0.25, min(values) * 0.8))
    hi = max(max(values) * 1.4, lo * 10)
    sc = _Scale(start, end, lo, hi, frame)
    W, RIGHT = frame.w, frame.right  # this drawing's width and label margin
    ids = f"chart-title-{frame.name} chart-desc-{frame.name}"
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lft-chart lft-chart-{frame.name}" '
        f'viewBox="0 0 {W:.0f} {H:.0f}" role="img" aria-labelledby="{ids}" '
        'font-family="sans-serif" font-size="11">',
        f'<title id="chart-title-{frame.name}">{escape(title)}</title>',
        f'<desc id="chart-desc-{frame.name}">ALT, AST, ALP and bilirubin over time as '
        "multiples of the upper limit of normal (logarithmic scale), with the protocol's "
        "stop lines, and the daily dose below.</desc>",
        f'<rect class="plot-area" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
        f'height="{PLOT_H}" fill="none" stroke="#999"/>',
    ]
    # y axis: multiples of ULN
    for t in Y_TICKS:
        if lo <= t <= hi:
            y = sc.y(t)
            stroke = 'stroke="#555" stroke-width="1.5"' if t == 1 else 'stroke="#e0e0e0"'
            out.append(
                f'<line class="grid{" uln-line" if t == 1 else ""}" x1="{LEFT}" x2="{W - RIGHT}" '
                f'y1="{y:.1f}" y2="{y:.1f}" {stroke}/>'
                f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{fmt(t)}×</text>"
            )
    out.append(
        f'<text class="axis-label" x="14" y="{TOP + PLOT_H / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + PLOT_H / 2:.0f})">× ULN (log scale)</text>'
    )
    # x axis: dates, shared by the dose band
    for tick in _time_ticks(start, end, frame.max_ticks):
        x = sc.x(tick)
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{BAND_TOP + BAND_H}" '
            'stroke="#eeeeee"/>'
            f'<text class="tick" x="{x:.1f}" y="{BAND_TOP + BAND_H + 16:.1f}" '
            f'text-anchor="middle">{tick.astimezone(tz).strftime("%d %b")}</text>'
        )
    # stop lines, labelled in the right margin (spread apart so none overlap)
    ys = [sc.y(ln.multiple) for ln in lines]
    gap = 13.0 if not frame.label_chars else 3.4 * frame.label_size
    for i, ln in enumerate(lines):
        y = ys[i]
        kind = "symptomatic" if ln.symptomatic else "always"
        analytes = " ".join(ln.analytes)
        colour, analyte_dash = STOP_COLOUR, ""
        if len(ln.analytes) == 1 and ln.analytes[0] in chart_marks.STOP_STYLE:
            colour, analyte_dash = chart_marks.STOP_STYLE[ln.analytes[0]]
        pattern = analyte_dash or ("8 4" if ln.symptomatic else "")
        if ln.symptomatic and analyte_dash:
            pattern = f"{analyte_dash} 1 3"
        dash = f' stroke-dasharray="{pattern}"' if pattern else ""
        label_y = _spread(ys, gap)[i]
        out.append(
            f'<g class="stop-line stop-line-{kind}" data-analytes="{analytes}" '
            f'data-multiple="{ln.multiple:.3f}">'
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="1.5"{dash} opacity="{0.55 if ln.symptomatic else 0.9}"/>'
            f'<polyline points="{W - RIGHT:.1f},{y:.1f} {W - RIGHT + 8:.1f},{label_y:.1f}" '
            f'fill="none" stroke="{colour}" opacity="0.6"/>'
            f'<text class="stop-label" x="{W - RIGHT + 11:.1f}" y="{label_y + 4:.1f}" '
            f'fill="{colour}" font-size="{frame.label_size}">'
            f"{_label(ln.label, frame, W - RIGHT + 11)}</text></g>"
        )
    # series
    for analyte in SERIES:
        pts = sorted((p for p in points if p.analyte == analyte), key=lambda p: p.at)
        if not pts:
            continue
        c = COLOURS[analyte]
        coords = " ".join(f"{sc.x(p.at):.1f},{sc.y(p.multiple):.1f}" for p in pts)
        dash = f' stroke-dasharray="{DASHES[analyte]}"' if DASHES[analyte] else ""
        out.append(
            f'<g class="series series-{analyte}"><polyline points="{coords}" fill="none" '
            f'stroke="{c}" stroke-width="2"{dash}/>'
        )
        for p in pts:
            below = p.multiple < lo
            note = f", below the chart's floor ({fmt(lo)}× ULN), drawn on it" if below else ""
            out.append(
                f'<g class="point{" below-floor" if below else ""}"><title>'
                f"{DISPLAY_NAME[analyte]} {fmt(p.value)} "
                f"(ULN {fmt(p.uln)}) = {fmt(p.multiple)}× ULN on "
                f"{p.at.astimezone(tz).strftime('%d %b %Y %H:%M')}{note}</title>"
                f"{_marker(analyte, sc.x(p.at), sc.y(p.multiple), hollow=below)}</g>"
            )
        out.append("</g>")
    if not points:
        out.append(
            f'<text class="empty" x="{(LEFT + W - RIGHT) / 2:.0f}" y="{TOP + PLOT_H / 2:.0f}" '
            'text-anchor="middle" fill="#666">No liver tests yet</text>'
        )
    # legend
    x = frame.legend_x
    for analyte in SERIES:
        c = COLOURS[analyte]
        dash = f' stroke-dasharray="{DASHES[analyte]}"' if DASHES[analyte] else ""
        out.append(
            f'<g class="legend legend-{analyte}"><line x1="{x:.0f}" x2="{x + 26:.0f}" y1="18" '
            f'y2="18" stroke="{c}" stroke-width="2"{dash}/>{_marker(analyte, x + 13, 18)}'
            f'<text x="{x + 32:.0f}" y="22">{DISPLAY_NAME[analyte]}</text></g>'
        )
        x += frame.legend_step
    out.append(
        f'<g class="legend legend-stop"><line x1="{x:.0f}" x2="{x + 26:.0f}" y1="18" y2="18" '
        f'stroke="{STOP_COLOUR}" stroke-width="1.5"/><text x="{x + 32:.0f}" y="22">stop line'
        "</text></g>"
    )
    out.extend(chart_marks.draw(marks, sc.x, LEFT, W - RIGHT, TOP, BAND_TOP + BAND_H, tz))
    out.extend(_dose_band(doses, sc, end, W - RIGHT))
    out.append("</svg>")
    return Markup("".join(out))


def _dose_band(
    doses: Sequence[DoseMark], sc: _Scale, end: datetime, plot_right: float
) -> list[str]:
    """The daily dose as a step line under the chart, each change marked and labelled."""
    out = [
        f'<g class="dose-band"><rect x="{LEFT}" y="{BAND_TOP}" width="{plot_right - LEFT}" '
        f'height="{BAND_H}" fill="#fafafa" stroke="#999"/>'
        f'<text class="axis-label" x="{LEFT - 6}" y="{BAND_TOP + BAND_H / 2 + 4:.0f}" '
        'text-anchor="end">mg/day</text>'
    ]
    top = max((d.dose_mg or 0.0 for d in doses), default=0.0) or 1.0

    def y(mg: float | None) -> float:
        return BAND_TOP + BAND_H - 8 - (BAND_H - 24) * (mg or 0.0) / top

    ordered = sorted(doses, key=lambda d: d.at)
    path: list[str] = []
    for i, d in enumerate(ordered):
        x0 = sc.x(d.at)
        x1 = sc.x(ordered[i + 1].at) if i + 1 < len(ordered) else sc.x(end)
        path.append(f"M{x0:.1f},{y(d.dose_mg):.1f} H{x1:.1f}")
        if i + 1 < len(ordered):
            path.append(f"M{x1:.1f},{y(d.dose_mg):.1f} V{y(ordered[i + 1].dose_mg):.1f}")
    if path:
        out.append(
            f'<path class="dose-steps" d="{" ".join(path)}" fill="none" stroke="#333" '
            'stroke-width="2"/>'
        )
    for d in ordered:
        x = sc.x(d.at)
        if d.dose_mg is None:
            out.append(
                f'<g class="dose-step dose-stop"><line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                f'y2="{BAND_TOP + BAND_H}" stroke="{STOP_COLOUR}" stroke-dasharray="3 3"/>'
                f'<text x="{x + 3:.1f}" y="{BAND_TOP + 12:.1f}" fill="{STOP_COLOUR}">stopped</text>'
                "</g>"
            )
        else:
            out.append(
                f'<g class="dose-step"><line x1="{x:.1f}" x2="{x:.1f}" y1="{BAND_TOP}" '
                f'y2="{BAND_TOP + BAND_H}" stroke="#333" stroke-dasharray="2 2"/>'
                f'<text x="{x + 3:.1f}" y="{y(d.dose_mg) - 4:.1f}">{fmt(d.dose_mg)} mg</text></g>'
            )
    out.append("</g>")
    return out
