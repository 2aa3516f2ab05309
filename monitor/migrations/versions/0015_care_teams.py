"""care_teams: a patient's care team, the team frozen onto an alert, accounts per team

`patients.care_team` picks the team's routes and rotas (monitor/teams.py);
`alerts.care_team` records the team an alert was routed for when it was raised;
`users.teams` limits a console account to those teams' patients (empty: all).

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-03 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("care_team", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_patients_care_team", ["care_team"])
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("care_team", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_alerts_care_team", ["care_team"])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("teams", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("teams")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_care_team")
        batch_op.drop_column("care_team")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index("ix_patients_care_team")
        batch_op.drop_column("care_team")
