"""Checks made once, at enrolment: TPMT and NUDT15 metaboliser status.

The contract's ids (`enrollment.tpmt_*`) keep their meaning; NUDT15 has its own ids
beside them so a route or a dashboard keyed on the TPMT ids sees no change.
"""

from __future__ import annotations

from datetime import datetime

from monitor.core.domain import Enrolled, Finding
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState
from monitor.core.timeline import max_dose
from monitor.rules import rule
from monitor.rules.context import finding, fmt


def _reduced(gene: str, state: PatientState, protocol: Protocol) -> list[Finding]:
    """The findings for a gene recorded poor (critical) or intermediate (warning)."""
    status = state.patient.tpmt if gene == "TPMT" else state.patient.nudt15
    rule_id = f"enrollment.{gene.lower()}_deficient"
    if status == "poor":
        message = (
            f"{gene} activity is poor (deficient): standard azathioprine dosing risks severe "
            f"toxicity. Review with the specialist before continuing. "
            f"{protocol.poor_metaboliser_advice}."
        )
        return [finding(state, protocol, rule_id, "critical", "enroll", message)]
    if status == "intermediate":
        cap = protocol.pharmacogenomics.intermediate_max_mg_per_kg
        message = (
            f"{gene} activity is intermediate: higher risk of thiopurine toxicity. Review the "
            f"dose plan with the specialist; the reduced cap is {fmt(cap)} mg/kg/day "
            f"(max {fmt(max_dose(state.patient, protocol))} mg/day)."
        )
        return [finding(state, protocol, rule_id, "warning", "enroll", message)]
    return []


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
    if not isinstance(state.trigger, Enrolled):
        return []
    return _reduced("TPMT", state, protocol)


@rule("enrollment.nudt15_unknown")
def nudt15_unknown(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    """Only where the profile asks for NUDT15 testing (`nudt15_unknown_alert`)."""
    if (
        not isinstance(state.trigger, Enrolled)
        or state.patient.nudt15 != "unknown"
        or not protocol.pharmacogenomics.nudt15_unknown_alert
    ):
        return []
    message = (
        "NUDT15 status not recorded: test NUDT15 (deficiency raises the risk of thiopurine "
        "toxicity, as TPMT deficiency does) and record the result."
    )
    return [finding(state, protocol, "enrollment.nudt15_unknown", "warning", "enroll", message)]


@rule("enrollment.nudt15_deficient")
def nudt15_deficient(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    if not isinstance(state.trigger, Enrolled):
        return []
    return _reduced("NUDT15", state, protocol)
