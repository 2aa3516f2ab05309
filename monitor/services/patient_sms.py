"""Patient SMS (issue 14): the sweep that writes due messages, and their sender.

Each message is a `patient_messages` row written (state `pending`, unique key per
patient+kind+date) before anything is sent, so a crash between the two sends it on
the next pass and a second sweep finds the key taken: at-least-once, never twice
without reason. Twilio's 21610 (the number replied STOP to the carrier) withdraws
the patient's consent. Repeated non-attendance raises `lab.repeated_non_attendance`
through the normal alert path (routes decide who: the consultant).

Nothing about the patient's results reaches the text: it is a template filled with
the clinic name, a date and the HELP number only (monitor/core/patient_sms.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, and_, col, or_, select

from monitor.config_schema import PatientSmsTable
from monitor.core.patient_contact import (
    Planned,
    Policy,
    Schedule,
    Sent,
    plan,
    repeated_non_attendance,
)
from monitor.core.patient_sms import Templates, load_all
from monitor.core.protocol import Protocol
from monitor.notifiers.base import SendResult
from monitor.routing import Routing
from monitor.services.codes import new_code
from monitor.services.evaluate import run_for
from monitor.services.outbox import enqueue
from monitor.services.patient_contact import SYSTEM, withdraw
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, PatientContactRow, PatientMessageRow, PatientRow

log = structlog.get_logger(__name__)

NON_ATTENDANCE_RULE = "lab.repeated_non_attendance"
UNCLEAR_RULE = "patient.unclear_reply"
SCHEDULED = ("reminder", "recall", "recall_second", "checkin")
UNSUBSCRIBED = 21610


class TextSender(TypingProtocol):
    async def send_text(self, address: str, text: str) -> SendResult: ...

    async def lookup_text(self, address: str, text: str) -> SendResult | None: ...


def table_of(raw: Mapping[str, Any]) -> PatientSmsTable:
    return PatientSmsTable.model_validate(raw.get("patient_sms", {}))


def policy_of(t: PatientSmsTable) -> Policy:
    start, end = (time.fromisoformat(p.strip().zfill(5)) for p in t.sending_hours.split("-"))
    return Policy(
        timezone=t.timezone,
        send_from=start,
        send_until=end,
        reminder_days_before=t.reminder_days_before,
        second_recall_after_days=t.second_recall_after_days,
        non_attendance_count=t.non_attendance_count,
        checkin_weeks=t.checkin_weeks,
        checkin_days_after_increase=t.checkin_days_after_increase,
    )


def clinic_for(session: Session, patient_id: str, t: PatientSmsTable) -> tuple[str, str]:
    """(clinic name, HELP number) for this patient's messages: the patient's care
    team's own (`[patient_sms.teams.<team>]`) when it has them, else the site's."""
    patient = session.get(PatientRow, patient_id)
    own = t.teams.get(patient.care_team) if patient and patient.care_team else None
    return (own.clinic, own.help_number) if own else (t.clinic, t.help_number)


def templates_for(
    t: PatientSmsTable, config_dir: Path, clinic: str, help_number: str
) -> dict[str, Templates]:
    d = Path(t.messages_dir)
    return load_all(
        d if d.is_absolute() else config_dir / d, clinic, help_number, tuple(t.languages)
    )


def history(session: Session, patient_id: str) -> list[Sent]:
    rows = session.exec(
        select(PatientMessageRow).where(
            PatientMessageRow.patient_id == patient_id,
            PatientMessageRow.direction == "out",
            col(PatientMessageRow.purpose).in_(SCHEDULED),
        )
    )
    return [Sent(r.purpose, r.key or "", r.at) for r in rows]


def schedule_of(
    session: Session, row: PatientRow, now: datetime, protocol: Protocol
) -> Schedule | None:
    """The patient's own liver-panel deadline and dose increases, from the engine."""
    result = run_for(session, row, now, protocol)
    pos, state = result.position, result.state
    if not pos.on_therapy:
        return None
    due = pos.next_due
    overdue_at = due + timedelta(days=pos.grace_days or 0) if due else None
    increases = [c.at for c in state.cycle_changes() if c.is_increase]
    return Schedule(
        due=due, overdue_at=overdue_at, cycle_start=state.cycle_start, increases=increases
    )


def write_message(
    session: Session,
    contact: PatientContactRow,
    kind: str,
    text: str,
    now: datetime,
    key: str | None = None,
) -> PatientMessageRow | None:
    """One outgoing row, pending; None when its key was already taken."""
    row = PatientMessageRow(
        patient_id=contact.patient_id, direction="out", purpose=kind, key=key, text=text, at=now
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def sweep(
    session: Session,
    now: datetime,
    t: PatientSmsTable,
    protocols: Mapping[str, Protocol],
    config_dir: Path,
    routing: Routing | None,
) -> list[PatientMessageRow]:
    """Write every consenting patient's due message (one each at most)."""
    policy = policy_of(t)
    written: list[PatientMessageRow] = []
    for contact in session.exec(
        select(PatientContactRow).where(PatientContactRow.consent == "given")
    ):
        patient = session.get(PatientRow, contact.patient_id)
        if patient is None or patient.protocol_id not in protocols:
            continue
        schedule = schedule_of(session, patient, now, protocols[patient.protocol_id])
        if schedule is None:
            continue
        sent = history(session, contact.patient_id)
        _non_attendance(session, patient.id, sent, policy, now, routing)
        planned = plan(patient.id, schedule, True, contact.paused_until, sent, now, policy)
        if planned is None:
            continue
        text = render(session, contact, planned, t, config_dir)
        row = write_message(session, contact, planned.kind, text, now, planned.key)
        if row is not None:
            written.append(row)
    if written:
        log.info("patient_sms.written", count=len(written))
    return written


def render(
    session: Session,
    contact: PatientContactRow,
    planned: Planned | str,
    t: PatientSmsTable,
    config_dir: Path,
) -> str:
    clinic, help_number = clinic_for(session, contact.patient_id, t)
    templates = templates_for(t, config_dir, clinic, help_number)
    lang = contact.language if contact.language in templates else t.languages[0]
    if isinstance(planned, str):
        return templates[lang].render(planned)
    return templates[lang].render(planned.kind, planned.due)


def _non_attendance(
    session: Session,
    patient_id: str,
    sent: list[Sent],
    policy: Policy,
    now: datetime,
    routing: Routing | None,
) -> None:
    if not repeated_non_attendance(sent, policy):
        return
    missed = len({s.key.rsplit(":", 1)[1] for s in sent if s.kind == "recall"})
    raise_alert(
        session, patient_id, NON_ATTENDANCE_RULE, "warning", f"missed:{missed}",
        f"Repeated non-attendance: {missed} liver panels recalled by SMS and not done. "
        "Contact the patient.", now, routing, {"missed_panels": missed},
    )  # fmt: skip


def raise_alert(
    session: Session,
    patient_id: str,
    rule: str,
    severity: str,
    key: str,
    message: str,
    now: datetime,
    routing: Routing | None,
    details: dict[str, Any] | None = None,
) -> AlertRow | None:
    """An alert outside the engine, keyed like the engine's (once per patient+rule+key)."""
    exists = session.exec(
        select(AlertRow.id).where(
            AlertRow.patient_id == patient_id, AlertRow.rule == rule, AlertRow.key == key
        )
    ).first()
    if exists is not None:
        return None
    alert = AlertRow(
        code=new_code(session), patient_id=patient_id, rule=rule, severity=severity, key=key,
        at=now, raised_at=now, message=message, details=details or {}, profile="-",
        group_id=f"psms-{new_code(session)}",
    )  # fmt: skip
    session.add(alert)
    session.flush()
    enqueue(session, [alert], routing, now)
    log.info("alert.raised", patient_id=patient_id, rule=rule, severity=severity, code=alert.code)
    return alert


SENDING_LEASE = timedelta(minutes=10)


async def send_pending(engine: Engine, sender: TextSender, now: datetime) -> int:
    """Send every pending outgoing message, each claimed (`sending`) in its own
    transaction first so no database lock is held over the network. A message whose
    send may have happened (an `unknown` outcome, or a claim older than SENDING_LEASE:
    a crash mid-send) is looked up at Twilio first and sent again only when Twilio
    says it never took it: at-least-once, never twice without reason. 21610
    withdraws consent. Returns the sends tried."""
    with session_scope(engine) as session:
        ids = [
            r.id
            for r in session.exec(
                select(PatientMessageRow)
                .where(
                    PatientMessageRow.direction == "out",
                    or_(
                        col(PatientMessageRow.state).in_(["pending", "unknown"]),
                        and_(
                            col(PatientMessageRow.state) == "sending",
                            col(PatientMessageRow.at) < now - SENDING_LEASE,
                        ),
                    ),
                )
                .order_by(col(PatientMessageRow.id))
            )
        ]
    tried = 0
    for mid in ids:
        with session_scope(engine) as session:
            row = session.get(PatientMessageRow, mid)
            contact = session.get(PatientContactRow, row.patient_id) if row else None
            if row is None or row.state not in ("pending", "sending", "unknown"):
                continue
            maybe_sent = row.state in ("sending", "unknown")
            if contact is None or (contact.consent != "given" and row.purpose != "stopped"):
                row.state = "cancelled"
                session.add(row)
                continue
            row.state, row.at = "sending", now
            session.add(row)
            address, text = contact.mobile, row.text
        result = await _send_once(sender, address, text, maybe_sent)
        tried += 1
        with session_scope(engine) as session:
            row = session.get(PatientMessageRow, mid)
            assert row is not None
            if result is None or result.outcome == "unknown":
                row.state = "unknown"  # may have gone: looked up (not resent) next pass
            elif result.outcome == "delivered":
                row.state, row.provider_id = "sent", result.provider_id
            elif result.outcome == "permanent":
                row.state = "failed"
                if f"error {UNSUBSCRIBED}" in (result.error or ""):
                    withdraw(session, SYSTEM, row.patient_id, "twilio", now, how="twilio_21610")
            else:
                row.state = "pending"  # transient: Twilio did not take it; the next pass sends
            session.add(row)
    return tried


async def _send_once(
    sender: TextSender, address: str, text: str, maybe_sent: bool
) -> SendResult | None:
    """The send, after a lookup when an earlier attempt may have reached Twilio; None
    when the lookup cannot tell (then nothing is sent now)."""
    if maybe_sent:
        found = await sender.lookup_text(address, text)
        if found is None or found.outcome == "delivered":
            return found
    return await sender.send_text(address, text)


def config_problems(raw: Mapping[str, Any], base: Path) -> list[tuple[str, str]]:
    """`monitor check-config`: when enabled, the channel is a twilio_sms one, the zone
    exists, and every language's templates load and fit (key path, message)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from monitor.core.patient_sms import TemplateError

    try:
        t = table_of(raw)
    except ValueError:
        return []  # the schema check names it
    if not t.enabled:
        return []
    out: list[tuple[str, str]] = []
    channel = raw.get("channels", {}).get(t.channel)
    if not isinstance(channel, dict) or channel.get("kind") != "twilio_sms":
        out.append(("patient_sms.channel", f"{t.channel!r} is not a twilio_sms channel"))
    try:
        ZoneInfo(t.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        out.append(("patient_sms.timezone", f"unknown time zone {t.timezone!r}"))
    try:
        templates_for(t, base, t.clinic, t.help_number)
    except TemplateError as exc:
        out.append(("patient_sms.messages_dir", str(exc)))
    known = raw.get("teams", {}) if isinstance(raw.get("teams"), dict) else {}
    for team, own in t.teams.items():
        if team not in known:
            out.append((f"patient_sms.teams.{team}", f"no care team {team!r} in [teams]"))
            continue
        try:  # the team's name and number must fit the templates too
            templates_for(t, base, own.clinic, own.help_number)
        except TemplateError as exc:
            out.append((f"patient_sms.teams.{team}", str(exc)))
    return out
