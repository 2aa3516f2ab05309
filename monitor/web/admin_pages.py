"""Administrators only: users (add, disable, enable, change role) and the audit log.

The same checks as `monitor users ...` (monitor/accounts.py). Passwords set here
are initial ones; users change theirs on the account page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from monitor.accounts import AccountError, add_user, list_users, set_disabled, set_role
from monitor.store.accounts import ROLES
from monitor.store.db import session_scope
from monitor.web import audit
from monitor.web.auth import Principal, host_of, need
from monitor.web.csrf import CheckedForm
from monitor.web.render import flash, renderer_of

router = APIRouter()

AdminUser = Annotated[Principal, Depends(need("admin"))]


@router.get("/users")
def users(request: Request, principal: AdminUser) -> Response:
    with session_scope(host_of(request).engine) as session:
        rows = list_users(session)
    return renderer_of(request).page(request, "users.html", principal, users=rows, roles=ROLES)


def _done(request: Request, principal: Principal, error: str | None, ok: str) -> Response:
    flash(request, principal, "error" if error else "ok", error or ok)
    return RedirectResponse("/users", status_code=303)


@router.post("/users")
def user_add(request: Request, principal: AdminUser, form: CheckedForm) -> Response:
    host = host_of(request)
    now = host.clock.now()
    username, role = form.get("username"), form.get("role")
    try:
        with session_scope(host.engine) as session:
            user = add_user(session, username, role, form.get("password"), now)
            audit.record(session, principal.actor, "user.add", now, user=user.username, role=role)
    except AccountError as exc:
        return _done(request, principal, str(exc), "")
    return _done(request, principal, None, f"Added {user.username} ({role}).")


@router.post("/users/{username}/{change}")
def user_change(
    request: Request, principal: AdminUser, form: CheckedForm, username: str, change: str
) -> Response:
    """disable | enable | role (with the form's `role`)."""
    host = host_of(request)
    now = host.clock.now()
    if change not in ("disable", "enable", "role"):
        return _done(request, principal, f"unknown change {change!r}", "")
    if username == principal.username and change in ("disable", "role"):
        return _done(request, principal, "You cannot disable or demote yourself.", "")
    try:
        with session_scope(host.engine) as session:
            if change == "role":
                user = set_role(session, username, form.get("role"))
            else:
                user = set_disabled(session, username, change == "disable", now)
            audit.record(
                session, principal.actor, f"user.{change}", now, user=user.username, role=user.role
            )
    except AccountError as exc:
        return _done(request, principal, str(exc), "")
    return _done(request, principal, None, f"{user.username}: {change} done.")


@router.get("/audit")
def audit_log(
    request: Request,
    principal: AdminUser,
    user: Annotated[str | None, Query()] = None,
    patient: Annotated[str | None, Query()] = None,
    action: Annotated[str | None, Query()] = None,
) -> Response:
    host = host_of(request)
    with session_scope(host.engine) as session:
        rows = audit.query(session, user=user, patient_id=patient, action=action, limit=500)
        audit.record(session, principal.actor, "audit.view", host.clock.now(), user=user or None)
    return renderer_of(request).page(
        request,
        "audit.html",
        principal,
        rows=rows,
        f={"user": user or "", "patient": patient or "", "action": action or ""},
    )
