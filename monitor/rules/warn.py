"""Warnings below the stop lines: hold escalation and test again soon."""

from __future__ import annotations

from datetime import datetime

from monitor.core.clinical import baseline_is_abnormal, ctcae_grade
from monitor.core.domain import Finding, SymptomEvent
from monitor.core.protocol import Protocol
from monitor.core.state import PanelView, PatientState
from monitor.core.units import TRANSAMINASES
from monitor.rules import rule
from monitor.rules.context import finding, fmt, lab_finding, show
from monitor.rules.stop import each_panel


@rule("warn.transaminase_elevated")
def transaminase_elevated(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    def judge(view: PanelView) -> Finding | None:
        if view.via_symptoms or any(f.is_stop for f in state.findings_for_event(view.lab.id)):
            return None
        hits: list[str] = []
        thresholds: dict[str, float] = {}
        for analyte in TRANSAMINASES:
            if analyte not in view.own:
                continue
            value, uln = view.own[analyte], view.uln[analyte]
            base = state.patient.baseline.get(analyte)
            grade = ctcae_grade(analyte, value, uln, base, protocol)
            if grade < protocol.warn.transaminase_min_grade:
                continue
            if baseline_is_abnormal(base, uln):
                assert base is not None
                limit = protocol.grading[analyte].baseline[0] * base
                ref = f">= {fmt(protocol.grading[analyte].baseline[0])}x baseline {fmt(base)}"
            else:
                limit = protocol.grading[analyte].uln[0] * uln
                ref = f"above ULN {fmt(limit)}"
            thresholds[f"{analyte}_grade1_limit"] = limit
            hits.append(f"{show(analyte, value)} is {ref} (CTCAE grade {grade})")
        if not hits:
            return None
        low, high = protocol.warn.repeat_lfts_within_days
        message = (
            f"{'; '.join(hits)}, below the stop lines. Hold dose escalation and repeat LFTs "
            f"within {low}-{high} days."
        )
        return lab_finding(
            state, protocol, view, "warn.transaminase_elevated", "warning", message, thresholds
        )

    return each_panel(state, protocol, judge)


@rule("warn.symptoms")
def symptoms(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    trigger = state.trigger
    if not isinstance(trigger, SymptomEvent) or not trigger.symptoms:
        return []
    names = ", ".join(sorted(trigger.symptoms))
    message = (
        f"Hepatotoxicity symptoms reported ({names}). LFTs needed urgently (today); "
        "hold dose escalation until they are back."
    )
    return [
        finding(
            state,
            protocol,
            "warn.symptoms",
            "warning",
            f"symptoms:{trigger.id}",
            message,
            event_id=trigger.id,
        )
    ]
