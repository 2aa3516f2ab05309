"""Plain data of the core: a patient, the events of their course, and findings.

Everything here is immutable and already validated: boundaries (CLI, replay file,
HL7, FHIR, CSV) parse into these types, and the core trusts them. Lab values are in
canonical units (see `units.py`); datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

TPMT = Literal["normal", "intermediate", "poor", "unknown"]
TPMT_VALUES: tuple[str, ...] = ("normal", "intermediate", "poor", "unknown")
# NUDT15 metaboliser status takes the same values (CPIC phenotypes).
NUDT15 = TPMT
Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")


@dataclass(frozen=True)
class Patient:
    id: str
    weight_kg: float
    start: datetime
    start_dose_mg: float
    baseline: Mapping[str, float]
    uln: Mapping[str, float] = field(default_factory=dict)
    prior_toxic_dose_mg: float | None = None
    tpmt: TPMT = "unknown"
    nudt15: NUDT15 = "unknown"

    @property
    def metaboliser(self) -> TPMT:
        """The lower of TPMT and NUDT15 activity: what the dose plan must allow for."""
        both = (self.tpmt, self.nudt15)
        if "poor" in both:
            return "poor"
        if "intermediate" in both:
            return "intermediate"
        return "normal" if "normal" in both else "unknown"


@dataclass(frozen=True)
class LabEvent:
    """Results drawn at `at`; `uln` holds the result's own upper limits (reference range)."""

    id: str
    at: datetime
    results: Mapping[str, float]
    uln: Mapping[str, float] = field(default_factory=dict)
    preliminary: bool = False
    # Values of this draw held in quarantine and not yet resolved: label (an analyte
    # such as "bilirubin", or the sender's code when it could not be mapped) ->
    # the reason in plain words. A panel with a held value is never "normal".
    # The store keeps it current: a held item taken in on retry or discarded
    # leaves this mapping.
    held: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_liver_panel(self) -> bool:
        return "alt" in self.results or "ast" in self.results


@dataclass(frozen=True)
class SymptomEvent:
    id: str
    at: datetime
    symptoms: frozenset[str]
    resolved: bool = False


@dataclass(frozen=True)
class DoseEvent:
    id: str
    at: datetime
    dose_mg: float


@dataclass(frozen=True)
class StopEvent:
    id: str
    at: datetime
    reason: str


Event = LabEvent | SymptomEvent | DoseEvent | StopEvent


@dataclass(frozen=True)
class Enrolled:
    """The trigger of the first evaluation, at the patient's start."""

    at: datetime


@dataclass(frozen=True)
class Tick:
    """A trigger with no event: time passed (a deadline, a waiting period ended)."""

    at: datetime


Trigger = Event | Enrolled | Tick


@dataclass(frozen=True)
class Finding:
    """One rule firing: what decided it, the sentence for the care team, and its key.

    `key` identifies the trigger (lab result, deadline, dose level...) so that the
    pair (rule, key) is unique per patient: re-evaluating never duplicates.
    """

    rule: str
    severity: Severity
    at: datetime
    key: str
    message: str
    values: Mapping[str, float] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    grades: Mapping[str, int] = field(default_factory=dict)
    pattern: str | None = None
    r_ratio: float | None = None
    hys_law: bool = False
    days_since_increase: int | None = None
    event_id: str | None = None
    profile: str = ""
    # A warning that asks for repeat LFTs: the time they are due by and the grace
    # before `lab.overdue` says they were missed. Satisfied by the next liver panel.
    repeat_by: datetime | None = None
    repeat_grace: timedelta | None = None

    @property
    def is_stop(self) -> bool:
        return self.rule.startswith("stop.")
