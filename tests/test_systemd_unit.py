"""The shipped systemd unit keeps the directives the daemon and operators rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "lab-monitor.service"
SECRETS = ("twilio_auth_token", "smtp_password", "webhook_secret")

Directives = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Directives:
    """section -> key -> every value in order (systemd keys may repeat, unlike INI)."""
    sections: Directives = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):  # continuation: systemd joins with a space
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> Directives:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def service_value(unit: Directives, key: str) -> str:
    """The effective (last) value of a [Service] key; fails if absent."""
    values = unit["Service"].get(key)
    assert values, f"[Service] {key}= is missing"
    return values[-1]


def test_parser_keeps_repeated_keys_and_skips_comments() -> None:
    parsed = parse_unit("# c\n[Service]\n; c\nA=1\nA=2\nB=x \\\n  y\n")
    assert parsed == {"Service": {"A": ["1", "2"], "B": ["x y"]}}


def test_type_notify_with_watchdog_and_restart(unit: Directives) -> None:
    assert service_value(unit, "Type") == "notify"
    assert service_value(unit, "NotifyAccess") == "main"
    assert int(service_value(unit, "WatchdogSec")) > 0
    assert service_value(unit, "Restart") == "on-failure"
    assert service_value(unit, "RestartSec") == "5"
    assert service_value(unit, "TimeoutStopSec") == "60"


def test_runs_the_monitor_with_the_etc_config(unit: Directives) -> None:
    assert service_value(unit, "ExecStart") == (
        "/opt/lab-monitor/.venv/bin/monitor --config /etc/lab-monitor/monitor.toml run"
    )
    assert service_value(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_each_secret_is_a_credential(unit: Directives) -> None:
    credentials = dict(v.split(":", 1) for v in unit["Service"].get("LoadCredential", []))
    for name in SECRETS:
        assert credentials.get(name) == f"/etc/lab-monitor/credentials/{name}"


def test_unprivileged_user_with_state_and_config_directories(unit: Directives) -> None:
    service = unit["Service"]
    assert service.get("DynamicUser", ["no"])[-1] == "yes" or service.get("User")
    assert service_value(unit, "StateDirectory") == "lab-monitor"
    assert service_value(unit, "ConfigurationDirectory") == "lab-monitor"
    assert service_value(unit, "UMask") == "0077"
    assert "MONITOR_LOG_FORMAT=json" in service.get("Environment", [])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ],
)
def test_hardening(unit: Directives, key: str, value: str) -> None:
    assert service_value(unit, key) == value


def test_system_call_filter(unit: Directives) -> None:
    filters = unit["Service"].get("SystemCallFilter", [])
    assert "@system-service" in filters
    assert "~@privileged @resources" in filters


def test_installs_into_multi_user(unit: Directives) -> None:
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed")
    return path


def verify(unit_file: Path) -> tuple[int, str]:
    """`systemd-analyze verify`; it reports bad keys on stderr but still exits 0."""
    proc = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def verifiable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart=/bin/true: verify insists the binary exists."""
    lines = [
        "ExecStart=/bin/true" if line.startswith("ExecStart=") else line
        for line in text.splitlines()
    ]
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    code, output = verify(verifiable_copy(tmp_path, UNIT.read_text(encoding="utf-8")))
    complaints = [line for line in output.splitlines() if UNIT.name in line]
    assert code == 0, output
    assert complaints == []


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """Guards the test above: a misspelt directive must show up in its filter."""
    text = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=", "ProtectSytem=")
    _, output = verify(verifiable_copy(tmp_path, text))
    assert any(UNIT.name in line and "ProtectSytem" in line for line in output.splitlines())
