"""pytest fixtures for the fakes; a conftest imports the ones it needs.

from tests.fakes.fixtures import fake_twilio, smtp_server, tls_files  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.smtp_server import FakeSMTPServer
from tests.fakes.tls import TLSFiles, make_self_signed
from tests.fakes.twilio_api import FakeTwilioAPI

SMTP_USER = "alerts"
SMTP_PASSWORD = "smtp-test-password"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """One self-signed certificate for the whole run (making one takes ~50 ms)."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_self_signed(directory)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilioAPI]:
    with FakeTwilioAPI() as api:
        yield api


@pytest.fixture
def smtp_server(tls_files: TLSFiles) -> Iterator[FakeSMTPServer]:
    """STARTTLS required, AUTH required for SMTP_USER / SMTP_PASSWORD."""
    with FakeSMTPServer(tls_files, users={SMTP_USER: SMTP_PASSWORD}) as server:
        yield server
