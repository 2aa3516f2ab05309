"""Packaging pieces that need no build: config lookup order, `monitor init`,
`--version`, the version in /healthz, and the container files' structure."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from monitor import paths
from monitor.cli import app
from monitor.settings import load_settings
from tests.helpers import ROOT


@pytest.fixture
def no_site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $MONITOR_CONFIG and an /etc path that does not exist."""
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    etc = tmp_path / "etc" / "monitor.toml"
    monkeypatch.setattr(paths, "ETC_CONFIG", etc)
    return etc


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((ROOT / "config" / "monitor.toml").read_text())
    return path


def test_lookup_order(no_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = paths.find_config()
    assert demo.source == "the packaged demo default"
    assert demo.path == paths.shipped_config_dir() / "monitor.toml"
    assert demo.path.is_file()

    _write(no_site)
    assert paths.find_config() == paths.ConfigChoice(no_site, str(no_site))

    env = _write(tmp_path / "env" / "monitor.toml")
    monkeypatch.setenv("MONITOR_CONFIG", str(env))
    assert paths.find_config() == paths.ConfigChoice(env, "$MONITOR_CONFIG")

    flag = tmp_path / "flag.toml"
    assert paths.find_config(flag) == paths.ConfigChoice(flag, "--config")


def test_settings_say_where_they_came_from(no_site: Path) -> None:
    assert load_settings().source == "the packaged demo default"
    _write(no_site)
    settings = load_settings()
    assert settings.path == no_site
    assert settings.source == str(no_site)


def test_check_config_names_the_source(no_site: Path) -> None:
    r = CliRunner().invoke(app, ["check-config"])
    assert r.exit_code == 0, r.output
    assert "found by the packaged demo default" in r.output


def test_init_writes_an_editable_copy(no_site: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = CliRunner().invoke(app, ["init", str(site)])
    assert r.exit_code == 0, r.output
    shipped = sorted(p.relative_to(ROOT / "config") for p in (ROOT / "config").rglob("*.toml"))
    written = sorted(p.relative_to(site) for p in site.rglob("*.toml"))
    assert written == shipped
    assert Path("protocols/azathioprine-seed.toml") in written
    if (ROOT / "config" / "production.example.toml").exists():
        assert (site / "production.example.toml").is_file()
    checked = CliRunner().invoke(app, ["--config", str(site / "monitor.toml"), "check-config"])
    assert checked.exit_code == 0, checked.output

    (site / "monitor.toml").write_text("# the site's own edits\n")
    again = CliRunner().invoke(app, ["init", str(site)])
    assert again.exit_code != 0
    assert "use --force" in again.output + str(again.exception)
    assert (site / "monitor.toml").read_text() == "# the site's own edits\n"


def test_version_shows_package_and_profiles(no_site: Path) -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert r.output.splitlines()[0] == f"lab-monitor {version}"
    for profile in (ROOT / "config" / "protocols").glob("*.toml"):
        meta = tomllib.loads(profile.read_text())
        proto = meta.get("profile", meta)
        assert f"profile {proto['id']} {proto['version']}" in r.output


def test_package_version_is_the_distributions() -> None:
    # /healthz's "version" is checked over HTTP in test_packaging_wheel.py
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", paths.package_version())


# --- container files -----------------------------------------------------------------


def test_compose_runs_two_instances_on_postgres() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert "pgdata" in compose["volumes"]
    assert compose["secrets"]["pg_password"]["file"] == "./secrets/pg_password"
    monitors = [s for name, s in services.items() if name.startswith("monitor-")]
    assert len(monitors) == 2
    for svc in [*monitors, services["migrate"]]:
        env = svc["environment"]
        assert env["MONITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert ":" not in env["MONITOR_DATABASE_URL"].split("//")[1].split("@")[0]  # no pw
        assert env["PG_PASSWORD_FILE"] == "/run/secrets/pg_password"
        assert "pg_password" in svc["secrets"]
        assert svc["read_only"] is True
        assert "./config:/etc/lab-monitor:ro" in svc["volumes"]
        assert env["MONITOR_CONFIG"] == "/etc/lab-monitor/monitor.toml"
    for svc in monitors:
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_dockerfile_uses_the_shared_smoke_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text.split("FROM ")[-1]
    assert final.startswith("python:3.11-slim")
    assert re.search(r"^USER lab-monitor$", final, re.M)
    assert "container-smoke install /opt/lab-monitor" in final
    assert 'container-smoke", "health"' in final
    assert 'container-smoke", "serve"' in final
    health = "/readyz" if "readyz" in (ROOT / "monitor" / "web" / "app.py").read_text() else ""
    smoke = (ROOT / "scripts" / "container-smoke").read_text()
    assert (health or "/healthz") in smoke
    assert "--require-hashes" in smoke


# --- the lock ------------------------------------------------------------------------


def _pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text().splitlines()
    text = "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    pins: dict[str, str] = {}
    for block in blocks:
        head = block.split()[0]
        assert "==" in head, f"{name}: {head} is not pinned"
        assert "--hash=sha256:" in block, f"{name}: {head} has no hash"
        pkg, version = head.split("==")
        pins[re.sub(r"[-_.]+", "-", pkg.lower())] = version
    return pins


def test_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ]", r)[0].lower()) for r in reqs}

    service, test = _pins("requirements.txt"), _pins("requirements-test.txt")
    extras = project["optional-dependencies"]
    assert names(project["dependencies"] + extras["postgres"]) <= service.keys()
    assert names(project["dependencies"] + extras["test"]) <= test.keys()
    assert {"setuptools", "wheel"} <= service.keys()  # the build backend, for bootstrap
    for pkg, version in service.items():
        assert test.get(pkg, version) == version, f"{pkg}: the two locks disagree"
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--require-hashes -r" in bootstrap
    assert "--no-deps" in bootstrap
