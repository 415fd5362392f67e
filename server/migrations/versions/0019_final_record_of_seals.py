"""The record of a final removal request's seals, stored by the step that made it final (``removal_steps.seals``):
rebuilt from timestamps, the record hid an ack the lifting relied on (received after the handler read its clock,
committed before it read the seals), and an ack received before an abort but committed after it changed it.

Revision ID: 5e8a1c7d2f94
Revises: 9d4f2b7e1c63
Create Date: 2026-12-06 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e8a1c7d2f94"
down_revision: str | None = "9d4f2b7e1c63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("removal_steps") as batch:
        batch.add_column(
            sa.Column(
                "seals",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
                comment="The step that made the request final (lift, abort): each seal's progress as that step read "
                "it, the request's record from then on (server.removal.record). Null for any other step, and for a "
                "final step recorded before migration 0019.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("removal_steps") as batch:
        batch.drop_column("seals")
