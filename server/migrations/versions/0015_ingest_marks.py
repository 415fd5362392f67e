"""The ingest's caught-up marks (one row per worker), and each seal's stored status's own ts (its connection stamp,
which orders statuses instead of the time they were received).

Revision ID: 5e2b8c4a1d70
Revises: 8d41b6f0c2e7
Create Date: 2026-12-06 00:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "5e2b8c4a1d70"
down_revision: str | None = "8d41b6f0c2e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_marks",
        sa.Column("worker", sa.String(length=128), nullable=False, comment="The worker's MQTT client name."),
        sa.Column(
            "caught_up_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="Send time of the worker's newest marker it has processed: everything the broker held for it "
            "before then is stored.",
        ),
        sa.Column(
            "marked_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="When the worker last wrote this row (the court's clock).",
        ),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_ingest_marks")),
    )
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status_ts",
                server.core.base.UTCDateTime(timezone=True),
                nullable=True,
                comment="That status's own ts: its connection's stamp, which orders the statuses of a seal.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.drop_column("status_ts")
    op.drop_table("ingest_marks")
