"""Roles per team: what a console account limited to care teams may see.

An account's `teams` (monitor users teams NAME TEAM...) limits it to the patients of
those teams, on every page and API route that names a patient or an alert: lists are
filtered, and one patient or alert of another team is a 404 (its existence is not
confirmed). Visibility follows the patient's team now, not the team an alert was
routed for. Service alerts (no patient: a silent feed) concern everyone and stay
visible. An empty list (and every admin) sees everything.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, col, select

from monitor.store.accounts import UserRow
from monitor.store.models import AlertRow, PatientRow
from monitor.web.auth import Principal

Teams = frozenset[str] | None  # None: not limited


def teams_of(session: Session, principal: Principal) -> Teams:
    """The teams the account is limited to, or None."""
    if principal.role == "admin":
        return None
    user = session.get(UserRow, principal.user_id)
    return frozenset(user.teams) if user is not None and user.teams else None


def patient_clauses(teams: Collection[str] | None) -> list[ColumnElement[bool]]:
    if teams is None:
        return []
    return [col(PatientRow.care_team).in_(sorted(teams))]


def alert_clauses(teams: Collection[str] | None) -> list[ColumnElement[bool]]:
    if teams is None:
        return []
    mine = select(PatientRow.id).where(col(PatientRow.care_team).in_(sorted(teams)))
    return [or_(col(AlertRow.patient_id).is_(None), col(AlertRow.patient_id).in_(mine))]


def check_patient(session: Session, principal: Principal, patient_id: str) -> None:
    """404 for a patient outside the account's teams (or no such patient)."""
    from monitor.web.queries import NotFound  # queries imports this module

    teams = teams_of(session, principal)
    if teams is None:
        return
    row = session.get(PatientRow, patient_id)
    if row is None or row.care_team not in teams:
        raise NotFound(f"no patient {patient_id!r}")


def check_alert(session: Session, principal: Principal, code: str) -> None:
    """404 for an alert about a patient outside the account's teams."""
    from monitor.web.queries import NotFound  # queries imports this module

    teams = teams_of(session, principal)
    if teams is None:
        return
    alert = session.exec(select(AlertRow).where(AlertRow.code == code.strip().upper())).first()
    if alert is None or alert.patient_id is None:
        return  # no such alert: the normal 404 follows; a service alert: everyone's
    row = session.get(PatientRow, alert.patient_id)
    if row is None or row.care_team not in teams:
        raise NotFound(f"no alert {code!r}")
