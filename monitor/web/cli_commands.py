"""`monitor users ...`, `monitor audit` and `monitor web`: the console's commands.

Registered in monitor/cli.py; they use its context (config, clock, database) and
its one-line errors. Account changes made here are audited too, as the operating
system user who ran the command, via "cli".
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from monitor.accounts import (
    AccountError,
    add_user,
    create_token,
    list_users,
    revoke_token,
    set_disabled,
    set_password,
    set_role,
    tokens_of,
)
from monitor.store.accounts import ROLES
from monitor.web import audit

if TYPE_CHECKING:
    from monitor.cli import Ctx

users_app = typer.Typer(
    help="Console accounts: coordinator, clinician, admin; API tokens.", no_args_is_help=True
)


def _ctx(ctx: typer.Context) -> Ctx:
    from monitor.cli import ctx_of

    return ctx_of(ctx)


def _fail(message: str) -> NoReturn:
    from monitor.cli import fail

    fail(message)


def _operator() -> audit.Actor:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return audit.Actor(f"os:{name}", None, "cli", None)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name (a-z, 0-9, . _ @ -)")],
    role: Annotated[str, typer.Option("--role", help=" | ".join(ROLES))],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Add a user who can sign in to the console."""
    c = _ctx(ctx)
    password = _password(password_stdin)
    now = c.clock.now()
    with c.session() as session:
        try:
            user = add_user(session, username, role, password, now)
        except AccountError as exc:
            _fail(str(exc))
        audit.record(session, _operator(), "user.add", now, user=user.username, role=role)
    typer.echo(f"Added {user.username} ({user.role}).")


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a user's password; their web sessions end."""
    c = _ctx(ctx)
    password = _password(password_stdin)
    now = c.clock.now()
    with c.session() as session:
        try:
            user = set_password(session, username, password, now)
        except AccountError as exc:
            _fail(str(exc))
        audit.record(session, _operator(), "user.passwd", now, user=user.username)
    typer.echo(f"Password of {user.username} changed; their sessions have ended.")


def _toggle(ctx: typer.Context, username: str, disabled: bool) -> None:
    c = _ctx(ctx)
    now = c.clock.now()
    with c.session() as session:
        try:
            user = set_disabled(session, username, disabled, now)
        except AccountError as exc:
            _fail(str(exc))
        action = "user.disable" if disabled else "user.enable"
        audit.record(session, _operator(), action, now, user=user.username)
    typer.echo(
        f"Disabled {user.username}: sessions ended, API tokens revoked."
        if disabled
        else f"Enabled {user.username}."
    )


@users_app.command("disable")
def users_disable(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: they cannot sign in, their sessions end and their tokens are revoked."""
    _toggle(ctx, username, True)


@users_app.command("enable")
def users_enable(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled user again (revoked tokens stay revoked)."""
    _toggle(ctx, username, False)


@users_app.command("role")
def users_role(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Argument(help=" | ".join(ROLES))],
) -> None:
    """Change a user's role."""
    c = _ctx(ctx)
    with c.session() as session:
        try:
            user = set_role(session, username, role)
        except AccountError as exc:
            _fail(str(exc))
        now = c.clock.now()
        audit.record(session, _operator(), "user.role", now, user=user.username, role=role)
    typer.echo(f"{user.username} is now {role}.")


@users_app.command("list")
def users_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """All users with their role and state."""
    c = _ctx(ctx)
    with c.session() as session:
        rows = [
            {
                "username": u.username,
                "role": u.role,
                "disabled": u.disabled,
                "created_at": u.created_at.isoformat(),
            }
            for u in list_users(session)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No users yet: monitor users add NAME --role admin")
    for r in rows:
        state = "disabled" if r["disabled"] else "active"
        typer.echo(f"{r['username']:<24} {r['role']:<12} {state}")


@users_app.command("token")
def users_token(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option("--name", help="What the token is for")],
) -> None:
    """Create an API bearer token acting as USER; it is printed once and not kept."""
    c = _ctx(ctx)
    now = c.clock.now()
    with c.session() as session:
        try:
            new = create_token(session, username, name, now)
        except AccountError as exc:
            _fail(str(exc))
        audit.record(session, _operator(), "token.create", now, user=username, token_id=new.row.id)
    typer.echo(new.secret)
    typer.echo(
        f"Token {new.row.id} ({new.row.name}) for {username}: store it now, it is not shown again.",
        err=True,
    )


@users_app.command("tokens")
def users_tokens(ctx: typer.Context) -> None:
    """API tokens: id, user, name, prefix, created, last used, revoked."""
    c = _ctx(ctx)
    with c.session() as session:
        for t, u in tokens_of(session):
            used = t.last_used_at.isoformat() if t.last_used_at else "never used"
            revoked = f" REVOKED {t.revoked_at.isoformat()}" if t.revoked_at else ""
            typer.echo(f"{t.id:>4} {u.username:<20} {t.prefix}... {t.name:<24} {used}{revoked}")


@users_app.command("revoke-token")
def users_revoke_token(ctx: typer.Context, token_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke an API token by its id (see `monitor users tokens`)."""
    c = _ctx(ctx)
    now = c.clock.now()
    with c.session() as session:
        try:
            revoke_token(session, token_id, now)
        except AccountError as exc:
            _fail(str(exc))
        audit.record(session, _operator(), "token.revoke", now, token_id=token_id)
    typer.echo(f"Revoked token {token_id}.")


def audit_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's rows")] = None,
    patient: Annotated[str | None, typer.Option("--patient", help="Only this patient")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Actions starting with this (alert.)")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
) -> None:
    """Read the console's audit log (newest first): who saw or did what, when, from where."""
    from monitor.cli import parse_at

    c = _ctx(ctx)
    start = parse_at(since, c.clock.now()) if since else None
    with c.session() as session:
        rows = audit.query(session, user, patient, action, start, limit)
    for r in rows:
        if as_json:
            typer.echo(json.dumps(audit.as_json(r)))
            continue
        where = [f"patient {r.patient_id}" if r.patient_id else "", r.alert_code or ""]
        typer.echo(
            f"{r.at.isoformat(timespec='seconds')}  {r.actor:<20} {r.action:<20} {r.via:<4} "
            f"{r.ip or '-':<15} {' '.join(w for w in where if w)}"
            + (f" {json.dumps(r.detail)}" if r.detail else "")
        )


def web_cmd(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Default: [web] host")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: [web] port")] = None,
) -> None:
    """Serve the coordinators' console alone, against the daemon's database."""
    import uvicorn

    from monitor.settings import SettingsError
    from monitor.web.app import create_app
    from monitor.web.host import StandaloneHost, web_settings
    from monitor.web.server import uvicorn_config

    c = _ctx(ctx)
    try:
        web = web_settings(c.settings.raw)
        served = StandaloneHost.from_settings(c.settings, clock=c.clock, engine=c.engine())
    except SettingsError as exc:
        _fail(str(exc))
    with c.session() as session:
        if not list_users(session):
            typer.echo("No users yet: `monitor users add NAME --role admin` adds one.", err=True)
    bind_host, bind_port = host or web.host, port or web.port
    typer.echo(f"Console at http://{bind_host}:{bind_port}/ (Ctrl-C stops it)", err=True)
    uvicorn.Server(uvicorn_config(create_app(served, web), web, bind_host, bind_port)).run()
