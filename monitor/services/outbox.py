"""The outbox: alerts become deliveries in the transaction that raised them.

All alerts of one evaluation of one patient go out as one notification per
recipient (one SMS naming every stop criterion met). The lead alert (the most
severe) carries the group's escalation chain, frozen from the route at raise time:
the patient's care team's route when it has one (else the global one), with each
rota step resolved to whoever is on call then.
Silences hold back non-critical alerts; quiet hours hold back `info` only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol, TypeVar

import structlog
from sqlmodel import Session, col, select

from monitor.core.localtime import local_time, localise_message
from monitor.routing import SEVERITY_RANK, Routing
from monitor.store.models import AlertRow, DeliveryRow, PatientRow, SilenceRow

log = structlog.get_logger(__name__)

SMS_LIMIT = 1200


class Alertish(Protocol):
    """What the outbox reads and sets on an alert: a stored `AlertRow`, or the batch
    evaluator's draft of one not yet inserted (read-only members are properties)."""

    @property
    def id(self) -> int | None: ...
    @property
    def code(self) -> str: ...
    @property
    def patient_id(self) -> str | None: ...
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def message(self) -> str: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def group_id(self) -> str: ...
    @property
    def profile(self) -> str: ...

    care_team: str | None
    silenced_by: int | None
    route: str | None
    chain: list[Any]
    escalation_step: int
    next_escalation_at: datetime | None


def first_sentence(message: str) -> str:
    parts = re.split(r"(?<=[.!?])\s", message, maxsplit=1)
    return parts[0]


def action_sentence(alerts: Sequence[Alertish]) -> str:
    for alert in alerts:
        match = re.search(r"(STOP [^.]*\.)", alert.message)
        if match:
            return match.group(1)
    return ""


def compose(
    alerts: Sequence[Alertish], purpose: str = "alert", note: str = "", tz: tzinfo = UTC
) -> tuple[str, str, str]:
    """(subject, short text for SMS, long body for email) of one alert group.

    The SMS names the patient by id only, what happened, the action and the code.
    Times are in the site's zone `tz` with their offset, as on the console.
    """
    lead = alerts[0]
    rules = ", ".join(a.rule for a in alerts)
    prefix = {"escalation": "ESCALATED ", "repeat": "REMINDER ", "delivery_failure": ""}.get(
        purpose, ""
    )
    # A service alert (no patient: a silent feed, a delivery gap, the quarantine
    # count) names the service, not "patient None".
    who = f"patient {lead.patient_id}" if lead.patient_id else "lab-monitor service"
    subject = (
        f"[lab-monitor] {prefix}{lead.severity.upper()} "
        f"{lead.patient_id or 'service'}: {rules} ({lead.code})"
    )
    what = " | ".join(first_sentence(localise_message(a.message, tz)) for a in alerts)
    action = action_sentence(alerts)
    tail = f" Reply ACK {lead.code}." if lead.severity != "info" else f" Code {lead.code}."
    head = f"{prefix}{lead.severity.upper()} {who}: "
    body_note = f" {note}" if note else ""
    text = f"{head}{what}{(' ' + action) if action else ''}{body_note}{tail}"
    if len(text) > SMS_LIMIT:
        text = text[: SMS_LIMIT - len(tail) - 1] + "…" + tail
    lines = [
        f"{prefix}{lead.severity.upper()} alert for {who}",
        f"Alert code: {lead.code} (acknowledge: reply 'ACK {lead.code}' to the SMS, or "
        f"`monitor alerts ack {lead.code} --by NAME`)",
    ]
    if note:
        lines.append(note)
    for a in alerts:
        lines += [
            "",
            f"{a.rule} ({a.severity}, {a.code}) at {local_time(a.at, tz)}",
            localise_message(a.message, tz),
        ]
        values = a.details.get("values") or {}
        if values:
            lines.append("values: " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
        thresholds = a.details.get("thresholds") or {}
        if thresholds:
            lines.append("thresholds: " + ", ".join(f"{k} {v:g}" for k, v in thresholds.items()))
    lines += ["", f"Protocol profile: {lead.profile}"]
    return subject, text, "\n".join(lines)


def active_silence(session: Session, patient_id: str | None, now: datetime) -> SilenceRow | None:
    if patient_id is None:
        return None
    return session.exec(
        select(SilenceRow)
        .where(
            SilenceRow.patient_id == patient_id,
            col(SilenceRow.cancelled_at).is_(None),
            SilenceRow.expires_at > now,
        )
        .order_by(col(SilenceRow.expires_at).desc())
    ).first()


def delivery_values(
    alerts: Sequence[Alertish],
    group_name: str,
    routing: Routing,
    now: datetime,
    purpose: str,
    step: int,
    note: str = "",
) -> list[dict[str, Any]]:
    """The column values of one group's deliveries to one chain step (the lead's id,
    when it has none yet, is filled in by the caller)."""
    lead = alerts[0]
    subject, text, body = compose(alerts, purpose, note, routing.site_tz)
    when = now
    quiet = routing.quiet_for(lead.care_team)
    if lead.severity == "info" and quiet is not None:
        when = quiet.holds(now) or now
    rows: list[dict[str, Any]] = []
    for member in routing.step_members(group_name):
        recipient = routing.recipients[member]
        rows.append(
            {
                "group_id": lead.group_id,
                "lead_alert_id": lead.id or 0,
                "patient_id": lead.patient_id,
                "purpose": purpose,
                "step": step,
                "recipient": member,
                "channels": [[c.channel, c.address] for c in recipient.contacts],
                "severity": lead.severity,
                "subject": subject,
                "text": text,
                "body": body,
                "next_attempt_at": when,
                "created_at": now,
                "updated_at": now,
            }
        )
    if not rows:
        log.error(
            "outbox.no_recipients", group=group_name, code=lead.code, patient_id=lead.patient_id
        )
    return rows


def deliveries_for(
    session: Session,
    alerts: Sequence[Alertish],
    group_name: str,
    routing: Routing,
    now: datetime,
    purpose: str,
    step: int,
    note: str = "",
) -> list[DeliveryRow]:
    rows = [
        DeliveryRow(**v)
        for v in delivery_values(alerts, group_name, routing, now, purpose, step, note)
    ]
    session.add_all(rows)
    return rows


def _team_of(session: Session, patient_id: str | None) -> str | None:
    if patient_id is None:
        return None
    patient = session.get(PatientRow, patient_id)
    return patient.care_team if patient is not None else None


A = TypeVar("A", bound=Alertish)


def plan_group(
    alerts: Sequence[A],
    silence_id: int | None,
    team: str | None,
    routing: Routing,
    now: datetime,
) -> list[A]:
    """Silence and route one evaluation's alerts (setting their fields): the alerts to
    notify, lead first, with the escalation chain frozen onto the lead; [] when the
    silence holds them all. Pure: the caller stores what it set."""
    ordered = sorted(alerts, key=lambda a: (SEVERITY_RANK[a.severity], a.id or 0))
    lead = ordered[0]
    if silence_id is not None:
        for a in ordered:
            if a.severity != "critical":
                a.silenced_by = silence_id
        ordered = [a for a in ordered if a.severity == "critical"]
        if not ordered:
            log.info("outbox.silenced", patient_id=lead.patient_id, silence=silence_id)
            return []
        lead = ordered[0]
    route = routing.route_for(lead.rule, lead.severity, team)
    chain = routing.freeze(route.chain, team, now) if route else [routing.failure_group]
    if route is None:
        log.warning(
            "outbox.no_route",
            rule=lead.rule,
            severity=lead.severity,
            fallback=routing.failure_group,
        )
    own = routing.team_route(lead.rule, lead.severity, team)
    lead.route = (f"{team}/{route.name}" if own else route.name) if route else "fallback"
    lead.care_team = team
    lead.chain = chain
    lead.escalation_step = 0
    if lead.severity == "critical":
        lead.next_escalation_at = now + routing.critical_ack_after
    elif lead.severity == "warning":
        lead.next_escalation_at = now + routing.warning_repeat_after
    return ordered


def enqueue(
    session: Session, alerts: Sequence[AlertRow], routing: Routing | None, now: datetime
) -> list[DeliveryRow]:
    """Freeze the escalation chain onto the lead alert and write step-0 deliveries."""
    if not alerts or routing is None:
        return []
    session.flush()
    patient_id = alerts[0].patient_id
    silence = active_silence(session, patient_id, now)
    team = _team_of(session, patient_id)
    ordered = plan_group(alerts, silence.id if silence else None, team, routing, now)
    session.add_all(alerts)
    if not ordered:
        return []
    return deliveries_for(session, ordered, ordered[0].chain[0], routing, now, "alert", 0)
