"""A console over a throw-away SQLite file, seeded through the real services.

Patients are enrolled and their events recorded with `intake`, and the real
dispatcher (console channel) sends the first notifications, so alerts carry real
deliveries and attempts. The clock is a ManualClock shared by the services and
the web app, so session expiry and rate limits are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from monitor.accounts import add_user, create_token
from monitor.clock import ManualClock
from monitor.notifiers.console import ConsoleNotifier
from monitor.schemas import LabIn, PatientIn
from monitor.services.dispatch import Dispatcher
from monitor.services.intake import enroll, record_event
from monitor.settings import load_settings
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.web.app import create_app
from monitor.web.host import Host, StandaloneHost
from tests.helpers import CONFIG

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=10)
PASSWORD = "correct horse battery"
USERS = {"cora": "coordinator", "clint": "clinician", "ada": "admin"}
SECRET_NAME = "Alice Nameless-Example"


@dataclass
class Console:
    engine: Engine
    clock: ManualClock
    host: StandaloneHost
    app: FastAPI
    token: str  # an API token of the coordinator

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)


def _lab(pid: str, at: datetime, **results: float) -> tuple[str, str, datetime, dict[str, Any]]:
    model = LabIn.model_validate({"kind": "lab", "at": at.isoformat(), "results": results})
    return pid, "lab", at, model.payload()


def seed(engine: Engine, host: Host) -> None:
    """Three patients: a stop line crossed (critical), a warning, and a quiet course."""
    protocols, routing = host.config.protocols, host.config.routing
    patients = [
        {"id": "P-100", "name": SECRET_NAME},
        {"id": "P-200"},
        {"id": "P-300"},
    ]
    for p in patients:
        model = PatientIn.model_validate(
            {
                "weight_kg": 70,
                "start": T0.isoformat(),
                "tpmt": "normal",
                "baseline": {"alt": 22, "ast": 20, "alp": 70, "bilirubin": 8},
                "prior_toxic_dose_mg": 150,
                **p,
            }
        )
        with session_scope(engine) as s:
            enroll(s, model, T0, protocols, "azathioprine-seed", routing)
    events = [
        _lab("P-100", T0 + timedelta(days=3), alt=40, ast=35, alp=80, bilirubin=9),
        _lab("P-100", T0 + timedelta(days=7), alt=150, ast=90, alp=95, bilirubin=12),
        _lab("P-200", T0 + timedelta(days=4), alt=45, ast=30, alp=70, bilirubin=8),
        _lab("P-300", T0 + timedelta(days=6), alt=20, ast=18, alp=60, bilirubin=7),
    ]
    for pid, kind, at, payload in events:
        with session_scope(engine) as s:
            record_event(s, pid, kind, at, payload, at, protocols, source="test", routing=routing)
    with session_scope(engine) as s:
        record_event(
            s,
            "P-300",
            "dose",
            T0 + timedelta(days=8),
            {"dose_mg": 75.0},
            T0 + timedelta(days=8),
            protocols,
            source="test",
            recorded_by="seed",
            routing=routing,
        )


async def send_all(engine: Engine, host: Host) -> None:
    """What the daemon's dispatcher does next: send the pending deliveries (console)."""
    routing = host.config.routing
    await Dispatcher(engine, routing, {"console": ConsoleNotifier()}, host.clock).run_once()


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    engine = make_engine(url)
    upgrade(engine)
    clock = ManualClock(NOW)
    host = StandaloneHost.from_settings(load_settings(CONFIG), clock=clock, engine=engine)
    seed(engine, host)
    asyncio.run(send_all(engine, host))
    with session_scope(engine) as s:
        for name, role in USERS.items():
            add_user(s, name, role, PASSWORD, NOW)
        token = create_token(s, "cora", "tests", NOW).secret
    yield Console(engine, clock, host, create_app(host), token)
    engine.dispose()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    assert page.status_code == 200
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
    )


def signed_in(console: Console, username: str) -> TestClient:
    client = console.client()
    response = login(client, username)
    assert response.status_code == 303, response.text
    return client


def post_form(client: TestClient, page_url: str, action: str, data: dict[str, Any]) -> Any:
    """Post a form the way a browser does: with the CSRF token of the page it is on."""
    token = csrf_of(client.get(page_url).text)
    return client.post(action, data={**data, "csrf_token": token})
