"""evaluated_at index: /healthz and the health page read max(patients.evaluated_at)

Without an index that is a scan of the whole patients table on every probe (at a
million patients, every few seconds); with it, one index lookup.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 08:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patients_evaluated_at"), ["evaluated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_evaluated_at"))
