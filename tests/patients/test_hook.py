"""The real inbound hook (signature checked) on the daemon's Service: a patient's
"5" after a panel at 3.5x baseline ALT raises stop.transaminase_symptomatic; staff
ACK still works as before; an unregistered number is stored against no one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from twilio.request_validator import RequestValidator

from monitor.clock import ManualClock
from monitor.daemon import Service, load_config
from monitor.schemas import PatientIn
from monitor.secrets import SecretSource
from monitor.services.intake import enroll, record_event
from monitor.services.patient_contact import give_consent
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientMessageRow
from monitor.web.app import create_app
from tests.daemon.conftest import ONCALL_SMS, SECRETS, START, config_text
from tests.fakes.fixtures import smtp_server, tls_files
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import DEFAULT_AUTH_TOKEN, FakeTwilioAPI
from tests.helpers import ROOT
from tests.patients.conftest import ACTOR, MOBILE

__all__ = ["smtp_server", "tls_files"]

URL = "https://monitor.example.org/twilio/inbound"
EXTRA = f"""
[patient_sms]
enabled = true
channel = "sms"
messages_dir = "{ROOT / "config" / "messages"}"
clinic = "the clinic"
help_number = "+441632960000"
timezone = "Europe/London"
"""


@pytest.fixture
def service(
    tmp_path: Path, fake_twilio: FakeTwilioAPI, smtp_server: FakeSMTPServer, tls_files: TLSFiles
) -> Iterator[Service]:
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    path = tmp_path / "monitor.toml"
    path.write_text(config_text(db, fake_twilio.url, smtp_server, tls_files, extra=EXTRA))
    secrets = SecretSource(env=SECRETS)
    engine = make_engine(db)
    upgrade(engine)
    svc = Service(load_config(str(path), secrets), clock=ManualClock(START),
                  config_path=str(path), secrets=secrets, engine=engine)  # fmt: skip
    data = {"id": "P-001", "weight_kg": 70, "start": START, "tpmt": "normal",
            "baseline": {"alt": 22, "ast": 20}, "uln": {"alt": 33}}  # fmt: skip
    with session_scope(engine) as s:
        enroll(s, PatientIn.model_validate(data), START, svc.config.protocols,
               "azathioprine-seed", svc.config.routing)  # fmt: skip
        give_consent(s, ACTOR, "P-001", MOBILE, "en", "Nurse Jones", START)
    yield svc
    engine.dispose()


def post(client: TestClient, sender: str, body: str) -> str:
    form = {"From": sender, "Body": body}
    sig = RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(URL, form)
    r = client.post("/twilio/inbound", data=form, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 200, r.text
    return r.text


def rules(svc: Service) -> set[str]:
    with session_scope(svc.engine) as s:
        return {a.rule for a in s.exec(select(AlertRow))}


def test_a_symptom_reply_through_the_hook_raises_the_symptomatic_stop(service: Service) -> None:
    at = START + timedelta(days=9)
    assert isinstance(service.clock, ManualClock)
    service.clock.set(at)
    with session_scope(service.engine) as s:
        record_event(s, "P-001", "lab", at, {"results": {"alt": 77.0, "ast": 30.0}, "units": {}},
                     at, service.config.protocols, routing=service.config.routing)  # fmt: skip
    assert "stop.transaminase_symptomatic" not in rules(service)
    service.clock.set(at + timedelta(hours=2))
    client = TestClient(create_app(service))
    forged = client.post("/twilio/inbound", data={"From": MOBILE, "Body": "5"},
                         headers={"X-Twilio-Signature": "nope"})  # fmt: skip
    assert forged.status_code == 403 and "stop.transaminase_symptomatic" not in rules(service)
    answer = post(client, MOBILE, "5")
    assert "Thank you, the clinic has your reply." in answer
    assert "stop.transaminase_symptomatic" in rules(service)


def test_unregistered_numbers_and_staff_keep_their_old_answers(service: Service) -> None:
    client = TestClient(create_app(service))
    assert "not on the lab-monitor contact list" in post(client, "+447700900999", "5")
    assert "Reply ACK followed by the alert code" in post(client, ONCALL_SMS, "5")
    with session_scope(service.engine) as s:
        assert list(s.exec(select(PatientMessageRow))) == []


def test_help_gets_the_clinic_number(service: Service) -> None:
    client = TestClient(create_app(service))
    assert "+441632960000" in post(client, MOBILE, "help")
