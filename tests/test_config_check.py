"""check-config runs the service's own strict loader: each misconfiguration the operator
can make is refused with its key path named (and a likely fix), and the daemon refuses
the very same file at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config_check import ConfigInvalid, check
from monitor.daemon import load_config
from monitor.secrets import SecretSource
from tests.conftest import CliRunner
from tests.helpers import ROOT

SECRETS = {"MONITOR_TWILIO_AUTH_TOKEN": "token-xyz", "MONITOR_SMTP_PASSWORD": "pw-xyz"}

GOOD = f"""
[database]
url = "sqlite:///:memory:"

[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"

[channels.console]
kind = "console"

[channels.sms]
kind = "twilio_sms"
account_sid = "AC00000000000000000000000000000000"
from_number = "+15005550006"

[channels.email]
kind = "smtp_email"
host = "smtp.example.org"
security = "starttls"
username = "lab-monitor"
from_address = "lab-monitor@example.org"

[recipients.oncall]
label = "On-call"
contacts = [{{ channel = "sms", address = "+15558675310" }},
            {{ channel = "email", address = "oncall@example.org" }}]

[recipients.coord]
contacts = [{{ channel = "email", address = "coord@example.org" }}]

[groups]
oncall = ["oncall"]
coordinators = ["coord"]

[[routes]]
name = "critical"
severities = ["critical"]
escalation = ["oncall", "coordinators"]

[[routes]]
name = "rest"
escalation = ["coordinators"]

[escalation]
delivery_failure_group = "coordinators"

[quiet_hours]
start = "21:00"
end = "07:00"
timezone = "Europe/London"

[daemon]
sweep_seconds = 60

[web]
port = 8080
public_url = "https://monitor.example.org"
"""


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)

    def make(text: str) -> Path:
        path = tmp_path / "monitor.toml"
        path.write_text(text)
        return path

    return make


def run_check(cli_cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from monitor.cli import main

    capsys.readouterr()
    try:
        main(["--config", str(cli_cfg), "check-config"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


def test_the_good_config_passes(write: object, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_check(write(GOOD), capsys)  # type: ignore[operator]
    assert code == 0, text
    assert "Config OK." in text and "WARNING: route" not in text


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'kind = "console"',
            'kind = "consol"',
            ["channels.console.kind: unknown channel kind 'consol'", "did you mean 'console'"],
        ),
        (
            'severities = ["critical"]',
            'severities = ["critcal"]',
            ["routes[0].severities[0]: 'critcal' is not one of", "did you mean 'critical'"],
        ),
        (
            'escalation = ["coordinators"]',
            'escalation = ["coordinator"]',
            ["routes[1].escalation: no group 'coordinator'", "did you mean 'coordinators'"],
        ),
        (
            'timezone = "Europe/London"',
            'timezone = "Europe/Londn"',
            ["quiet_hours.timezone: unknown time zone 'Europe/Londn'", "'Europe/London'"],
        ),
        (
            "[channels.console]",
            "[chanels.console]",
            ["chanels: unknown table", "did you mean 'channels'"],
        ),
        (
            "sweep_seconds = 60",
            "sweep_second = 60",
            ["daemon.sweep_second: unknown key", "did you mean 'sweep_seconds'"],
        ),
        ("port = 8080", "prot = 8080", ["web.prot: unknown key", "did you mean 'port'"]),
        ("port = 8080", 'port = "http"', ["web.port: "]),
        (
            'from_number = "+15005550006"',
            'from_number = "+15005550006"\nfrom_numbr = "+1"',
            ["channels.sms: ", "'from_numbr'", "did you mean 'from_number'"],
        ),
        (
            '{ channel = "email", address = "coord@example.org" }',
            '{ channel = "emial", address = "coord@example.org" }',
            ["recipients.coord.contacts[0].channel: no channel 'emial'", "'email'"],
        ),
        (
            'coordinators = ["coord"]',
            'coordinators = ["cord"]',
            ["groups.coordinators: no recipient 'cord'", "did you mean 'coord'"],
        ),
    ],
)
def test_each_misconfiguration_is_refused_with_its_key(
    write: object,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    expected: list[str],
) -> None:
    assert old in GOOD
    path = write(GOOD.replace(old, new, 1))  # type: ignore[operator]
    code, text = run_check(path, capsys)
    assert code == 2, text
    for piece in expected:
        assert piece in text, text
    assert "Config OK." not in text
    # The service refuses the very same file at start.
    with pytest.raises(ConfigInvalid) as refused:
        load_config(str(path), SecretSource())
    assert expected[0].split(": ")[0] in str(refused.value)


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("MONITOR_TWILIO_AUTH_TOKEN", "channels.sms.auth_token_secret"),
        ("MONITOR_SMTP_PASSWORD", "channels.email.password_secret"),
    ],
)
def test_a_missing_secret_is_refused_naming_the_channel_and_both_places(
    write: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    key: str,
) -> None:
    monkeypatch.delenv(var)
    code, text = run_check(write(GOOD), capsys)  # type: ignore[operator]
    assert code == 2
    assert key in text and var in text and "CREDENTIALS_DIRECTORY" in text


def test_every_problem_is_reported_not_just_the_first(write: object) -> None:
    text = (
        GOOD.replace('kind = "console"', 'kind = "consol"')
        .replace("sweep_seconds = 60", "sweep_second = 60")
        .replace('timezone = "Europe/London"', 'timezone = "Europe/Londn"')
    )
    checked = check(write(text), SecretSource(env=SECRETS))  # type: ignore[operator]
    paths = {p.path for p in checked.problems}
    assert {"channels.console.kind", "daemon.sweep_second", "quiet_hours.timezone"} <= paths


def test_a_missing_config_file_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    from monitor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(tmp_path / "nope.toml"), "check-config"])
    assert exit_.value.code == 2


def test_the_shipped_demo_config_passes_with_a_console_only_warning(cli: CliRunner) -> None:
    r = cli("check-config")
    assert r.code == 0, r.err
    assert "Config OK." in r.out
    assert "console only" in r.out and "--console-only" in r.out
