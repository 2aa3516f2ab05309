"""Patients' own mobiles and SMS consent (issue 14): every change audited.

A number is kept only as E.164 (`+` and 8-15 digits), checked here at the edge, so
an inbound SMS is matched to a patient by exact comparison and nothing else. The
audit rows name the patient by id and never carry the number itself (its last
four digits at most), so the audit log does not become a contact list.
"""

from __future__ import annotations

import re
from datetime import datetime

import structlog
from sqlmodel import Session, select

from monitor.store.models import PatientContactRow, PatientRow
from monitor.web.audit import Actor, record

log = structlog.get_logger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
LANGUAGES = ("en", "fr")


class ContactError(Exception):
    """One line for the user: unknown patient, bad number, unsupported language."""


def normalise_mobile(value: str) -> str:
    """E.164 or ContactError; spaces, dashes and brackets people type are dropped."""
    compact = re.sub(r"[\s\-().]", "", value)
    if not E164.match(compact):
        raise ContactError(f"mobile {value!r} is not an E.164 number (e.g. +447700900123)")
    return compact


def contact_of(session: Session, patient_id: str) -> PatientContactRow | None:
    return session.get(PatientContactRow, patient_id)


def by_mobile(session: Session, mobile: str) -> PatientContactRow | None:
    """The patient registered with exactly this number, if any (consenting or not)."""
    rows = list(session.exec(select(PatientContactRow).where(PatientContactRow.mobile == mobile)))
    return rows[0] if len(rows) == 1 else None


def give_consent(
    session: Session,
    actor: Actor,
    patient_id: str,
    mobile: str,
    language: str,
    by: str,
    now: datetime,
) -> PatientContactRow:
    """Record (or renew) consent with the number and language the patient gave."""
    if session.get(PatientRow, patient_id) is None:
        raise ContactError(f"no patient {patient_id}")
    if language not in LANGUAGES:
        raise ContactError(f"language {language!r}: one of {', '.join(LANGUAGES)}")
    number = normalise_mobile(mobile)
    other = by_mobile(session, number)
    if other is not None and other.patient_id != patient_id:
        raise ContactError("that mobile is already registered to another patient")
    row = contact_of(session, patient_id) or PatientContactRow(
        patient_id=patient_id, mobile=number, consent_by=by, consent_at=now, updated_at=now
    )
    row.mobile, row.language, row.consent = number, language, "given"
    row.consent_by, row.consent_at, row.updated_at = by, now, now
    row.unclear_replies = 0
    session.add(row)
    record(
        session, actor, "patient.sms_consent", now, patient_id=patient_id,
        consent="given", language=language, mobile_last4=number[-4:], given_by=by,
    )  # fmt: skip
    return row


def withdraw(
    session: Session, actor: Actor, patient_id: str, by: str, now: datetime, how: str
) -> PatientContactRow:
    """Consent withdrawn (`how`: cli | web | stop_reply | twilio_21610): no more SMS."""
    row = contact_of(session, patient_id)
    if row is None:
        raise ContactError(f"patient {patient_id} has no SMS contact")
    row.consent, row.consent_by, row.consent_at, row.updated_at = "withdrawn", by, now, now
    session.add(row)
    record(
        session, actor, "patient.sms_withdrawn", now, patient_id=patient_id,
        consent="withdrawn", how=how, given_by=by,
    )  # fmt: skip
    log.info("patient_sms.withdrawn", how=how)
    return row


def pause(
    session: Session,
    actor: Actor,
    patient_id: str,
    until: datetime | None,
    reason: str,
    now: datetime,
) -> PatientContactRow:
    """Hold back reminders and recalls until `until` (None: resume now)."""
    row = contact_of(session, patient_id)
    if row is None:
        raise ContactError(f"patient {patient_id} has no SMS contact")
    if until is not None and until <= now:
        raise ContactError("the pause must end in the future")
    if until is not None and not reason.strip():
        raise ContactError("a pause needs a reason")
    row.paused_until = until
    row.pause_reason = reason.strip() or None if until is not None else None
    row.updated_at = now
    session.add(row)
    record(
        session, actor, "patient.sms_paused" if until else "patient.sms_resumed", now,
        patient_id=patient_id, until=until.isoformat() if until else None,
        reason=reason.strip() or None,
    )  # fmt: skip
    return row


SYSTEM = Actor(name="system:patient_sms", role=None, via="sms", ip=None)
