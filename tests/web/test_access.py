"""Who may reach what: every route is classified, and the classification is enforced.

A route added without a place in ROUTES fails `test_every_route_is_classified`, so
nobody adds a page without deciding who may use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlmodel import func, select

from monitor.store.db import session_scope
from monitor.store.models import EventRow
from tests.web.conftest import Console, csrf_of, login, signed_in

# (method, path) -> who: "public", "signed-in", or the least role needed.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("POST", "/twilio/inbound"): "public",  # Twilio's signature instead
    ("POST", "/twilio/status/{delivery_id}"): "public",  # Twilio's signature instead
    ("POST", "/logout"): "signed-in",
    ("GET", "/account"): "signed-in",
    ("POST", "/account/password"): "signed-in",
    ("GET", "/"): "coordinator",  # the triage desk
    ("GET", "/triage/rows"): "coordinator",
    ("POST", "/triage/act"): "coordinator",
    ("GET", "/alerts"): "coordinator",
    ("GET", "/alerts.csv"): "coordinator",
    ("GET", "/alerts/{code}"): "coordinator",
    ("POST", "/alerts/{code}/acknowledge"): "coordinator",
    ("POST", "/alerts/{code}/resolve"): "coordinator",
    ("POST", "/alerts/{code}/note"): "coordinator",
    ("GET", "/patients"): "coordinator",
    ("GET", "/patients/{patient_id}"): "coordinator",
    ("POST", "/patients/{patient_id}/dose"): "clinician",
    ("POST", "/patients/{patient_id}/stop"): "clinician",
    ("POST", "/patients/{patient_id}/symptoms"): "clinician",
    ("POST", "/patients/{patient_id}/team"): "clinician",
    ("GET", "/patients/{patient_id}/messages"): "coordinator",
    ("POST", "/patients/{patient_id}/messages/pause"): "coordinator",
    ("GET", "/quarantine"): "coordinator",
    ("POST", "/quarantine/{row_id}/retry"): "coordinator",
    ("POST", "/quarantine/{row_id}/discard"): "clinician",
    ("GET", "/health"): "coordinator",
    ("GET", "/users"): "admin",
    ("POST", "/users"): "admin",
    ("POST", "/users/{username}/{change}"): "admin",
    ("GET", "/audit"): "admin",
}
API_ROUTES = ["/alerts", "/alerts/{code}", "/patients", "/patients/{patient_id}", "/health"]
SAMPLE = {
    "code": "ZZZZZZ",
    "patient_id": "P-100",
    "row_id": "1",
    "delivery_id": "1",
    "username": "cora",
    "change": "disable",
}
RANK = {"coordinator": 0, "clinician": 1, "admin": 2}
USER_OF = {"coordinator": "cora", "clinician": "clint", "admin": "ada"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every endpoint, through included routers (not mounts)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield from ((m, prefix + r.path) for m in r.methods)
        included = getattr(r, "original_router", None)
        if included is not None:
            yield from walk(included.routes, prefix + r.include_context.prefix)


def app_routes(console: Console) -> set[tuple[str, str]]:
    return set(walk(console.app.routes))


def test_every_route_is_classified(console: Console) -> None:
    assert app_routes(console) == set(ROUTES)


def test_logged_out_users_reach_only_the_login_page(console: Console) -> None:
    client = console.client()
    for (method, path), who in ROUTES.items():
        if who == "public":
            continue
        response = client.request(method, concrete(path))
        assert response.status_code == 303, (method, path)
        assert response.headers["location"].startswith("/login?next="), (method, path)
    assert client.get("/login").status_code == 200
    assert client.get("/").headers["location"].startswith("/login?next=")


def test_logged_out_api_answers_401(console: Console) -> None:
    client = console.client()
    for path in API_ROUTES:
        url = "/api" + concrete(path)
        assert client.get(url).status_code == 401, url
        bad = client.get(url, headers={"Authorization": "Bearer lmk_not-a-token"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == "Bearer"
    # a session cookie is no API credential
    signed = signed_in(console, "ada")
    assert signed.get("/api/patients").status_code == 401


@pytest.mark.parametrize("role", ["coordinator", "clinician", "admin"])
def test_roles_are_enforced_on_every_route(console: Console, role: str) -> None:
    client = signed_in(console, USER_OF[role])
    token = csrf_of(client.get("/account").text)
    for (method, path), needed in ROUTES.items():
        if needed not in RANK:
            continue
        url = concrete(path)
        data = {"csrf_token": token} if method == "POST" else None
        response = client.request(method, url, data=data)
        if RANK[role] < RANK[needed]:
            assert response.status_code == 403, (role, method, path)
            assert "needs the" in response.text
        else:
            assert response.status_code != 403, (role, method, path, response.text[:200])


def _events(console: Console) -> int:
    with session_scope(console.engine) as s:
        return int(s.exec(select(func.count()).select_from(EventRow)).one())


def test_a_coordinator_cannot_record_a_dose_a_stop_or_symptoms(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/patients/P-300")
    assert 'id="form-dose"' not in page.text  # no forms shown...
    token = csrf_of(page.text)
    before = _events(console)
    for action, data in [
        ("dose", {"dose_mg": "100"}),
        ("stop", {"reason": "trying"}),
        ("symptoms", {"symptom": "nausea"}),
    ]:
        response = client.post(f"/patients/P-300/{action}", data={**data, "csrf_token": token})
        assert response.status_code == 403  # ...and posting anyway is refused
    assert _events(console) == before


def test_csrf_token_is_required_on_every_form(console: Console) -> None:
    client = signed_in(console, "ada")
    before = _events(console)
    for (method, path), who in ROUTES.items():
        if method != "POST" or who == "public":
            continue
        url = concrete(path)
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(url, data={**data, "dose_mg": "100", "reason": "x"})
            assert response.status_code == 403, (path, data)
            assert "Form expired" in response.text
    assert _events(console) == before
    assert client.get("/alerts").status_code == 200  # still signed in: nothing changed


def test_login_form_needs_its_own_token(console: Console) -> None:
    client = console.client()
    client.get("/login")
    response = client.post("/login", data={"username": "cora", "password": "x" * 12})
    assert response.status_code == 403
    assert "lm_session" not in response.cookies


def test_open_redirect_after_login_is_refused(console: Console) -> None:
    client = console.client()
    page = client.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text
    response = client.post(
        "/login",
        data={
            "username": "cora",
            "password": "correct horse battery",
            "csrf_token": csrf_of(page.text),
            "next": "https://evil.example/",
        },
    )
    assert response.headers["location"] == "/"  # the triage desk


def test_security_headers_and_no_caching(console: Console) -> None:
    client = signed_in(console, "cora")
    response = client.get("/patients/P-100")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert login(console.client(), "cora", "wrong password!").status_code == 401
