"""Failover in seconds on real PostgreSQL: three daemons (real processes) share one
database; one is killed with SIGKILL mid-burst. Every alert reaches the local webhook
receiver, nothing twice except the sends the killed one held, and its claims are
taken over by a survivor well within 30 s (short leases here).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from monitor.settings import load_settings
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import DeliveryAttemptRow, DeliveryRow
from tests.conftest import PG
from tests.daemon.test_process import Daemon, enrol_with_stop_alerts, wait_until
from tests.fakes.webhook_receiver import FakeWebhookReceiver, _Handler
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG, reason="MONITOR_TEST_PG_URL not set (scripts/test sets it)"),
]
KEY = "failover-webhook-key"
N = 40


class _SlowHandler(_Handler):
    def do_POST(self) -> None:
        time.sleep(0.25)  # each send takes a while: the kill lands mid-send
        super().do_POST()


class SlowReceiver(FakeWebhookReceiver):
    handler_class = _SlowHandler


def config(db: str, url: str) -> str:
    return f"""
[database]
url = "{db}"

[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"

[channels.hook]
kind = "webhook"
url = "{url}/alerts"
timeout_s = 5
max_concurrency = 2

[recipients.oncall]
label = "On call"
contacts = [{{ channel = "hook", address = "oncall" }}]

[groups]
oncall = ["oncall"]

[[routes]]
name = "all"
escalation = ["oncall"]

[escalation]
critical_ack_minutes = 600
warning_repeat_minutes = 600
delivery_failure_group = "oncall"

[dispatch]
batch = 2
send_timeout_s = 5
retry_base_s = 1
retry_max_s = 2

[daemon]
sweep_seconds = 30
dispatch_seconds = 0.2
escalation_seconds = 30
instance_lease_seconds = 2
"""


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    r = SlowReceiver(KEY)
    r.start()
    yield r
    r.stop()


def test_three_daemons_one_killed_mid_burst_every_alert_delivered(
    pg_url: str, tmp_path: Path, receiver: SlowReceiver
) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text(config(pg_url, receiver.url))
    settings = load_settings(path)
    engine = make_engine(pg_url)
    upgrade(engine)
    now = datetime.now(UTC)
    codes = enrol_with_stop_alerts(engine, settings, N, now)

    daemons = [Daemon(path, tmp_path / f"daemon{i}.log") for i in range(3)]
    for d in daemons:
        d.env = lambda: {  # type: ignore[method-assign]
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "MONITOR_LOG_FORMAT": "json",
            "MONITOR_WEBHOOK_SECRET": KEY,
        }
    try:
        for d in daemons:
            d.start()

        def holders() -> Counter[str]:
            with session_scope(engine) as s:
                rows = s.exec(select(DeliveryRow).where(DeliveryRow.state == "sending")).all()
                return Counter((r.claimed_by or "").split(":")[1] for r in rows)

        def victim_busy() -> bool:
            held = holders()
            return len(receiver.requests) >= 6 and any(
                held.get(str(d.proc.pid), 0) >= 1 for d in daemons if d.proc
            )

        wait_until(victim_busy, timeout=60, what="the burst to be under way on a daemon")
        held = holders()
        victim = next(d for d in daemons if d.proc and held.get(str(d.proc.pid), 0) >= 1)
        assert victim.proc is not None
        victim_pid = str(victim.proc.pid)
        assert victim.kill() == -signal.SIGKILL
        killed_at = datetime.now(UTC)
        with session_scope(engine) as s:
            taken = [
                r.id
                for r in s.exec(select(DeliveryRow).where(DeliveryRow.state == "sending"))
                if (r.claimed_by or "").split(":")[1] == victim_pid
            ]
        assert taken  # the kill really left claims behind

        def all_delivered() -> bool:
            with session_scope(engine) as s:
                rows = s.exec(select(DeliveryRow)).all()
                return len(rows) >= N and all(r.state == "delivered" for r in rows)

        wait_until(all_delivered, timeout=60, what="every delivery to settle")
        got = Counter(r.json["alert_code"] for r in receiver.requests if r.signature_ok)
        assert set(got) == codes  # every alert delivered
        assert sum(c - 1 for c in got.values()) <= len(taken)  # twice only if held
        with session_scope(engine) as s:
            retaken = s.exec(
                select(DeliveryAttemptRow).where(
                    col(DeliveryAttemptRow.delivery_id).in_(taken),
                    col(DeliveryAttemptRow.started_at) >= killed_at - timedelta(seconds=1),
                )
            ).all()
        first = {}
        for a in retaken:
            if (a.worker or "").split(":")[1] != victim_pid:
                first[a.delivery_id] = min(first.get(a.delivery_id, a.started_at), a.started_at)
        assert set(first) == set(taken)
        assert max(t - killed_at for t in first.values()) < timedelta(seconds=30)
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.kill(signal.SIGTERM)
        engine.dispose()
