"""Replies from patients (issue 14.4): keywords, symptom numbers, unclear answers.

Only a number registered exactly (E.164) reaches a patient; anything else is not
ours (the staff `ACK` path, or nothing). "1 3" / "1,3" become a symptoms event
through the same intake as a clinician's report (source `patient_sms`), so recent
panels are re-evaluated and a stop alert can follow. "0" is "none". An unclear
reply gets one clarifying SMS; a second goes to the care team as an alert. The
answer goes back as TwiML and is kept in the thread like any other message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import structlog
from sqlmodel import Session

from monitor.config_schema import PatientSmsTable
from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.intake import record_event
from monitor.services.patient_contact import SYSTEM, by_mobile, give_consent, withdraw
from monitor.services.patient_sms import UNCLEAR_RULE, raise_alert, render
from monitor.store.models import PatientContactRow, PatientMessageRow

log = structlog.get_logger(__name__)

SYMPTOMS = {"1": "fatigue", "2": "nausea", "3": "vomiting", "4": "ruq_pain", "5": "jaundice"}
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
NUMBERS = re.compile(r"^[0-5](?:\s*[,;\s]\s*[0-5])*$")


def parse_symptoms(body: str) -> list[str] | None:
    """Symptom names of a numbered reply, [] for "0", None when it is unclear."""
    text = body.strip().rstrip(".")
    if not NUMBERS.match(text):
        return None
    digits = set(re.findall(r"[0-5]", text))
    if digits == {"0"}:
        return []
    if "0" in digits:
        return None  # "0 3": none and something at once
    return sorted(SYMPTOMS[d] for d in digits)


def _thread(session: Session, patient_id: str, direction: str, purpose: str, text: str,
            now: datetime) -> None:  # fmt: skip
    state = "received" if direction == "in" else "sent"
    session.add(
        PatientMessageRow(
            patient_id=patient_id,
            direction=direction,
            purpose=purpose,
            text=text,
            at=now,
            state=state,
        )
    )


def handle_reply(
    session: Session,
    sender: str,
    body: str,
    now: datetime,
    protocols: Mapping[str, Protocol],
    routing: Routing | None,
    t: PatientSmsTable,
    config_dir: Path,
) -> str | None:
    """The answer to send back, "" for none, or None when `sender` is no patient's."""
    contact = by_mobile(session, sender)
    if contact is None:
        return None
    word = body.strip().upper()
    pid = contact.patient_id
    _thread(session, pid, "in", "reply", body[:1000], now)
    if word in STOP_WORDS:
        if contact.consent == "given":
            withdraw(session, SYSTEM, pid, "patient", now, how="stop_reply")
        return _answer(session, contact, "stopped", t, config_dir, now)
    if word in START_WORDS:
        give_consent(session, SYSTEM, pid, contact.mobile, contact.language, "patient", now)
        return _answer(session, contact, "started", t, config_dir, now)
    if word in HELP_WORDS:
        return _answer(session, contact, "help", t, config_dir, now)
    if contact.consent != "given":
        return ""  # kept in the thread, acted on only with consent
    symptoms = parse_symptoms(body)
    if symptoms is None:
        return _unclear(session, contact, now, routing, t, config_dir)
    contact.unclear_replies = 0
    session.add(contact)
    if symptoms:
        record_event(
            session, pid, "symptoms", now, {"symptoms": symptoms, "resolved": False}, now,
            protocols, source="patient_sms", recorded_by="patient (SMS)", routing=routing,
        )  # fmt: skip
    log.info("patient_sms.reply", kind="symptoms", count=len(symptoms))
    return _answer(session, contact, "thanks", t, config_dir, now)


def _unclear(
    session: Session, contact: PatientContactRow, now: datetime, routing: Routing | None,
    t: PatientSmsTable, config_dir: Path,
) -> str:  # fmt: skip
    contact.unclear_replies += 1
    session.add(contact)
    log.info("patient_sms.reply", kind="unclear", count=contact.unclear_replies)
    if contact.unclear_replies < 2:
        return _answer(session, contact, "clarify", t, config_dir, now)
    contact.unclear_replies = 0
    raise_alert(
        session, contact.patient_id, UNCLEAR_RULE, "warning", f"unclear:{now.isoformat()}",
        "The patient's SMS reply to a symptom check-in was unclear twice. Call the "
        "patient and read the thread in the console.", now, routing,
    )  # fmt: skip
    return _answer(session, contact, "help", t, config_dir, now)


def _answer(
    session: Session, contact: PatientContactRow, kind: str, t: PatientSmsTable,
    config_dir: Path, now: datetime,
) -> str:  # fmt: skip
    text = render(session, contact, kind, t, config_dir)
    _thread(session, contact.patient_id, "out", kind, text, now)
    return text
