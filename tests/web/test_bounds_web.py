"""Bounds and trust on the HTTP side: body sizes, FHIR push tokens, Twilio's public URL,
login throttling that nobody can turn against somebody else.

Each test pins a defect of the old code: no body limit anywhere, FHIR push trusted
for a loopback-looking peer, Twilio signatures checked against the request's own
Host header, and five failures from anywhere locking an account.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message
from twilio.request_validator import RequestValidator

from monitor.settings import SettingsError
from monitor.web.app import create_app
from monitor.web.body_limit import BodyLimit
from monitor.web.host import WebSettings, web_settings
from tests.daemon.conftest import Rig, fake_twilio, rig, smtp_server, tls_files
from tests.web.conftest import PASSWORD, Console, login

__all__ = ["fake_twilio", "rig", "smtp_server", "tls_files"]


def test_a_declared_900_mb_body_is_refused_before_a_byte_is_read() -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append("app")

    async def receive() -> Message:
        raise AssertionError("the body was read")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/login",
        "headers": [(b"content-length", str(900 * 1024 * 1024).encode())],
    }
    asyncio.run(BodyLimit(app, lambda _p: 64 * 1024)(scope, receive, send))
    assert called == [] and sent[0]["status"] == 413


def test_login_and_console_forms_are_capped(console: Console) -> None:
    client = console.client()
    big = client.post("/login", data={"username": "cora", "password": "x" * 200_000})
    assert big.status_code == 413

    assert login(console.client(), "cora").status_code == 303  # normal forms still work


def test_twilio_bodies_are_capped(console: Console) -> None:
    response = console.client().post("/twilio/inbound", data={"Body": "A" * 100_000})
    assert response.status_code == 413


def test_twilio_signature_is_checked_against_the_public_url_only(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request signed for the URL its own Host header names is not enough."""
    monkeypatch.setenv("MONITOR_TWILIO_AUTH_TOKEN", "tok-123")
    form = {"From": "+15550001", "Body": "ACK ABCDEF"}
    url = "http://testserver/twilio/inbound"
    signature = RequestValidator("tok-123").compute_signature(url, form)
    response = console.client().post(
        "/twilio/inbound", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 503


def test_a_twilio_channel_needs_a_public_url() -> None:
    raw = {"channels": {"sms": {"kind": "twilio_sms"}}}
    with pytest.raises(SettingsError, match=r"web\.public_url"):
        web_settings(raw)
    assert web_settings({**raw, "web": {"public_url": "https://m.example.org"}})


def test_trusted_proxies_are_checked_addresses() -> None:
    assert web_settings({"web": {"trusted_proxies": ["10.0.0.5", "10.1.0.0/16"]}})
    with pytest.raises(SettingsError, match="trusted_proxies"):
        web_settings({"web": {"trusted_proxies": ["proxy.local"]}})
    assert WebSettings().trusted_proxies == ()


# --- FHIR push --------------------------------------------------------------------

OBSERVATION = b'{"resourceType": "Observation", "status": "final"}'


def test_fhir_push_without_a_token_is_refused_even_from_loopback(rig: Rig) -> None:
    for peer in ("127.0.0.1", "::1", "testclient"):
        client = TestClient(create_app(rig.service), client=(peer, 40000))
        response = client.post("/fhir", content=OBSERVATION)
        assert response.status_code == 401, peer
        assert "fhir_push_token" in response.json()["issue"][0]["diagnostics"]


def test_fhir_push_without_a_token_only_when_the_operator_says_so(rig: Rig) -> None:
    web = WebSettings(fhir_push_allow_without_token=True)
    client = TestClient(create_app(rig.service, web), client=("192.0.2.7", 40000))
    response = client.post("/fhir", content=OBSERVATION)
    assert response.status_code in (200, 400, 422)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_fhir_push_body_over_the_limit_is_a_413_operation_outcome(rig: Rig) -> None:
    web = WebSettings(fhir_push_allow_without_token=True, fhir_max_body_bytes=1000)
    client = TestClient(create_app(rig.service, web))
    response = client.post("/fhir/Bundle", content=b" " * 5000)
    assert response.status_code == 413
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "too-costly"


# --- login throttling ---------------------------------------------------------------


def _from(console: Console, ip: str) -> TestClient:
    return TestClient(console.app, follow_redirects=False, client=(ip, 40000))


def test_failures_from_another_address_do_not_lock_the_account(console: Console) -> None:
    attacker = _from(console, "192.0.2.66")
    for _ in range(5):
        assert login(attacker, "cora", "wrong password!").status_code == 401
    assert login(attacker, "cora", PASSWORD).status_code == 429  # this pair is throttled
    assert login(_from(console, "198.51.100.4"), "cora").status_code == 303  # cora is not


def test_an_account_attacked_from_many_addresses_is_slowed_not_locked(console: Console) -> None:
    assert login(_from(console, "198.51.100.4"), "cora").status_code == 303  # her usual desk
    for i in range(10):
        response = login(_from(console, f"192.0.2.{i + 1}"), "cora", "wrong password!")
        assert response.status_code == 401
    slowed = login(_from(console, "203.0.113.9"), "cora")
    assert slowed.status_code == 429 and "slowed down" in slowed.text
    assert login(_from(console, "198.51.100.4"), "cora").status_code == 303  # known address
    console.clock.advance(timedelta(seconds=2))  # 2 ** (10 - 10) = 1 s later
    assert login(_from(console, "203.0.113.9"), "cora").status_code == 303
