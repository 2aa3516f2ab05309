"""The audit log is append-only and read by `monitor audit`; `monitor users` manages
accounts; `monitor web` serves the console alone; no display name reaches a log."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy import text
from sqlmodel import select

from monitor.store.accounts import AppendOnlyError, AuditRow
from monitor.store.db import session_scope
from tests.conftest import CliRunner
from tests.helpers import CONFIG, ROOT
from tests.web.conftest import SECRET_NAME, Console, post_form, signed_in


def test_audit_rows_cannot_be_changed_or_deleted(console: Console) -> None:
    signed_in(console, "cora").get("/patients/P-100")
    with session_scope(console.engine) as s:
        row = s.exec(select(AuditRow).where(AuditRow.action == "patient.view")).one()
        row.actor = "someone else"
        s.add(row)
        with pytest.raises(AppendOnlyError):
            s.flush()
        s.rollback()
    with session_scope(console.engine) as s:
        row = s.exec(select(AuditRow).where(AuditRow.action == "patient.view")).one()
        s.delete(row)
        with pytest.raises(AppendOnlyError):
            s.flush()
        s.rollback()
    with console.engine.connect() as conn:  # and for SQL by hand: database triggers
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                conn.execute(text(statement))
            conn.rollback()


def test_no_display_name_in_logs_or_audit(console: Console) -> None:
    saved = structlog.get_config()
    structlog.reset_defaults()  # every level: a CLI test may have filtered below WARNING
    try:
        with structlog.testing.capture_logs() as logs:
            clint = signed_in(console, "clint")
            clint.get("/patients/P-100")
            post_form(clint, "/patients/P-100", "/patients/P-100/symptoms", {"symptom": "nausea"})
            api = console.client()
            api.get("/api/patients/P-100", headers={"Authorization": f"Bearer {console.token}"})
    finally:
        structlog.configure(**saved)
    assert any(e["event"] == "event.recorded" for e in logs)
    assert SECRET_NAME not in repr(logs)
    with session_scope(console.engine) as s:
        assert SECRET_NAME not in repr(s.exec(select(AuditRow)).all())


def test_users_commands(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    added = cli("users", "add", "Nina", "--role", "clinician", "--password-stdin")
    assert added.code == 0 and "Added nina (clinician)." in added.out
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    short = cli("users", "add", "omar", "--role", "admin", "--password-stdin")
    assert short.code == 2 and short.err.strip() == "error: password: at least 10 characters"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    bad_role = cli("users", "add", "omar", "--role", "nurse", "--password-stdin")
    assert bad_role.code == 2 and "role: 'nurse' is not one of" in bad_role.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("another long one\n"))
    assert cli("users", "passwd", "nina", "--password-stdin").code == 0
    assert cli("users", "role", "nina", "admin").code == 0
    token = cli("users", "token", "nina", "--name", "ward dashboard")
    assert token.code == 0 and token.out.strip().startswith("lmk_")
    assert "not shown again" in token.err
    listed = cli("users", "tokens").out
    assert "nina" in listed and token.out.strip() not in listed
    assert cli("users", "revoke-token", "1").code == 0
    assert "REVOKED" in cli("users", "tokens").out
    assert cli("users", "disable", "nina").code == 0
    users = json.loads(cli("users", "list", "--json").out)
    assert [(u["username"], u["role"], u["disabled"]) for u in users] == [("nina", "admin", True)]
    assert cli("users", "disable", "nobody").err.strip() == "error: user: no user 'nobody'"


def test_audit_command_reads_the_log(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    cli("users", "add", "nina", "--role", "admin", "--password-stdin")
    cli("users", "disable", "nina")
    rows = [json.loads(line) for line in cli("audit", "--json").out.splitlines()]
    assert [r["action"] for r in rows] == ["user.disable", "user.add"]  # newest first
    assert rows[0]["via"] == "cli" and rows[0]["actor"].startswith("os:")
    assert cli("audit", "--user", "nobody").out == ""
    assert cli("audit", "--patient", "P-1", "--json").out == ""
    assert "user.add" in cli("audit").out
    assert cli("audit", "--since", "yesterday").code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_monitor_web_serves_the_console_alone(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(CONFIG), "web", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    output = proc.stderr.read() if proc.stderr else "no output"
                    raise AssertionError(output) from None
                time.sleep(0.1)
        assert health.json()["scheduler_running"] is False
        assert httpx.get(f"{base}/login").status_code == 200
        assert httpx.get(f"{base}/alerts").headers["location"].startswith("/login")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "No users yet" in err and f"Console at http://127.0.0.1:{port}/" in err
