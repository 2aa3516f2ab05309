"""Signing in and out, and changing one's own password.

Failed attempts are audited (`login.failed`) and rate limited per (username,
address) and per address, with a slow-down, never a lock, per account (auth.py);
the same answer is given for an unknown user and a wrong password. The session
cookie is HttpOnly, SameSite and, behind TLS, Secure.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from monitor.accounts import AccountError, authenticate, set_password
from monitor.store.accounts import UserRow
from monitor.store.db import session_scope
from monitor.web import audit
from monitor.web.auth import (
    SESSION_COOKIE,
    LoginRequired,
    PageUser,
    client_ip,
    end_session,
    host_of,
    live_session,
    login_refusal,
    secure_cookies,
    settings_of,
    start_session,
    verify_password,
)
from monitor.web.csrf import LOGIN_COOKIE, CheckedForm, new_login_token, read_form, same
from monitor.web.render import flash, renderer_of

log = structlog.get_logger(__name__)

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://...`."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _login_page(request: Request, next_url: str, error: str | None, status: int) -> Response:
    token = new_login_token()
    response = renderer_of(request).page(
        request, "login.html", None, status=status, next=next_url, error=error, login_token=token
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/login",
        max_age=3600,
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        host = host_of(request)
        with session_scope(host.engine) as session:
            if live_session(session, token, host.clock.now(), settings_of(request)):
                return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, safe_next(next), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    if not same(form.get("csrf_token"), request.cookies.get(LOGIN_COOKIE)):
        return _login_page(
            request, next_url, "The sign-in form had expired. Please try again.", 403
        )
    # argon2 and the database off the event loop: the daemon's scheduler shares it
    return await run_in_threadpool(
        _sign_in, request, form.get("username"), form.get("password"), next_url
    )


def _sign_in(request: Request, username: str, password: str, next_url: str) -> Response:
    """Three steps, so the slow argon2 check holds no database transaction or lock:
    read (limits, the user's hash), verify, then write (audit, session)."""
    host, web, ip = host_of(request), settings_of(request), client_ip(request)
    now = host.clock.now()
    name = username.strip().lower()[:64]
    with session_scope(host.engine) as session:
        refusal = login_refusal(session, name, ip, now, web)
        found = session.exec(select(UserRow).where(UserRow.username == name)).first()
        stored = (found.id, found.password_hash, found.disabled) if found else None
    if refusal is not None:
        with session_scope(host.engine) as session:
            audit.record(session, audit.Actor(name or "-", None, "web", ip), "login.refused", now)
        log.warning("login.rate_limited", ip=ip)
        return _login_page(request, next_url, refusal, 429)
    ok, new_hash = verify_password(stored[1] if stored else None, password)
    ok = ok and bool(name) and stored is not None and not stored[2]
    with session_scope(host.engine) as session:
        user = session.get(UserRow, stored[0]) if ok and stored else None
        if user is None or user.disabled or user.password_hash != (stored[1] if stored else None):
            audit.record(session, audit.Actor(name or "-", None, "web", ip), "login.failed", now)
            failed = True
        else:
            failed = False
            if new_hash is not None:
                user.password_hash = new_hash
                session.add(user)
            cookie = start_session(session, user, ip, now, web)
            audit.record(session, audit.Actor(user.username, user.role, "web", ip), "login", now)
    if failed:
        log.info("login.failed", ip=ip)
        return _login_page(request, next_url, "Wrong username or password.", 401)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="strict" if web.same_site == "strict" else "lax",
        secure=secure_cookies(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, principal: PageUser, form: CheckedForm) -> Response:
    host = host_of(request)
    now = host.clock.now()
    with session_scope(host.engine) as session:
        assert principal.session_id is not None
        end_session(session, principal.session_id, now)
        audit.record(session, principal.actor, "logout", now)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/account")
def account(request: Request, principal: PageUser) -> Response:
    return renderer_of(request).page(request, "account.html", principal)


@router.post("/account/password")
def change_password(request: Request, principal: PageUser, form: CheckedForm) -> Response:
    """Change one's own password; every session of the user ends, so sign in again."""
    host = host_of(request)
    now = host.clock.now()
    new, again = form.get("new_password"), form.get("new_password_again")
    with session_scope(host.engine) as session:
        ok = authenticate(session, principal.username, form.get("current_password")) is not None
        error = None
        if not ok:
            error = "The current password is not right."
        elif new != again:
            error = "The two new passwords differ."
        else:
            try:
                set_password(session, principal.username, new, now)
            except AccountError as exc:
                error = str(exc)
        if error is None:
            audit.record(session, principal.actor, "account.password", now)
    if error is not None:
        flash(request, principal, "error", error)
        return RedirectResponse("/account", status_code=303)
    raise LoginRequired("/")
