"""Checks made once, at enrolment: TPMT status."""

from __future__ import annotations

from datetime import datetime

from monitor.core.domain import Enrolled, Finding
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState
from monitor.rules import rule
from monitor.rules.context import finding


@rule("enrollment.tpmt_unknown")
def tpmt_unknown(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    if not isinstance(state.trigger, Enrolled) or state.patient.tpmt != "unknown":
        return []
    message = (
        "TPMT status not recorded: test TPMT activity (deficiency raises the risk of "
        "thiopurine toxicity) and record the result."
    )
    return [finding(state, protocol, "enrollment.tpmt_unknown", "warning", "enroll", message)]


@rule("enrollment.tpmt_deficient")
def tpmt_deficient(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    tpmt = state.patient.tpmt
    if not isinstance(state.trigger, Enrolled) or tpmt not in ("intermediate", "poor"):
        return []
    if tpmt == "poor":
        message = (
            "TPMT activity is poor (deficient): standard azathioprine dosing risks severe "
            "toxicity. Review with the specialist before continuing."
        )
        return [
            finding(state, protocol, "enrollment.tpmt_deficient", "critical", "enroll", message)
        ]
    message = (
        "TPMT activity is intermediate: higher risk of thiopurine toxicity. Review the dose "
        "plan with the specialist."
    )
    return [finding(state, protocol, "enrollment.tpmt_deficient", "warning", "enroll", message)]
