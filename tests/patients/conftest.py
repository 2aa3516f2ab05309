"""A database with one enrolled, consenting patient, the site's patient-SMS table,
and the real twilio notifier pointed at the local fake."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from monitor.config_schema import PatientSmsTable
from monitor.core.protocol import Protocol, load_protocols
from monitor.notifiers.twilio_sms import TwilioSmsNotifier
from monitor.routing import Routing, parse_routing
from monitor.schemas import PatientIn
from monitor.secrets import SecretSource
from monitor.services.intake import enroll
from monitor.services.patient_contact import give_consent
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.web.audit import Actor
from tests.fakes.fixtures import fake_twilio
from tests.fakes.twilio_api import DEFAULT_AUTH_TOKEN, FakeTwilioAPI
from tests.helpers import CONFIG, ROOT

__all__ = ["fake_twilio"]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
MOBILE = "+447700900123"
CLINIC = "the rheumatology clinic"
HELP = "+441632960000"
ACTOR = Actor(name="test", role=None, via="cli", ip=None)


@dataclass
class World:
    engine: Engine
    protocols: dict[str, Protocol]
    routing: Routing
    table: PatientSmsTable
    config_dir: Path
    sms: TwilioSmsNotifier
    api: FakeTwilioAPI


def enroll_patient(engine: Engine, protocols: dict[str, Protocol], routing: Routing,
                   pid: str = "P-001", mobile: str = MOBILE) -> None:  # fmt: skip
    data: dict[str, Any] = {
        "id": pid, "weight_kg": 70, "start": START, "tpmt": "normal",
        "baseline": {"alt": 22, "ast": 20}, "uln": {"alt": 33},
    }  # fmt: skip
    with session_scope(engine) as s:
        enroll(s, PatientIn.model_validate(data), START, protocols, "azathioprine-seed", routing)
        give_consent(s, ACTOR, pid, mobile, "en", "Nurse Jones", START)


@pytest.fixture
def world(tmp_path: Path, fake_twilio: FakeTwilioAPI) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    protocols = load_protocols(ROOT / "config" / "protocols")
    raw = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    routing = parse_routing(raw)
    table = PatientSmsTable(
        enabled=True, clinic=CLINIC, help_number=HELP, timezone="Europe/London",
        messages_dir=str(ROOT / "config" / "messages"), languages=["en", "fr"],
    )  # fmt: skip
    sms = TwilioSmsNotifier(
        {"account_sid": fake_twilio.account_sid, "from_number": "+15005550006",
         "api_base_url": fake_twilio.url, "timeout_s": 2},
        SecretSource(env={"MONITOR_TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN}),
    )  # fmt: skip
    enroll_patient(engine, protocols, routing)
    yield World(engine, protocols, routing, table, ROOT / "config", sms, fake_twilio)
    engine.dispose()
