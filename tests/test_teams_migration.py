"""Migration 0015: existing patients, alerts and users keep working with no team (the
global routes, every team visible), and the downgrade removes the columns again."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from monitor.store.db import alembic_config, make_engine

T = "2026-01-02 00:00:00.000000"


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def test_existing_rows_get_no_team_and_downgrade_returns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "0012")
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "insert into users (username, role, password_hash, disabled, created_at,"
                " password_changed_at) values ('cora', 'coordinator', 'x', 0, :t, :t)"
            ),
            {"t": T},
        )
    command.upgrade(cfg, "0015")
    with engine.begin() as c:
        assert c.execute(sa.text("select teams from users")).scalar_one() == "[]"
    assert "care_team" in _columns(engine, "patients") and "care_team" in _columns(engine, "alerts")
    command.downgrade(cfg, "0012")
    assert "care_team" not in _columns(engine, "patients")
    assert "teams" not in _columns(engine, "users")
    engine.dispose()
