"""A Service on a pinned clock, wired to a real fake Twilio API and a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.clock import ManualClock
from monitor.daemon import Service, load_config
from monitor.secrets import SecretSource
from monitor.store.db import make_engine, upgrade
from tests.fakes.fixtures import SMTP_PASSWORD, SMTP_USER, fake_twilio, smtp_server, tls_files
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioAPI
from tests.helpers import ROOT

__all__ = ["fake_twilio", "smtp_server", "tls_files"]

ONCALL_SMS = "+15558675310"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def config_text(
    db: str, twilio_url: str, smtp: FakeSMTPServer, tls: TLSFiles, extra: str = ""
) -> str:
    return f"""
[database]
url = "{db}"

[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"

[channels.sms]
kind = "twilio_sms"
account_sid = "{DEFAULT_ACCOUNT_SID}"
from_number = "+15005550006"
api_base_url = "{twilio_url}"
timeout_s = 0.5

[channels.email]
kind = "smtp_email"
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "{SMTP_USER}"
from_address = "lab-monitor@example.org"
ca_file = "{tls.cert}"
timeout_s = 2

[recipients.oncall]
label = "Dr On-Call"
contacts = [{{ channel = "sms", address = "{ONCALL_SMS}" }},
            {{ channel = "email", address = "oncall@example.org" }}]

[recipients.nurse]
label = "Nurse"
contacts = [{{ channel = "email", address = "nurse@example.org" }}]

[recipients.coord]
label = "Coordinator"
contacts = [{{ channel = "email", address = "coord@example.org" }}]

[groups]
oncall = ["oncall"]
care_team = ["nurse"]
coordinators = ["coord"]

[[routes]]
name = "critical"
severities = ["critical"]
escalation = ["oncall", "care_team", "coordinators"]

[[routes]]
name = "rest"
escalation = ["care_team", "coordinators"]

[escalation]
critical_ack_minutes = 15
warning_repeat_minutes = 240
delivery_failure_group = "coordinators"

[dispatch]
max_attempts = 5
retry_base_s = 5
retry_max_s = 60
send_timeout_s = 2

[web]
public_url = "https://monitor.example.org"
{extra}
"""


SECRETS = {"MONITOR_TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN, "MONITOR_SMTP_PASSWORD": SMTP_PASSWORD}


@dataclass
class Rig:
    service: Service
    clock: ManualClock
    twilio: FakeTwilioAPI
    smtp: FakeSMTPServer
    config_path: Path


@pytest.fixture
def rig(
    tmp_path: Path, fake_twilio: FakeTwilioAPI, smtp_server: FakeSMTPServer, tls_files: TLSFiles
) -> Iterator[Rig]:
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    path = tmp_path / "monitor.toml"
    path.write_text(config_text(db, fake_twilio.url, smtp_server, tls_files))
    secrets = SecretSource(env=SECRETS)
    config = load_config(str(path), secrets)
    engine = make_engine(db)
    upgrade(engine)
    clock = ManualClock(START)
    service = Service(config, clock=clock, config_path=str(path), secrets=secrets, engine=engine)
    yield Rig(service, clock, fake_twilio, smtp_server, path)
    engine.dispose()
