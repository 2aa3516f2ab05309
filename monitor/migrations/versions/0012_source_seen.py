"""source_seen: when each lab feed last delivered is an index lookup

The feed watch (monitor/services/feed_watch.py) asks, every minute, for the latest
message of each source, taken in or quarantined; these indexes make that a lookup
instead of a scan of every message ever received.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"  # the integrator re-chains it after 0011
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_source_received", ["source", "received_at"])
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_source_received", ["source", "received_at"])


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_source_received")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_source_received")
