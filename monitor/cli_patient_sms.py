"""`monitor patient sms-consent`: a patient's mobile and consent to SMS (issue 14).

Kept out of monitor/cli.py (already long); cli.py registers these on its
`patient` group. Each change is one transaction with its audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from monitor.cli_audit import cli_actor
from monitor.services.patient_contact import ContactError, give_consent, withdraw


def register(
    patient_app: typer.Typer,
    ctx_of: Callable[[typer.Context], Any],
    fail: Callable[[str], NoReturn],
) -> None:
    @patient_app.command("sms-consent")
    def sms_consent(
        ctx: typer.Context,
        patient_id: Annotated[str, typer.Argument()],
        by: Annotated[str, typer.Option("--by", help="Who took the patient's consent")],
        mobile: Annotated[
            str | None, typer.Option("--mobile", help="E.164, e.g. +447700900123")
        ] = None,
        language: Annotated[str, typer.Option("--language")] = "en",
        withdraw_: Annotated[bool, typer.Option("--withdraw")] = False,
    ) -> None:
        """Record a patient's consent to SMS reminders and check-ins, or its withdrawal."""
        c = ctx_of(ctx)
        if not by.strip():
            fail("--by: say who took the consent")
        now = c.clock.now()
        with c.session() as session:
            try:
                if withdraw_:
                    withdraw(session, cli_actor(), patient_id, by.strip(), now, how="cli")
                else:
                    if mobile is None:
                        fail("--mobile is required (or --withdraw)")
                    give_consent(
                        session, cli_actor(), patient_id, mobile, language, by.strip(), now
                    )
            except ContactError as exc:
                fail(str(exc))
        typer.echo(f"{patient_id}: SMS consent {'withdrawn' if withdraw_ else 'given'}.")
