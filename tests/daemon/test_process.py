"""The daemon as a real process: a lab value recorded by the CLI reaches SMS and email
within seconds; killed with SIGKILL mid-burst and restarted, it delivers every alert.

These tests wait on a real subprocess, so they poll with a deadline; no assertion is
about how fast anything was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from monitor.routing import parse_routing
from monitor.schemas import LabIn, PatientIn
from monitor.services.intake import enroll, record_event
from monitor.settings import Settings, load_settings
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, DeliveryRow
from tests.daemon.conftest import SECRETS, config_text
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.helpers import ROOT

PROCESS_EXTRA = """
[daemon]
sweep_seconds = 1
dispatch_seconds = 0.2
escalation_seconds = 5
"""


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.config.parent),
            "MONITOR_LOG_FORMAT": "json",
            "MONITOR_LOG_LEVEL": "INFO",
            **SECRETS,
        }

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(self.config), "run", "--no-web"],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=out,
            )

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "monitor", "--config", str(self.config), *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


@pytest.fixture
def daemon_config(
    tmp_path: Path, fake_twilio: FakeTwilioAPI, smtp_server: FakeSMTPServer, tls_files: TLSFiles
) -> Path:
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    text = config_text(db, fake_twilio.url, smtp_server, tls_files, PROCESS_EXTRA)
    # The on-call step reaches a clinician by SMS and a nurse by email at once.
    text = text.replace('oncall = ["oncall"]', 'oncall = ["oncall", "nurse"]')
    text = text.replace("send_timeout_s = 2", "send_timeout_s = 5\nbatch = 4")
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    upgrade(make_engine(db))
    return path


@pytest.fixture
def daemon(daemon_config: Path) -> Iterator[Daemon]:
    d = Daemon(daemon_config, daemon_config.parent / "daemon.log")
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.kill(signal.SIGTERM)


def test_lab_add_reaches_sms_and_email_within_seconds(
    daemon: Daemon, fake_twilio: FakeTwilioAPI, smtp_server: FakeSMTPServer
) -> None:
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = daemon.cli(
        "enroll",
        "P-7",
        "--weight",
        "70",
        "--start",
        start,
        "--tpmt",
        "normal",
        "--baseline",
        "alt=20",
        "--baseline",
        "ast=20",
    )
    assert r.returncode == 0, r.stderr
    daemon.start()
    r = daemon.cli("lab", "add", "P-7", "alt=640", "ast=300")
    assert r.returncode == 0, r.stderr
    assert "stop.transaminase" in r.stdout
    wait_until(
        lambda: len(fake_twilio.messages) == 1 and len(smtp_server.messages) == 1,
        what="the SMS and the email",
    )
    assert "P-7" in fake_twilio.messages[0].body and "STOP" in fake_twilio.messages[0].body
    assert "stop.transaminase" in smtp_server.messages[0].message["Subject"]
    code = r.stdout.split("ALERT ")[1].split()[0]
    wait_until(
        lambda: (
            daemon.cli("alerts", "show", code, "--json").stdout.count('"outcome": "delivered"') == 2
        ),
        what="both deliveries in the alert log",
    )
    assert daemon.kill(signal.SIGTERM) == 0  # clean exit on SIGTERM


def enrol_with_stop_alerts(engine: Engine, settings: Settings, n: int, now: datetime) -> set[str]:
    """Enrol P-00..P-<n-1>, each with an ALT of 400 U/L: one stop alert each, written
    (with its deliveries) by the CLI's intake, for a daemon to send. The alert codes."""
    protocols, routing = settings.protocols(), parse_routing(settings.raw)
    for i in range(n):
        pid = f"P-{i:02d}"
        with session_scope(engine) as s:
            enroll(
                s,
                PatientIn.model_validate(
                    {
                        "id": pid,
                        "weight_kg": 70,
                        "start": (now - timedelta(days=1)).isoformat(),
                        "tpmt": "normal",
                        "baseline": {"alt": 20, "ast": 20},
                    }
                ),
                now,
                protocols,
                settings.default_protocol,
                routing,
            )
        lab = LabIn.model_validate({"kind": "lab", "at": now.isoformat(), "results": {"alt": 400}})
        with session_scope(engine) as s:
            record_event(s, pid, "lab", lab.at, lab.payload(), now, protocols, routing=routing)
    with session_scope(engine) as s:
        codes = {a.code for a in s.exec(select(AlertRow)) if a.rule.startswith("stop.")}
    assert len(codes) == n
    return codes


def test_sigkill_mid_burst_then_restart_delivers_every_alert(
    daemon: Daemon, daemon_config: Path, fake_twilio: FakeTwilioAPI
) -> None:
    settings = load_settings(daemon_config)
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    n = 12
    codes = enrol_with_stop_alerts(engine, settings, n, now)

    fake_twilio.post_delay_s = 0.3  # each send takes a while: the kill lands mid-send
    daemon.start()
    wait_until(lambda: len(fake_twilio.requests) >= 5, what="the burst to start")
    assert daemon.kill() == -signal.SIGKILL
    with session_scope(engine) as s:
        in_flight = len(s.exec(select(DeliveryRow).where(DeliveryRow.state == "sending")).all())
    assert in_flight >= 1  # the kill really landed in the middle of sends

    daemon.start()

    def all_settled() -> bool:
        with session_scope(engine) as s:
            rows = s.exec(select(DeliveryRow).where(DeliveryRow.purpose == "alert")).all()
            return bool(rows) and all(r.state == "delivered" for r in rows)

    wait_until(all_settled, timeout=60, what="every delivery to settle")
    sms_codes = Counter(code for m in fake_twilio.messages for code in codes if code in m.body)
    assert set(sms_codes) == codes  # every alert delivered by SMS
    duplicates = sum(c - 1 for c in sms_codes.values())
    assert duplicates <= in_flight  # at most the sends in flight at the kill
    engine.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_alt_over_mllp_to_the_running_daemon_reaches_the_notifiers(
    daemon: Daemon, daemon_config: Path, fake_twilio: FakeTwilioAPI
) -> None:
    import socket

    from monitor.sources.mllp import MLLPDecoder, frame
    from tests.ingest.test_ingest import hl7

    port = free_port()
    text = daemon_config.read_text()
    daemon_config.write_text(
        text + f'\n[sources.mllp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
    )
    start = datetime.now(UTC) - timedelta(days=2)
    r = daemon.cli(
        "enroll",
        "P-9",
        "--weight",
        "70",
        "--start",
        start.isoformat(),
        "--tpmt",
        "normal",
        "--baseline",
        "alt=20",
        "--baseline",
        "ast=20",
        "--identifier",
        "HOSP:4242",
    )
    assert r.returncode == 0, r.stderr
    daemon.start()
    message = hl7("LIVE1", "4242", datetime.now(UTC) - timedelta(hours=1), alt=560, ast=200)

    def send() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(frame(message))
            decoder = MLLPDecoder()
            while True:
                got = decoder.feed(sock.recv(4096))
                if got:
                    return got[0]

    acks: list[bytes] = []

    def listening() -> bool:
        try:
            acks.append(send())
            return True
        except OSError:
            return False

    wait_until(listening, what="the MLLP listener")
    assert b"MSA|AA|LIVE1" in acks[0]
    wait_until(lambda: any("P-9" in m.body for m in fake_twilio.messages), what="the SMS")
    sms = next(m for m in fake_twilio.messages if "P-9" in m.body)
    assert "ALT 560 U/L" in sms.body and "STOP azathioprine" in sms.body


def test_systemd_notify_ready_reload_and_stopping(daemon: Daemon, daemon_config: Path) -> None:
    """The daemon speaks the notify protocol to a real datagram socket."""
    import socket

    path = daemon_config.parent / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    env_extra = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
    original = daemon.env
    daemon.env = lambda: {**original(), **env_extra}  # type: ignore[method-assign]
    try:
        daemon.start()

        def receive_until(marker: str) -> str:
            seen = ""
            while marker not in seen:
                seen += sock.recv(4096).decode() + "\n"
            return seen

        ready = receive_until("READY=1")
        assert "UNAPPROVED" in ready and "azathioprine-seed" in ready
        assert "WATCHDOG=1" in receive_until("WATCHDOG=1")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in receive_until("RELOADING=1")
        assert "READY=1" in receive_until("READY=1")
        daemon.proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in receive_until("STOPPING=1")
        assert daemon.proc.wait(timeout=30) == 0
    finally:
        sock.close()
