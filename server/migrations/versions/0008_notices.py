"""The notices table: every printed seal notice, its facts exactly as printed, their hash, superseded or revoked.

Revision ID: 8e5f2a7c3b19
Revises: 7d4b1c2e9a10
Create Date: 2026-12-04 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "8e5f2a7c3b19"
down_revision: str | None = "7d4b1c2e9a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.Column(
            "issued_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="Whole seconds, as in the token.",
        ),
        sa.Column("issued_by", server.core.base.BigId, nullable=True, comment="Null when done on the CLI."),
        sa.Column(
            "facts", sa.Text(), nullable=False, comment="The printed facts, canonical JSON (RFC 8785), verbatim."
        ),
        sa.Column(
            "facts_sha256", sa.String(length=64), nullable=False, comment="SHA-256 of facts (hex), as in the token."
        ),
        sa.Column("key_id", sa.String(length=8), nullable=False, comment="The notice key that signed the token (hex)."),
        sa.Column(
            "expires_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="The token's expiry (whole seconds).",
        ),
        sa.Column("superseded_at", server.core.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("superseded_by", server.core.base.BigId, nullable=True, comment="The notice that replaced it."),
        sa.Column("revoked_at", server.core.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", server.core.base.BigId, nullable=True),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_notices_case_no_cases")),
        sa.ForeignKeyConstraint(["device_id"], ["seals.device_id"], name=op.f("fk_notices_device_id_seals")),
        sa.ForeignKeyConstraint(["issued_by"], ["users.id"], name=op.f("fk_notices_issued_by_users")),
        sa.ForeignKeyConstraint(["revoked_by"], ["users.id"], name=op.f("fk_notices_revoked_by_users")),
        sa.ForeignKeyConstraint(["superseded_by"], ["notices.id"], name=op.f("fk_notices_superseded_by_notices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notices_case_no"), ["case_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_device_id"), ["device_id"], unique=False)


def downgrade() -> None:
    op.drop_table("notices")
