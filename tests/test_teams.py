"""Care teams: a patient's alerts follow its team's routes (rota steps frozen to who is
on call), the global routes are the fallback, a change of team is audited, and
check-config names a team or rota that points at nothing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from monitor.clock import ManualClock
from monitor.config_check import check
from monitor.routing import parse_routing
from monitor.services.escalation import escalate_due
from monitor.settings import load_settings
from monitor.store.db import make_engine, session_scope
from monitor.store.models import AlertRow, DeliveryRow
from tests.conftest import CliRunner
from tests.helpers import CONFIG, ROOT

# A Tuesday in the rota's second week: dr_baker's (the rota starts Monday 2026-01-05).
NOW = datetime(2026, 1, 13, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    c = ManualClock(NOW)
    monkeypatch.setattr("monitor.cli.SystemClock", lambda: c)
    return c


def _engine():  # type: ignore[no-untyped-def]
    return make_engine(os.environ["MONITOR_DATABASE_URL"])


def _enrol(cli: CliRunner, pid: str, *extra: str) -> None:
    start = (NOW - timedelta(days=3)).isoformat()
    r = cli("enroll", pid, "--weight", "62", "--baseline", "alt=22", "--baseline", "ast=20",
            "--tpmt", "normal", "--start", start, *extra)  # fmt: skip
    assert r.code == 0, r.err


def _stop(cli: CliRunner, pid: str) -> AlertRow:
    at = (NOW - timedelta(hours=1)).isoformat()
    r = cli("lab", "add", pid, "alt=900", "ast=30", "--at", at)
    assert r.code == 0, r.err
    with session_scope(_engine()) as s:
        critical = s.exec(
            select(AlertRow).where(AlertRow.patient_id == pid, AlertRow.severity == "critical")
        ).all()
        [lead] = [a for a in critical if a.chain]  # the group's lead holds the chain
        return lead


def _recipients(group_id: str) -> list[tuple[str, int]]:
    with session_scope(_engine()) as s:
        rows = s.exec(select(DeliveryRow).where(DeliveryRow.group_id == group_id)).all()
        return sorted((d.recipient, d.step) for d in rows)


def test_a_teams_critical_alert_pages_its_rota_then_climbs_its_chain(
    cli: CliRunner, clock: ManualClock
) -> None:
    _enrol(cli, "P-R", "--team", "rheumatology")
    lead = _stop(cli, "P-R")
    assert lead.care_team == "rheumatology" and lead.route == "rheumatology/critical"
    # The rota step is frozen to whoever was on call at raise time.
    assert lead.chain == ["rota:rheum_oncall:dr_baker", "team:rheumatology", "coordinators"]
    assert _recipients(lead.group_id) == [("dr_baker", 0)]
    # A week later dr_adams holds the rota, but this alert escalates along its own chain.
    routing = parse_routing(load_settings(CONFIG).raw)
    with session_scope(_engine()) as s:
        assert escalate_due(s, routing, NOW + timedelta(minutes=16)) == 1
    assert _recipients(lead.group_id) == [("dr_baker", 0), ("rheum_nurse", 1)]


def test_other_team_and_no_team_fall_back_where_the_team_has_no_route(
    cli: CliRunner, clock: ManualClock
) -> None:
    _enrol(cli, "P-I", "--team", "ibd")
    _enrol(cli, "P-N")
    ibd = _stop(cli, "P-I")
    assert ibd.route == "ibd/critical"
    assert _recipients(ibd.group_id) == [("ibd_consultant", 0)]
    none = _stop(cli, "P-N")
    assert none.care_team is None and none.route == "critical"
    assert _recipients(none.group_id) == [("oncall", 0)]
    # The IBD team has no warning route: its warnings take the global one.
    routing = parse_routing(load_settings(CONFIG).raw)
    route = routing.route_for("lab.overdue", "warning", "ibd")
    assert route is not None and route.name == "warnings"
    assert not routing.team_route("lab.overdue", "warning", "ibd")
    assert routing.team_route("stop.bilirubin", "critical", "ibd")


def test_an_unknown_team_is_refused_at_enrolment(cli: CliRunner, clock: ManualClock) -> None:
    r = cli(
        "enroll", "P-X", "--weight", "62", "--baseline", "alt=22", "--baseline", "ast=20",
        "--team", "derm",
    )  # fmt: skip
    assert r.code == 2 and "care_team: unknown team 'derm'" in r.err


def test_changing_a_patients_team_is_audited_and_new_alerts_follow_it(
    cli: CliRunner, clock: ManualClock
) -> None:
    _enrol(cli, "P-M", "--team", "rheumatology")
    r = cli("patient", "team", "P-M", "ibd", "--by", "Dr C")
    assert r.code == 0, r.err
    assert "rheumatology -> ibd" in r.out
    rows = [json.loads(line) for line in cli("audit", "--json").out.splitlines()]
    change = next(row for row in rows if row["action"] == "patient.care_team")
    assert change["patient"] == "P-M"
    assert change["detail"]["team"] == "ibd" and change["detail"]["before"] == "rheumatology"
    assert change["detail"]["claimed_by"] == "Dr C"
    assert _stop(cli, "P-M").route == "ibd/critical"
    assert cli("patient", "team", "P-M", "derm").code == 2


def test_oncall_shows_now_and_next(cli: CliRunner, clock: ManualClock) -> None:
    r = cli("oncall", "--json")
    [row] = json.loads(r.out)
    assert (row["now_id"], row["next_id"]) == ("dr_baker", "dr_adams")
    assert row["until"] == "2026-01-19T09:00+00:00"
    clock.set(datetime(2026, 1, 19, 9, 0, tzinfo=UTC))
    [row] = json.loads(cli("oncall", "--json").out)
    assert row["now_id"] == "dr_adams"


def test_the_demo_starts_calm(cli: CliRunner, clock: ManualClock) -> None:
    """Back-dated example history must not become an escalation storm at start."""
    r = cli("demo")
    assert r.code == 0, r.err
    routing = parse_routing(load_settings(CONFIG).raw)
    engine = _engine()
    with session_scope(engine) as s:
        due = s.exec(
            select(DeliveryRow).where(
                DeliveryRow.state == "pending", col(DeliveryRow.next_attempt_at) <= NOW
            )
        ).all()
        open_groups = {a.group_id for a in s.exec(select(AlertRow).where(AlertRow.state == "open"))}
    patients = len(list((ROOT / "examples").glob("*.json")))
    assert 0 < len(due) <= patients  # at most one notification per example patient
    assert all(d.group_id in open_groups for d in due)
    with session_scope(engine) as s:
        escalated = escalate_due(s, routing, NOW + timedelta(minutes=1))
    assert escalated == 0
    # Escalation resumes on its normal clock, from now.
    with session_scope(engine) as s:
        assert 0 < escalate_due(s, routing, NOW + timedelta(minutes=16)) <= 5


def _config(tmp_path: Path, extra: str) -> Path:
    text = CONFIG.read_text().replace('dir = "protocols"', f'dir = "{CONFIG.parent / "protocols"}"')
    path = tmp_path / "monitor.toml"
    path.write_text(text + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[teams.ibd.routes]]\nseverities = ["info"]\nescalation = ["derm_oncall"]\n',
            "teams.ibd.routes[1].escalation: no group 'derm_oncall'",
        ),
        (
            '[rotas.derm]\nmembers = ["dr_nobody"]\nstart = 2026-01-05\n',
            "rotas.derm.members: no recipient 'dr_nobody'",
        ),
        (
            '[teams.derm]\nmembers = ["derm_nurse"]\n',
            "teams.derm.members: no recipient 'derm_nurse'",
        ),
        (
            '[rotas.derm]\nmembers = ["dr_adams"]\nstart = 2026-01-05\nhandover = "monthly"\n',
            "rotas.derm.handover",
        ),
    ],
)
def test_check_config_names_the_key_of_a_bad_team_or_rota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, expected: str
) -> None:
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    problems = [str(p) for p in check(_config(tmp_path, extra)).problems]
    assert any(expected in p for p in problems), problems


def test_the_demo_config_with_teams_and_a_rota_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    assert check(_config(tmp_path, "")).problems == []


def test_users_teams_limits_an_account_and_is_audited(cli: CliRunner, clock: ManualClock) -> None:
    from monitor.accounts import add_user

    assert cli("db", "upgrade").code == 0
    with session_scope(_engine()) as s:
        add_user(s, "cora", "coordinator", "correct horse battery", NOW)
        add_user(s, "ada", "admin", "correct horse battery", NOW)
    r = cli("users", "teams", "cora", "rheumatology")
    assert r.code == 0 and "cora: rheumatology." in r.out, r.err
    rows = [json.loads(line) for line in cli("audit", "--json").out.splitlines()]
    change = next(row for row in rows if row["action"] == "user.teams")
    assert change["detail"]["teams"] == ["rheumatology"]
    bad = cli("users", "teams", "cora", "derm")
    assert bad.code == 2 and "unknown team 'derm'" in bad.err
    admin = cli("users", "teams", "ada", "ibd")
    assert admin.code == 2 and "an admin sees every team" in admin.err
    assert "every team" in cli("users", "teams", "cora").out
