"""Warnings below the stop lines: hold escalation and test again soon."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from monitor.core.clinical import baseline_is_abnormal, ctcae_grade, injury_pattern
from monitor.core.domain import Finding, SymptomEvent
from monitor.core.protocol import Protocol
from monitor.core.state import PanelView, PatientState
from monitor.core.units import CANONICAL_UNIT, TRANSAMINASES
from monitor.rules import rule
from monitor.rules.context import finding, fmt, lab_finding, show
from monitor.rules.stop import each_panel


def asks_repeat(found: Finding, protocol: Protocol, urgent: bool = False) -> Finding:
    """The warning with its request for repeat LFTs: by when, and the grace after."""
    w = protocol.warn
    if urgent:
        by = found.at + timedelta(hours=w.urgent_within_hours)
        grace = timedelta(hours=w.urgent_grace_hours)
    else:
        by = found.at + timedelta(days=w.repeat_lfts_within_days[1])
        grace = timedelta(days=w.repeat_grace_days)
    return replace(found, repeat_by=by, repeat_grace=grace)


def _stopped_for(state: PatientState, view: PanelView) -> bool:
    return view.via_symptoms or any(f.is_stop for f in state.findings_for_event(view.lab.id))


def _at_or_above(
    state: PatientState, view: PanelView, protocol: Protocol, minimum: Mapping[str, int]
) -> Iterator[tuple[str, float, float, float | None, int]]:
    """(analyte, value, ULN, baseline, grade) of each of the panel's own results at or
    above its minimum CTCAE grade, in `minimum`'s order."""
    for analyte, need in minimum.items():
        if analyte not in view.own:
            continue
        value, uln = view.own[analyte], view.uln[analyte]
        base = state.patient.baseline.get(analyte)
        grade = ctcae_grade(analyte, value, uln, base, protocol)
        if grade >= need:
            yield analyte, value, uln, base, grade


@rule("warn.transaminase_elevated")
def transaminase_elevated(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    def judge(view: PanelView) -> Finding | None:
        if _stopped_for(state, view):
            return None
        hits: list[str] = []
        thresholds: dict[str, float] = {}
        minimum = dict.fromkeys(TRANSAMINASES, protocol.warn.transaminase_min_grade)
        for analyte, value, uln, base, grade in _at_or_above(state, view, protocol, minimum):
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
        return asks_repeat(
            lab_finding(
                state, protocol, view, "warn.transaminase_elevated", "warning", message, thresholds
            ),
            protocol,
        )

    return each_panel(state, protocol, judge)


@rule("warn.cholestatic")
def cholestatic(state: PatientState, now: datetime, protocol: Protocol) -> list[Finding]:
    """ALP, GGT or bilirubin at or above the profile's CTCAE grade, below the stop lines:
    azathioprine injury is typically cholestatic (seed), so this holds escalation too."""
    cfg = protocol.warn.cholestatic

    def judge(view: PanelView) -> Finding | None:
        assert cfg is not None
        if _stopped_for(state, view):
            return None
        minimum = {
            "alp": cfg.alp_min_grade,
            "ggt": cfg.ggt_min_grade,
            "bilirubin": cfg.bilirubin_min_grade,
        }
        hits: list[str] = []
        thresholds: dict[str, float] = {}
        for analyte, value, uln, base, grade in _at_or_above(state, view, protocol, minimum):
            need = minimum[analyte]
            bounds = protocol.grading[analyte]
            if baseline_is_abnormal(base, uln):
                assert base is not None
                multiple, ref, of = bounds.baseline[need - 1], base, "baseline"
                sign = ">=" if need == 1 else ">"
            else:
                multiple, ref, of, sign = bounds.uln[need - 1], uln, "ULN", ">"
            limit = multiple * ref
            thresholds[f"{analyte}_grade{need}_limit"] = limit
            hits.append(
                f"{show(analyte, value)} is {sign} {fmt(multiple)}x {of} "
                f"({fmt(limit)} {CANONICAL_UNIT[analyte]}; CTCAE grade {grade}, "
                f"{value / uln:.1f}x ULN)"
            )
        if not hits:
            return None
        pattern = injury_pattern(view.merged, view.uln, protocol)
        r_note = "" if pattern.name else " (R ratio not computable: it needs ALT and ALP)"
        low, high = protocol.warn.repeat_lfts_within_days
        message = (
            f"Cholestatic rise: {'; '.join(hits)}, below the stop lines{r_note}; "
            f"{protocol.cholestatic_note}. Hold dose escalation and repeat LFTs within "
            f"{low}-{high} days."
        )
        return asks_repeat(
            lab_finding(state, protocol, view, "warn.cholestatic", "warning", message, thresholds),
            protocol,
        )

    return each_panel(state, protocol, judge) if cfg is not None else []


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
        asks_repeat(
            finding(
                state,
                protocol,
                "warn.symptoms",
                "warning",
                f"symptoms:{trigger.id}",
                message,
                event_id=trigger.id,
            ),
            protocol,
            urgent=True,
        )
    ]
