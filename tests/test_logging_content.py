"""Logs without content: content-bearing keys are withheld and long fields capped,
for structlog calls and for libraries that log through the standard library."""

from __future__ import annotations

import logging

import pytest
import structlog

from monitor.logging import MAX_FIELD, configure_logging


def test_content_keys_are_withheld_and_long_fields_capped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_logs=True, level="INFO")
    log = structlog.get_logger("t")
    log.warning("ingest.example", raw="MSH|^~\\&|DOE^JANE", value=412.0, reason="x" * 50_000)
    logging.getLogger("somelib").warning("plain %s", "line")
    err = capsys.readouterr().err
    assert "DOE^JANE" not in err and "412" not in err
    assert err.count("[withheld]") == 2
    line = next(x for x in err.splitlines() if "ingest.example" in x)
    assert len(line) < MAX_FIELD + 300
    assert "more characters" in line
    assert "plain line" in err  # other logging still comes through
