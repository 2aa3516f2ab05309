"""Roles per team on the console and the API: a coordinator limited to a team sees only
that team's patients and alerts; another team's patient or alert is a 404. A
clinician's change of team on the patient page is audited; the health page shows
who is on call."""

from __future__ import annotations

from sqlmodel import select

from monitor.accounts import set_teams
from monitor.services.intake import set_care_team
from monitor.store.accounts import AuditRow
from monitor.store.db import session_scope
from monitor.store.models import AlertRow
from tests.web.conftest import Console, console, post_form, signed_in

__all__ = ["console"]  # the fixture, used by name


def _limit(c: Console) -> tuple[str, str]:
    """P-100 -> rheumatology, P-200 -> ibd, P-300 none; cora sees rheumatology only.
    Returns an alert code of each of P-100 and P-200."""
    routing = c.host.config.routing
    with session_scope(c.engine) as s:
        set_care_team(s, "P-100", "rheumatology", routing)
        set_care_team(s, "P-200", "ibd", routing)
        set_teams(s, "cora", ["rheumatology"], set(routing.teams))
        codes = {a.patient_id: a.code for a in s.exec(select(AlertRow))}
    return codes["P-100"], codes["P-200"]


def test_a_limited_coordinator_sees_only_their_teams_pages(console: Console) -> None:
    mine, theirs = _limit(console)
    client = signed_in(console, "cora")
    patients = client.get("/patients").text
    assert "P-100" in patients and "P-200" not in patients and "P-300" not in patients
    assert client.get("/patients/P-100").status_code == 200
    assert client.get("/patients/P-200").status_code == 404
    assert client.get("/patients/P-300").status_code == 404
    log = client.get("/alerts").text
    assert mine in log and theirs not in log
    assert client.get(f"/alerts/{mine}").status_code == 200
    assert client.get(f"/alerts/{theirs}").status_code == 404
    assert client.get(f"/alerts/{theirs.lower()}").status_code == 404
    csv = client.get("/alerts.csv").text
    assert mine in csv and theirs not in csv
    # Acting on another team's alert is refused the same way, and changes nothing.
    page = f"/alerts/{mine}"
    assert post_form(client, page, f"/alerts/{theirs}/acknowledge", {}).status_code == 404
    with session_scope(console.engine) as s:
        assert s.exec(select(AlertRow).where(AlertRow.code == theirs)).one().state == "open"
    # An unlimited coordinator (admin here) still sees every team.
    admin = signed_in(console, "ada")
    assert "P-200" in admin.get("/patients").text
    assert admin.get(f"/alerts/{theirs}").status_code == 200


def test_a_limited_coordinators_token_sees_only_their_teams_in_the_api(console: Console) -> None:
    mine, theirs = _limit(console)
    api = console.client()
    api.headers["Authorization"] = f"Bearer {console.token}"  # cora's token
    assert [p["id"] for p in api.get("/api/patients").json()] == ["P-100"]
    assert api.get("/api/patients/P-100").status_code == 200
    assert api.get("/api/patients/P-200").status_code == 404
    codes = [a["code"] for a in api.get("/api/alerts").json()["items"]]
    assert mine in codes and theirs not in codes
    assert api.get(f"/api/alerts/{theirs}").status_code == 404
    assert api.get(f"/api/alerts/{mine}").status_code == 200


def test_a_clinician_moves_a_patient_to_another_team_and_it_is_audited(console: Console) -> None:
    client = signed_in(console, "clint")
    page = client.get("/patients/P-300")
    assert "none (global routes)" in page.text and 'id="form-team"' in page.text
    r = post_form(client, "/patients/P-300", "/patients/P-300/team", {"team": "ibd"})
    assert r.status_code == 303
    assert "IBD service" in client.get("/patients/P-300").text
    with session_scope(console.engine) as s:
        row = s.exec(select(AuditRow).where(AuditRow.action == "patient.care_team")).one()
        assert (row.actor, row.patient_id) == ("clint", "P-300")
        assert row.detail["team"] == "ibd" and row.detail.get("before") is None
    bad = post_form(client, "/patients/P-300", "/patients/P-300/team", {"team": "derm"})
    assert bad.status_code == 303
    # A coordinator may not change teams.
    cora = signed_in(console, "cora")
    assert (
        post_form(cora, "/patients/P-300", "/patients/P-300/team", {"team": ""}).status_code == 403
    )


def test_the_health_page_shows_who_is_on_call(console: Console) -> None:
    page = signed_in(console, "cora").get("/health").text
    assert 'id="oncall"' in page and "Rheumatology on call" in page
    # NOW (2026-03-12) is in shift 9 (the tenth week) of the two-person rota: Dr Baker.
    assert "Dr Baker (rheumatology)" in page


def test_the_alert_page_names_the_rota_member_frozen_into_the_chain(console: Console) -> None:
    routing = console.host.config.routing
    with session_scope(console.engine) as s:
        lead = next(a for a in s.exec(select(AlertRow)) if a.chain and a.severity == "critical")
        lead.chain = ["rota:rheum_oncall:dr_adams", "team:rheumatology", "coordinators"]
        s.add(lead)
        code = lead.code
    assert routing.step_label("recipient:ibd_consultant") == "IBD consultant"
    page = signed_in(console, "cora").get(f"/alerts/{code}").text
    assert "Rheumatology on call: Dr Adams (rheumatology)" in page
    assert "<li" in page and "Rheumatology" in page


def test_the_patient_list_and_alert_log_filter_by_team(console: Console) -> None:
    """`team=` narrows to one team, within what the account may see (a limited
    coordinator asking for another team gets nothing, not that team)."""
    mine, theirs = _limit(console)
    admin = signed_in(console, "ada")
    ibd = admin.get("/patients?team=ibd").text
    assert "P-200" in ibd and "P-100" not in ibd and "P-300" not in ibd
    assert 'option value="ibd" selected' in ibd
    log = admin.get("/alerts?team=rheumatology").text
    assert mine in log and theirs not in log
    csv = admin.get("/alerts.csv?team=ibd").text
    assert theirs in csv and mine not in csv
    cora = signed_in(console, "cora")
    assert "P-200" not in cora.get("/patients?team=ibd").text
    assert theirs not in cora.get("/alerts?team=ibd").text


def test_the_triage_desk_and_its_bulk_actions_keep_to_the_accounts_teams(
    console: Console,
) -> None:
    mine, theirs = _limit(console)
    client = signed_in(console, "cora")
    desk = client.get("/").text
    assert mine in desk and theirs not in desk
    post_form(
        client, "/", "/triage/act", {"code": [mine, theirs], "action": "acknowledge", "reason": "x"}
    )
    with session_scope(console.engine) as s:
        state = {a.code: a.state for a in s.exec(select(AlertRow))}
        acked = s.exec(select(AuditRow).where(AuditRow.action == "alert.acknowledge")).all()
    assert state[mine] == "acknowledged" and state[theirs] == "open"
    assert [r.alert_code for r in acked] == [mine]
