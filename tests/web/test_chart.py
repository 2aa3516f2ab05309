"""The chart's stop lines come from the profile, as multiples of the patient's ULN."""

from __future__ import annotations

from datetime import UTC, timedelta
from xml.etree import ElementTree

import pytest

from monitor.web import chart
from tests.helpers import BSR, SEED, T0, patient

ULN = {"alt": 33.0, "ast": 32.0, "alp": 120.0, "bilirubin": 21.0, "ggt": 40.0}
NS = {"s": "http://www.w3.org/2000/svg"}


def test_seed_profile_lines_are_the_lower_of_baseline_multiple_and_absolute_limit() -> None:
    lines = chart.stop_lines(SEED, patient(baseline={"alt": 22.0, "ast": 200.0}), ULN)
    by = {(ln.analytes, ln.symptomatic): ln for ln in lines}
    assert by[(("alt",), False)].multiple == pytest.approx(110 / 33)  # 5 x 22 < 500
    assert by[(("ast",), False)].multiple == pytest.approx(500 / 32)  # 500 < 5 x 200
    assert by[(("ast",), False)].label == "AST ≥ 500 U/L = 15.62× ULN"
    assert by[(("alt",), True)].label == "ALT ≥ 3× baseline + symptoms: 66 U/L = 2× ULN"
    assert by[(("bilirubin",), False)].multiple == 2.0


def test_equal_alt_and_ast_lines_are_drawn_once() -> None:
    lines = chart.stop_lines(
        SEED, patient(baseline={"alt": 20.0, "ast": 20.0}), {**ULN, "ast": 33.0}
    )
    assert next(ln.analytes for ln in lines if not ln.symptomatic) == ("alt", "ast")


def test_another_profile_draws_its_own_lines() -> None:
    lines = chart.stop_lines(BSR, patient(), ULN)
    transaminase = [ln for ln in lines if "bilirubin" not in ln.analytes]
    assert {ln.analytes: round(ln.multiple, 3) for ln in transaminase} == {
        ("alt",): round(100 / 33, 3),
        ("ast",): round(100 / 32, 3),
    }
    assert all(ln.label.split()[1] == ">" for ln in transaminase)  # BSR: strictly above


def test_render_is_valid_svg_with_points_lines_and_doses() -> None:
    points = [
        chart.Point("alt", T0 + timedelta(days=3), 40, 33),
        chart.Point("alt", T0 + timedelta(days=7), 150, 33),
        chart.Point("bilirubin", T0 + timedelta(days=7), 30, 21),
    ]
    doses = [
        chart.DoseMark(T0, 50),
        chart.DoseMark(T0 + timedelta(days=7), 75),
        chart.DoseMark(T0 + timedelta(days=9), None),
    ]
    lines = chart.stop_lines(SEED, patient(), ULN)
    svg = chart.render(points, lines, doses, T0, T0 + timedelta(days=14), UTC, title="<ALT>")
    root = ElementTree.fromstring(str(svg))
    assert root.find("s:title", NS) is not None and root.find("s:title", NS).text == "<ALT>"  # type: ignore[union-attr]
    assert len(root.findall(".//s:g[@class='series series-alt']/s:g", NS)) == 2
    assert len(root.findall(".//s:g[@class='dose-step']", NS)) == 2
    assert len(root.findall(".//s:g[@class='dose-step dose-stop']", NS)) == 1
    assert len(root.findall(".//*[@data-multiple]", NS)) == len(lines)


def test_an_empty_course_still_draws_axes_and_lines() -> None:
    lines = chart.stop_lines(SEED, patient(), ULN)
    svg = str(chart.render([], lines, [chart.DoseMark(T0, 50)], T0, T0, UTC))
    assert "No liver tests yet" in svg and svg.count('class="stop-line') == len(lines)
    ElementTree.fromstring(svg)


def test_absolute_line_with_symptoms_reads_plainly() -> None:
    lines = chart.stop_lines(SEED, patient(baseline={"alt": 200.0, "ast": 20.0}), ULN)
    [alt] = [ln for ln in lines if ln.analytes == ("alt",) and ln.symptomatic]
    assert alt.label == "ALT ≥ 300 U/L + symptoms = 9.09× ULN"


def test_marks_for_symptoms_next_due_and_today_and_alt_ast_lines_differ() -> None:
    from monitor.web.chart_marks import Mark

    lines = chart.stop_lines(SEED, patient(), ULN)
    marks = [
        Mark(T0 + timedelta(days=2), "symptoms", "symptoms: nausea"),
        Mark(T0 + timedelta(days=5), "today"),
        Mark(T0 + timedelta(days=9), "next-due"),
        Mark(T0 + timedelta(days=99), "next-due"),  # off the chart: not drawn
    ]
    svg = str(
        chart.render(
            [], lines, [chart.DoseMark(T0, 50)], T0, T0 + timedelta(days=14), UTC, marks=marks
        )
    )
    root = ElementTree.fromstring(svg)
    for kind in ("symptoms", "today", "next-due"):
        assert len(root.findall(f".//s:g[@class='mark mark-{kind}']", NS)) == 1, kind
    strokes = {}
    for g in root.findall(".//s:g[@data-analytes]", NS):
        line = g.find("s:line", NS)
        assert line is not None
        strokes.setdefault(g.get("data-analytes"), set()).add(
            (line.get("stroke"), line.get("stroke-dasharray"))
        )
    assert strokes["alt"].isdisjoint(strokes["ast"])


def test_the_narrow_drawing_keeps_everything_inside_its_width() -> None:
    """The phone's chart: 400 wide, at most 5 date ticks, every point, line and label
    starting inside it, and the same stop lines and points as the wide one."""
    points = [chart.Point("alt", T0 + timedelta(days=d), 30 + d * 10, 33) for d in range(0, 90, 7)]
    lines = chart.stop_lines(SEED, patient(), ULN)
    doses = [chart.DoseMark(T0, 50), chart.DoseMark(T0 + timedelta(days=30), 75)]
    end = T0 + timedelta(days=90)
    narrow = ElementTree.fromstring(
        str(chart.render(points, lines, doses, T0, end, UTC, frame=chart.NARROW))
    )
    wide = ElementTree.fromstring(str(chart.render(points, lines, doses, T0, end, UTC)))
    assert narrow.get("viewBox") == "0 0 400 490" and wide.get("viewBox", "").startswith("0 0 1080")
    texts = narrow.iter(f"{{{NS['s']}}}text")
    ticks = [t for t in texts if t.get("class") == "tick" and "×" not in (t.text or "")]
    assert 2 <= len(ticks) <= 5
    xs = [float(e.get("x") or e.get("cx") or 0) for e in narrow.iter() if e.get("x") or e.get("cx")]
    assert all(0 <= x <= 400 for x in xs)
    for kind in ("stop-line", "point"):
        n = len([e for e in narrow.iter() if (e.get("class") or "").startswith(kind)])
        assert n == len([e for e in wide.iter() if (e.get("class") or "").startswith(kind)]) > 0
