"""structlog set-up: JSON lines for the service, readable lines at a terminal.

Libraries that log through the standard library (APScheduler, uvicorn) come out
through the same renderer, so a job that fails is never silent.

Log events carry patient ids, never names: nothing that logs is handed a name. As a
second guard, `withhold_content` replaces keys that carry message content (raw
text, payloads, values, names) with a marker and caps every field, so one careless
call cannot put a lab message or a 1 MB line into the journal.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

CONTENT_KEYS = frozenset(
    {"raw", "payload", "body", "text", "content", "value", "values", "name", "names", "hl7"}
)
MAX_FIELD = 1_000  # characters of any one field


def withhold_content(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Content-bearing keys withheld, every other field capped at MAX_FIELD."""
    for key, value in list(event.items()):
        if key in CONTENT_KEYS and value is not None:
            event[key] = "[withheld]"
        elif isinstance(value, str) and len(value) > MAX_FIELD:
            event[key] = value[:MAX_FIELD] + f"... [{len(value) - MAX_FIELD} more characters]"
    return event


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now (test runners swap it), not at set-up time."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(json_logs: bool | None = None, level: str | None = None) -> None:
    """Logs go to stderr so command output on stdout stays clean for pipes."""
    if json_logs is None:
        json_logs = os.environ.get("MONITOR_LOG_FORMAT", "").lower() == "json" or (
            "INVOCATION_ID" in os.environ
        )
    lvl = getattr(logging, (level or os.environ.get("MONITOR_LOG_LEVEL", "WARNING")).upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                withhold_content,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(lvl)
    logging.getLogger("apscheduler").setLevel(max(lvl, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(lvl, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            withhold_content,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
