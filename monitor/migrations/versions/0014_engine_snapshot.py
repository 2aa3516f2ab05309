"""engine_snapshots: each patient's engine state, so an evaluation continues from it

A later event is evaluated from the snapshot instead of replaying the whole history
(issue 10, point 3); a late, corrected or superseded result, a deletion, a changed
patient or profile replays from the start. The table is only a cache.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-03 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from monitor.store.types import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engine_snapshots",
        sa.Column(
            "patient_id",
            sa.String(64),
            sa.ForeignKey("patients.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("covers_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("profile_key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_snapshots")
