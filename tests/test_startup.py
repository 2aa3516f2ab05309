"""What `monitor run` refuses before it starts, each in one line with exit status 2: a
config that pages nobody for a critical alert, a busy or malformed port, a database
that cannot be opened, a missing config file. The production example passes
check-config with its secrets present and is refused without them."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config_check import check, unreachable_critical
from monitor.secrets import SecretSource
from monitor.startup import StartupError, require_a_person
from tests.helpers import CONFIG, ROOT
from tests.test_config_check import GOOD, SECRETS

PRODUCTION = ROOT / "config" / "production.example.toml"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))

    def go(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return go


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def good_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Path:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "monitor.toml"
    db = f"sqlite:///{tmp_path / 'm.db'}"
    path.write_text(GOOD.replace('url = "sqlite:///:memory:"', f'url = "{db}"') + extra)
    return path


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_production_example_passes_with_its_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    code, out, err = run("--config", str(PRODUCTION), "check-config")
    assert code == 0, err
    assert "Config OK." in out and "Channels: email, log, sms" in out
    assert "console only" not in out  # it pages people
    checked = check(PRODUCTION, SecretSource(env=SECRETS))
    assert checked.routing is not None and unreachable_critical(checked.routing) is None


def test_production_example_is_refused_without_its_secrets(
    monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    for key in SECRETS:
        monkeypatch.delenv(key, raising=False)
    code, _, err = run("--config", str(PRODUCTION), "check-config")
    assert code == 2
    assert "channels.sms.auth_token_secret" in err and "MONITOR_TWILIO_AUTH_TOKEN" in err
    assert "channels.email.password_secret" in err and "MONITOR_SMTP_PASSWORD" in err


def test_production_example_passes_with_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "twilio_auth_token").write_text("token\n")
    (creds / "smtp_password").write_text("pw\n")
    checked = check(PRODUCTION, SecretSource(env={}, credentials_dir=creds))
    assert checked.ok, checked.problems


def test_run_refuses_a_console_only_config_outside_demo(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copytree(CONFIG.parent, tmp_path / "config")
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'd.db'}")
    code, _, err = run("--config", str(tmp_path / "config" / "monitor.toml"), "run")
    assert code == 2
    line = one_line_error(err)
    assert "route 'critical' sends critical alerts to the console only" in line
    assert "--console-only" in line and "console_only = true" in line


def test_console_only_is_accepted_when_said_so(tmp_path: Path) -> None:
    checked = check(CONFIG, SecretSource(env={}))
    assert checked.routing is not None
    with pytest.raises(StartupError):
        require_a_person(checked.routing, console_only=False)
    require_a_person(checked.routing, console_only=True)
    text = CONFIG.read_text().replace("[daemon]\n", "[daemon]\nconsole_only = true\n")
    shutil.copytree(CONFIG.parent, tmp_path / "config")
    (tmp_path / "config" / "monitor.toml").write_text(text)
    again = check(tmp_path / "config" / "monitor.toml", SecretSource(env={}))
    assert again.ok and again.settings is not None
    assert again.settings.raw["daemon"]["console_only"] is True


def test_a_busy_web_port_is_one_line(
    run: Run, busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    code, _, err = run("--config", str(path), "run", "--port", str(busy_port))
    assert code == 2
    line = one_line_error(err)
    assert f"web: cannot listen on 127.0.0.1:{busy_port}" in line
    assert "in use" in line


def test_a_busy_mllp_port_is_one_line(
    run: Run, busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = '\n[sources.mllp]\nenabled = true\nhost = "127.0.0.1"\nport = 1\n'
    path = good_config(tmp_path, monkeypatch, extra)
    code, _, err = run("--config", str(path), "run", "--no-web", "--mllp-port", str(busy_port))
    assert code == 2
    line = one_line_error(err)
    assert f"sources.mllp: cannot listen on 127.0.0.1:{busy_port}" in line


def test_the_config_port_is_used_without_the_option(
    run: Run, busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    path.write_text(path.read_text().replace("port = 8080", f"port = {busy_port}"))
    code, _, err = run("--config", str(path), "run")
    assert code == 2 and f"127.0.0.1:{busy_port}" in one_line_error(err)


@pytest.mark.parametrize("bad", ["http", "70000", "-1"])
def test_a_malformed_port_option_is_one_line(
    run: Run, bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    code, _, err = run("--config", str(path), "run", "--port", bad)
    assert code == 2
    assert "--port" in one_line_error(err)


def test_a_malformed_port_in_the_config_is_one_line(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    path.write_text(path.read_text().replace("port = 8080", 'port = "80a"'))
    code, _, err = run("--config", str(path), "run")
    assert code == 2
    assert "web.port" in one_line_error(err)


def test_an_unopenable_database_is_one_line(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'afile' / 'x.db'}")
    code, _, err = run("--config", str(path), "run")
    assert code == 2
    line = one_line_error(err)
    assert "database" in line and "afile" in line
    code, _, err = run("--config", str(path), "alerts", "list")
    assert code == 2
    assert "database" in one_line_error(err)


def test_a_database_file_that_is_not_sqlite_is_one_line(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_config(tmp_path, monkeypatch)
    (tmp_path / "x.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    code, _, err = run("--config", str(path), "run")
    assert code == 2
    assert "not a database" in one_line_error(err)


def test_a_missing_config_file_is_one_line_for_run(run: Run, tmp_path: Path) -> None:
    code, _, err = run("--config", str(tmp_path / "missing.toml"), "run")
    assert code == 2
    assert "missing.toml: no such config file" in one_line_error(err)


def test_enrolled_count_is_counted_by_the_database(tmp_path: Path) -> None:
    """The start-up status line's number, without loading every patient's id."""
    from datetime import UTC, datetime

    from monitor.startup import enrolled_count
    from monitor.store.db import make_engine, session_scope, upgrade
    from monitor.store.models import PatientRow

    engine = make_engine(f"sqlite:///{tmp_path / 'count.db'}")
    upgrade(engine)
    assert enrolled_count(engine) == 0
    at = datetime(2026, 1, 5, tzinfo=UTC)
    with session_scope(engine) as s:
        for i in range(3):
            s.add(
                PatientRow(
                    id=f"C{i}",
                    weight_kg=70,
                    start=at,
                    start_dose_mg=50,
                    protocol_id="azathioprine-seed",
                    enrolled_at=at,
                )
            )
    assert enrolled_count(engine) == 3
    engine.dispose()


def test_the_production_example_routes_repeated_non_attendance_to_the_consultant() -> None:
    import tomllib

    from monitor.routing import parse_routing

    raw = tomllib.loads(PRODUCTION.read_text())
    routing = parse_routing(raw)
    for rule in ("lab.repeated_non_attendance", "patient.unclear_reply"):
        route = routing.route_for(rule, "warning")
        assert route is not None and route.chain[0] == "oncall_backup", rule
    assert routing.recipients["oncall_backup"].label == "Second on-call (consultant)"
    assert raw["patient_sms"]["teams"]["ibd"]["clinic"] == "the IBD clinic"
