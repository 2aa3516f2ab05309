"""structlog set-up: JSON lines for the service, readable lines at a terminal.

Libraries that log through the standard library (APScheduler, uvicorn) come out
through the same renderer, so a job that fails is never silent.

Log events carry patient ids, never names: nothing that logs is handed a name.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


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
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
