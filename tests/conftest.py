"""Shared fixtures: a CLI runner against a throw-away database; fresh PostgreSQL
databases where `MONITOR_TEST_PG_URL` names a server (scripts/test sets it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from monitor.cli import main
from tests.helpers import CONFIG

PG = os.environ.get("MONITOR_TEST_PG_URL")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


CliRunner = Callable[..., CliResult]


@pytest.fixture
def cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> CliRunner:
    """Run `monitor ...` in-process on a fresh SQLite file; returns (code, out, err)."""
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main(["--config", str(CONFIG), *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def pg_database() -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL databases (each call one more), dropped afterwards; the
    test is skipped where no server is named."""
    if not PG:
        pytest.skip("MONITOR_TEST_PG_URL not set (scripts/test sets it)")
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"labmon_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(PG).set(database=name).render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database: Callable[[], str]) -> str:
    """One fresh PostgreSQL database."""
    return pg_database()
