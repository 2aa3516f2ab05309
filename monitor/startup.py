"""What must hold before the service starts, each failure one line for the operator.

A busy or malformed port, a database that cannot be opened, or a config that pages
nobody for a critical alert stops `monitor run` with one line naming it (exit 2),
not a traceback.
"""

from __future__ import annotations

import socket

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.config_check import unreachable_critical
from monitor.routing import Routing
from monitor.settings import SettingsError
from monitor.store.models import PatientRow

__all__ = [
    "StartupError",
    "check_database",
    "enrolled_count",
    "listen_socket",
    "require_a_person",
]


class StartupError(SettingsError):
    """The service cannot start as configured; the message is one line."""


def db_error_line(exc: BaseException) -> str:
    """The driver's own first line (no SQL, no password), e.g. 'unable to open database file'."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def check_database(engine: Engine) -> None:
    """Open the database once, so an unreadable path or a refused connection is one line."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(f"database {where}: cannot open it ({db_error_line(exc)})") from exc


def enrolled_count(engine: Engine) -> int:
    """Patients enrolled, counted by the database: the start-up status line must not
    load a million ids (8-16 s and ~300 MB at 1M patients) to print one number."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(PatientRow)).scalar_one())


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A bound, listening TCP socket, or StartupError naming the address."""
    try:
        return socket.create_server((host, port), backlog=128)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"{what}: cannot listen on {host}:{port} ({reason}); set another port in the "
            "config or with the command-line option"
        ) from exc


def require_a_person(routing: Routing, console_only: bool) -> None:
    """Refuse a config whose critical alerts would reach only the log, unless intended."""
    if console_only:
        return
    why = unreachable_critical(routing)
    if why:
        raise StartupError(
            f"{why}; add an SMS, email or webhook contact to that route's groups (see "
            "config/production.example.toml), or say console-only is intended with "
            "[daemon] console_only = true or `monitor run --console-only`"
        )
