"""`monitor replay`: what would the monitor have done for this patient?

Runs one scenario (shared/contracts/replay.md) through the daemon's own path: an
in-memory store, intake for every event on a simulated clock, and the same
evaluation the deadline sweep runs, ending at `until`. Sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlmodel import col, select

from monitor.clock import ManualClock
from monitor.core.protocol import Protocol
from monitor.schemas import Scenario, describe, utc
from monitor.services.evaluate import evaluate_patient
from monitor.services.intake import enroll, record_event
from monitor.store.db import create_all, make_engine, session_scope
from monitor.store.models import AlertRow


class ScenarioError(ValueError):
    """One line naming the offending field or event index."""


@dataclass(frozen=True)
class ReplayAlert:
    at: datetime
    patient: str
    rule: str
    severity: str
    message: str
    profile: str
    key: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "patient": self.patient,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "profile": self.profile,
            "key": self.key,
        }


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_scenario(data: Any) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe(exc)) from exc
    start = utc(scenario.patient.start)
    previous = start
    for i, event in enumerate(scenario.events):
        at = utc(event.at)
        if at < start:
            raise ScenarioError(f"events[{i}].at: {iso(at)} is before patient.start {iso(start)}")
        if at < previous:
            raise ScenarioError(
                f"events[{i}].at: {iso(at)} is earlier than events[{i - 1}] ({iso(previous)}); "
                "events must be in time order"
            )
        previous = at
    if utc(scenario.until) < start:
        raise ScenarioError(f"until: {iso(utc(scenario.until))} is before patient.start")
    return scenario


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from exc
    return parse_scenario(data)


def replay(
    scenario: Scenario, protocols: Mapping[str, Protocol], default_protocol: str
) -> list[ReplayAlert]:
    """Every alert the daemon would have raised, in the order raised."""
    engine = make_engine("sqlite://")
    create_all(engine)
    clock = ManualClock(utc(scenario.patient.start))
    patient_id = scenario.patient.id
    try:
        with session_scope(engine) as session:
            enroll(session, scenario.patient, clock.now(), protocols, default_protocol)
        until = utc(scenario.until)
        for event in scenario.events:
            if utc(event.at) > until:
                break  # the simulated clock stops at `until`
            clock.set(utc(event.at))
            with session_scope(engine) as session:
                record_event(
                    session,
                    patient_id,
                    event.kind,
                    clock.now(),
                    event.payload(),
                    clock.now(),
                    protocols,
                    source="replay",
                )
        clock.set(until)
        with session_scope(engine) as session:
            evaluate_patient(session, patient_id, clock.now(), protocols)
            rows = session.exec(select(AlertRow).order_by(col(AlertRow.id))).all()
            return [
                ReplayAlert(
                    r.at, r.patient_id or "", r.rule, r.severity, r.message, r.profile, r.key
                )
                for r in rows
            ]
    finally:
        engine.dispose()


def render_table(alerts: list[ReplayAlert]) -> str:
    if not alerts:
        return "No alerts would have been raised."
    lines = [f"{'at (UTC)':<20}  {'severity':<8}  {'rule':<32}  message"]
    for a in alerts:
        lines.append(f"{iso(a.at):<20}  {a.severity:<8}  {a.rule:<32}  {a.message}")
    lines.append(f"{len(alerts)} alert(s).")
    return "\n".join(lines)
