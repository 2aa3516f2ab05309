"""Sessions and sign-in: cookie flags, expiry on an injected clock, rate limits, logout."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.accounts import set_disabled, set_password
from monitor.store.accounts import WebSessionRow
from monitor.store.db import session_scope
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.web.conftest import NOW, PASSWORD, Console, csrf_of, login, signed_in


def test_session_cookie_is_httponly_samesite_and_secure_behind_tls(console: Console) -> None:
    response = login(console.client(), "cora")
    cookie = response.headers["set-cookie"]
    assert "lm_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1

    tls = TestClient(console.app, base_url="https://console.example", follow_redirects=False)
    assert "Secure" in login(tls, "cora").headers["set-cookie"]

    strict = create_app(console.host, WebSettings(secure_cookies=True, same_site="strict"))
    cookie = login(TestClient(strict, follow_redirects=False), "cora").headers["set-cookie"]
    assert "Secure" in cookie and "SameSite=strict" in cookie


def test_the_database_keeps_no_usable_session_token(console: Console) -> None:
    response = login(console.client(), "cora")
    token = response.cookies["lm_session"]
    with session_scope(console.engine) as s:
        ids = [r.id for r in s.exec(select(WebSessionRow))]
    assert ids and token not in ids and all(len(i) == 64 for i in ids)


def test_session_ends_after_idle_time(console: Console) -> None:
    client = signed_in(console, "cora")
    console.clock.advance(timedelta(minutes=29))
    assert client.get("/alerts").status_code == 200
    console.clock.advance(timedelta(minutes=29))  # 29 idle minutes again: still fine
    assert client.get("/alerts").status_code == 200
    console.clock.advance(timedelta(minutes=31))
    response = client.get("/alerts")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    console.clock.advance(-timedelta(minutes=31))  # an ended session stays ended
    assert client.get("/alerts").status_code == 303


def test_session_ends_at_its_absolute_limit_however_busy(console: Console) -> None:
    client = signed_in(console, "cora")
    for _ in range(12 * 3 - 1):  # a request every 20 minutes for almost 12 hours
        console.clock.advance(timedelta(minutes=20))
        assert client.get("/alerts").status_code == 200
    console.clock.advance(timedelta(minutes=20))
    assert client.get("/alerts").status_code == 303


def test_failed_logins_are_rate_limited_per_username(console: Console) -> None:
    client = console.client()
    for _ in range(5):
        assert login(client, "cora", "wrong password!").status_code == 401
    locked = login(client, "cora", PASSWORD)
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.text
    assert login(console.client(), "clint").status_code == 303  # others are not locked out
    console.clock.advance(timedelta(minutes=16))
    assert login(client, "cora").status_code == 303


def test_failed_logins_are_rate_limited_per_address(console: Console) -> None:
    client = console.client()
    for i in range(20):
        assert login(client, f"nobody{i}", "wrong password!").status_code == 401
    assert login(client, "ada").status_code == 429
    console.clock.advance(timedelta(minutes=16))
    assert login(client, "ada").status_code == 303


def test_unknown_user_and_wrong_password_look_the_same(console: Console) -> None:
    unknown = login(console.client(), "nobody", "wrong password!")
    wrong = login(console.client(), "cora", "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong username or password." in unknown.text
    assert "Wrong username or password." in wrong.text


def test_logout_ends_the_session(console: Console) -> None:
    client = signed_in(console, "cora")
    page = client.get("/alerts")
    stolen = client.cookies["lm_session"]
    response = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    replay = console.client()
    replay.cookies.set("lm_session", stolen)
    assert replay.get("/alerts").status_code == 303


def test_disabling_a_user_or_changing_the_password_ends_their_sessions(
    console: Console,
) -> None:
    cora, clint = signed_in(console, "cora"), signed_in(console, "clint")
    with session_scope(console.engine) as s:
        set_disabled(s, "cora", True, NOW)
        set_password(s, "clint", "another good password", NOW)
    assert cora.get("/alerts").status_code == 303
    assert clint.get("/alerts").status_code == 303
    assert login(console.client(), "cora").status_code == 401
    assert login(console.client(), "clint", "another good password").status_code == 303


def test_users_change_their_own_password(console: Console) -> None:
    client = signed_in(console, "cora")
    token = csrf_of(client.get("/account").text)
    short = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "short",
            "new_password_again": "short",
        },
    )
    assert short.headers["location"] == "/account"
    assert "at least 10 characters" in client.get("/account").text
    done = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "a much better one",
            "new_password_again": "a much better one",
        },
    )
    assert done.headers["location"].startswith("/login")
    assert login(console.client(), "cora", "a much better one").status_code == 303
