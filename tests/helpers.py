"""Builders shared by the tests: patients, events and one-call engine runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.core.domain import DoseEvent, Event, LabEvent, Patient, StopEvent, SymptomEvent
from monitor.core.protocol import Protocol, load_protocol
from monitor.engine import Run, run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "monitor.toml"
SEED = load_protocol(ROOT / "config" / "protocols" / "azathioprine-seed.toml")
BSR = load_protocol(ROOT / "config" / "protocols" / "azathioprine-bsr2017.toml")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def day(n: float, hours: float = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hours)


def patient(**kw: Any) -> Patient:
    base: dict[str, Any] = {
        "id": "P-1",
        "weight_kg": 62.0,
        "start": T0,
        "start_dose_mg": 50.0,
        "baseline": {"alt": 22.0, "ast": 20.0, "alp": 70.0, "bilirubin": 8.0},
        "uln": {"alt": 33.0, "ast": 32.0, "alp": 120.0, "bilirubin": 21.0},
        "prior_toxic_dose_mg": 100.0,
        "tpmt": "normal",
    }
    base.update(kw)
    return Patient(**base)


class Seq:
    """Numbered events, so tests read as a story."""

    def __init__(self) -> None:
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return str(self.n)

    def lab(self, at: datetime, uln: dict[str, float] | None = None, **results: float) -> LabEvent:
        return LabEvent(self._id(), at, results, uln or {})

    def symptoms(self, at: datetime, *names: str) -> SymptomEvent:
        resolved = "resolved" in names
        return SymptomEvent(
            self._id(), at, frozenset(n for n in names if n != "resolved"), resolved
        )

    def dose(self, at: datetime, mg: float) -> DoseEvent:
        return DoseEvent(self._id(), at, mg)

    def stop(self, at: datetime, reason: str = "clinician") -> StopEvent:
        return StopEvent(self._id(), at, reason)


def run_events(
    events: list[Event],
    until: datetime | None = None,
    protocol: Protocol = SEED,
    **patient_kw: Any,
) -> Run:
    end = until or (events[-1].at if events else T0)
    return run(patient(**patient_kw), events, end, protocol)


def rules_fired(result: Run, exclude_enrollment: bool = True) -> list[str]:
    return [
        f.rule
        for f in result.findings
        if not (exclude_enrollment and f.rule.startswith("enrollment."))
    ]


def lab_rules(events: list[Event], **patient_kw: Any) -> set[str]:
    """Rules raised by the last event alone (a lab or symptom report)."""
    result = run_events(events, **patient_kw)
    last = events[-1]
    return {f.rule for f in result.findings if f.at == last.at}
