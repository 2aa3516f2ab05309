"""`monitor doctor` against the real local fakes: aiosmtpd with STARTTLS and AUTH on
loopback, and the fake Twilio API driven by the real twilio library."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from tests.daemon.conftest import SECRETS, config_text
from tests.fakes.fixtures import SMTP_PASSWORD
from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles
from tests.fakes.twilio_api import DEFAULT_AUTH_TOKEN, FakeTwilioAPI


def doctor(
    tmp_path: Path,
    twilio: FakeTwilioAPI,
    smtp: FakeSMTPServer,
    tls: TLSFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    **secrets: str,
) -> tuple[int, str]:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    path = tmp_path / "monitor.toml"
    text = config_text(db, twilio.url, smtp, tls).replace("[web]\n", "[web]\nenabled = false\n")
    path.write_text(text)
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    for name, value in {**SECRETS, **secrets}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    try:
        main(["--config", str(path), "doctor"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


def test_doctor_passes_with_the_right_credentials(
    tmp_path: Path,
    fake_twilio: FakeTwilioAPI,
    smtp_server: FakeSMTPServer,
    tls_files: TLSFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out = doctor(tmp_path, fake_twilio, smtp_server, tls_files, capsys, monkeypatch)
    assert "OK   channel email: SMTP 127.0.0.1" in out and "accepts the login" in out, out
    assert "OK   channel sms: Twilio account" in out and "is active" in out, out
    assert "UNAPPROVED" in out  # the seed profile: a warning, not a failure
    assert code == 0, out
    assert fake_twilio.messages == [] and smtp_server.messages == []  # nothing was sent


def test_doctor_reports_a_wrong_smtp_password_and_a_wrong_twilio_token(
    tmp_path: Path,
    fake_twilio: FakeTwilioAPI,
    smtp_server: FakeSMTPServer,
    tls_files: TLSFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out = doctor(
        tmp_path,
        fake_twilio,
        smtp_server,
        tls_files,
        capsys,
        monkeypatch,
        MONITOR_SMTP_PASSWORD=SMTP_PASSWORD + "-wrong",
        MONITOR_TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN[::-1],
    )
    assert code == 2, out
    assert "FAIL channel email" in out and "refused the login of 'alerts'" in out, out
    assert "smtp_password" in out
    assert "FAIL channel sms" in out and "twilio_auth_token" in out, out
    assert "Traceback" not in out


def test_doctor_says_the_config_is_wrong_before_trying_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[protocols]\ndefault = "x"\n[chanels.console]\nkind = "console"\n')
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(path), "doctor"])
    out = capsys.readouterr()
    assert exc.value.code == 2
    assert "FAIL config" in out.out and "chanels" in out.out


def test_run_refuses_to_start_when_a_channel_server_refuses_its_credentials(
    tmp_path: Path,
    fake_twilio: FakeTwilioAPI,
    smtp_server: FakeSMTPServer,
    tls_files: TLSFiles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    text = config_text(db, fake_twilio.url, smtp_server, tls_files)
    text = text.replace("[web]\n", "[daemon]\ncheck_channels_at_start = true\n\n[web]\n")
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MONITOR_SMTP_PASSWORD", "not-the-password")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(path), "run", "--no-web"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "channel email" in lines[0] and "smtp_password" in lines[0], err
    assert fake_twilio.messages == [] and smtp_server.messages == []
