"""Shared fixtures: a CLI runner against a throw-away database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.cli import main
from tests.helpers import CONFIG


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
