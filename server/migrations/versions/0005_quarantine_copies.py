"""Quarantine rows count their copies: a seal that sends a refused message again (it keeps what the court did not
receipt) adds to ``copies`` of one row instead of a new row each time.

Revision ID: 5a1c0e7d9b42
Revises: 04f0a406ba7f
Create Date: 2026-12-01 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "5a1c0e7d9b42"
down_revision: str | None = "04f0a406ba7f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sha256",
                sa.String(length=64),
                nullable=True,
                comment="SHA-256 of the whole message as received (null on rows from before 0005).",
            )
        )
        batch_op.add_column(
            sa.Column(
                "copies",
                sa.Integer(),
                server_default="1",
                nullable=False,
                comment="How many times these bytes came, for this reason.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "last_received_at",
                server.core.base.UTCDateTime(timezone=True),
                nullable=True,
                comment="When the last copy came (null: only one).",
            )
        )
        batch_op.create_index(batch_op.f("ix_quarantine_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_sha256"))
        batch_op.drop_column("last_received_at")
        batch_op.drop_column("copies")
        batch_op.drop_column("sha256")
