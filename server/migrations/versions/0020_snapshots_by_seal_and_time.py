"""An index of the snapshots by (device_id, received_at): the ingest sums a seal's pictures of the last day that no
stored event names (its budget of them: server.ingest.unnamed_budget) when a picture comes that no stored event
names, before and inside its transaction; with the ``device_id`` index alone that read would rank every picture the
seal ever sent.

Revision ID: 7b3e9d5a1f82
Revises: 5e8a1c7d2f94
Create Date: 2026-12-06 22:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7b3e9d5a1f82"
down_revision: str | None = "5e8a1c7d2f94"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_snapshots_device_id_received_at"), "snapshots", ["device_id", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_snapshots_device_id_received_at"), table_name="snapshots")
