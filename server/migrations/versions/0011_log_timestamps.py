"""RFC 3161 time stamps of the log's signed checkpoints, with the TSA's certificate chain.

Revision ID: a3c7e1f5b920
Revises: 9b4e6d2a8c51
Create Date: 2026-12-11 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "a3c7e1f5b920"
down_revision: str | None = "9b4e6d2a8c51"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_timestamps",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("checkpoint_id", server.core.base.BigId, nullable=False),
        sa.Column(
            "response",
            sa.LargeBinary(),
            nullable=False,
            comment="The DER TimeStampResp exactly as the TSA returned it (its token inside).",
        ),
        sa.Column(
            "chain_pem",
            sa.Text(),
            nullable=False,
            comment="The TSA's certificates (PEM): those in the token, and the pinned root it led to if any.",
        ),
        sa.Column(
            "gen_time",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="When the TSA says the note existed (the token's genTime).",
        ),
        sa.Column("tsa_url", sa.Text(), nullable=False, comment="The TSA asked."),
        sa.Column("tsa_subject", sa.Text(), nullable=False, comment="The subject of the TSA's signing certificate."),
        sa.Column(
            "pinned", sa.Boolean(), nullable=False, comment="The chain was verified to [evidence] tsa_ca_file's roots."
        ),
        sa.Column("obtained_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["log_checkpoints.id"], name=op.f("fk_log_timestamps_checkpoint_id_log_checkpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_timestamps")),
        sa.UniqueConstraint("checkpoint_id", name=op.f("uq_log_timestamps_checkpoint_id")),
    )


def downgrade() -> None:
    op.drop_table("log_timestamps")
