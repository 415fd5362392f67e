"""A seal's storage report: what its retained ``online`` status says while it cannot store events (a card gone
read-only, I/O errors, a full disk) — why, how many events it holds in memory only, since when; null while it stores
them. The seal's unsigned word, shown as its status report (docs/protocol.md, "Status").

Revision ID: 3e7b9c1d5f20
Revises: 3f7b9e2c4a61
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "3e7b9c1d5f20"
down_revision: str | None = "3f7b9e2c4a61"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The comments as written here (server.seals.models holds the current ones).
FAULT = (
    "Why the seal said, in its last standing online status, that it cannot store events (read_only, full, io_error); "
    "null: it did not say so. The seal's unsigned report, not evidence."
)
HELD = "How many events the seal said it holds in memory only, with that report."
SINCE = "Since when, by the seal's clock, it said it cannot store (its first refused commit)."


def upgrade() -> None:
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_fault", sa.String(length=16), nullable=True, comment=FAULT))
        batch_op.add_column(sa.Column("storage_held", sa.Integer(), nullable=True, comment=HELD))
        batch_op.add_column(
            sa.Column("storage_since", server.core.base.UTCDateTime(timezone=True), nullable=True, comment=SINCE)
        )


def downgrade() -> None:
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.drop_column("storage_since")
        batch_op.drop_column("storage_held")
        batch_op.drop_column("storage_fault")
