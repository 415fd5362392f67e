"""When each gap of a seal's chain was recorded: ``chain_state.missing_since`` (one time per entry of ``missing``, the
database's clock, null once its ``missing_events`` alarm is raised) and ``unannounced_since`` (the oldest of them).

An event beyond a gap is now stored at once, and the alarm waits ``[mqtt] gap_wait_s`` for the predecessor instead
(server.ingest.gap_wait). The gaps of rows from before count as raised (both columns null): the ingest raised their
alarm as it stored the event beyond them, so none is raised again by the upgrade.

Revision ID: 9a4d2c7e5b13
Revises: 4c8e2a6f1d37
Create Date: 2026-12-08 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import server.core.base

revision: str = "9a4d2c7e5b13"
down_revision: str | None = "4c8e2a6f1d37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chain_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "missing_since",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
                comment="For each entry of missing, in order: when it was recorded (the database's clock, ISO 8601), "
                "or null once missing_events was raised for it. Null (rows from before 0022): every entry raised.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "unannounced_since",
                server.core.base.UTCDateTime(timezone=True),
                nullable=True,
                comment="The oldest time in missing_since (null: none): a gap not raised yet, due gap_wait_s after it.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("chain_state", schema=None) as batch_op:
        batch_op.drop_column("unannounced_since")
        batch_op.drop_column("missing_since")
