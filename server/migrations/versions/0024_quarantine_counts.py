"""Refused messages counted without rows: ``quarantine_counts``, one row per (seal account, reason, window) for the
messages past the account's budget of quarantine rows per window (``[ingest] quarantine_seal_rows`` per
``quarantine_window_s``, server.ingest.refusal_count): one account's password cannot make the court write a row per
message of a flood of distinct garbage.

Revision ID: 3f6b8d1e0a27
Revises: 5e1b7c3a9d24
Create Date: 2026-12-07 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "3f6b8d1e0a27"
down_revision: str | None = "5e1b7c3a9d24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quarantine_counts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_id", sa.String(length=64), nullable=False, comment="From the topic; empty if it named no seal."
        ),
        sa.Column("reason", sa.String(length=32), nullable=False, comment="Reason code, as in the quarantine."),
        sa.Column(
            "window_start",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="The window's start (quarantine_window_s).",
        ),
        sa.Column("count", sa.BigInteger(), nullable=False, comment="Messages counted; their bytes were not kept."),
        sa.Column("bytes", sa.BigInteger(), nullable=False, comment="Their sizes as received, added up."),
        sa.Column("first_received_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_counts")),
        sa.UniqueConstraint(
            "device_id", "reason", "window_start", name=op.f("uq_quarantine_counts_device_id_reason_window_start")
        ),
    )
    with op.batch_alter_table("quarantine_counts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_counts_window_start"), ["window_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_counts_window_start"))

    op.drop_table("quarantine_counts")
