"""Stop criteria: the lines at which azathioprine is stopped at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from monitor.core.clinical import above, at_least, grade4_bound
from monitor.core.domain import Finding
from monitor.core.protocol import Protocol, TransaminaseStop
from monitor.core.state import PanelView, PatientState, panels_under_review
from monitor.core.units import TRANSAMINASES
from monitor.rules import rule
from monitor.rules.context import fmt, lab_finding, show


def _met(value: float, limit: float, inclusive: bool) -> bool:
    return at_least(value, limit) if inclusive else above(value, limit)


def _sign(inclusive: bool) -> str:
    return ">=" if inclusive else ">"


def stop_action(protocol: Protocol, state: PatientState) -> str:
    if not state.on_therapy and state.stopped_at is not None:
        head = (
            f"Azathioprine was already stopped on {state.stopped_at:%Y-%m-%d}: keep it "
            "stopped and review the liver injury urgently."
        )
    else:
        head = "STOP azathioprine now."
    return (
        f"{head} Hepatotoxicity has recurred on re-challenge: consider alternatives: "
        f"{protocol.alternatives}."
    )


def transaminase_hits(
    view: PanelView, line: TransaminaseStop, state: PatientState
) -> tuple[list[str], dict[str, float]]:
    """The sentences and thresholds of each ALT/AST value at or above the line."""
    hits: list[str] = []
    thresholds: dict[str, float] = {}
    sign = _sign(line.inclusive)
    for analyte in TRANSAMINASES:
        if analyte not in view.own:
            continue
        value = view.own[analyte]
        reasons: list[str] = []
        if line.baseline_multiple is not None and analyte in state.patient.baseline:
            limit = line.baseline_multiple * state.patient.baseline[analyte]
            thresholds[f"{analyte}_baseline_multiple_limit"] = limit
            if _met(value, limit, line.inclusive):
                reasons.append(f"{sign} {fmt(line.baseline_multiple)}x baseline ({fmt(limit)} U/L)")
        if line.absolute_u_per_l is not None:
            thresholds[f"{analyte}_absolute_limit"] = line.absolute_u_per_l
            if _met(value, line.absolute_u_per_l, line.inclusive):
                reasons.append(f"{sign} {fmt(line.absolute_u_per_l)} U/L")
        if reasons:
            hits.append(f"{show(analyte, value)} is {' and '.join(reasons)}")
    return hits, thresholds


def each_panel(
    state: PatientState, protocol: Protocol, judge: Callable[[PanelView], Finding | None]
) -> list[Finding]:
    """Apply a per-panel judgement to every panel the trigger puts under review."""
    found = (judge(view) for view in panels_under_review(state, protocol))
    return [f for f in found if f is not None]


@rule("stop.transaminase")
def transaminase(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    line = protocol.stop.transaminase

    def judge(view: PanelView) -> Finding | None:
        assert line is not None
        hits, thresholds = transaminase_hits(view, line, state)
        if not hits:
            return None
        message = (
            f"{'; '.join(hits)} (stop line, with or without symptoms). "
            f"{stop_action(protocol, state)}"
        )
        return lab_finding(
            state, protocol, view, "stop.transaminase", "critical", message, thresholds
        )

    return each_panel(state, protocol, judge) if line is not None else []


@rule("stop.transaminase_symptomatic")
def transaminase_symptomatic(
    state: PatientState, now: datetime, protocol: Protocol
) -> list[Finding]:
    line = protocol.stop.transaminase_symptomatic

    def judge(view: PanelView) -> Finding | None:
        assert line is not None
        if not view.symptoms:
            return None
        hits, thresholds = transaminase_hits(view, line, state)
        if not hits:
            return None
        symptoms = ", ".join(sorted(view.symptoms))
        when = "reported after the panel" if view.via_symptoms else "active"
        message = (
            f"{'; '.join(hits)} with hepatotoxicity symptoms {when} ({symptoms}). "
            f"{stop_action(protocol, state)}"
        )
        return lab_finding(
            state, protocol, view, "stop.transaminase_symptomatic", "critical", message, thresholds
        )

    return each_panel(state, protocol, judge) if line is not None else []


@rule("stop.bilirubin")
def bilirubin(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    line = protocol.stop.bilirubin

    def judge(view: PanelView) -> Finding | None:
        assert line is not None
        if view.via_symptoms:
            return None  # symptoms do not move this line; the draw was judged already
        if not ({"bilirubin", *TRANSAMINASES} & set(view.own)) or "bilirubin" not in view.merged:
            return None
        window = timedelta(hours=protocol.combine_within_hours)
        if any(
            f.rule == "stop.bilirubin" and view.at - window <= f.at <= view.at
            for f in state.findings
        ):
            return None  # the same draw, split over messages, raised it already
        bili, uln = view.merged["bilirubin"], view.uln["bilirubin"]
        limit = line.uln_multiple * uln
        if not _met(bili, limit, line.inclusive):
            return None
        raised = [
            a
            for a in TRANSAMINASES
            if a in view.merged
            and above(view.merged[a], line.transaminase_above_uln_multiple * view.uln[a])
        ]
        if not raised:
            return None
        listed = ", ".join(f"{show(a, view.merged[a])} > ULN {fmt(view.uln[a])}" for a in raised)
        message = (
            f"{show('bilirubin', bili)} is {_sign(line.inclusive)} {fmt(line.uln_multiple)}x ULN "
            f"({fmt(limit)} umol/L) with raised transaminases ({listed}). "
            f"{stop_action(protocol, state)}"
        )
        thresholds = {"bilirubin_limit": limit, **{f"{a}_uln": view.uln[a] for a in raised}}
        return lab_finding(state, protocol, view, "stop.bilirubin", "critical", message, thresholds)

    return each_panel(state, protocol, judge) if line is not None else []


@rule("stop.grade4")
def grade4(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    def judge(view: PanelView) -> Finding | None:
        if view.via_symptoms:
            return None
        hits: list[str] = []
        thresholds: dict[str, float] = {}
        for analyte in ("alt", "ast", "alp", "bilirubin"):
            if analyte not in view.own:
                continue
            bound = grade4_bound(
                analyte, view.uln[analyte], state.patient.baseline.get(analyte), protocol
            )
            thresholds[f"{analyte}_grade4_above"] = bound
            if above(view.own[analyte], bound):
                hits.append(f"{show(analyte, view.own[analyte])} > {fmt(bound)} (CTCAE grade 4)")
        if not hits:
            return None
        message = f"Grade 4 liver injury: {'; '.join(hits)}. {stop_action(protocol, state)}"
        return lab_finding(state, protocol, view, "stop.grade4", "critical", message, thresholds)

    return each_panel(state, protocol, judge) if protocol.stop.grade4 else []
