"""Finding patients for the console: id prefix or identifier (MRN, NHS number...),
case-insensitive, and the care-team filter every list query takes.

`P-00` and `p-005` both find P-005; an MRN finds the patient it was recorded for.
Both are SQL clauses, so the alert log, the patients list and the triage desk page
and count over exactly the same set.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from monitor.store.models import PatientIdentifierRow, PatientRow

SEARCH_MAX = 64


def _like_prefix(text: str) -> str:
    """`text` as a LIKE prefix pattern with its wildcards escaped (escape char '\\')."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def matching_patients(term: str) -> Any:
    """A subquery of patient ids whose id or any identifier value starts with `term`."""
    pattern = _like_prefix(term.strip()[:SEARCH_MAX])
    by_identifier = select(PatientIdentifierRow.patient_id).where(
        func.lower(PatientIdentifierRow.value).like(pattern, escape="\\")
    )
    return select(PatientRow.id).where(
        or_(
            func.lower(PatientRow.id).like(pattern, escape="\\"),
            col(PatientRow.id).in_(by_identifier),
        )
    )


def patient_clause(term: str, patient_col: Any) -> list[ColumnElement[bool]]:
    """Rows whose `patient_col` is a patient the search term finds (none: no clause)."""
    if not term.strip():
        return []
    return [col(patient_col).in_(matching_patients(term))]


def team_clause(teams: frozenset[str] | None, patient_col: Any) -> list[ColumnElement[bool]]:
    """Rows of patients in `teams` (None: every team), by `monitor.web.scope`'s rule: a
    row about no patient (a service alert: a silent feed) concerns everyone."""
    from monitor.web import scope

    if patient_col is PatientRow.id:
        return scope.patient_clauses(teams)
    return scope.alert_clauses(teams)
