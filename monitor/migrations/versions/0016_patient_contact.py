"""patient_contact: patients' own mobiles, SMS consent, and their message thread

Issue 14 (patients in the loop): a consenting patient gets test reminders, recalls
and symptom check-ins by SMS, and replies. `patient_messages.key` is unique so a
scheduled message (patient + purpose + due date) is written once however often the
sweep runs.

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-03 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from monitor.store.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patient_contacts",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("mobile", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("consent", sa.String(length=16), nullable=False),
        sa.Column("consent_by", sa.String(length=100), nullable=False),
        sa.Column("consent_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("paused_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("pause_reason", sa.String(length=200), nullable=True),
        sa.Column("unclear_replies", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_index(
        op.f("ix_patient_contacts_mobile"), "patient_contacts", ["mobile"], unique=False
    )
    op.create_table(
        "patient_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=True),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_patient_messages_patient_id"), "patient_messages", ["patient_id"], unique=False
    )
    op.create_index(op.f("ix_patient_messages_key"), "patient_messages", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_patient_messages_key"), table_name="patient_messages")
    op.drop_index(op.f("ix_patient_messages_patient_id"), table_name="patient_messages")
    op.drop_table("patient_messages")
    op.drop_index(op.f("ix_patient_contacts_mobile"), table_name="patient_contacts")
    op.drop_table("patient_contacts")
