"""The console served by the daemon itself: `create_app(service)` on a running scheduler."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from monitor.accounts import add_user
from monitor.clock import ManualClock
from monitor.daemon import Service, load_config
from monitor.secrets import SecretSource
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.web.app import create_app
from tests.helpers import CONFIG
from tests.web.conftest import NOW, PASSWORD, seed


async def test_daemon_serves_the_console_and_a_web_dose_wakes_its_dispatcher(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'daemon.db'}")
    upgrade(engine)
    service = Service(
        load_config(str(CONFIG), SecretSource(env={})), clock=ManualClock(NOW), engine=engine
    )
    seed(engine, service)
    await service.dispatch()
    with session_scope(engine) as s:
        add_user(s, "clint", "clinician", PASSWORD, NOW)
    scheduler = service.start_scheduler(3600, 3600, 3600)
    scheduler.remove_job("sweep")  # only the dispatcher runs here: woken by the web dose
    scheduler.remove_job("escalate")
    woken: list[bool] = []
    real_wake = service.wake_dispatcher

    def wake() -> None:
        woken.append(True)
        real_wake()

    service.wake_dispatcher = wake  # type: ignore[method-assign]
    try:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            page = await c.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            signed = await c.post(
                "/login",
                data={"username": "clint", "password": PASSWORD, "csrf_token": token.group(1)},
            )
            assert signed.status_code == 303
            health = await c.get("/health")
            assert '<span class="badge ok">running</span>' in health.text
            patient = await c.get("/patients/P-300")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', patient.text)
            assert csrf
            done = await c.post(
                "/patients/P-300/dose", data={"dose_mg": "100", "csrf_token": csrf.group(1)}
            )
            assert done.status_code == 303
            assert "Recorded dose event" in (await c.get("/patients/P-300")).text
            assert (await c.get("/healthz")).json()["scheduler_running"] is True
        assert woken == [True]
    finally:
        assert service.scheduler is not None
        service.scheduler.shutdown(wait=False)
        engine.dispose()
