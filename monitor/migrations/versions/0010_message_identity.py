"""message identity is (source, sender, message id); values held on their own

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sender", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_inbound_source_msgid", type_="unique")
        batch_op.create_unique_constraint(
            "uq_inbound_sender_msgid", ["source", "sender", "message_id"]
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbound_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_inbound_id"), ["inbound_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_events_inbound_id", "inbound_messages", ["inbound_id"], ["id"]
        )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sender", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="message", nullable=False)
        )
        batch_op.add_column(sa.Column("patient_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("label", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("code", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_quarantine_patient_id"), ["patient_id"], unique=False)
    _link_events_to_their_messages()


def _link_events_to_their_messages() -> None:
    """Events stored before this revision learn their inbound message from the list the
    message kept (`detail.events`), so a new version of an old message replaces them."""
    bind = op.get_bind()
    inbound = sa.table(
        "inbound_messages", sa.column("id", sa.Integer), sa.column("detail", sa.JSON)
    )
    events = sa.table("events", sa.column("id", sa.Integer), sa.column("inbound_id", sa.Integer))
    for row in bind.execute(sa.select(inbound.c.id, inbound.c.detail)):
        ids = [int(i) for i in (row.detail or {}).get("events", []) if str(i).isdigit()]
        if ids:
            bind.execute(events.update().where(events.c.id.in_(ids)).values(inbound_id=row.id))


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_patient_id"))
        for name in ("code", "label", "patient_id", "kind", "sender"):
            batch_op.drop_column(name)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_inbound_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_events_inbound_id"))
        batch_op.drop_column("inbound_id")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_sender_msgid", type_="unique")
        batch_op.create_unique_constraint("uq_inbound_source_msgid", ["source", "message_id"])
        batch_op.drop_column("sender")
