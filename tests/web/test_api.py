"""The JSON API answers what the pages show, behind bearer tokens, with its OpenAPI schema."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.accounts import create_token, revoke_token, set_disabled
from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.web.chart import fmt
from tests.web.conftest import NOW, SECRET_NAME, Console, signed_in


def api(console: Console, token: str | None = None) -> TestClient:
    client = console.client()
    client.headers["Authorization"] = f"Bearer {token or console.token}"
    return client


def test_openapi_schema_describes_the_api_and_its_bearer_auth(console: Console) -> None:
    schema = console.client().get("/api/openapi.json").json()
    assert set(schema["paths"]) == {
        "/alerts",
        "/alerts/{code}",
        "/patients",
        "/patients/{patient_id}",
        "/health",
    }
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "AlertDetailOut" in schema["components"]["schemas"]
    assert "display_name" not in str(schema)


FILTERS: list[dict[str, Any]] = [
    {},
    {"state": "open"},
    {"severity": "warning"},
    {"patient": "P-300"},
    {"rule": "stop.transaminase"},
    {"from": (NOW - timedelta(days=3)).date().isoformat()},
]


def test_alert_log_api_answers_what_the_page_shows(console: Console) -> None:
    page_client, api_client = signed_in(console, "cora"), api(console)
    for params in FILTERS:
        html = page_client.get("/alerts", params=params).text
        body = api_client.get("/api/alerts", params=params).json()
        assert [a["code"] for a in body["items"]] == re.findall(r'data-code="(\w+)"', html)
        for state, n in body["counts"].items():
            assert f'data-state="{state}">{state} <strong>{n}</strong>' in html
    assert api_client.get("/api/alerts", params={"state": "closed"}).status_code == 400


def test_alert_api_answers_what_the_alert_page_shows(console: Console) -> None:
    page_client, api_client = signed_in(console, "cora"), api(console)
    codes = [a["code"] for a in api_client.get("/api/alerts").json()["items"]]
    for code in codes:
        body = api_client.get(f"/api/alerts/{code}").json()
        html = page_client.get(f"/alerts/{code}").text
        assert f'id="alert-state">{body["state"]}' in html
        for d in body["deliveries"]:
            for t in d["attempts"]:
                assert t["provider_id"] in html
        for name, limit in body["details"].get("thresholds", {}).items():
            cell = re.search(rf'data-key="{name}">([^<]*)</td>', html)
            assert cell and fmt(limit) in cell.group(1), (name, limit)  # in words, same value
    assert api_client.get("/api/alerts/NOSUCH").status_code == 404


def test_patient_api_answers_what_the_pages_show(console: Console) -> None:
    page_client, api_client = signed_in(console, "cora"), api(console)
    summaries = api_client.get("/api/patients").json()
    html = page_client.get("/patients").text
    assert [p["id"] for p in summaries] == re.findall(r'data-patient="([\w-]+)"', html)
    for p in summaries:
        detail = api_client.get(f"/api/patients/{p['id']}").json()
        page = page_client.get(f"/patients/{p['id']}").text
        svg = {
            round(float(m), 3)
            for m in re.findall(
                r'class="stop-line [^"]*" data-analytes="[^"]*" '
                r'data-multiple="([\d.]+)"',
                page,
            )
        }
        assert {round(s["multiple_of_uln"], 3) for s in detail["stop_lines"]} == svg
        event_cells = (
            r'<tr class="event kind-\w+">.*?</td><td data-label="What">\w+</td><td>([^<]*)'
        )
        assert [e["summary"] for e in detail["events"]] == [
            m.strip() for m in re.findall(event_cells, page)
        ]
        assert [a["code"] for a in detail["alerts"]] == re.findall(
            r'<a class="code" href="/alerts/(\w+)">', page.split("<h2>Alerts</h2>")[1]
        )
        assert SECRET_NAME not in str(detail)
    assert api_client.get("/api/patients/NOPE").status_code == 404


def test_api_reads_are_audited_as_the_token_user(console: Console) -> None:
    api(console).get("/api/patients/P-100")
    with session_scope(console.engine) as s:
        row = s.exec(select(AuditRow).where(AuditRow.action == "patient.view")).one()
    assert (row.actor, row.role, row.via, row.patient_id) == ("cora", "coordinator", "api", "P-100")


def test_revoked_tokens_and_disabled_users_are_refused(console: Console) -> None:
    with session_scope(console.engine) as s:
        extra = create_token(s, "clint", "integration", NOW)
    assert api(console, extra.secret).get("/api/health").status_code == 200
    with session_scope(console.engine) as s:
        revoke_token(s, extra.row.id or 0, NOW)
    assert api(console, extra.secret).get("/api/health").status_code == 401
    with session_scope(console.engine) as s:
        set_disabled(s, "cora", True, NOW)
    assert api(console).get("/api/health").status_code == 401
