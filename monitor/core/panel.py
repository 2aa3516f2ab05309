"""Is the latest set of results normal? Every analyte at or below its line, none held.

The escalation advice, the patient views and `titration.increase_during_hold` ask
this one question, so they cannot disagree. "Normal" used to mean "raised no
warning", and a cholestatic panel (ALP and bilirubin up, ALT and AST normal) passed;
now every analyte counts: at or below ULN, or, where the baseline is above ULN, below
the profile's grade-1 multiple of that baseline (CTCAE v5), and no value of the draw
may be waiting in quarantine. The answer lists what stands in the way, in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.core.clinical import baseline_is_abnormal, ctcae_grade
from monitor.core.domain import LabEvent
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState, uln_for
from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME


@dataclass(frozen=True)
class Obstacle:
    """One reason the results are not normal: an analyte above its line, or a held value."""

    label: str
    at: datetime
    text: str
    held: bool


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"


def above_line(
    state: PatientState, analyte: str, value: float, lab: LabEvent, protocol: Protocol
) -> str | None:
    """Why `value` is above its line (None when it is not)."""
    if analyte not in protocol.grading:
        return None
    uln = uln_for(analyte, state.patient, lab, protocol)
    base = state.patient.baseline.get(analyte)
    grade = ctcae_grade(analyte, value, uln, base, protocol)
    if grade < 1:
        return None
    unit = CANONICAL_UNIT[analyte]
    if baseline_is_abnormal(base, uln):
        assert base is not None
        multiple = protocol.grading[analyte].baseline[0]
        line = f"at or above {_num(multiple)}x baseline {_num(base)} {unit}"
    else:
        line = f"above ULN {_num(uln)} {unit}"
    return f"{DISPLAY_NAME[analyte]} {_num(value)} {unit} is {line} (CTCAE grade {grade})"


def obstacles(state: PatientState, since: datetime, protocol: Protocol) -> list[Obstacle]:
    """What keeps the results drawn since `since` (in this cycle) from being normal.

    Each analyte is judged by its latest value since then, so an ALP that rose and was
    not measured again still stands in the way. A held value stands in the way until
    the store takes it in or discards it, or a later result of that analyte arrives.
    """
    start = max(since, state.cycle_start)
    # Newest first (labs are in time order): when a lab is reached, `latest` holds
    # exactly the analytes some later lab has a result for.
    latest: dict[str, tuple[float, LabEvent]] = {}
    held: dict[str, tuple[str, LabEvent]] = {}
    for lab in reversed(state.labs):
        if lab.at < start:
            break
        if lab.held:
            for label, reason in lab.held.items():
                if label not in held and label not in latest:
                    held[label] = (reason, lab)
        for analyte, value in lab.results.items():
            if analyte not in latest:
                latest[analyte] = (value, lab)
    found: list[Obstacle] = []
    for analyte, (value, lab) in sorted(latest.items()):
        text = above_line(state, analyte, value, lab, protocol)
        if text is not None:
            found.append(Obstacle(analyte, lab.at, f"{text} on {lab.at:%Y-%m-%d}", False))
    for label, (reason, lab) in sorted(held.items()):
        name = DISPLAY_NAME.get(label, label)
        found.append(
            Obstacle(
                label,
                lab.at,
                f"the {name} result of {lab.at:%Y-%m-%d} is waiting in quarantine ({reason})",
                True,
            )
        )
    return found
