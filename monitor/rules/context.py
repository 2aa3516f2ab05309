"""What every lab finding carries besides its own numbers, built in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.core.clinical import grades, injury_pattern, potential_hys_law
from monitor.core.domain import Finding, Severity
from monitor.core.protocol import Protocol
from monitor.core.state import PanelView, PatientState
from monitor.core.timeline import whole_days
from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME


def fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"


def show(analyte: str, value: float) -> str:
    return f"{DISPLAY_NAME[analyte]} {fmt(value)} {CANONICAL_UNIT[analyte]}"


def days_since_increase(state: PatientState, at: datetime) -> int | None:
    change = state.last_increase(before=at)
    return whole_days(change.at, at) if change else None


def increase_sentence(days: int | None, protocol: Protocol) -> str:
    if days is None:
        return "No dose increase so far."
    return f"{days} days since the last dose increase ({protocol.increase_note})."


def profile_tag(protocol: Protocol) -> str:
    return f"[{protocol.label}]"


def finding(
    state: PatientState,
    protocol: Protocol,
    rule: str,
    severity: Severity,
    key: str,
    message: str,
    **extra: Any,
) -> Finding:
    """A finding at the state's time, tagged with the profile that produced it."""
    return Finding(
        rule=rule,
        severity=severity,
        at=state.now,
        key=key,
        message=f"{message} {profile_tag(protocol)}",
        profile=protocol.label,
        days_since_increase=days_since_increase(state, state.now),
        **extra,
    )


def lab_finding(
    state: PatientState,
    protocol: Protocol,
    view: PanelView,
    rule: str,
    severity: Severity,
    message: str,
    thresholds: dict[str, float],
) -> Finding:
    """A finding about a panel, with grades, injury pattern and the Hy's law flag."""
    baseline = state.patient.baseline
    pattern = injury_pattern(view.merged, view.uln, protocol)
    hys = potential_hys_law(view.merged, view.uln, protocol)
    days = days_since_increase(state, view.at)
    extras = []
    g = grades(view.merged, view.uln, baseline, protocol)
    if g:
        extras.append(
            "CTCAE grades: " + ", ".join(f"{DISPLAY_NAME[a]} {g[a]}" for a in sorted(g)) + "."
        )
    if pattern.name:
        extras.append(f"Pattern: {pattern.name} (R {pattern.r_ratio:g}).")
    if hys:
        extras.append("Potential Hy's law case.")
    extras.append(increase_sentence(days, protocol))
    return Finding(
        rule=rule,
        severity=severity,
        at=view.at,
        key=f"lab:{view.lab.id}",
        message=f"{message} {' '.join(extras)} {profile_tag(protocol)}",
        values=dict(view.merged),
        thresholds=thresholds,
        grades=g,
        pattern=pattern.name,
        r_ratio=pattern.r_ratio,
        hys_law=hys,
        days_since_increase=days,
        event_id=view.lab.id,
        profile=protocol.label,
    )
