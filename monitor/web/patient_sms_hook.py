"""The inbound-SMS hook's patient branch (issue 14): a reply from a number that is
not staff goes here first; only an exact registered patient number is handled.

Kept out of twilio_hooks.py so that file's staff `ACK` path stays as it was. An
unregistered number is counted, never logged by value, and nothing is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from fastapi.concurrency import run_in_threadpool

from monitor.services.patient_replies import handle_reply
from monitor.services.patient_sms import table_of
from monitor.store.db import session_scope

log = structlog.get_logger(__name__)

unregistered_replies = 0  # a count, for the log line; never the number


async def patient_reply(ctx: Any, sender: str, body: str) -> str | None:
    """The TwiML answer ("" for none), or None when `sender` is no patient's."""
    global unregistered_replies
    settings = ctx.config.settings
    t = table_of(settings.raw)
    if not t.enabled:
        return None
    now: datetime = ctx.now()

    def run() -> str | None:
        with session_scope(ctx.engine) as session:
            return handle_reply(
                session, sender, body, now, ctx.config.protocols, ctx.config.routing, t,
                settings.path.parent,
            )  # fmt: skip

    answer = await run_in_threadpool(run)
    if answer is None:
        unregistered_replies += 1
        log.info("patient_sms.unregistered_reply", count=unregistered_replies)
    else:
        ctx.wake_dispatcher()  # a stop alert from a symptom reply goes out at once
    return answer
