"""`monitor patient team`, `monitor oncall` and `monitor users teams`: care teams and rotas.

Registered in monitor/cli.py and using its context. Changing a patient's team or a
user's teams is audited in the same transaction as the change.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.teams import oncall_rows

if TYPE_CHECKING:
    from monitor.cli import Ctx


def _ctx(ctx: typer.Context) -> Ctx:
    from monitor.cli import ctx_of

    return ctx_of(ctx)


def oncall_cmd(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Who is on call now and next on each rota ([rotas] of monitor.toml)."""
    c = _ctx(ctx)
    rows = oncall_rows(c.routing(), c.clock.now())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No rotas configured ([rotas.<id>] in monitor.toml).")
        return
    for r in rows:
        cover = " (override)" if r["overridden"] else ""
        typer.echo(f"{r['label']}: {r['now']}{cover} until {r['until']}, then {r['next']}")


def patient_team_cmd(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument()],
    team: Annotated[str, typer.Argument(help="A [teams.<id>] of monitor.toml, or 'none'")],
    by: Annotated[str | None, typer.Option("--by", help="Who asked for the change")] = None,
) -> None:
    """Move a patient to another care team (new alerts follow it; open ones keep theirs)."""
    from monitor.cli import fail
    from monitor.cli_audit import record_cli
    from monitor.services.intake import IntakeError, set_care_team

    c = _ctx(ctx)
    now = c.clock.now()
    new = None if team.lower() == "none" else team
    with c.session() as session:
        try:
            before = set_care_team(session, patient_id, new, c.routing())
        except IntakeError as exc:
            fail(str(exc))
        record_cli(session, "patient.care_team", now, by, patient_id, team=new, before=before)
    typer.echo(f"{patient_id}: care team {before or 'none'} -> {new or 'none'}.")


def users_teams_cmd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    teams: Annotated[list[str] | None, typer.Argument(help="Team ids; none: every team")] = None,
) -> None:
    """Limit a coordinator or clinician to the patients of these care teams."""
    from monitor.accounts import AccountError, set_teams
    from monitor.cli import fail
    from monitor.cli_audit import record_cli

    c = _ctx(ctx)
    known = set(c.routing().teams)
    with c.session() as session:
        try:
            user = set_teams(session, username, list(teams or []), known)
        except AccountError as exc:
            fail(str(exc))
        record_cli(session, "user.teams", c.clock.now(), None, user=user.username, teams=user.teams)
    typer.echo(f"{user.username}: {', '.join(user.teams) or 'every team'}.")
