"""The audit row of a state-changing CLI command: who ran it, as the OS knows them.

The actor is the OS user running `monitor` (`via = cli`, with the host): that is what
the machine vouches for. `--by NAME` is what the operator says about who acts (a
clinician acknowledging by phone, say); it is recorded as such (`detail.claimed_by`),
beside the OS user, never instead of it. The row is written in the command's own
transaction, so the action and its audit row are committed together or not at all.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor.store.accounts import AuditRow
from monitor.web.audit import Actor, record


def os_user() -> str:
    """The login name, or `uid:N` when the system has no name for it (a container)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def cli_actor() -> Actor:
    """`os:NAME`, as `monitor users` records its operator."""
    return Actor(name=f"os:{os_user()}", role=None, via="cli", ip=None)


def record_cli(
    session: Session,
    action: str,
    now: datetime,
    by: str | None = None,
    patient_id: str | None = None,
    alert_code: str | None = None,
    **detail: Any,
) -> AuditRow:
    """One audit row for a CLI action; `by` is kept as the claim it is."""
    return record(
        session,
        cli_actor(),
        action,
        now,
        patient_id=patient_id,
        alert_code=alert_code,
        claimed_by=by.strip() if by and by.strip() else None,
        host=socket.gethostname(),
        **detail,
    )
