"""nudt15: NUDT15 metaboliser status recorded beside TPMT

Issue 9: a patient's dose plan allows for the lower of TPMT and NUDT15 activity
(CPIC 2018), so the store keeps both. Rows enrolled before this revision read
'unknown', as the replay input does when the field is absent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("nudt15", sa.String(length=16), nullable=False, server_default="unknown")
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("nudt15")
